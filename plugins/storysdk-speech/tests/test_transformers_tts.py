"""transformers-tts with the tiny VITS preset on CPU: clip layout against the model run by hand,
determinism, seeds, text normalisation, the vocabulary warning, empty texts, speakers, a saved
folder loaded as real weights, broken folders, resume, and storysdk's generator contract."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from storysdk import ConfigError, Pipeline, RenderContext, StoryRequest
from storysdk.errors import CheckpointError
from storysdk.model import Character, Scene, StoryPlan
from storysdk.testing import make_registry
from storysdk.testing.contract import GeneratorContract, folder_bytes
from storysdk.testing.faults import assert_clear, truncate
from storysdk_speech import plugin
from storysdk_speech.tiny import TINY_VITS, tiny_vits
from storysdk_speech.transformers_tts import TransformersTTSGenerator

TINY = {"preset": "tiny", "device": "cpu"}
RATE = TINY_VITS["sampling_rate"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def gen() -> TransformersTTSGenerator:
    return TransformersTTSGenerator(**TINY)


def speak(gen: TransformersTTSGenerator, text: str, *, seed: int = 5, duration: float | None = None,
          characters: tuple[Character, ...] = ()):
    scene = Scene(0, prompt=text, duration=duration)
    plan = StoryPlan(scenes=[scene], characters=list(characters))
    (asset,) = list(gen.generate([scene], RenderContext(plan=plan, seed=seed)))
    return asset


def by_hand(texts: list[str], seed: int) -> list[np.ndarray]:
    """The tiny model run directly on already spoken-form texts, in one seeded block (the reference)."""
    import torch
    from storysdk.runtime import seeded

    model, tok = tiny_vits(0)
    out = []
    with seeded(seed), torch.inference_mode():
        for text in texts:
            enc = tok(text, return_tensors="pt")
            out.append(model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).waveform[0].numpy())
    return out


def test_clip_is_the_sentences_spoken_apart_by_the_silence(gen):
    asset = speak(gen, "The ship sails at dawn. Gulls cry over the harbour!")
    seed = RenderContext(plan=StoryPlan(scenes=[Scene(0, prompt="x")]), seed=5).scene_seed(0)
    one, two = by_hand(["the ship sails at dawn.", "gulls cry over the harbour!"], seed)  # "." and "!" are in its vocabulary
    gap = int(round(0.3 * RATE))
    assert asset.sample_rate == RATE == 16000 and asset.samples.dtype == np.float32
    assert asset.samples.shape == (1, one.size + gap + two.size)
    np.testing.assert_array_equal(asset.samples[0], np.concatenate([one, np.zeros(gap, np.float32), two]))
    assert asset.metadata["sentences"] == [
        {"text": "The ship sails at dawn.", "start": 0.0, "end": one.size / RATE},
        {"text": "Gulls cry over the harbour!", "start": (one.size + gap) / RATE,
         "end": (one.size + gap + two.size) / RATE},
    ]
    assert asset.metadata["seed"] == seed and asset.made_by == "transformers-tts"
    assert asset.metadata["voice"] == "tiny-vits" and asset.metadata["speaker"] is None


def test_sentence_silence_sets_the_pause(gen):
    text = "One bell rang. Then another."
    with_pause, without = speak(gen, text), speak(TransformersTTSGenerator(**TINY, sentence_silence=0.0), text)
    assert with_pause.frames - without.frames == int(round(0.3 * RATE))
    assert without.metadata["sentences"][1]["start"] == without.metadata["sentences"][0]["end"]


def test_same_seed_same_bytes_other_seed_other_audio_and_no_global_rng_use(gen):
    import torch

    state = torch.random.get_rng_state()
    a, b = speak(gen, "A lighthouse at dusk."), speak(gen, "A lighthouse at dusk.")
    assert torch.equal(torch.random.get_rng_state(), state)  # the noise came from a forked, seeded RNG
    assert a.samples.tobytes() == b.samples.tobytes()
    c = speak(gen, "A lighthouse at dusk.", seed=6)
    assert c.samples.shape != a.samples.shape or not np.array_equal(c.samples, a.samples)


def test_numbers_and_abbreviations_are_spoken_as_words(gen):
    written = speak(gen, "Dr. Lee fed 3 cats.")
    spelled = speak(gen, "Doctor Lee fed three cats.")
    assert written.samples.tobytes() == spelled.samples.tobytes()
    assert written.metadata["sentences"][0]["text"] == "Dr. Lee fed 3 cats."  # subtitles show what is written
    # without normalisation the tiny voice (no digits, like MMS-TTS) drops the "3": said as "dr lee fed cats"
    raw = TransformersTTSGenerator(**TINY, normalize=False)
    with pytest.warns(UserWarning, match="'3'"):
        dropped = speak(raw, "Dr. Lee fed 3 cats.")
    assert dropped.samples.tobytes() == speak(raw, "dr. lee fed cats.").samples.tobytes()
    assert dropped.samples.tobytes() != written.samples.tobytes()


def test_characters_outside_the_vocabulary_are_dropped_with_one_warning(gen):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        asset = speak(gen, "The café glows \u2713. It is late; \u201cquiet\u201d now.")
    named = [w for w in seen if "cannot speak" in str(w.message)]
    assert len(named) == 1, [str(w.message) for w in seen]
    msg = str(named[0].message)
    assert "'é'" in msg and "'\u2713'" in msg and "2 character(s)" in msg  # punctuation is not reported
    assert asset.samples.tobytes() == speak(gen, "the caf glows . It is late quiet now.").samples.tobytes()
    assert [s["text"] for s in asset.metadata["sentences"]] == ["The café glows \u2713.", "It is late; \u201cquiet\u201d now."]


def test_empty_text_is_silence_of_the_cue_or_the_silence_option(gen):
    timed = speak(gen, "", duration=2.0)
    assert timed.samples.shape == (1, 2 * RATE) and not timed.samples.any()
    assert timed.metadata["sentences"] == []
    untimed = speak(TransformersTTSGenerator(**TINY, silence=0.5), "   \n ... ")
    assert untimed.samples.shape == (1, RATE // 2) and not untimed.samples.any()


def test_speakers_are_checked(gen):
    with pytest.raises(ConfigError, match="speaker = -1"):
        TransformersTTSGenerator(**TINY, speaker=-1)
    with pytest.raises(ConfigError, match=r"1 speaker\(s\), ids 0..0"):
        TransformersTTSGenerator(**TINY, speaker=1).load()
    with pytest.raises(ConfigError, match="takes a speaker id"):
        TransformersTTSGenerator(**TINY, speaker="voice.npy").load()
    lily = TransformersTTSGenerator(**TINY, voices={"Lily": 0})
    plan = StoryPlan(scenes=[Scene(0, prompt="x")], characters=[Character("Tom", "a boy")])
    with pytest.raises(ConfigError, match="'Lily'.*'Tom'"):
        lily.check_plan(plan)
    # a character's line: its tag is not spoken, its sentence still gets its own entry
    asset = speak(lily, "The dog barked.\nLily: Stop it!", characters=(Character("Lily", "a girl"),))
    assert [s["text"] for s in asset.metadata["sentences"]] == ["The dog barked.", "Stop it!"]
    assert asset.samples.tobytes() == speak(gen, "The dog barked. Stop it!").samples.tobytes()


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """The tiny voice saved in the save_pretrained layout, as a real checkpoint folder would be."""
    model, tok = tiny_vits(0)
    folder = tmp_path_factory.mktemp("voice") / "tiny-vits"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_a_saved_folder_loads_as_real_weights_and_speaks_like_the_preset(gen, saved):
    real = TransformersTTSGenerator(model=str(saved), device="cpu")
    assert real.weights == str(saved) and real.load().family == "vits"
    text = "Rain on the roof."
    got = speak(real, text)
    assert got.metadata["voice"] == str(saved)
    assert got.samples.tobytes() == speak(gen, text).samples.tobytes()


def test_other_models_go_through_the_text_to_speech_pipeline(saved, monkeypatch):
    """The pipeline route, driven with the saved VITS folder (transformers' pipeline takes VITS too):
    the same sentences, the same seeded noise, so the same samples as the direct VITS route."""
    from storysdk_speech import transformers_tts

    text = "Rain on the roof. It is 3 am."
    direct = speak(TransformersTTSGenerator(model=str(saved), device="cpu"), text)
    monkeypatch.setattr(transformers_tts, "_family", lambda model: "pipeline")
    routed = TransformersTTSGenerator(model=str(saved), device="cpu")
    assert routed.load().family == "pipeline" and routed.sample_rate == RATE
    got = speak(routed, text)
    assert got.samples.tobytes() == direct.samples.tobytes()
    assert got.metadata["sentences"] == direct.metadata["sentences"]
    with pytest.raises(ConfigError, match="takes no speaker option"):
        TransformersTTSGenerator(model=str(saved), device="cpu", speaker=0).load()


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_bad_model_folders_are_clear_errors(saved, tmp_path):
    missing = tmp_path / "no-such-voice"
    for preset in (None, "auto"):
        with pytest.raises(ConfigError) as err:
            TransformersTTSGenerator(model=str(missing), preset=preset)
        assert_clear(err.value, str(missing), fixes=("fix the path", "give an existing folder"))

    cut = _copy(saved, tmp_path / "cut")
    truncate(cut / "model.safetensors")
    with pytest.raises(CheckpointError) as err:
        TransformersTTSGenerator(model=str(cut), device="cpu").load()
    assert_clear(err.value, "model.safetensors")

    other = _copy(saved, tmp_path / "other")  # config of another size than its weights
    config = json.loads((other / "config.json").read_text())
    config["hidden_size"] = 24
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as err:
        TransformersTTSGenerator(model=str(other), device="cpu").load()
    assert_clear(err.value, str(other), "shape")

    vocab = _copy(saved, tmp_path / "vocab")  # a tokenizer of another voice: more symbols than embeddings
    symbols = json.loads((vocab / "vocab.json").read_text())
    symbols.update({"é": 40, "ñ": 41})
    (vocab / "vocab.json").write_text(json.dumps(symbols))
    with pytest.raises(CheckpointError) as err:
        TransformersTTSGenerator(model=str(vocab), device="cpu").load()
    assert_clear(err.value, "vocab_size 34", "ids up to 41")


def test_a_second_run_in_the_same_folder_resumes(tmp_path):
    reg = make_registry(plugin)
    pipe = Pipeline(planner="fake-planner", tracks={
        "narration": {"generator": ("transformers-tts", TINY), "text": "{prompt}"},
    }, registry=reg)
    request = StoryRequest(script="a lighthouse at dusk\nthe ship is 2 miles out", seed=3)
    rendered = []
    story = pipe.run(request, out_dir=tmp_path, progress=rendered.append)
    assert [e for e in rendered if e.stage == "step" and e.component == "transformers-tts"]
    clips = sorted((tmp_path / "tracks" / "narration").glob("*.wav"))
    assert len(clips) == 2 and sorted(story.tracks["narration"].assets) == [0, 1]
    first = folder_bytes(tmp_path)
    stamps = [p.stat().st_mtime_ns for p in clips]
    events = []
    again = pipe.run(request, out_dir=tmp_path, progress=events.append)
    assert [p.stat().st_mtime_ns for p in clips] == stamps  # reused, not rendered again
    assert not [e for e in events if e.stage == "step" and e.component == "transformers-tts"]
    assert folder_bytes(tmp_path) == first
    sentences = again.tracks["narration"].assets[1].metadata["sentences"]
    assert [s["text"] for s in sentences] == ["the ship is 2 miles out"]


class TestTransformersTTSContract(GeneratorContract):
    plugins = (plugin,)
    name = "transformers-tts"
    options = TINY
    bad_options = [
        ({"sentence_silence": -0.1}, "sentence_silence"),
        ({"speaker": -1}, "speaker"),
        ({"speaking_rate": 0.0}, "speaking_rate"),
        ({"offload": "model"}, "offload"),
    ]
