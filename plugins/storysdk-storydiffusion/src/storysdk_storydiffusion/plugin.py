"""The storysdk plugin module (entry point ``storydiffusion`` in the ``storysdk`` group).

Registers the ``storydiffusion`` generator; importing this module does not import torch.
"""

from __future__ import annotations

from storysdk.hookspecs import Register, hookimpl


@hookimpl
def register_generators(register: Register) -> None:
    """Register :class:`~storysdk_storydiffusion.generator.StoryDiffusionGenerator`."""
    from .generator import StoryDiffusionGenerator

    register(StoryDiffusionGenerator)
