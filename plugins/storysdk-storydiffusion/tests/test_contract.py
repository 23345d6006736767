"""The shared component contract (storysdk.testing.contract) on the ``storydiffusion`` generator (tiny preset)."""

from __future__ import annotations

from storysdk import Character, Scene, StoryPlan, StoryRequest
from storysdk.testing.contract import GeneratorContract

import storysdk_storydiffusion.plugin


def _never_alone() -> StoryPlan:
    return StoryPlan(
        scenes=[
            Scene(0, "a girl", characters=("Mia",)),
            Scene(1, "a girl and a boy", characters=("Mia", "Leo")),
            Scene(2, "a girl", characters=("Mia",)),
        ],
        characters=[Character("Mia", "a girl"), Character("Leo", "a boy")],
        width=64,
        height=64,
        metadata={"character_mode": "named"},
    )


def _odd_size() -> StoryPlan:
    return StoryPlan(scenes=[Scene(0, "a lake"), Scene(1, "a hill")], width=72, height=64)


class TestStoryDiffusionContract(GeneratorContract):
    name = "storydiffusion"
    plugins = (storysdk_storydiffusion.plugin,)
    planner = "script"
    # two id frames of Mia, then a read frame and an [NC] frame in one read chunk, then one more read
    options = {"preset": "tiny", "device": "cpu", "steps": 2, "num_ids": 2, "read_batch": 2}
    request = StoryRequest(
        script="[Mia] at the window\n[Mia] on a bus\n[Mia] in the rain #Rain\n[NC] a quiet street\n[Mia] asleep",
        characters="[Mia] a girl in a red coat",
        width=64,
        height=64,
        seed=5,
    )
    bad_options = [
        ({"num_ids": 0}, "num_ids"),
        ({"guidance": 1.0}, "guidance"),
        ({"width": 100}, "width"),
        ({"mode": "fast"}, "mode"),
    ]
    bad_plans = [
        (_never_alone, "[Leo] appears alone in 0 frame line(s)"),
        (_odd_size, "plan width must be a positive multiple of 32"),
    ]
