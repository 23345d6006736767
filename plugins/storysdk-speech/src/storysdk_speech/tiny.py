"""The ``tiny`` preset of ``transformers-tts``: the real VITS architecture (MMS-TTS is VITS) at toy
size, with seeded random weights and a character tokenizer, built in code and offline.

It speaks noise, not words, but it runs every step the real model runs (text encoder, stochastic
duration predictor, flow, HiFi-GAN decoder) in a few milliseconds, so tests and benchmarks exercise
the generator end to end. The weights are built inside :func:`storysdk.runtime.seeded` (a forked
torch RNG), so building them never disturbs the caller's RNG.
Importing this module does not import torch.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import VitsModel, VitsTokenizer

__all__ = ["TINY_MODEL_NAME", "TINY_VITS", "TINY_VOCAB", "tiny_vits", "tiny_vits_model", "tiny_vits_tokenizer"]

TINY_MODEL_NAME = "tiny-vits"

#: The tiny tokenizer's characters: index 0 is the blank VITS puts between characters (as in
#: MMS-TTS, whose vocabularies use "_" for it), then lower-case letters, space and a few marks.
#: No digits: MMS-TTS voices were trained on text without them, so the tiny voice has none
#: either, and numbers must be written out as words before they reach it.
TINY_VOCAB: tuple[str, ...] = ("_", " ", *"abcdefghijklmnopqrstuvwxyz", "'", "-", ",", ".", "?", "!")

#: The tiny VitsConfig: every part of the architecture, at toy width and depth. 16 kHz like MMS-TTS;
#: the decoder upsamples each spectrogram frame by 8 * 8 = 64 samples (MMS: 256).
TINY_VITS: dict[str, Any] = dict(
    hidden_size=16,
    num_hidden_layers=1,
    num_attention_heads=2,
    window_size=2,
    ffn_dim=32,
    flow_size=8,
    spectrogram_bins=9,
    upsample_initial_channel=16,
    upsample_rates=[8, 8],
    upsample_kernel_sizes=[16, 16],
    resblock_kernel_sizes=[3],
    resblock_dilation_sizes=[[1, 3]],
    depth_separable_num_layers=2,
    duration_predictor_num_flows=2,
    duration_predictor_filter_channels=16,
    prior_encoder_num_flows=2,
    prior_encoder_num_wavenet_layers=1,
    posterior_encoder_num_wavenet_layers=1,
    sampling_rate=16_000,
)


def tiny_vits_tokenizer(vocab: tuple[str, ...] = TINY_VOCAB) -> VitsTokenizer:
    """A :class:`~transformers.VitsTokenizer` over the characters ``vocab`` (``vocab[0]`` is the blank).

    VitsTokenizer reads its vocabulary from a file, so it is written to a temporary folder that is
    gone when this returns (the tokenizer keeps it in memory). Like MMS-TTS: lower-cases, drops
    characters outside the vocabulary, no phonemizer, a blank between characters.
    """
    from transformers import VitsTokenizer

    with tempfile.TemporaryDirectory(prefix="storysdk-tiny-vits-") as folder:
        path = Path(folder) / "vocab.json"
        path.write_text(json.dumps({ch: i for i, ch in enumerate(vocab)}, ensure_ascii=False), encoding="utf-8")
        return VitsTokenizer(
            str(path), pad_token=vocab[0], unk_token=vocab[0], add_blank=True, normalize=True, phonemize=False
        )


def tiny_vits_model(seed: int = 0, vocab_size: int = len(TINY_VOCAB)) -> VitsModel:
    """A :class:`~transformers.VitsModel` of :data:`TINY_VITS` size with random weights seeded by ``seed``."""
    import warnings

    from storysdk.runtime import seeded
    from transformers import VitsConfig, VitsModel

    config = VitsConfig(vocab_size=vocab_size, pad_token_id=0, **TINY_VITS)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*weight_norm.*", category=FutureWarning)
        with seeded(seed):
            model = VitsModel(config)
    return model.eval()


def tiny_vits(seed: int = 0) -> tuple[VitsModel, VitsTokenizer]:
    """The tiny preset's model (seeded by ``seed``) and its tokenizer."""
    tokenizer = tiny_vits_tokenizer()
    return tiny_vits_model(seed, len(tokenizer.encoder)), tokenizer
