"""The runtime options of the commands that render (``plan``, ``run``, ``batch``): ``--preset``,
``--device``, ``--dtype``, and the limits (``--limit NAME=VALUE``).

The runtime options reach the pipeline as *runtime* options (``Pipeline(runtime=...)``,
``StoryFile.pipeline(defaults=...)``): every component that declares the option gets it, the
others are left alone. The limits become the pipeline's :class:`~storysdk.limits.Limits`.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .limits import Limits

__all__ = ["RUNTIME_OPTIONS", "add_limit_arguments", "add_runtime_arguments", "limits_from_args", "runtime_options"]

#: The command-line flags that become runtime options, with their help text.
RUNTIME_OPTIONS: dict[str, str] = {
    "preset": "preset for model-backed components: tiny, auto or full",
    "device": "cpu, cuda, cuda:1, auto",
    "dtype": "float32, float16, bfloat16, auto",
}


def add_runtime_arguments(parser: argparse.ArgumentParser, **help_text: str) -> None:
    """Add ``--preset``, ``--device`` and ``--dtype`` to ``parser`` (``help_text`` overrides a flag's help)."""
    for key, text in RUNTIME_OPTIONS.items():
        parser.add_argument(f"--{key}", help=help_text.get(key, text))


def runtime_options(args: argparse.Namespace) -> dict[str, Any]:
    """The runtime flags that were given on the command line, as ``{option: value}``."""
    out: dict[str, Any] = {}
    for key in RUNTIME_OPTIONS:
        value = getattr(args, key, None)
        if value is not None:
            out[key] = value
    return out


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--limit NAME=VALUE`` (repeatable) to ``parser``; :func:`limits_from_args` reads it."""
    parser.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="raise or lower one limit checked before any model loads (repeatable), e.g. --limit steps=400, "
        "--limit pixels=3072x3072, --limit scenes=none (no limit); 'storysdk limits' lists them",
    )


def limits_from_args(args: argparse.Namespace, base: Limits | None = None) -> Limits:
    """The :class:`~storysdk.limits.Limits` of a command: ``base`` (default: the defaults) with its ``--limit`` flags."""
    from .limits import Limits

    return Limits.parse(getattr(args, "limit", None) or [], base=base)
