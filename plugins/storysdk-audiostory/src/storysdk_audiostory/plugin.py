"""Registers the AudioStory components through storysdk's hooks (entry point ``audiostory``).

Component modules import no torch at module level.
"""

from __future__ import annotations

from storysdk.hookspecs import Register, hookimpl


@hookimpl
def register_planners(register: Register) -> None:
    from .planner import AudioStoryPlanner

    register(AudioStoryPlanner)


@hookimpl
def register_tokenizers(register: Register) -> None:
    from .bridge_tokenizer import AudioStoryBridge

    register(AudioStoryBridge)


@hookimpl
def register_generators(register: Register) -> None:
    from .generators import AudioStoryGenerator, TangoFluxGenerator

    register(AudioStoryGenerator)
    register(TangoFluxGenerator)
