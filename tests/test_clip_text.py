"""clip-text: sdxl-text tokens equal diffusers' encode_prompt, and images from tokens equal self-encoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from storysdk.builtins.clip_text import ClipTextTokenizer
from storysdk.builtins.diffusers_image import DiffusersImageGenerator
from storysdk.errors import ConfigError
from storysdk.interfaces import RenderContext
from storysdk.model import Scene, StoryPlan
from storysdk.styles import apply_style
from storysdk.tiny import tiny_sdxl_pipeline

PROMPTS = ["a girl in a dark forest", "a dragon over the castle", "a boy on a boat"]


def _plan(**kw) -> StoryPlan:
    kw.setdefault("width", 64)
    kw.setdefault("height", 64)
    return StoryPlan(scenes=[Scene(i, p) for i, p in enumerate(PROMPTS)], **kw)


def _reference_encoding(texts, clip_skip=None, weights_seed=0):
    """SDXL's text encoding written out by hand on the tiny encoders (independent of encode_prompt)."""
    pipe = tiny_sdxl_pipeline(weights_seed)
    hidden, pooled = [], None
    with torch.no_grad():
        for tok, enc in ((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)):
            ids = tok(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
            out = enc(ids, output_hidden_states=True)
            layer = -2 if clip_skip is None else -(clip_skip + 2)
            hidden.append(out.hidden_states[layer])
            pooled = out[0]  # text_embeds of the projection model (the last encoder)
    return torch.cat(hidden, dim=-1), pooled


def test_tokens_match_reference_encoding():
    plan = _plan()
    toks = ClipTextTokenizer(preset="tiny").tokenize(plan.scenes, RenderContext(plan=plan))
    assert [t.kind for t in toks] == ["sdxl-text"] * 3
    embeds, pooled = _reference_encoding(PROMPTS)
    for i, t in enumerate(toks):
        assert t.made_by == "clip-text" and t.metadata["prompt"] == PROMPTS[i]
        assert t.tensors["prompt_embeds"].shape == (1, 77, 64)
        assert t.tensors["pooled_prompt_embeds"].shape == (1, 32)
        torch.testing.assert_close(t.tensors["prompt_embeds"][0], embeds[i], rtol=0, atol=1e-5)
        torch.testing.assert_close(t.tensors["pooled_prompt_embeds"][0], pooled[i], rtol=0, atol=1e-5)
        # no negative prompt: SDXL's zero negative embeddings (force_zeros_for_empty_prompt)
        assert not t.tensors["negative_prompt_embeds"].any()
        assert not t.tensors["negative_pooled_prompt_embeds"].any()
        assert t.metadata["negative_prompt"] is None


def test_negative_prompt_and_clip_skip():
    plan = _plan(negative_prompt="blurry, ugly")
    toks = ClipTextTokenizer(preset="tiny", clip_skip=1).tokenize(plan.scenes[:1], RenderContext(plan=plan))
    # diffusers encodes the negative prompt from the penultimate layer regardless of clip_skip
    ref_neg_default, neg_pooled = _reference_encoding(["blurry, ugly"], clip_skip=None)
    torch.testing.assert_close(toks[0].tensors["negative_prompt_embeds"][0], ref_neg_default[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(toks[0].tensors["negative_pooled_prompt_embeds"][0], neg_pooled[0], rtol=0, atol=1e-5)
    skipped, _ = _reference_encoding(PROMPTS[:1], clip_skip=1)
    torch.testing.assert_close(toks[0].tensors["prompt_embeds"][0], skipped[0], rtol=0, atol=1e-5)
    assert toks[0].metadata["negative_prompt"] == "blurry, ugly"
    with pytest.raises(ConfigError, match="option clip_skip=-1: input should be greater than or equal to 0"):
        ClipTextTokenizer(preset="tiny", clip_skip=-1)


@pytest.mark.parametrize(
    "plan_kw, options",
    [
        ({}, {}),
        ({"negative_prompt": "low quality"}, {}),
        ({"style": "Comic book", "negative_prompt": "blurry"}, {}),
        ({}, {"negative_prompt": "dark", "style": "Line art"}),
    ],
)
def test_image_from_tokens_equals_self_encoding(plan_kw, options):
    """The tentpole: tokens -> image is bit-identical to prompt -> image (same batch, CPU)."""
    plan = _plan(**plan_kw)
    ctx = RenderContext(plan=plan, seed=21)
    gen = DiffusersImageGenerator(preset="tiny", steps=2, **options)
    direct = list(gen.generate(plan.scenes, ctx))
    toks = ClipTextTokenizer(preset="tiny", **options).tokenize(plan.scenes, ctx)
    for scene, tok in zip(plan.scenes, toks):
        scene.tokens["sdxl-text"] = tok
    via_tokens = list(gen.generate(plan.scenes, ctx))
    for a, b in zip(direct, via_tokens):
        assert not a.metadata["used_tokens"] and b.metadata["used_tokens"]
        assert a.metadata["prompt"] == b.metadata["prompt"]
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    if "style" in plan_kw or "style" in options:
        style = options.get("style", plan_kw.get("style"))
        neg = options.get("negative_prompt", plan_kw.get("negative_prompt", ""))
        made = (toks[0].metadata["prompt"], toks[0].metadata["negative_prompt"])
        assert made == apply_style(style, PROMPTS[0], neg)


def test_mismatched_tokens_warn():
    plan = _plan(style="Comic book")
    ctx = RenderContext(plan=plan, seed=0)
    toks = ClipTextTokenizer(preset="tiny", style="(No style)").tokenize(plan.scenes[:1], ctx)
    plan.scenes[0].tokens["sdxl-text"] = toks[0]
    with pytest.warns(UserWarning, match="different prompt"):
        [asset] = list(DiffusersImageGenerator(preset="tiny", steps=2).generate(plan.scenes[:1], ctx))
    assert asset.metadata["used_tokens"]


def test_partial_tokens_fall_back_to_encoding():
    plan = _plan()
    ctx = RenderContext(plan=plan, seed=1)
    gen = DiffusersImageGenerator(preset="tiny", steps=2)
    plain = list(gen.generate(plan.scenes[:2], ctx))
    plan.scenes[0].tokens["sdxl-text"] = ClipTextTokenizer(preset="tiny").tokenize(plan.scenes[:1], ctx)[0]
    mixed = list(gen.generate(plan.scenes[:2], ctx))
    assert not any(a.metadata["used_tokens"] for a in mixed)
    assert all(np.array_equal(np.asarray(a.image), np.asarray(b.image)) for a, b in zip(plain, mixed))


def test_lazy_loading_and_errors(tmp_path):
    tk = ClipTextTokenizer(preset="tiny")
    assert tk._encoder is None
    assert tk.tokenize([], RenderContext(plan=StoryPlan())) == []
    assert tk._encoder is None
    plan = _plan()
    tk.tokenize(plan.scenes[:1], RenderContext(plan=plan))
    enc = tk._encoder
    assert enc is not None and enc.unet is None and enc.vae is None  # text side only
    tk.tokenize(plan.scenes[1:2], RenderContext(plan=plan))
    assert tk._encoder is enc
    with pytest.raises(ConfigError, match=r"no-model.* does not exist.*preset='tiny'"):
        ClipTextTokenizer(model=str(tmp_path / "no-model"))
    f = tmp_path / "x.safetensors"
    f.write_bytes(b"")
    with pytest.raises(ConfigError, match="cannot load the single file"):
        ClipTextTokenizer(model=str(f))
    with pytest.raises(ConfigError, match="option dtype='int4'"):
        ClipTextTokenizer(preset="tiny", dtype="int4")
    with pytest.raises(ConfigError, match="offload='model' needs a CUDA device"):
        ClipTextTokenizer(preset="tiny", device="cpu", offload="model").load()


def test_local_folder_loads_text_encoders_only(tmp_path):
    tiny_sdxl_pipeline(0).save_pretrained(tmp_path / "sdxl")
    plan = _plan()
    ctx = RenderContext(plan=plan)
    a = ClipTextTokenizer(model=str(tmp_path / "sdxl")).tokenize(plan.scenes, ctx)
    b = ClipTextTokenizer(preset="tiny").tokenize(plan.scenes, ctx)
    for x, y in zip(a, b):
        for key in x.tensors:
            assert torch.equal(x.tensors[key], y.tensors[key])
    assert a[0].metadata["model"] == str(tmp_path / "sdxl")


def test_weights_seed_picks_the_tiny_encoders():
    plan = _plan()
    tk = ClipTextTokenizer(preset="tiny", weights_seed=4)
    assert tk._encoder is None  # building the tokenizer loads no model
    toks = tk.tokenize(plan.scenes[:1], RenderContext(plan=plan))
    embeds, pooled = _reference_encoding(PROMPTS[:1], weights_seed=4)
    torch.testing.assert_close(toks[0].tensors["prompt_embeds"][0], embeds[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(toks[0].tensors["pooled_prompt_embeds"][0], pooled[0], rtol=0, atol=1e-5)
    default, _ = _reference_encoding(PROMPTS[:1])
    assert not torch.allclose(toks[0].tensors["prompt_embeds"][0], default[0])
