"""Helpers for testing storysdk and its plugins without weights, GPUs or a network.

- fake components (:mod:`storysdk.testing.fakes`): instant, deterministic;
- :func:`make_registry`: a registry with the built-ins and the fakes but no installed plugins;
- the pytest fixture ``storysdk_registry`` (this package is a pytest plugin through the
  ``pytest11`` entry point, so plugin authors get it just by installing storysdk);
- offline tokenizers and tiny models are in :mod:`storysdk.tiny` (not test-only: tiny presets use them).
"""

from __future__ import annotations

from typing import Any

from ..hookspecs import Register, hookimpl
from ..registry import Registry
from .fakes import (
    FakeAudioGenerator,
    FakeComposer,
    FakeEventPlanner,
    FakeImageGenerator,
    FakeInterleavedPlanner,
    FakePlanner,
    FakeTokenizer,
)

__all__ = [
    "FakeAudioGenerator",
    "FakeComposer",
    "FakeEventPlanner",
    "FakeImageGenerator",
    "FakeInterleavedPlanner",
    "FakePlanner",
    "FakeTokenizer",
    "FakesPlugin",
    "make_registry",
]

FAKES_PLUGIN = "storysdk.testing"


class FakesPlugin:
    """Registers the fake components (plugin name ``storysdk.testing``)."""

    @hookimpl
    def register_planners(self, register: Register) -> None:
        register(FakePlanner)
        register(FakeInterleavedPlanner)
        register(FakeEventPlanner)

    @hookimpl
    def register_tokenizers(self, register: Register) -> None:
        register(FakeTokenizer)

    @hookimpl
    def register_generators(self, register: Register) -> None:
        register(FakeImageGenerator)
        register(FakeAudioGenerator)

    @hookimpl
    def register_composers(self, register: Register) -> None:
        register(FakeComposer)


def make_registry(*plugins: Any, fakes: bool = True) -> Registry:
    """A registry with the built-ins (and the fakes), no installed plugins, plus ``plugins``.

    Plugin authors pass their plugin module to test it in isolation::

        reg = make_registry(my_plugin_module)
        pipe = Pipeline(planner="fake-planner", generators=["my-generator"], registry=reg)
    """
    reg = Registry(entrypoints=False)
    if fakes:
        reg.register_plugin(FakesPlugin(), name=FAKES_PLUGIN)
    for p in plugins:
        reg.register_plugin(p, name=getattr(p, "__name__", None))
    return reg
