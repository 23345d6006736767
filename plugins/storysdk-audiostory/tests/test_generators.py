"""Generators: batched == one-at-a-time, clip lengths, crossfade join, errors; an end-to-end story."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from storysdk.audio import crossfade_join, read_audio, resampled_length
from storysdk.errors import ConfigError
from storysdk.interfaces import RenderContext
from storysdk.model import Scene, StoryPlan, StoryRequest, Tokens
from storysdk_audiostory.generators import AudioStoryGenerator, TangoFluxGenerator
from storysdk_audiostory.streams import response_text


def _scenes(durations, width=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    scenes = []
    for i, d in enumerate(durations):
        cond = torch.randn(64, width, generator=g)
        scenes.append(Scene(i, prompt=f"sound {i} of rain and wind", duration=d,
                            tokens={"tangoflux-cond": Tokens("tangoflux-cond", "test", {"cond": cond})}))
    return scenes


def _gen(cls, audio_rt, **kw):
    gen = cls(preset="tiny", steps=2, **kw)
    gen._rt = audio_rt
    return gen


def _run(gen, scenes, plan, seed=5):
    return {a.scene_index: a for a in gen.generate(scenes, RenderContext(plan=plan, seed=seed))}


def test_batched_equals_one_at_a_time(audio_rt):
    scenes = _scenes([2.0, 3.5, 1.25])
    plan = StoryPlan(scenes=scenes)
    batched = _run(_gen(AudioStoryGenerator, audio_rt), scenes, plan)
    single = _run(_gen(AudioStoryGenerator, audio_rt, dit_batch=1), scenes, plan)
    alone = _run(_gen(AudioStoryGenerator, audio_rt), [scenes[1]], plan)  # the scene rendered on its own
    for i in range(3):
        assert np.allclose(batched[i].samples, single[i].samples, atol=1e-5)
    assert np.allclose(batched[1].samples, alone[1].samples, atol=1e-5)
    assert batched[0].metadata["noise_seed"] != batched[1].metadata["noise_seed"]
    again = _run(_gen(AudioStoryGenerator, audio_rt), scenes, plan)
    assert all(np.array_equal(again[i].samples, batched[i].samples) for i in range(3))  # bit-identical rerun


def test_default_clips_do_not_depend_on_the_others(audio_rt):
    """dit_batch=1 (the default, upstream's per-clip sampling §1.6): a clip is the same bytes alone
    or in a story, so a resumed run matches; dit_batch=None batches them (~1e-6 apart, §9)."""
    scenes = _scenes([2.0, 3.5, 1.25])
    plan = StoryPlan(scenes=scenes)
    story = _run(_gen(AudioStoryGenerator, audio_rt), scenes, plan)
    for i in range(3):
        alone = _run(_gen(AudioStoryGenerator, audio_rt), [scenes[i]], plan)
        assert np.array_equal(story[i].samples, alone[i].samples)
    batched = _run(_gen(AudioStoryGenerator, audio_rt, dit_batch=None), scenes, plan)
    assert all(np.allclose(batched[i].samples, story[i].samples, atol=1e-5) for i in range(3))


def test_bridge_tokens_do_not_depend_on_the_other_scenes(planner_rt):
    from storysdk_audiostory.bridge_tokenizer import AudioStoryBridge
    from storysdk_audiostory.planner import AudioStoryPlanner

    planner = AudioStoryPlanner(preset="tiny", response=response_text("r", [("a", 2.0), ("b", 3.0), ("c", 1.0)]))
    planner._rt = planner_rt
    plan = planner.plan(StoryRequest(prompt="a b c", duration=6.0))
    bridge = AudioStoryBridge(preset="tiny", device="cpu")
    ctx = RenderContext(plan=plan)
    together = bridge.tokenize(plan.scenes, ctx)
    rt = bridge.runtime()
    for i, scene in enumerate(plan.scenes):
        assert torch.equal(bridge.tokenize([scene], ctx)[0]["cond"], together[i]["cond"])
        q = scene.tokens["audiostory-queries"]
        with torch.no_grad():  # (projector(H_t5) + MHA(S, R, R)) / 10, one scene (§1.5, §9)
            want = rt.heads(q["t5"][None], q["aud"][None], 10.0)[0]
        assert torch.equal(together[i]["cond"], want) and together[i].metadata["scale"] == 10.0


@pytest.mark.parametrize("last", [3.25, 1.25])
def test_clip_lengths_and_crossfade(audio_rt, last):
    durations = [2.0, 3.5, last]
    scenes = _scenes(durations)
    assets = _run(_gen(AudioStoryGenerator, audio_rt), scenes, StoryPlan(scenes=scenes))
    rate = audio_rt.sample_rate
    lengths = []
    for i, d in enumerate(durations):
        pad = 3.0 if i < 2 else 0.0  # every clip but the last is 3 s longer (§1.7)
        frames = int((d + pad) * rate)  # trimmed at the VAE rate
        want = -(-frames * 32000 // rate)  # ceil, librosa's resampled length
        a = assets[i]
        assert a.sample_rate == 32000 and a.samples.shape == (2, want) and a.metadata["crossfade"] == pad
        lengths.append(want)
    joined = crossfade_join([assets[i].samples for i in range(3)], 96_000)  # 3 s at 32 kHz
    if last >= 3.0:
        assert joined.shape[1] == sum(lengths) - 2 * 96_000 == round(sum(durations) * 32000)
    else:  # the last clip is shorter than the fade: a hard cut there (§9), 3 s longer than planned
        assert joined.shape[1] == sum(lengths) - 96_000 == round((sum(durations) + 3.0) * 32000)


def test_upstream_noise_mode_shares_noise(audio_rt):
    scenes = _scenes([2.0, 2.0])
    scenes[1].tokens = scenes[0].tokens  # same conditioning
    plan = StoryPlan(scenes=scenes)
    out = _run(_gen(AudioStoryGenerator, audio_rt, noise_seed=0, crossfade=0.0), scenes, plan)
    assert np.allclose(out[0].samples, out[1].samples, atol=1e-5)  # batch position: ~1e-7 (§9)
    per_scene = _run(_gen(AudioStoryGenerator, audio_rt, crossfade=0.0), scenes, plan)
    assert not np.allclose(per_scene[0].samples, per_scene[1].samples)


def test_generator_errors(audio_rt):
    plan_scenes = _scenes([28.0, 2.0])  # 28 s + 3 s padding > 30 s
    with pytest.raises(ConfigError, match="longer than the 30.00 s the DiT renders"):
        _run(_gen(AudioStoryGenerator, audio_rt), plan_scenes, StoryPlan(scenes=plan_scenes))
    bare = [Scene(0, prompt="rain", duration=2.0)]
    with pytest.raises(ConfigError, match="no 'tangoflux-cond' tokens"):
        _run(_gen(AudioStoryGenerator, audio_rt), bare, StoryPlan(scenes=bare))
    with pytest.raises(ConfigError, match="option steps=0: input should be greater than or equal to 1"):
        AudioStoryGenerator(preset="tiny", steps=0)


def test_tangoflux_batched_by_length():
    from storysdk_audiostory.loading import load_audio_runtime

    audio_rt = load_audio_runtime(preset="tiny", checkpoint=None, vae=None, text_encoder=None, device="cpu",
                                  dtype="float32", weights_seed=0, component="generator 'tangoflux'")
    scenes = [Scene(0, prompt="rain", duration=2.0), Scene(1, prompt="a dog barks at the door", duration=1.5),
              Scene(2, prompt="wind", duration=2.5)]
    plan = StoryPlan(scenes=scenes)
    batched = _run(_gen(TangoFluxGenerator, audio_rt), scenes, plan)
    single = _run(_gen(TangoFluxGenerator, audio_rt, dit_batch=1), scenes, plan)
    for i, d in enumerate([2.0, 1.5, 2.5]):
        assert np.allclose(batched[i].samples, single[i].samples, atol=1e-5)
        assert batched[i].samples.shape[1] == resampled_length(int(d * 256), 256, 32000)  # no padding by default


def test_end_to_end_story(tmp_path):
    """instruction -> events -> bridge -> DiT/VAE -> one WAV whose length matches the planned durations."""
    from storysdk import Pipeline, Registry

    reg = Registry(entrypoints=False)
    from storysdk_audiostory import plugin

    reg.register_plugin(plugin, name="audiostory")
    events = [("A dog barks in the yard", 2.5), ("Rain starts to fall", 3.0), ("Thunder rumbles far away", 3.0)]
    pipe = Pipeline(
        planner=("audiostory", {"response": response_text("three events", events)}),
        tokenizers=["audiostory-bridge"],
        generators=[("audiostory", {"steps": 2})],
        composers=["soundtrack"],
        registry=reg,
        defaults={"preset": "tiny", "device": "cpu"},
    )
    story = pipe.run(StoryRequest(prompt="A dog barks, rain, thunder.", duration=8.5, seed=3), out_dir=tmp_path / "out")
    assert [s.caption for s in story.plan.scenes] == [c for c, _ in events]
    assert [s.duration for s in story.plan.scenes] == [d for _, d in events]
    wav = next(p for p in story.files["soundtrack"] if p.suffix == ".wav")
    samples, rate = read_audio(wav)
    assert rate == 32000 and samples.shape == (2, round(8.5 * 32000))
