"""The soundtrack composer: AudioStory's crossfade join over a story's clips, and its timeline."""

from __future__ import annotations

import json

import numpy as np
import pytest

from storysdk.audio import read_audio, resample
from storysdk.builtins.soundtrack import SoundtrackComposer
from storysdk.errors import ConfigError
from storysdk.model import AudioAsset, Scene, Story, StoryPlan


def noise(seed: int, channels: int, frames: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((channels, frames)) * 0.2).astype(np.float32)


def make_story(clips: list[tuple[np.ndarray, int]], metadata=None) -> Story:
    story = Story(StoryPlan(scenes=[Scene(i, f"p{i}", caption=f"c{i}") for i in range(len(clips) + 1)]))
    for i, (samples, sr) in enumerate(clips):
        # scene len(clips) has no audio and is skipped
        story.add(AudioAsset(i, samples, sample_rate=sr, made_by="test", metadata=dict((metadata or {}).get(i, {}))))
    return story


def ramp_join(clips: list[np.ndarray], fade: int) -> np.ndarray:
    """Independent join: explicit per-sample ramps j/(fade-1), hard cut for short pieces."""
    out = clips[0].astype(np.float64)
    for nxt in clips[1:]:
        if fade == 0 or out.shape[1] < fade or nxt.shape[1] < fade:
            out = np.concatenate([out, nxt], axis=1)
            continue
        w = np.arange(fade) / (fade - 1)
        mixed = out[:, -fade:] * (1 - w) + nxt[:, :fade] * w
        out = np.concatenate([out[:, :-fade], mixed, nxt[:, fade:]], axis=1)
    return out


def test_length_values_and_timeline(tmp_path) -> None:
    sr = 8000
    clips = [noise(i, 2, n) for i, n in enumerate((4000, 3000, 5000))]
    story = make_story([(c, sr) for c in clips])
    paths = SoundtrackComposer(crossfade=0.25).compose(story, tmp_path)
    assert [p.name for p in paths] == ["soundtrack.wav", "soundtrack.json"]
    fade = 2000  # int(0.25 * 8000)
    samples, rate = read_audio(paths[0])
    assert rate == sr
    assert samples.shape == (2, 12000 - 2 * fade)
    assert np.allclose(samples, ramp_join(clips, fade), atol=1e-6)
    timeline = json.loads(paths[1].read_text())
    assert timeline["sample_rate"] == sr and timeline["channels"] == 2
    assert timeline["frames"] == 8000 and timeline["crossfade_frames"] == fade
    assert [s["index"] for s in timeline["scenes"]] == [0, 1, 2]
    assert [s["start_frame"] for s in timeline["scenes"]] == [0, 2000, 3000]
    assert [s["end_frame"] for s in timeline["scenes"]] == [4000, 5000, 8000]
    assert [s["start"] for s in timeline["scenes"]] == [0.0, 0.25, 0.375]
    assert timeline["scenes"][2]["end"] == 1.0


def test_fallback_when_a_clip_is_shorter_than_the_fade(tmp_path) -> None:
    sr = 1000
    clips = [noise(10, 1, 500), noise(11, 1, 80), noise(12, 1, 400)]
    story = make_story([(c, sr) for c in clips])
    wav, js = SoundtrackComposer(crossfade=0.1).compose(story, tmp_path)
    samples, _ = read_audio(wav)
    # join 1 is a hard cut (80 < 100), join 2 crossfades 100 samples
    assert samples.shape[1] == 500 + 80 + 400 - 100
    assert np.array_equal(samples[:, :580 - 100], np.concatenate(clips[:2], axis=1)[:, : 580 - 100])
    assert np.allclose(samples, ramp_join(clips, 100), atol=1e-6)
    assert [s["start_frame"] for s in json.loads(js.read_text())["scenes"]] == [0, 500, 480]


def test_mixed_rates_are_resampled_to_the_highest(tmp_path) -> None:
    a, b = noise(20, 1, 1600), noise(21, 1, 2205)
    story = make_story([(a, 16000), (b, 22050)])
    wav, js = SoundtrackComposer(crossfade=0.01).compose(story, tmp_path)
    samples, rate = read_audio(wav)
    assert rate == 22050
    a_up = resample(a, 16000, 22050)
    assert a_up.shape[1] == 2205  # ceil(1600 * 22050 / 16000)
    fade = int(0.01 * 22050)
    assert samples.shape == (1, 2205 + 2205 - fade)
    assert np.allclose(samples, ramp_join([a_up, b], fade), atol=1e-6)
    # an explicit rate resamples everything to it
    wav2, _ = SoundtrackComposer(crossfade=0, sample_rate=8000).compose(story, tmp_path / "lo")
    low, rate2 = read_audio(wav2)
    assert rate2 == 8000 and low.shape[1] == 800 + 800


def test_mono_and_stereo_mix(tmp_path) -> None:
    mono, stereo = noise(30, 1, 1000), noise(31, 2, 1000)
    story = make_story([(mono, 4000), (stereo, 4000)])
    wav, js = SoundtrackComposer(crossfade=0.05).compose(story, tmp_path)
    samples, _ = read_audio(wav)
    assert samples.shape == (2, 1800)
    assert np.allclose(samples, ramp_join([np.vstack([mono, mono]), stereo], 200), atol=1e-6)
    assert np.array_equal(samples[0, :800], samples[1, :800])  # the mono part is on both channels
    assert json.loads(js.read_text())["channels"] == 2
    down, _ = read_audio(SoundtrackComposer(crossfade=0, channels=1).compose(story, tmp_path / "m")[0])
    assert down.shape == (1, 2000)
    assert np.allclose(down[0, 1000:], stereo.mean(axis=0), atol=1e-7)


def test_crossfade_defaults_to_declared_padding_else_hard_cuts(tmp_path) -> None:
    sr = 1000
    clips = [(noise(i, 1, 5000), sr) for i in range(3)]
    # AudioStory's generator declares its padding: 3 s on all clips but the last
    declared = make_story(clips, metadata={0: {"crossfade": 1.5}, 1: {"crossfade": 1.5}, 2: {"crossfade": 0.0}})
    samples, _ = read_audio(SoundtrackComposer().compose(declared, tmp_path / "a")[0])
    assert samples.shape[1] == 15000 - 2 * 1500
    plain = make_story(clips)
    samples, _ = read_audio(SoundtrackComposer().compose(plain, tmp_path / "b")[0])
    assert samples.shape[1] == 15000  # undeclared: hard cuts keep every clip's place
    samples, _ = read_audio(SoundtrackComposer(crossfade=3.0).compose(plain, tmp_path / "d")[0])
    assert samples.shape[1] == 15000 - 2 * 3000  # plugins/storysdk-audiostory/docs/audiostory.md §1.7: 3 s
    zero = make_story(clips, metadata={0: {"crossfade": 0}, 1: {"crossfade": 0}})
    samples, _ = read_audio(SoundtrackComposer().compose(zero, tmp_path / "c")[0])
    assert samples.shape[1] == 15000


def test_flac_peak_and_determinism(tmp_path) -> None:
    clips = [(noise(40, 2, 3000), 8000), (noise(41, 1, 3000), 8000)]
    comp = SoundtrackComposer(crossfade=0.1, format="flac", peak=0.5)
    a = comp.compose(make_story(clips), tmp_path / "a")
    b = comp.compose(make_story(clips), tmp_path / "b")
    assert a[0].name == "soundtrack.flac"
    assert all(p.read_bytes() == q.read_bytes() for p, q in zip(a, b))
    samples, _ = read_audio(a[0])
    assert abs(np.max(np.abs(samples)) - 0.5) < 1e-6
    wav_a = SoundtrackComposer(crossfade=0.1).compose(make_story(clips), tmp_path / "c")[0]
    wav_b = SoundtrackComposer(crossfade=0.1).compose(make_story(clips), tmp_path / "d")[0]
    assert wav_a.read_bytes() == wav_b.read_bytes()


def test_no_audio_and_requires(tmp_path) -> None:
    assert SoundtrackComposer.requires == ("audio",)
    assert SoundtrackComposer().compose(make_story([]), tmp_path) == []


@pytest.mark.parametrize(
    "options,match",
    [
        ({"crossfade": -1.0}, "option crossfade=-1.0: input should be greater than or equal to 0"),
        ({"crossfade": float("nan")}, "option crossfade=nan: input should be a finite number"),
        ({"format": "mp3"}, r"option format='mp3': input should be 'wav' or 'flac' \(file format"),
        ({"sample_rate": 0}, "option sample_rate=0: input should be greater than or equal to 1"),
        ({"sample_rate": 16000.0}, "option sample_rate=16000.0: input should be a valid integer"),
        ({"channels": 0}, "option channels=0: input should be greater than or equal to 1"),
        ({"format": "flac", "subtype": "FLOAT"}, "option subtype='FLOAT': .*subtype 'FLOAT' is not valid for flac; valid: .*PCM_24"),
        ({"peak": 2.0}, "option peak=2.0: input should be less than or equal to 1"),
        ({"peak": 0}, "option peak=0: input should be greater than 0"),
        ({"crosfade": 1.0}, "has no option 'crosfade'. Did you mean 'crossfade'"),
    ],
)
def test_bad_options(options, match) -> None:
    with pytest.raises(ConfigError, match=match):
        SoundtrackComposer(**options)


def test_declared_formats_are_the_ones_audio_writes() -> None:
    from typing import get_args

    from storysdk.audio import AUDIO_FORMATS

    field = SoundtrackComposer.Options.model_fields["format"]
    assert set(get_args(field.annotation)) == set(AUDIO_FORMATS)
    assert SoundtrackComposer(format="FLAC").options.format == "flac"
