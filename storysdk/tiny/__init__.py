"""Tiny presets for model-backed components: offline tokenizers and the real architectures at toy size.

Public for plugin authors (``docs/plugin-utilities.md``): a tiny preset builds its tokenizers
here (:func:`clip_tokenizer`, :func:`t5_tokenizer`, trained in code on :data:`STORY_CORPUS`)
and may reuse the tiny SDXL and Stable Audio of the built-ins. Every builder is deterministic
and leaves the global torch RNG as it found it. Importing this package does not import torch.
"""

from __future__ import annotations

from .models import (
    TINY_SDXL,
    TINY_STABLE_AUDIO,
    tiny_sdxl_components,
    tiny_sdxl_pipeline,
    tiny_sdxl_text_components,
    tiny_stable_audio_components,
    tiny_stable_audio_pipeline,
)
from .tokenizers import STORY_CORPUS, clip_tokenizer, corpus_words, learn_bpe_merges, t5_tokenizer

__all__ = [
    "STORY_CORPUS",
    "TINY_SDXL",
    "TINY_STABLE_AUDIO",
    "clip_tokenizer",
    "corpus_words",
    "learn_bpe_merges",
    "t5_tokenizer",
    "tiny_sdxl_components",
    "tiny_sdxl_pipeline",
    "tiny_sdxl_text_components",
    "tiny_stable_audio_components",
    "tiny_stable_audio_pipeline",
]
