"""storysdk hooks of the SEED-Story plugin (entry point ``seed-story``). Imports no torch."""

from __future__ import annotations

import storysdk
from storysdk.hookspecs import Register


@storysdk.hookimpl
def register_planners(register: Register) -> None:
    from .planner import SeedStoryPlanner

    register(SeedStoryPlanner)


@storysdk.hookimpl
def register_tokenizers(register: Register) -> None:
    from .vit_tokenizer import SeedStoryViTTokenizer

    register(SeedStoryViTTokenizer)


@storysdk.hookimpl
def register_generators(register: Register) -> None:
    from .detokenizer import SeedStoryDetokenizer

    register(SeedStoryDetokenizer)
