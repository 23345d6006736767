"""storysdk's shared component contract (storysdk.testing.contract) on the four AudioStory components,
tiny preset on CPU: declared options, refused values, check_plan, same seed -> same bytes, resume."""

from __future__ import annotations

from storysdk import StoryRequest
from storysdk.model import Scene, StoryPlan
from storysdk.testing.contract import GeneratorContract, PlannerContract, TokenizerContract
from storysdk_audiostory import plugin
from storysdk_audiostory.streams import response_text

TINY = {"preset": "tiny", "device": "cpu"}
EVENTS = [("A dog barks in the yard", 2.0), ("Rain starts to fall", 1.5)]
PLANNER = ("audiostory", {**TINY, "response": response_text("two events", EVENTS)})
REQUEST = StoryRequest(prompt="A dog barks, then rain.", duration=3.5, seed=7)


def _bare_plan() -> StoryPlan:
    return StoryPlan(scenes=[Scene(0, prompt="rain", duration=2.0), Scene(1, prompt="wind", duration=2.0)])


class TestPlannerContract(PlannerContract):
    plugins = (plugin,)
    name = "audiostory"
    options = PLANNER[1]
    request = REQUEST
    bad_options = [({"max_new_tokens": 0}, "max_new_tokens"), ({"offload": "model"}, "offload")]


class TestBridgeContract(TokenizerContract):
    plugins = (plugin,)
    name = "audiostory-bridge"
    planner = PLANNER
    options = TINY
    request = REQUEST
    bad_options = [({"t5_feature_scale": 0.0}, "t5_feature_scale")]
    bad_plans = [(_bare_plan, "no 'audiostory-queries' tokens")]


class TestAudioStoryGeneratorContract(GeneratorContract):
    plugins = (plugin,)
    name = "audiostory"
    planner = PLANNER
    tokenizers = (("audiostory-bridge", TINY),)
    options = {**TINY, "steps": 2}
    request = REQUEST
    bad_options = [({"steps": 0}, "steps"), ({"vae_batch": 0}, "vae_batch")]
    bad_plans = [(_bare_plan, "no 'tangoflux-cond' tokens")]


class TestTangoFluxContract(GeneratorContract):
    plugins = (plugin,)
    name = "tangoflux"
    options = {**TINY, "steps": 2}
    bad_options = [({"steps": 0}, "steps"), ({"crossfade": -1.0}, "crossfade")]
    bad_plans = [
        (lambda: StoryPlan(scenes=[Scene(0, prompt="   ")]), "no prompt or caption"),
        (lambda: StoryPlan(scenes=[Scene(0, prompt="rain", duration=31.0)]), "longer than the 30.00 s"),
    ]
