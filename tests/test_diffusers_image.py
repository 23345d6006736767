"""diffusers-image on the tiny SDXL: seeds, batching, styles, sizes, loading paths and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from storysdk.builtins.diffusers_image import DiffusersImageGenerator
from storysdk.errors import ConfigError
from storysdk.interfaces import RenderContext, derive_seed
from storysdk.model import ImageAsset, Scene, StoryPlan, Tokens
from storysdk.styles import apply_style
from storysdk.tiny import tiny_sdxl_pipeline

PROMPTS = ["a girl in a dark forest", "a dragon over the castle", "a boy on a boat", "the end"]


def _plan(**kw) -> StoryPlan:
    scenes = [Scene(i, p) for i, p in enumerate(PROMPTS)]
    kw.setdefault("width", 64)
    kw.setdefault("height", 64)
    return StoryPlan(scenes=scenes, **kw)


def _pixels(asset: ImageAsset) -> np.ndarray:
    return np.asarray(asset.image, dtype=np.int16)


@pytest.fixture(scope="module")
def reference_pipe():
    return tiny_sdxl_pipeline(0)


def _direct(pipe, prompt, seed, negative=None, **kw):
    """Independent reference: diffusers' own pipeline called by hand with the scene's seed."""
    return pipe(
        prompt,
        negative_prompt=negative,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(seed),
        width=64,
        height=64,
        **kw,
    ).images[0]


def test_scene_equals_direct_pipeline_call(reference_pipe):
    plan = _plan()
    ctx = RenderContext(plan=plan, seed=11)
    gen = DiffusersImageGenerator(preset="tiny", steps=2)
    [asset] = list(gen.generate(plan.scenes[:1], ctx))
    seed = derive_seed(11, "scene", 0)
    assert asset.metadata["seed"] == seed
    expected = np.asarray(_direct(reference_pipe, PROMPTS[0], seed), dtype=np.int16)
    assert np.array_equal(_pixels(asset), expected)
    assert asset.scene_index == 0 and asset.made_by == "diffusers-image"
    md = asset.metadata
    assert (md["steps"], md["guidance"], md["model"]) == (2, 5.0, "tiny-sdxl")  # 5.0: SDXL's default
    assert (md["width"], md["height"]) == (64, 64)


def test_seeded_runs_bit_identical_and_seed_matters():
    plan = _plan()
    a = list(DiffusersImageGenerator(preset="tiny", steps=2).generate(plan.scenes[:2], RenderContext(plan=plan, seed=5)))
    b = list(DiffusersImageGenerator(preset="tiny", steps=2).generate(plan.scenes[:2], RenderContext(plan=plan, seed=5)))
    c = list(DiffusersImageGenerator(preset="tiny", steps=2).generate(plan.scenes[:2], RenderContext(plan=plan, seed=6)))
    for x, y in zip(a, b):
        assert np.array_equal(_pixels(x), _pixels(y))
    assert not np.array_equal(_pixels(a[0]), _pixels(c[0]))
    assert not np.array_equal(_pixels(a[0]), _pixels(a[1]))


def test_batched_equals_one_at_a_time():
    """Per-scene CPU generators give each scene the same noise in any batch.

    Not bit-identical: a batch of 4 runs the UNet's matrix products with other shapes than
    a batch of 1, and CPU BLAS rounds those differently (latents differ by about 1e-5).
    After decoding to 8-bit pixels that is at most 2 levels of 255.
    """
    plan = _plan()
    ctx = RenderContext(plan=plan, seed=3)
    batched = list(DiffusersImageGenerator(preset="tiny", steps=2, batch_size=4).generate(plan.scenes, ctx))
    single = DiffusersImageGenerator(preset="tiny", steps=2, batch_size=1)
    one_by_one = [a for s in plan.scenes for a in single.generate([s], ctx)]
    assert [a.scene_index for a in batched] == [0, 1, 2, 3]
    for x, y in zip(batched, one_by_one):
        assert x.metadata["seed"] == y.metadata["seed"]
        assert np.abs(_pixels(x) - _pixels(y)).max() <= 2
    # the scenes themselves differ by far more than the tolerance
    assert np.abs(_pixels(batched[0]) - _pixels(batched[1])).max() > 20
    # batch_size 3 over 4 scenes: two calls, same assets in the same order
    uneven = list(DiffusersImageGenerator(preset="tiny", steps=2, batch_size=3).generate(plan.scenes, ctx))
    assert [a.scene_index for a in uneven] == [0, 1, 2, 3]
    assert np.array_equal(_pixels(uneven[3]), _pixels(one_by_one[3]))


def test_style_and_negative_prompt(reference_pipe):
    plan = _plan(style="Comic book", negative_prompt="blurry")
    ctx = RenderContext(plan=plan, seed=2)
    [asset] = list(DiffusersImageGenerator(preset="tiny", steps=2).generate(plan.scenes[:1], ctx))
    prompt, negative = apply_style("Comic book", PROMPTS[0], "blurry")
    assert asset.metadata["prompt"] == prompt and asset.metadata["negative_prompt"] == negative
    expected = _direct(reference_pipe, prompt, derive_seed(2, "scene", 0), negative=negative)
    assert np.array_equal(_pixels(asset), np.asarray(expected, dtype=np.int16))
    # the option overrides the plan; "(No style)" keeps the prompt as written
    [plain] = list(
        DiffusersImageGenerator(preset="tiny", steps=2, style="(No style)", negative_prompt="").generate(
            plan.scenes[:1], ctx
        )
    )
    assert plain.metadata["prompt"] == PROMPTS[0] and plain.metadata["negative_prompt"] is None
    expected_plain = _direct(reference_pipe, PROMPTS[0], derive_seed(2, "scene", 0))
    assert np.array_equal(_pixels(plain), np.asarray(expected_plain, dtype=np.int16))


def test_sizes_from_options_and_plan():
    plan = _plan(width=128, height=64)
    ctx = RenderContext(plan=plan, seed=0)
    [a] = list(DiffusersImageGenerator(preset="tiny", steps=2).generate(plan.scenes[:1], ctx))
    assert a.image.size == (128, 64)
    [b] = list(DiffusersImageGenerator(preset="tiny", steps=2, width=96, height=96).generate(plan.scenes[:1], ctx))
    assert b.image.size == (96, 96)
    plan_nosize = StoryPlan(scenes=[Scene(0, "a cat")])
    [c] = list(DiffusersImageGenerator(preset="tiny", steps=2).generate(plan_nosize.scenes, RenderContext(plan=plan_nosize)))
    assert c.image.size == (64, 64)  # the tiny pipeline's default


def test_progress_reports_each_step():
    plan = _plan()
    events = []
    ctx = RenderContext(plan=plan, seed=0, component="diffusers-image", progress=events.append)
    list(DiffusersImageGenerator(preset="tiny", steps=3, batch_size=2).generate(plan.scenes, ctx))
    assert [(e.done, e.total) for e in events] == [(1, 3), (2, 3), (3, 3)] * 2
    assert all(e.stage == "step" and e.component == "diffusers-image" for e in events)
    assert events[0].message == "scenes 0, 1" and events[3].message == "scenes 2, 3"


def test_scheduler_option():
    plan = _plan()
    ctx = RenderContext(plan=plan, seed=0)
    gen = DiffusersImageGenerator(preset="tiny", steps=2, scheduler="DDIMScheduler")
    [a] = list(gen.generate(plan.scenes[:1], ctx))
    assert a.metadata["scheduler"] == "DDIMScheduler"
    assert gen.load().scheduler.config.beta_schedule == "scaled_linear"  # config carried over
    with pytest.raises(ConfigError, match=r"scheduler 'Bogus' .*EulerDiscreteScheduler"):
        DiffusersImageGenerator(preset="tiny", scheduler="Bogus").load()


def test_model_loaded_lazily_once():
    gen = DiffusersImageGenerator(preset="tiny", steps=2)
    assert gen._pipe is None
    plan = _plan()
    list(gen.generate(plan.scenes[:1], RenderContext(plan=plan)))
    pipe = gen._pipe
    list(gen.generate(plan.scenes[1:2], RenderContext(plan=plan)))
    assert gen._pipe is pipe


def test_local_folder_equals_tiny_preset(tmp_path):
    tiny_sdxl_pipeline(0).save_pretrained(tmp_path / "sdxl")
    plan = _plan()
    ctx = RenderContext(plan=plan, seed=9)
    [a] = list(DiffusersImageGenerator(model=str(tmp_path / "sdxl"), steps=2).generate(plan.scenes[:1], ctx))
    [b] = list(DiffusersImageGenerator(preset="tiny", steps=2).generate(plan.scenes[:1], ctx))
    assert np.array_equal(_pixels(a), _pixels(b))
    assert a.metadata["model"] == str(tmp_path / "sdxl")


def test_extra_kwargs_reach_the_pipeline(reference_pipe):
    plan = _plan()
    ctx = RenderContext(plan=plan, seed=4)
    [a] = list(DiffusersImageGenerator(preset="tiny", steps=2, extra={"clip_skip": 1}).generate(plan.scenes[:1], ctx))
    expected = _direct(reference_pipe, PROMPTS[0], derive_seed(4, "scene", 0), clip_skip=1)
    assert np.array_equal(_pixels(a), np.asarray(expected, dtype=np.int16))


@pytest.mark.parametrize(
    "options, match",
    [
        ({"width": 100}, r"generator 'diffusers-image': option width=100: input should be a multiple of 8 \(picture width"),
        ({"height": 63}, "option height=63: input should be a multiple of 8"),
        ({"width": 0}, "option width=0: input should be greater than 0"),
        ({"steps": 0}, "option steps=0: input should be greater than or equal to 1"),
        ({"steps": 2.5}, "option steps=2.5: input should be a valid integer"),
        ({"batch_size": 0}, "option batch_size=0: input should be greater than or equal to 1"),
        ({"offload": "disk"}, "option offload='disk': input should be 'model' or 'sequential'"),
        ({"extra": ["guidance_scale"]}, "option extra=\\['guidance_scale'\\]: input should be a valid dictionary"),
        ({"preset": "big"}, "option preset='big': input should be 'tiny', 'full' or 'auto'"),
        ({"dtype": "int4"}, "option dtype='int4': input should be 'auto', 'float16'"),
        ({"seed": 3}, "option 'seed' was renamed to 'weights_seed'"),
        ({"step": 3}, "has no option 'step'. Did you mean 'steps'"),
    ],
)
def test_bad_options(options, match):
    with pytest.raises(ConfigError, match=match):
        DiffusersImageGenerator(preset=options.pop("preset", "tiny"), **options)


def test_plan_size_not_multiple_of_8():
    plan = _plan(width=70)
    gen = DiffusersImageGenerator(preset="tiny", steps=2)
    with pytest.raises(ConfigError, match="plan width must be a positive multiple of 8 pixels, got 70; use for example 64"):
        gen.check_plan(plan)  # the pipeline asks before any model is loaded
    assert gen._pipe is None
    DiffusersImageGenerator(preset="tiny", width=64).check_plan(plan)  # its own width replaces the plan's
    with pytest.raises(ConfigError, match="plan width must be a positive multiple of 8"):
        list(DiffusersImageGenerator(preset="tiny", steps=2).generate(plan.scenes[:1], RenderContext(plan=plan)))


def test_offload_needs_cuda():
    gen = DiffusersImageGenerator(preset="tiny", device="cpu", offload="model")
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        gen.load()


def test_missing_model_path_is_clear(tmp_path):
    missing = tmp_path / "no-model"
    with pytest.raises(ConfigError, match=r"model path .*no-model.* does not exist.*preset='tiny'"):
        DiffusersImageGenerator(model=str(missing))
    with pytest.raises(ConfigError, match=r"model\.safetensors.* does not exist.*preset='tiny'"):
        DiffusersImageGenerator(model=str(tmp_path / "model.safetensors"))


def test_single_file_without_configs_is_clear(tmp_path):
    """A single-file checkpoint needs its base model's diffusers configs (hub or ``config=``).

    Offline, with ``config`` naming a folder that holds none, the load fails with a message
    naming the file and the fix. (A real round trip needs the original LDM key layout, which
    no offline tiny model has.)
    """
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 4, 3, 3)}, str(path))
    empty = tmp_path / "configs"
    empty.mkdir()
    gen = DiffusersImageGenerator(model=str(path), config=str(empty))
    with pytest.raises(ConfigError, match=r"model\.safetensors.*StableDiffusionPipeline.*config="):
        gen.load()


def test_auto_preset_without_weights_uses_tiny(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.warns(UserWarning, match="tiny preset"):
        gen = DiffusersImageGenerator(preset="auto", steps=2)
    assert gen.options.preset == "auto" and gen.model_name == "tiny-sdxl"


def test_wrong_token_width_is_clear():
    plan = _plan()
    scene = plan.scenes[0]
    scene.tokens["sdxl-text"] = Tokens(
        "sdxl-text",
        "someone",
        {
            "prompt_embeds": torch.zeros(1, 77, 48),
            "pooled_prompt_embeds": torch.zeros(1, 32),
            "negative_prompt_embeds": torch.zeros(1, 77, 48),
            "negative_pooled_prompt_embeds": torch.zeros(1, 32),
        },
    )
    with pytest.raises(ConfigError, match="width 48 .* expects 64"):
        list(DiffusersImageGenerator(preset="tiny", steps=2).generate([scene], RenderContext(plan=plan)))
    del scene.tokens["sdxl-text"].tensors["pooled_prompt_embeds"]
    with pytest.raises(ConfigError, match="lack pooled_prompt_embeds"):
        list(DiffusersImageGenerator(preset="tiny", steps=2).generate([scene], RenderContext(plan=plan)))


def test_weights_seed_picks_the_tiny_weights_and_construction_loads_nothing(reference_pipe):
    plan = _plan()
    ctx = RenderContext(plan=plan, seed=11)
    gen = DiffusersImageGenerator(preset="tiny", steps=2, weights_seed=1)
    assert gen._pipe is None  # building the generator loads no model
    [other] = list(gen.generate(plan.scenes[:1], ctx))
    seed = derive_seed(11, "scene", 0)
    expected = np.asarray(_direct(tiny_sdxl_pipeline(1), PROMPTS[0], seed), dtype=np.int16)
    assert np.array_equal(_pixels(other), expected)
    default = np.asarray(_direct(reference_pipe, PROMPTS[0], seed), dtype=np.int16)  # weights_seed=0
    assert not np.array_equal(_pixels(other), default)


def test_options_are_declared_with_their_defaults():
    opts = DiffusersImageGenerator(preset="tiny").options
    assert (opts.model, opts.steps, opts.guidance, opts.width, opts.height, opts.batch_size) == (
        None, None, None, None, None, 4)
    assert (opts.device, opts.dtype, opts.offload, opts.weights_seed) == (None, None, None, 0)


class _Stop(Exception):
    pass


def _stop_after_first(ev):
    if ev.stage == "generate" and ev.scene_index is not None:
        raise _Stop


@pytest.mark.parametrize("tokens", [False, True], ids=["prompts", "clip-text tokens"])
def test_a_resumed_batch_gives_the_same_bytes(tmp_path, tokens):
    """Interrupted after the first picture of a batch, a resume renders the rest in that same batch."""
    from storysdk import Pipeline, StoryRequest
    from storysdk.testing import make_registry

    def pipe():
        return Pipeline(
            planner="fake-planner",
            tokenizers=[("clip-text", {"preset": "tiny"})] if tokens else [],
            generators=[("diffusers-image", {"preset": "tiny", "steps": 1})],
            registry=make_registry(),
        )

    request = StoryRequest(script="a fox\na bridge\na storm", width=64, height=64, seed=9)
    whole = pipe().run(request, out_dir=tmp_path / "whole")
    assert [whole.images[i].metadata["batch"] for i in range(3)] == [[0, 1, 2]] * 3
    assert {whole.images[i].metadata["used_tokens"] for i in range(3)} == {tokens}
    with pytest.raises(_Stop):
        pipe().run(request, out_dir=tmp_path / "cut", progress=_stop_after_first)
    assert sorted(p.name for p in (tmp_path / "cut" / "tracks" / "diffusers-image").glob("*.png")) == ["scene-0000.png"]
    pipe().run(request, out_dir=tmp_path / "cut")
    for name in ("scene-0001.png", "scene-0002.png", "scene-0001.json", "scene-0002.json"):
        assert (tmp_path / "cut" / "tracks" / "diffusers-image" / name).read_bytes() == (tmp_path / "whole" / "tracks" / "diffusers-image" / name).read_bytes()


def test_batches_follow_the_batches_finished_assets_name():
    plan = _plan()
    gen = DiffusersImageGenerator(preset="tiny", batch_size=2)
    from storysdk import Story

    story = Story(plan=plan)
    ctx = RenderContext(plan=plan, seed=1, story=story)
    assert [[s.index for s in b] for b in gen._batches(plan.scenes, ctx)] == [[0, 1], [2, 3]]
    from PIL import Image

    picture = Image.new("RGB", (8, 8))
    story.add(ImageAsset(2, picture, made_by="diffusers-image", metadata={"batch": [2, 3]}))
    # scene 3 goes with finished scene 2, as before; scenes 0 and 1 were never started
    assert [[s.index for s in b] for b in gen._batches([plan.scenes[i] for i in (0, 1, 3)], ctx)] == [[2, 3], [0, 1]]
    story.add(ImageAsset(0, picture, made_by="someone-else", metadata={"batch": [0, 1]}))
    assert [[s.index for s in b] for b in gen._batches([plan.scenes[1]], ctx)] == [[1]]
