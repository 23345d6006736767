"""transformers-tts' SpeechT5 route on CPU: a toy SpeechT5 checkpoint (SpeechT5ForTextToSpeech, a
SpeechT5HifiGan vocoder, an x-vector file) built and saved here, narrated through a Pipeline; the
clips checked against the model run by hand, rerun byte for byte, and bad speakers/vocoders refused.

The tokenizer is a character vocabulary in a ``tokenizers`` tokenizer.json (sentencepiece, which
SpeechT5Tokenizer needs, is not among our dependencies); the generator loads it with AutoTokenizer
as it loads a real checkpoint's SpeechT5Tokenizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from storysdk import ConfigError, Pipeline, StoryRequest
from storysdk.errors import CheckpointError
from storysdk.testing import make_registry
from storysdk.testing.faults import assert_clear
from storysdk_speech import plugin
from storysdk_speech.text import normalize, split_sentences
from storysdk_speech.transformers_tts import TransformersTTSGenerator

EMBEDDING = 8  # the toy config's speaker_embedding_dim
RATE = 8000  # the toy vocoder's sampling_rate
SCRIPT = "A lighthouse at dusk. The lamp turns slowly.\nThe ship is 2 miles out!"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> dict[str, Path]:
    """model/ (weights + tokenizer), vocoder/ and voice.npy, in the save_pretrained layout."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import (
        PreTrainedTokenizerFast,
        SpeechT5Config,
        SpeechT5ForTextToSpeech,
        SpeechT5HifiGan,
        SpeechT5HifiGanConfig,
    )

    root = tmp_path_factory.mktemp("speecht5")
    symbols = ["<s>", "<pad>", "</s>", "<unk>", *"abcdefghijklmnopqrstuvwxyz'.,!? "]
    core = Tokenizer(models.WordLevel({s: i for i, s in enumerate(symbols)}, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")  # one token per character
    core.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 2)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    config = SpeechT5Config(
        vocab_size=len(symbols), hidden_size=16, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=32,
        decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=32, speech_decoder_prenet_units=16,
        speech_decoder_postnet_units=16, speech_decoder_postnet_layers=2, speaker_embedding_dim=EMBEDDING,
        num_mel_bins=20, max_text_positions=128, max_speech_positions=1024, reduction_factor=2,
        conv_dim=(8,), conv_stride=(5,), conv_kernel=(10,), num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2,
    )
    vocoder_config = SpeechT5HifiGanConfig(
        model_in_dim=20, sampling_rate=RATE, upsample_initial_channel=16, upsample_rates=[4, 4],
        upsample_kernel_sizes=[8, 8], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SpeechT5ForTextToSpeech(config).eval()
        vocoder = SpeechT5HifiGan(vocoder_config).eval()
    with torch.no_grad():  # a stop head that rarely fires: clips run to the length limit, ~0.1 s per character
        model.speech_decoder_postnet.prob_out.bias.fill_(-8.0)
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    vocoder.save_pretrained(root / "vocoder")
    np.save(root / "voice.npy", np.random.default_rng(0).standard_normal(EMBEDDING).astype(np.float32))
    return {"model": root / "model", "vocoder": root / "vocoder", "speaker": root / "voice.npy", "root": root}


def options(ck: dict[str, Path], **more):
    return {"model": str(ck["model"]), "vocoder": str(ck["vocoder"]), "speaker": str(ck["speaker"]),
            "device": "cpu", **more}


def narrate(ck: dict[str, Path], out: Path):
    pipe = Pipeline(planner="fake-planner", tracks={
        "narration": {"generator": ("transformers-tts", options(ck)), "text": "{prompt}"},
    }, registry=make_registry(plugin))
    return pipe.run(StoryRequest(script=SCRIPT, seed=3), out_dir=out)


def by_hand(ck: dict[str, Path], texts: list[str], seed: int) -> list[np.ndarray]:
    """The saved checkpoint run directly through transformers on spoken-form texts, in one seeded block."""
    import torch
    from storysdk.runtime import seeded
    from transformers import AutoTokenizer, SpeechT5ForTextToSpeech, SpeechT5HifiGan

    model = SpeechT5ForTextToSpeech.from_pretrained(ck["model"]).eval()
    vocoder = SpeechT5HifiGan.from_pretrained(ck["vocoder"]).eval()
    tok = AutoTokenizer.from_pretrained(ck["model"])
    emb = torch.from_numpy(np.load(ck["speaker"]))[None]
    out = []
    with seeded(seed), torch.inference_mode():
        for text in texts:
            out.append(model.generate_speech(tok(text, return_tensors="pt").input_ids, emb, vocoder=vocoder).numpy())
    return out


def test_a_speecht5_narration_track(checkpoint, tmp_path):
    story = narrate(checkpoint, tmp_path / "one")
    track = story.tracks["narration"]
    assert sorted(track.assets) == [0, 1]
    gap = int(round(0.3 * RATE))
    for index, line in enumerate(SCRIPT.splitlines()):
        asset = track.assets[index]
        assert asset.sample_rate == RATE and asset.samples.dtype == np.float32 and asset.samples.ndim == 2
        assert asset.samples.shape[0] == 1 and asset.made_by == "transformers-tts"
        assert asset.metadata["speaker"] == str(checkpoint["speaker"])
        assert asset.metadata["voice"] == str(checkpoint["model"])
        shown = split_sentences(line)
        waves = by_hand(checkpoint, [normalize(s) for s in shown], asset.metadata["seed"])
        assert all(w.size > RATE // 10 for w in waves)  # real speech lengths, not a stop after one frame
        expected = np.concatenate([part for w in waves for part in (np.zeros(gap, np.float32), w)][1:])
        np.testing.assert_array_equal(asset.samples[0], expected)
        at, sentences = 0, []
        for text, w in zip(shown, waves, strict=True):
            sentences.append({"text": text, "start": at / RATE, "end": (at + w.size) / RATE})
            at += w.size + gap
        assert asset.metadata["sentences"] == sentences
        assert sentences[-1]["end"] == asset.samples.shape[1] / RATE
    assert [len(track.assets[i].metadata["sentences"]) for i in (0, 1)] == [2, 1]

    again = narrate(checkpoint, tmp_path / "two")
    for index in (0, 1):
        assert again.tracks["narration"].assets[index].samples.tobytes() == track.assets[index].samples.tobytes()
        name = f"tracks/narration/scene-{index:04d}.wav"
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()


def test_bad_speakers_and_vocoders_are_clear_errors(checkpoint, tmp_path):
    short = tmp_path / "short.npy"
    np.save(short, np.zeros(EMBEDDING - 1, np.float32))
    with pytest.raises(ConfigError) as err:
        TransformersTTSGenerator(**options(checkpoint, speaker=str(short))).load()
    assert_clear(err.value, str(short), f"holds {EMBEDDING - 1} values", f"takes {EMBEDDING}")

    with pytest.raises(ConfigError) as err:
        TransformersTTSGenerator(**options(checkpoint, speaker=None)).load()
    assert_clear(err.value, "needs a speaker embedding", f"{EMBEDDING}-value x-vector")

    missing = tmp_path / "no-such-vocoder"
    with pytest.raises(ConfigError) as err:
        TransformersTTSGenerator(**options(checkpoint, vocoder=str(missing)))
    assert_clear(err.value, str(missing), "vocoder", "microsoft/speecht5_hifigan")

    # a vocoder of another model (its mel bins differ): refused at load, not a shape error mid-story
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    import torch

    other = tmp_path / "other-vocoder"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        SpeechT5HifiGan(SpeechT5HifiGanConfig(model_in_dim=12, upsample_initial_channel=8, upsample_rates=[2],
                                              upsample_kernel_sizes=[4], resblock_kernel_sizes=[3],
                                              resblock_dilation_sizes=[[1]])).save_pretrained(other)
    with pytest.raises(CheckpointError) as err:
        TransformersTTSGenerator(**options(checkpoint, vocoder=str(other))).load()
    assert_clear(err.value, str(other), "12 mel bins", "makes 20")
