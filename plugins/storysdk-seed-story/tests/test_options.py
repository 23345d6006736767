"""Declared options, seeded construction that leaves the global RNG alone, and check_plan."""

from __future__ import annotations

import pytest
import torch

from storysdk import ConfigError, StoryRequest
from storysdk.model import Scene, StoryPlan, Tokens
from storysdk.options import describe_options
from storysdk_seed_story import loading
from storysdk_seed_story.configs import TINY
from storysdk_seed_story.detokenizer import SeedStoryDetokenizer
from storysdk_seed_story.loading import tiny_mllm, tiny_perceiver, tiny_resamplers, tiny_vit
from storysdk_seed_story.mllm import build_llama
from storysdk_seed_story.perceiver import PerceiverResampler
from storysdk_seed_story.planner import IMAGE_EMBEDS, SeedStoryPlanner
from storysdk_seed_story.resampler import Resampler
from storysdk_seed_story.vit import VisionTransformer
from storysdk_seed_story.vit_tokenizer import SeedStoryViTTokenizer

TINY_CPU = {"preset": "tiny", "device": "cpu"}


# -- seeded construction ---------------------------------------------------------------------
def test_tiny_builders_leave_the_global_rng_as_it_was():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    tiny_vit(TINY, 1)
    tiny_mllm(TINY, 1)
    tiny_perceiver(TINY.perceiver, 1)
    tiny_resamplers(TINY, 1)
    build_llama(TINY.llm, 5)
    SeedStoryPlanner(**TINY_CPU).models()
    SeedStoryViTTokenizer(**TINY_CPU).models()
    SeedStoryDetokenizer(**TINY_CPU).load()
    assert torch.equal(torch.random.get_rng_state(), before)
    VisionTransformer(TINY.vit)  # an unseeded build does draw from it: the check above can fail
    assert not torch.equal(torch.random.get_rng_state(), before)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_tiny_weights_are_those_of_the_seed_streams():
    """Module k of weights seed s is built right after manual_seed(10 * s + k): the weights the
    tiny preset had when it seeded the global RNG, bit for bit."""
    with torch.random.fork_rng():
        torch.manual_seed(30)
        vit = VisionTransformer(TINY.vit)
        torch.manual_seed(31)
        inp = Resampler(8, 64, TINY.resampler_heads, kv_dim=64, eps=1e-5)
        out = Resampler(16, 64, TINY.resampler_heads, kv_dim=64, eps=1e-5)
        torch.manual_seed(33)
        perceiver = PerceiverResampler(TINY.perceiver)
    _same(tiny_vit(TINY, 3), vit)
    lm = tiny_mllm(TINY, 3)
    _same(lm.input_resampler, inp)
    _same(lm.output_resampler, out)
    _same(tiny_perceiver(TINY.perceiver, 3), perceiver)
    _same(build_llama(TINY.llm, 32).model, lm.llm.model)
    # the tokenizer's tiny resamplers are the planner's (weights_seed 3 for both)
    t_in, t_out = tiny_resamplers(TINY, 3)
    _same(t_in, inp)
    _same(t_out, out)
    assert not torch.equal(tiny_vit(TINY, 4).proj, vit.proj)


def test_construction_and_check_plan_load_no_model(monkeypatch, start_image):
    def refuse(*_a, **_k):
        raise AssertionError("a model was loaded")

    for name in ("tiny_vit", "tiny_mllm", "tiny_perceiver", "tiny_resamplers", "load_vit", "load_mllm"):
        monkeypatch.setattr(loading, name, refuse)
    feats = Tokens(IMAGE_EMBEDS, "seed-story", {"features": torch.zeros(256, 64)})
    plan = StoryPlan(scenes=[Scene(index=0, prompt="p", tokens={IMAGE_EMBEDS: feats})])
    for comp in (SeedStoryPlanner(**TINY_CPU), SeedStoryViTTokenizer(**TINY_CPU), SeedStoryDetokenizer(**TINY_CPU)):
        comp.check_plan(plan)
    with pytest.raises(AssertionError, match="a model was loaded"):
        SeedStoryPlanner(**TINY_CPU).plan(StoryRequest(start_image=start_image, start_caption="A fox."))


# -- declared options ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cls,options,needle",
    [
        (SeedStoryPlanner, {"window": 0}, "window"),
        (SeedStoryPlanner, {"max_new_tokens": 0}, "max_new_tokens"),
        (SeedStoryPlanner, {"num_scenes": 0}, "num_scenes"),
        (SeedStoryPlanner, {"max_text_tokens": -1}, "max_text_tokens"),
        (SeedStoryPlanner, {"max_text_tokens": "many"}, "max_text_tokens"),
        (SeedStoryPlanner, {"sink_cache": "yes"}, "sink_cache"),
        (SeedStoryPlanner, {"image_block": "fast"}, "image_block"),
        (SeedStoryPlanner, {"window": True}, "window"),
        (SeedStoryPlanner, {"architecture": "huge"}, "architecture"),
        (SeedStoryPlanner, {"weights_seed": 1.5}, "weights_seed"),
        (SeedStoryViTTokenizer, {"resamplers": 3}, "resamplers"),
        (SeedStoryViTTokenizer, {"preset": "small"}, "preset"),
        (SeedStoryDetokenizer, {"steps": 0}, "steps"),
        (SeedStoryDetokenizer, {"steps": 1001}, "steps"),
        (SeedStoryDetokenizer, {"guidance_scale": -1.0}, "guidance_scale"),
        (SeedStoryDetokenizer, {"width": 100}, "multiple of 8"),
        (SeedStoryDetokenizer, {"height": 0}, "height"),
        (SeedStoryDetokenizer, {"start_scene": "skip"}, "start_scene"),
        (SeedStoryDetokenizer, {"noise_seed": "42"}, "noise_seed"),
        (SeedStoryDetokenizer, {"dtype": "int8"}, "dtype"),
    ],
)
def test_bad_option_values_name_the_option(cls, options, needle):
    with pytest.raises(ConfigError) as err:
        cls(**{**TINY_CPU, **options})
    assert needle in str(err.value)


def test_renamed_options_name_their_successors():
    with pytest.raises(ConfigError, match="'seed' was renamed to 'weights_seed'"):
        SeedStoryPlanner(preset="tiny", seed=1)
    with pytest.raises(ConfigError, match="'seed' was renamed to 'weights_seed'"):
        SeedStoryViTTokenizer(preset="tiny", seed=1)
    with pytest.raises(ConfigError, match="'fixed_seed' was renamed to 'noise_seed'"):
        SeedStoryDetokenizer(preset="tiny", fixed_seed=42)
    with pytest.raises(ConfigError, match="Did you mean 'window'"):
        SeedStoryPlanner(preset="tiny", windows=4)


def test_offload_is_the_detokenizers_and_needs_cuda():
    for cls in (SeedStoryPlanner, SeedStoryViTTokenizer):
        with pytest.raises(ConfigError, match="set it on seed-story-detokenizer"):
            cls(**TINY_CPU, offload="model")
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        SeedStoryDetokenizer(**TINY_CPU, offload="model")


def test_declarations_show_defaults_and_bounds():
    planner = {o.name: o for o in describe_options(SeedStoryPlanner.Options)}
    assert planner["window"].default == 8 and planner["window"].constraints == (">= 1",)
    assert planner["max_new_tokens"].default == 500 and planner["num_scenes"].default == 25
    assert planner["max_text_tokens"].default == "auto"
    assert planner["weights_seed"].default == 0 and "seed" not in planner
    det = {o.name: o for o in describe_options(SeedStoryDetokenizer.Options)}
    assert det["steps"].default == 50 and det["guidance_scale"].default == 7.5
    assert det["width"].constraints == (">= 8", "multiple of 8") and det["noise_seed"].default is None
    assert all(o.description for o in [*planner.values(), *det.values()])


def test_preset_and_max_text_tokens_resolution(tmp_path):
    assert SeedStoryPlanner(**TINY_CPU).max_text_tokens == 24  # 'auto' on toy weights
    assert SeedStoryPlanner(**TINY_CPU, max_text_tokens=None).max_text_tokens is None
    assert SeedStoryPlanner(**TINY_CPU, max_text_tokens=3).max_text_tokens == 3
    full = SeedStoryPlanner(pretrained=str(tmp_path), device="cpu")  # unset preset: the real weights
    assert full.max_text_tokens is None and full._setup.sizes.vit.width == 1664
    with pytest.warns(UserWarning, match="tiny preset"):  # a hub-id-like name not in the cache: toy weights
        auto = SeedStoryPlanner(preset="auto", pretrained="absent-seed-story-folder", device="cpu")
    assert auto._setup.tiny and auto.max_text_tokens == 24
    with pytest.raises(ConfigError, match="does not exist"):  # a path that does not exist is a typo, not "no weights"
        SeedStoryPlanner(preset="auto", pretrained=str(tmp_path / "absent"), device="cpu")
    assert not SeedStoryPlanner(preset="auto", pretrained=tmp_path, device="cpu")._setup.tiny  # a Path works too


# -- check_plan ------------------------------------------------------------------------------
def _scene(index: int, width: int = 64, **metadata) -> Scene:
    tok = Tokens(IMAGE_EMBEDS, "seed-story", {"features": torch.zeros(256, width)})
    return Scene(index=index, prompt=f"scene {index}", metadata=metadata, tokens={IMAGE_EMBEDS: tok})


def test_planner_check_plan_refuses_foreign_scenes():
    planner = SeedStoryPlanner(**TINY_CPU)
    planner.check_plan(StoryPlan(scenes=[_scene(0), _scene(1, raw_text="[INST] a walk", text_ids=[5, 6])]))
    with pytest.raises(ConfigError, match="no scenes"):
        planner.check_plan(StoryPlan())
    with pytest.raises(ConfigError, match="scene 0 has no seed-story-image-embeds"):
        planner.check_plan(StoryPlan(scenes=[Scene(index=0, prompt="p")]))
    with pytest.raises(ConfigError, match=r"shape \(256, 32\)"):
        planner.check_plan(StoryPlan(scenes=[_scene(0, width=32)]))
    with pytest.raises(ConfigError, match="scene 1 was not written by the seed-story planner"):
        planner.check_plan(StoryPlan(scenes=[_scene(0), _scene(1)]))


def test_tokenizer_check_plan_needs_a_picture_per_scene(tmp_path, start_image):
    tok = SeedStoryViTTokenizer(**TINY_CPU)
    path = tmp_path / "p.png"
    start_image.save(path)
    tok.check_plan(StoryPlan(scenes=[_scene(0), Scene(index=1, prompt="p", metadata={"image": str(path)})]))
    with pytest.raises(ConfigError, match="scene 1 has no picture"):
        tok.check_plan(StoryPlan(scenes=[_scene(0), Scene(index=1, prompt="p")]))
    with pytest.raises(ConfigError, match="does not exist"):
        tok.check_plan(StoryPlan(scenes=[Scene(index=2, prompt="p", metadata={"image": str(tmp_path / "no.png")})]))


def test_detokenizer_check_plan_size_and_feature_width():
    det = SeedStoryDetokenizer(**TINY_CPU)
    det.check_plan(StoryPlan(scenes=[_scene(0)], width=64, height=96))
    with pytest.raises(ConfigError, match="plan's width 100 is not a multiple of 8"):
        det.check_plan(StoryPlan(scenes=[_scene(0)], width=100))
    SeedStoryDetokenizer(**TINY_CPU, width=64).check_plan(StoryPlan(scenes=[_scene(0)], width=100))  # the option wins
    with pytest.raises(ConfigError, match="same architecture"):
        det.check_plan(StoryPlan(scenes=[_scene(0, width=4096)]))
