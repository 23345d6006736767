"""The runtime options of the commands that render (``plan``, ``run``, ``batch``): ``--preset``,
``--device``, ``--dtype``.

They reach the pipeline as *runtime* options (``Pipeline(runtime=...)``, ``StoryFile.pipeline(defaults=...)``):
every component that declares the option gets it, the others are left alone.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["RUNTIME_OPTIONS", "add_runtime_arguments", "runtime_options"]

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
