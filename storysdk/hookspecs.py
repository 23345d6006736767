"""The plugin hooks of storysdk (pluggy project ``storysdk``).

Each hook receives a ``register`` callback; a plugin calls it once per component class it
provides, for example ``register(MyGenerator)``. Built-in components use the same hooks.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

hookspec = pluggy.HookspecMarker("storysdk")
hookimpl = pluggy.HookimplMarker("storysdk")

Register = Callable[..., Any]


@hookspec
def register_planners(register: Register) -> None:
    """Register Planner classes: ``register(PlannerClass)``."""


@hookspec
def register_tokenizers(register: Register) -> None:
    """Register Tokenizer classes: ``register(TokenizerClass)``."""


@hookspec
def register_generators(register: Register) -> None:
    """Register Generator classes: ``register(GeneratorClass)``."""


@hookspec
def register_composers(register: Register) -> None:
    """Register Composer classes: ``register(ComposerClass)``."""
