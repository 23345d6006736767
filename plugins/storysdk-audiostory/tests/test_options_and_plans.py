"""Declared options (defaults from the spec, refused values, renamed names) and check_plan, which
refuses plans before any model is loaded (docs/audiostory.md §1.6-§1.7, §2, §3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from storysdk import Pipeline, Registry, StoryRequest
from storysdk.errors import ConfigError
from storysdk.model import Scene, StoryPlan, Tokens
from storysdk_audiostory import plugin
from storysdk_audiostory.bridge_tokenizer import AudioStoryBridge
from storysdk_audiostory.generators import AudioStoryGenerator, TangoFluxGenerator
from storysdk_audiostory.planner import AudioStoryPlanner
from storysdk_audiostory.release import release_clip_seconds

COMPONENTS = (AudioStoryPlanner, AudioStoryBridge, AudioStoryGenerator, TangoFluxGenerator)


def _registry() -> Registry:
    reg = Registry(entrypoints=False)
    reg.register_plugin(plugin, name="audiostory")
    return reg


def test_defaults_are_the_spec_values():
    a, t = AudioStoryGenerator().options, TangoFluxGenerator().options
    # AudioStory's DiT path (§1.6-§1.7) and TangoFluxInference.generate (§2)
    assert (a.steps, a.guidance, a.crossfade, a.target_sr) == (50, 4.0, 3.0, 32000)
    assert (t.steps, t.guidance, t.crossfade, t.target_sr) == (25, 4.5, 0.0, 32000)
    assert (a.noise_seed, a.dit_batch, a.vae_batch, a.weights_seed) == (None, 1, 1, 0)
    p = AudioStoryPlanner().options
    assert (p.max_new_tokens, p.one_pass, p.prompt_seed, p.total_tolerance, p.crossfade) == (1600, True, 0, 0.25, 3.0)
    assert AudioStoryBridge().options.t5_feature_scale is None
    assert isinstance(AudioStoryGenerator(guidance=4).options.guidance, float)


@pytest.mark.parametrize(
    ("cls", "options", "needle"),
    [
        (AudioStoryPlanner, {"max_new_tokens": 0}, "max_new_tokens=0"),
        (AudioStoryPlanner, {"duration": 0.0}, "duration=0.0"),
        (AudioStoryPlanner, {"total_tolerance": -0.1}, "total_tolerance=-0.1"),
        (AudioStoryPlanner, {"crossfade": -1.0}, "crossfade=-1.0"),
        (AudioStoryPlanner, {"one_pass": 1}, "one_pass=1"),
        (AudioStoryBridge, {"t5_feature_scale": 0.0}, "t5_feature_scale=0.0"),
        (AudioStoryGenerator, {"steps": 0}, "steps=0"),
        (AudioStoryGenerator, {"steps": True}, "steps=True"),
        (AudioStoryGenerator, {"guidance": -1.0}, "guidance=-1.0"),
        (AudioStoryGenerator, {"target_sr": 0}, "target_sr=0"),
        (AudioStoryGenerator, {"dit_batch": 0}, "dit_batch=0"),
        (TangoFluxGenerator, {"vae_batch": 0}, "vae_batch=0"),
        (TangoFluxGenerator, {"crossfade": -0.5}, "crossfade=-0.5"),
        (TangoFluxGenerator, {"preset": "small"}, "preset='small'"),
    ],
)
def test_bad_values_are_refused_naming_the_option(cls, options, needle):
    with pytest.raises(ConfigError) as err:
        cls(**options)
    assert needle in str(err.value) and cls.name in str(err.value)


@pytest.mark.parametrize("cls", COMPONENTS)
def test_seed_renamed_offload_refused_unknown_suggested(cls):
    with pytest.raises(ConfigError, match="option 'seed' was renamed to 'weights_seed'"):
        cls(seed=1)
    with pytest.raises(ConfigError, match="offload='model'.*do not CPU-offload; leave offload unset"):
        cls(offload="model")
    with pytest.raises(ConfigError, match="Did you mean 'checkpoint'"):
        cls(checkpont="/w")
    comp = cls(preset="tiny", checkpoint=Path("/weights/x"))  # a Path is kept as its string
    assert comp.options.checkpoint == str(Path("/weights/x"))
    assert comp._rt is None  # construction never loads a model


def test_pipeline_defaults_reach_every_component_and_seed_names_its_successor():
    reg = _registry()
    pipe = Pipeline(planner="audiostory", tokenizers=["audiostory-bridge"], generators=["audiostory"], registry=reg,
                    defaults={"preset": "tiny", "weights_seed": 4})
    assert [c.options.weights_seed for c in pipe.components()] == [4, 4, 4]
    with pytest.raises(ConfigError, match="calls it 'weights_seed'"):
        Pipeline(planner="audiostory", registry=reg, defaults={"seed": 4})


def test_weights_seed_seeds_the_tiny_weights():
    def weights(seed):
        heads = AudioStoryBridge(preset="tiny", device="cpu", weights_seed=seed).runtime().heads
        return heads.projector[0].weight.detach().clone()

    before = torch.random.get_rng_state()
    w0, w0_again, w1 = weights(0), weights(0), weights(1)
    assert torch.equal(torch.random.get_rng_state(), before)  # the global RNG is left as it was
    from storysdk_audiostory.presets import TINY, build_bridge

    reference = build_bridge(TINY["llm"]["hidden_size"], TINY["bridge_dim"], TINY["fuser_heads"], 0)
    assert torch.equal(w0, w0_again) and torch.equal(w0, reference.projector[0].weight)
    assert not torch.equal(w0, w1)


@pytest.mark.parametrize(
    ("cls", "who"),
    [(AudioStoryPlanner, "planner 'audiostory'"), (AudioStoryBridge, "tokenizer 'audiostory-bridge'"),
     (AudioStoryGenerator, "generator 'audiostory'"), (TangoFluxGenerator, "generator 'tangoflux'")],
)
def test_released_weights_need_a_checkpoint(cls, who):
    with pytest.raises(ConfigError, match=f"{who}: the real weights need a local checkpoint folder.*preset='tiny'"):
        cls(device="cpu").runtime()


# -- check_plan ------------------------------------------------------------------------------------
def _queries(width=32, n=64, m=8):
    return {"audiostory-queries": Tokens("audiostory-queries", "audiostory",
                                         {"t5": torch.zeros(n, width), "aud": torch.zeros(m, width)})}


def _plan(durations, tokens=None):
    return StoryPlan(scenes=[Scene(i, prompt=f"sound {i}", duration=d, tokens=dict(tokens or {}))
                             for i, d in enumerate(durations)])


def test_bridge_check_plan():
    bridge = AudioStoryBridge(preset="tiny")
    bridge.check_plan(_plan([2.0, 3.0], _queries()))
    with pytest.raises(ConfigError, match="scene 0 has no 'audiostory-queries' tokens.*'tangoflux' generator"):
        bridge.check_plan(_plan([2.0, 3.0]))
    mixed = _plan([2.0, 3.0], _queries())
    mixed.scenes[1].tokens = _queries(n=32)
    with pytest.raises(ConfigError, match="query states of different shapes"):
        bridge.check_plan(mixed)
    assert bridge._rt is None


def test_audiostory_generator_check_plan_uses_the_clip_window():
    gen = AudioStoryGenerator(preset="tiny")
    # tiny window: 240 latent frames x hop 32 / 256 Hz = 30 s; every clip but the last is padded by 3 s (§1.7)
    gen.check_plan(_plan([27.0, 30.0], _queries()))
    with pytest.raises(ConfigError, match=r"scene 0: 27.50 s \(\+3.00 s crossfade padding\) is longer than the 30.00 s"):
        gen.check_plan(_plan([27.5, 2.0], _queries()))
    with pytest.raises(ConfigError, match="scene 1 has no 'tangoflux-cond' tokens.*'tangoflux' generator"):
        gen.check_plan(StoryPlan(scenes=[Scene(0, prompt="a", duration=2.0, tokens=_queries()),
                                         Scene(1, prompt="b", duration=2.0)]))
    AudioStoryGenerator(preset="tiny", crossfade=0.0).check_plan(_plan([30.0, 30.0], _queries()))
    assert gen._rt is None


def test_tangoflux_check_plan():
    gen = TangoFluxGenerator(preset="tiny")
    gen.check_plan(_plan([30.0, None]))  # no padding by default; None: TangoFlux's 10 s (§2)
    with pytest.raises(ConfigError, match="scene 1 has no prompt or caption"):
        gen.check_plan(StoryPlan(scenes=[Scene(0, prompt="rain"), Scene(1, prompt="  ")]))
    with pytest.raises(ConfigError, match="scene 0: 30.50 s"):
        gen.check_plan(_plan([30.5]))
    assert gen._rt is None


def test_release_clip_window_from_config_alone(tmp_path):
    folder = tmp_path / "TangoFlux"
    folder.mkdir()
    (folder / "tangoflux.safetensors").write_bytes(b"")  # never read: only config.json is
    (folder / "config.json").write_text(json.dumps({"audio_seq_len": 645}))
    # 645 latent frames x the Oobleck hop 2*4*4*8*8 = 2048 samples at 44.1 kHz (§3): 29.95 s
    assert release_clip_seconds(folder, None) == 645 * 2048 / 44100
    vae = tmp_path / "vae"
    vae.mkdir()
    (vae / "config.json").write_text(json.dumps({"audio_seq_len": 100, "vae_config": {"sampling_rate": 256}}))
    assert release_clip_seconds(tmp_path / "audiostory", vae) == 100 * 2048 / 256
    assert release_clip_seconds(tmp_path / "audiostory", None) is None
    gen = TangoFluxGenerator(checkpoint=str(folder))
    gen.check_plan(_plan([29.9]))
    with pytest.raises(ConfigError, match="longer than the 29.95 s the DiT renders"):
        gen.check_plan(_plan([29.96]))


def test_pipeline_refuses_the_plan_before_loading(tmp_path):
    pipe = Pipeline(planner="script", generators=[("audiostory", {"steps": 1})], registry=_registry(),
                    defaults={"preset": "tiny", "device": "cpu"})
    with pytest.raises(ConfigError, match="scene 0 has no 'tangoflux-cond' tokens"):
        pipe.run(StoryRequest(script="rain on a roof\na dog barks", seed=1), out_dir=tmp_path / "out")
    assert pipe.generators[0]._rt is None


def test_check_plan_refuses_missing_weights_before_loading():
    plan = _plan([2.0], _queries())
    for comp, who in [(AudioStoryBridge(device="cpu"), "tokenizer 'audiostory-bridge'"),
                      (AudioStoryGenerator(device="cpu"), "generator 'audiostory'"),
                      (TangoFluxGenerator(device="cpu"), "generator 'tangoflux'")]:
        with pytest.raises(ConfigError, match=f"{who}: the real weights need a local checkpoint folder"):
            comp.check_plan(plan)
        assert comp._rt is None


def test_check_plan_resolves_auto_quietly():
    import warnings

    gen = TangoFluxGenerator(preset="auto")  # no checkpoint: tiny, 30 s (a missing checkpoint path is an error)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the 'auto' warning comes once, when the model is loaded
        gen.check_plan(_plan([30.0]))
        with pytest.raises(ConfigError, match="longer than the 30.00 s"):
            gen.check_plan(_plan([30.5]))
