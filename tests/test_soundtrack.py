"""The soundtrack composer: the story's mix as one file, its stems, and soundtrack.json."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
from PIL import Image

from storysdk import Pipeline, StoryRequest
from storysdk.audio import crossfade_join, read_audio
from storysdk.builtins.soundtrack import SoundtrackComposer
from storysdk.errors import ConfigError
from storysdk.mixing import Mix, mixdown
from storysdk.model import AudioAsset, ImageAsset, Scene, Story, StoryPlan
from storysdk.testing import make_registry


def noise(seed: int, channels: int, frames: int, sigma: float = 0.2) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((channels, frames)) * sigma).astype(np.float32)


def make_story(clips: list[tuple[np.ndarray, int]], metadata=None, mix: Mix | None = None) -> Story:
    """A story assembled by hand: scene i has clip i; the last scene has none (it lasts 3 s)."""
    story = Story(StoryPlan(scenes=[Scene(i, f"p{i}", caption=f"c{i}") for i in range(len(clips) + 1)]), mix=mix)
    for i, (samples, sr) in enumerate(clips):
        story.add(AudioAsset(i, samples, sample_rate=sr, made_by="test", metadata=dict((metadata or {}).get(i, {}))))
    return story


SCRIPT = "The fox wakes\nIt rains\nThe end"  # the fake planner: each line is a scene's prompt and caption


def three_tracks(tmp_path: Path, composers=("soundtrack",), **pipeline) -> Story:
    """Frames, a narration that ducks and sets the pace, and an ambience of two events a scene."""
    pipe = Pipeline(
        planner="fake-planner",
        tracks={
            "frames": {"generator": "fake-image"},
            "narration": {"generator": ("fake-audio", {"per_character": 0.08}), "text": "{caption}", "duck": 10},
            "ambience": {"planner": "fake-events", "generator": ("fake-audio", {"channels": 2}), "gain": -6},
        },
        timing={"mode": "track", "track": "narration", "padding": 1.0},
        composers=list(composers),
        registry=make_registry(),
        **pipeline,
    )
    return pipe.run(StoryRequest(script=SCRIPT, seed=7), out_dir=tmp_path)


def test_the_file_is_the_story_s_mix_and_the_json_describes_it(tmp_path: Path) -> None:
    story = three_tracks(tmp_path)
    wav, js = story.files["soundtrack"]
    assert (wav.name, js.name) == ("soundtrack.wav", "soundtrack.json")
    samples, rate = read_audio(wav)
    mixed = mixdown(story)
    assert rate == mixed.sample_rate == 8000 and np.array_equal(samples, mixed.samples)  # float WAV: exact
    info = json.loads(js.read_text())
    timeline = json.loads((tmp_path / "timeline.json").read_text())
    assert info["file"] == "soundtrack.wav"
    assert (info["sample_rate"], info["channels"], info["frames"]) == (8000, 2, samples.shape[1])
    assert info["duration"] == samples.shape[1] / 8000 == pytest.approx(timeline["duration"])
    assert info["master_gain_db"] == mixed.master_gain
    measured = pyloudnorm.Meter(rate).integrated_loudness(samples.T.astype(np.float64))
    assert info["loudness_lufs"]["target"] == -16.0
    assert info["loudness_lufs"]["after"] == pytest.approx(measured, abs=1e-9)
    assert info["loudness_lufs"]["before"] == pytest.approx(measured - info["master_gain_db"], abs=0.05)
    assert info["peak_dbfs"] == pytest.approx(20 * math.log10(np.max(np.abs(samples))), abs=1e-6)
    assert info["peak_dbfs"] <= info["ceiling_dbfs"] == -1.0
    assert [t["name"] for t in info["tracks"]] == ["narration", "ambience"]  # the audio tracks, in order
    narration, ambience = info["tracks"]
    assert (narration["generator"], narration["gain"], narration["duck"], narration["attack"], narration["release"]) == (
        "fake-audio", 0.0, 10.0, 0.1, 0.3)
    assert (ambience["planner"], ambience["gain"], ambience["duck"]) == ("fake-events", -6.0, None)
    for entry in info["tracks"]:
        assert entry["cues"] == [{k: c[k] for k in ("index", "scene", "start", "end")}
                                 for c in timeline["tracks"][entry["name"]]]
        assert "file" not in entry
    assert len(ambience["cues"]) == 6 and [c["scene"] for c in ambience["cues"]] == [0, 0, 1, 1, 2, 2]
    # each narration clip lasts 0.08 s per character of its caption; its scene 1 s more
    spoken = [0.08 * len(c) for c in ("The fox wakes", "It rains", "The end")]
    assert [round(c["end"] - c["start"], 6) for c in narration["cues"]] == pytest.approx(spoken)
    assert info["scenes"] == [{"index": s["index"], "start": s["start"], "end": s["end"], "caption": cap}
                              for s, cap in zip(timeline["scenes"], ("The fox wakes", "It rains", "The end"))]
    assert [round(s["end"] - s["start"], 6) for s in info["scenes"]] == pytest.approx([d + 1.0 for d in spoken])


def test_stems_are_the_tracks_as_they_sound_in_the_mix(tmp_path: Path) -> None:
    story = three_tracks(tmp_path, composers=[("soundtrack", {"stems": True})])
    paths = story.files["soundtrack"]
    assert [p.name for p in paths] == ["soundtrack.wav", "soundtrack-narration.wav", "soundtrack-ambience.wav",
                                       "soundtrack.json"]
    mix, _ = read_audio(paths[0])
    stems = {p.stem.split("-", 1)[1]: read_audio(p)[0] for p in paths[1:3]}
    mixed = mixdown(story)
    assert all(np.array_equal(stems[k], mixed.tracks[k]) for k in stems)
    assert np.allclose(stems["narration"] + stems["ambience"], mix, atol=1e-6)  # they add up to the mix
    info = json.loads(paths[-1].read_text())
    assert [t["file"] for t in info["tracks"]] == ["soundtrack-narration.wav", "soundtrack-ambience.wav"]
    # the ambience stem is 10 dB down while the narration speaks (away from the ramps)
    amb = story.tracks["ambience"]
    cue = info["tracks"][0]["cues"][0]
    lo, hi = int((cue["start"] + 0.2) * 8000), int((cue["end"] - 0.1) * 8000)
    raw = amb.assets[0].samples[:, lo:hi].astype(np.float64)
    scale = 10 ** (mixed.master_gain / 20) * 10 ** (-6 / 20)
    keep = np.abs(raw) > 0.05
    assert np.allclose(stems["ambience"][:, lo:hi][keep] / (raw[keep] * scale), 10 ** (-10 / 20), rtol=1e-4)


def test_a_loud_story_never_clips(tmp_path: Path) -> None:
    # the tiny demo's clips peak over full scale; its soundtrack must not
    clips = [(noise(i, 2, 8000, sigma=0.9), 8000) for i in range(3)]
    assert max(float(np.max(np.abs(c))) for c, _ in clips) > 3
    ceiling = 10 ** (-1 / 20)
    for fmt in ("wav", "flac"):
        # brought down to -16 LUFS (about 16 dB here), then only the ceiling (it sets the gain)
        for name, mix in (("default", None), ("ceiling", Mix(loudness=None))):
            path = SoundtrackComposer(format=fmt).compose(make_story(clips, mix=mix), tmp_path / fmt / name)[0]
            samples, _ = read_audio(path)
            assert np.max(np.abs(samples)) <= ceiling + 2**-23
        assert np.max(np.abs(samples)) == pytest.approx(ceiling, abs=2**-22)
    info = json.loads((tmp_path / "wav" / "ceiling" / "soundtrack.json").read_text())
    assert info["peak_dbfs"] == pytest.approx(-1.0, abs=1e-5)
    assert info["master_gain_db"] == pytest.approx(20 * math.log10(ceiling / max(np.max(np.abs(c)) for c, _ in clips)))


def test_a_story_assembled_by_hand(tmp_path: Path) -> None:
    sr = 8000
    clips = [noise(i, 1, n, sigma=0.05) for i, n in enumerate((4000, 3000, 5000))]
    story = make_story([(c, sr) for c in clips], mix=Mix(loudness=None))
    wav, js = SoundtrackComposer().compose(story, tmp_path)
    samples, _ = read_audio(wav)
    # scenes last as long as their clips, back to back; the last scene has none and lasts 3 s
    ref = np.concatenate([*clips, np.zeros((1, 3 * sr), dtype=np.float32)], axis=1)
    assert np.array_equal(samples, ref)
    info = json.loads(js.read_text())
    assert info["master_gain_db"] == 0.0 and info["loudness_lufs"]["target"] is None
    assert [t["name"] for t in info["tracks"]] == ["audio"]
    assert [(c["start"], c["end"]) for c in info["tracks"][0]["cues"]] == [(0.0, 0.5), (0.5, 0.875), (0.875, 1.5)]
    assert [(s["start"], s["end"]) for s in info["scenes"]] == [(0.0, 0.5), (0.5, 0.875), (0.875, 1.5), (1.5, 4.5)]


def test_audiostory_padding_joins_on_its_own_track(tmp_path: Path) -> None:
    sr = 1000
    pad = 3.0  # plugins/storysdk-audiostory/docs/audiostory.md §1.7: every clip but the last 3 s longer
    clips = [noise(i, 1, (4 + 3) * sr if i < 2 else 4 * sr, sigma=0.05) for i in range(3)]
    meta = {0: {"crossfade": pad}, 1: {"crossfade": pad}, 2: {"crossfade": 0.0}}
    story = make_story([(c, sr) for c in clips], metadata=meta, mix=Mix(loudness=None))
    samples, _ = read_audio(SoundtrackComposer().compose(story, tmp_path)[0])
    joined = crossfade_join(clips, int(pad * sr))
    assert joined.shape[1] == 12 * sr
    assert np.array_equal(samples[:, : 12 * sr], joined) and not np.any(samples[:, 12 * sr:])


def test_flac_subtype_and_determinism(tmp_path: Path) -> None:
    clips = [(noise(40, 2, 3000, sigma=0.05), 8000), (noise(41, 1, 3000, sigma=0.05), 8000)]
    comp = SoundtrackComposer(format="FLAC")
    a = comp.compose(make_story(clips), tmp_path / "a")
    b = comp.compose(make_story(clips), tmp_path / "b")
    assert a[0].name == "soundtrack.flac" and sf.info(str(a[0])).subtype == "PCM_24"
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    back, _ = read_audio(a[0])
    assert np.max(np.abs(back - mixdown(make_story(clips)).samples)) <= 2**-23
    pcm16 = SoundtrackComposer(subtype="PCM_16").compose(make_story(clips), tmp_path / "c")[0]
    assert sf.info(str(pcm16)).subtype == "PCM_16"


def test_no_audio_and_requires(tmp_path: Path) -> None:
    assert SoundtrackComposer.requires == ("audio",)
    assert SoundtrackComposer().compose(make_story([]), tmp_path) == []
    only_images = Story(StoryPlan(scenes=[Scene(0, "p")]), images={0: ImageAsset(0, Image.new("RGB", (4, 4)))})
    assert SoundtrackComposer().compose(only_images, tmp_path) == []


@pytest.mark.parametrize(
    "option,value,match",
    [
        ("crossfade", 3.0, r"option 'crossfade' is no longer this component's: clips sit on the story's timeline"
                           r".*AudioStory's padded clips crossfade into the next on their own track"),
        ("peak", 0.5, r"option 'peak' is no longer this component's: .*set ceiling of the story's \[mix\].*"
                      r"Pipeline\(mix=\{'ceiling': -1.0\}\).*\[mix\] ceiling = -1.0 in a story file"),
        ("sample_rate", 16000, r"option 'sample_rate' is no longer .*\[mix\] sample_rate = 44100 in a story file"),
        ("channels", 2, r"option 'channels' is no longer .*Pipeline\(mix=\{'channels': 2\}\)"),
    ],
)
def test_moved_options_say_where_they_went(option: str, value, match: str) -> None:
    with pytest.raises(ConfigError, match=r"composer 'soundtrack': " + match):
        SoundtrackComposer(**{option: value})
    with pytest.raises(ConfigError, match=match):
        Pipeline(planner="fake-planner", generators=["fake-audio"], composers=[("soundtrack", {option: value})],
                 registry=make_registry())


def test_the_mix_settings_come_from_the_pipeline(tmp_path: Path) -> None:
    story = three_tracks(tmp_path, mix={"sample_rate": 16000, "channels": 1, "loudness": -20.0, "ceiling": -3.0})
    samples, rate = read_audio(story.files["soundtrack"][0])
    assert (rate, samples.shape[0]) == (16000, 1)
    info = json.loads(story.files["soundtrack"][1].read_text())
    assert info["loudness_lufs"]["target"] == -20.0 and info["ceiling_dbfs"] == -3.0
    assert info["peak_dbfs"] <= -3.0


@pytest.mark.parametrize(
    "options,match",
    [
        ({"format": "mp3"}, r"option format='mp3': input should be 'wav' or 'flac' \(file format"),
        ({"format": "flac", "subtype": "FLOAT"}, "option subtype='FLOAT': .*subtype 'FLOAT' is not valid for flac; valid: .*PCM_24"),
        ({"stems": "yes"}, "option stems='yes': input should be a valid boolean"),
        ({"stem": True}, "has no option 'stem'. Did you mean 'stems'"),
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
