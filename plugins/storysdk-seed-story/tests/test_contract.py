"""The shared component contract (storysdk.testing.contract) on the three SEED-Story components, tiny preset."""

from __future__ import annotations

import base64
import io
from typing import Any, ClassVar

import numpy as np
from PIL import Image

import storysdk_seed_story.plugin
from storysdk import StoryRequest, hookimpl
from storysdk.hookspecs import Register
from storysdk.interfaces import Planner
from storysdk.model import Scene, StoryPlan, Tokens
from storysdk.testing.contract import GeneratorContract, PlannerContract, TokenizerContract
from storysdk_seed_story.planner import IMAGE_EMBEDS

TINY = {"preset": "tiny", "device": "cpu"}
PLANNER = ("seed-story", {**TINY, "max_text_tokens": 3})
START = Image.fromarray((np.random.RandomState(0).rand(48, 64, 3) * 255).astype("uint8"), "RGB")
REQUEST = StoryRequest(start_image=START, start_caption="Lily and the fox walked to the old bridge.",
                       num_scenes=3, seed=7)


def _png_uri(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _plan_with(*scenes: Scene, **kw: Any) -> StoryPlan:
    return StoryPlan(scenes=list(scenes), **kw)


def _embeds(index: int, width: int = 64) -> Scene:
    tok = Tokens(IMAGE_EMBEDS, "seed-story", {"features": np.zeros((256, width), dtype=np.float32)})
    return Scene(index=index, prompt="p", tokens={IMAGE_EMBEDS: tok})


class _Pictures(Planner):
    """Test planner: one scene per script line, each carrying a picture (metadata.image)."""

    name = "pictures"

    def plan(self, request: StoryRequest) -> StoryPlan:
        lines = [ln.strip() for ln in (request.script or "").splitlines() if ln.strip()]
        uri = _png_uri(START)
        scenes = [Scene(index=i, prompt=ln, metadata={"image": uri}) for i, ln in enumerate(lines)]
        return StoryPlan(scenes=scenes, seed=request.seed, planner=self.name)


class PicturesPlugin:
    @hookimpl
    def register_planners(self, register: Register) -> None:
        register(_Pictures)


class _SeedStory:
    plugins: ClassVar = (storysdk_seed_story.plugin,)


class TestSeedStoryPlanner(_SeedStory, PlannerContract):
    name = "seed-story"
    options = PLANNER[1]
    request = REQUEST
    bad_options = [({"window": 0}, "window"), ({"offload": "model"}, "offload"), ({"image_block": "x"}, "image_block")]
    bad_plans = [
        (lambda: _plan_with(Scene(index=0, prompt="p")), "no seed-story-image-embeds"),
        (lambda: _plan_with(_embeds(0), _embeds(1)), "not written by the seed-story planner"),
        (lambda: _plan_with(_embeds(0, width=32)), "(256, 64)"),
    ]


class TestSeedStoryDetokenizer(_SeedStory, GeneratorContract):
    name = "seed-story-detokenizer"
    planner = PLANNER
    options = {**TINY, "steps": 2}
    request = REQUEST
    bad_options = [({"steps": 0}, "steps"), ({"width": 100}, "multiple of 8"), ({"start_scene": "x"}, "start_scene")]
    bad_plans = [
        (lambda: _plan_with(_embeds(0), width=100), "multiple of 8"),
        (lambda: _plan_with(_embeds(0, width=4096)), "same architecture"),
    ]


class TestSeedStoryViT(_SeedStory, TokenizerContract):
    name = "seed-story-vit"
    plugins: ClassVar = (storysdk_seed_story.plugin, PicturesPlugin())
    planner = "pictures"
    options = TINY
    request = StoryRequest(script="a fox at the bridge\nthe fox asleep", seed=4)
    bad_options = [({"offload": "model"}, "offload"), ({"architecture": "huge"}, "architecture")]
    bad_plans = [(lambda: _plan_with(Scene(index=0, prompt="p")), "no picture")]
