"""diffusers-audio on the tiny Stable Audio: exact sample counts, seeds, options and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from storysdk.builtins.diffusers_audio import (
    DiffusersAudioGenerator,
    _length_parameter,
    fit_length,
    pipeline_sample_rate,
)
from storysdk.errors import ConfigError
from storysdk.interfaces import RenderContext, derive_seed
from storysdk.model import Scene, StoryPlan
from storysdk.tiny import TINY_STABLE_AUDIO, tiny_stable_audio_pipeline

RATE = TINY_STABLE_AUDIO["sampling_rate"]


def _plan(durations, **kw) -> StoryPlan:
    return StoryPlan(scenes=[Scene(i, f"sound {i}: rain on a roof", duration=d) for i, d in enumerate(durations)], **kw)


@pytest.fixture(scope="module")
def clips():
    """One run over scenes of awkward durations (shared by several tests)."""
    plan = _plan([1.3, None, 0.33333, 2.0001, 0.0625])
    events = []
    ctx = RenderContext(plan=plan, seed=8, component="diffusers-audio", progress=events.append)
    gen = DiffusersAudioGenerator(preset="tiny", steps=2, duration=2.5)
    return plan, list(gen.generate(plan.scenes, ctx)), events


def test_exact_sample_counts(clips):
    plan, assets, _ = clips
    expected_seconds = [1.3, 2.5, 0.33333, 2.0001, 0.0625]
    for asset, seconds in zip(assets, expected_seconds):
        assert asset.sample_rate == RATE == 8000
        assert asset.samples.dtype == np.float32
        assert asset.samples.shape == (2, round(seconds * RATE))
        assert asset.metadata["duration"] == seconds
        assert np.isfinite(asset.samples).all() and np.abs(asset.samples).max() > 0


def test_clip_equals_direct_pipeline_call(clips):
    """Independent reference: diffusers' StableAudioPipeline called by hand with the scene seed."""
    plan, assets, _ = clips
    pipe = tiny_stable_audio_pipeline(0)
    seed = derive_seed(8, "scene", 0)
    assert assets[0].metadata["seed"] == seed
    ref = pipe(
        plan.scenes[0].prompt, audio_end_in_s=1.3, num_inference_steps=2, generator=torch.Generator().manual_seed(seed)
    ).audios[0]
    ref = ref.numpy()
    frames = round(1.3 * RATE)
    assert ref.shape[1] == int(1.3 * RATE)  # diffusers cuts at int(seconds * rate)
    assert np.array_equal(assets[0].samples[:, : ref.shape[1]], ref)
    assert not assets[0].samples[:, ref.shape[1] : frames].any()  # padded with silence to round()


def test_seeded_runs_bit_identical():
    plan = _plan([0.5, 0.5])
    ctx = RenderContext(plan=plan, seed=3)
    a = list(DiffusersAudioGenerator(preset="tiny", steps=2).generate(plan.scenes, ctx))
    b = list(DiffusersAudioGenerator(preset="tiny", steps=2).generate(plan.scenes, ctx))
    assert all(np.array_equal(x.samples, y.samples) for x, y in zip(a, b))
    assert not np.array_equal(a[0].samples, a[1].samples)  # per-scene seeds differ
    # a scene renders the same alone as after other scenes
    [alone] = list(DiffusersAudioGenerator(preset="tiny", steps=2).generate(plan.scenes[1:], ctx))
    assert np.array_equal(alone.samples, a[1].samples)


def test_progress_and_metadata(clips):
    plan, assets, events = clips
    assert [(e.done, e.total, e.scene_index) for e in events[:4]] == [(1, 2, 0), (2, 2, 0), (1, 2, 1), (2, 2, 1)]
    assert len(events) == 2 * len(plan.scenes)
    md = assets[1].metadata
    assert md["model"] == "tiny-stable-audio" and md["steps"] == 2 and md["guidance"] == 7.0
    assert assets[1].made_by == "diffusers-audio" and assets[1].scene_index == 1


def test_negative_prompt_changes_clip():
    plan = _plan([0.5])
    ctx = RenderContext(plan=plan, seed=0)
    plain = next(iter(DiffusersAudioGenerator(preset="tiny", steps=2).generate(plan.scenes, ctx)))
    neg = next(iter(DiffusersAudioGenerator(preset="tiny", steps=2, negative_prompt="noise").generate(plan.scenes, ctx)))
    assert neg.metadata["negative_prompt"] == "noise" and plain.metadata["negative_prompt"] is None
    assert not np.array_equal(plain.samples, neg.samples)
    plan_neg = _plan([0.5], negative_prompt="noise")
    from_plan = next(
        iter(DiffusersAudioGenerator(preset="tiny", steps=2).generate(plan_neg.scenes, RenderContext(plan=plan_neg, seed=0)))
    )
    assert np.array_equal(from_plan.samples, neg.samples)


def test_fit_length():
    x = np.arange(10, dtype=np.float32).reshape(2, 5)
    assert np.array_equal(fit_length(x, 3), x[:, :3])
    padded = fit_length(x, 7)
    assert padded.shape == (2, 7) and np.array_equal(padded[:, :5], x) and not padded[:, 5:].any()
    assert np.array_equal(fit_length(x, 5), x)


def test_too_long_scene_is_clear():
    plan = _plan([TINY_STABLE_AUDIO["max_seconds"] + 1])
    with pytest.raises(ConfigError, match=r"longer than model 'tiny-stable-audio' can make in one clip \(20.48 s\)"):
        list(DiffusersAudioGenerator(preset="tiny", steps=2).generate(plan.scenes, RenderContext(plan=plan)))


@pytest.mark.parametrize(
    "options, match",
    [
        ({"duration": 0}, r"generator 'diffusers-audio': option duration=0: input should be greater than 0 \(seconds"),
        ({"duration": -1.0}, "option duration=-1.0: input should be greater than 0"),
        ({"duration": "5"}, "option duration='5': input should be a valid number"),
        ({"steps": 0}, "option steps=0: input should be greater than or equal to 1"),
        ({"offload": "gpu"}, "option offload='gpu': input should be 'model' or 'sequential'"),
        ({"extra": 3}, "option extra=3: input should be a valid dictionary"),
        ({"seed": 1}, "option 'seed' was renamed to 'weights_seed'"),
    ],
)
def test_bad_options(options, match):
    with pytest.raises(ConfigError, match=match):
        DiffusersAudioGenerator(preset="tiny", **options)


def test_load_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"no-audio.* does not exist.*preset='tiny'"):
        DiffusersAudioGenerator(model=str(tmp_path / "no-audio"))
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        DiffusersAudioGenerator(preset="tiny", device="cpu", offload="sequential").load()


def test_local_folder_and_lazy_load(tmp_path):
    tiny_stable_audio_pipeline(0).save_pretrained(tmp_path / "audio")
    plan = _plan([0.5])
    ctx = RenderContext(plan=plan, seed=2)
    gen = DiffusersAudioGenerator(model=str(tmp_path / "audio"), steps=2)
    assert gen._pipe is None
    a = next(iter(gen.generate(plan.scenes, ctx)))
    b = next(iter(DiffusersAudioGenerator(preset="tiny", steps=2).generate(plan.scenes, ctx)))
    # Not bit-identical: the Oobleck VAE's weight-normed convolutions are saved as (g, v) and
    # recombined on load, which moves some weights by an ulp; the clips agree to ~1e-7.
    np.testing.assert_allclose(a.samples, b.samples, rtol=0, atol=1e-5)
    assert a.metadata["model"] == str(tmp_path / "audio")
    pipe = gen._pipe
    list(gen.generate(plan.scenes, ctx))
    assert gen._pipe is pipe and gen.sample_rate == RATE


def test_signature_detection_and_sample_rates():
    class StableLike:
        def __call__(self, prompt, audio_end_in_s=None): ...

    class LdmLike:
        def __call__(self, prompt, audio_length_in_s=None): ...

    class Image:
        def __call__(self, prompt, height=None): ...

    import inspect

    assert _length_parameter(inspect.signature(StableLike().__call__).parameters) == "audio_end_in_s"
    assert _length_parameter(inspect.signature(LdmLike().__call__).parameters) == "audio_length_in_s"
    with pytest.raises(ConfigError, match="not a text-to-audio pipeline"):
        _length_parameter(inspect.signature(Image().__call__).parameters)

    class Cfg:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    class Vocoded:  # AudioLDM2: the rate lives on the vocoder's config
        vae = Cfg(config=Cfg(scaling_factor=0.18))
        vocoder = Cfg(config=Cfg(sampling_rate=16000))

    assert pipeline_sample_rate(Vocoded()) == 16000
    assert pipeline_sample_rate(tiny_stable_audio_pipeline(0)) == RATE
    with pytest.raises(ConfigError, match="cannot tell the sample rate"):
        pipeline_sample_rate(object())


def test_weights_seed_picks_the_tiny_weights():
    plan = _plan([0.5])
    ctx = RenderContext(plan=plan, seed=3)
    gen = DiffusersAudioGenerator(preset="tiny", steps=2, weights_seed=2)
    assert gen._pipe is None  # building the generator loads no model
    [clip] = list(gen.generate(plan.scenes, ctx))
    seed = derive_seed(3, "scene", 0)
    ref = tiny_stable_audio_pipeline(2)(
        plan.scenes[0].prompt, audio_end_in_s=0.5, num_inference_steps=2, generator=torch.Generator().manual_seed(seed)
    ).audios[0].numpy()
    assert np.array_equal(clip.samples[:, : ref.shape[1]], ref)
    [default] = list(DiffusersAudioGenerator(preset="tiny", steps=2).generate(plan.scenes, ctx))
    assert not np.array_equal(default.samples, clip.samples)
