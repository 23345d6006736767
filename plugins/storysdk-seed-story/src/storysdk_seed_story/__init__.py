"""SEED-Story for storysdk (spec: docs/seed-story.md).

Components (registered by :mod:`storysdk_seed_story.plugin`):

- planner ``seed-story``: the Llama-2 MLLM writing the story interleaved, text and regressed
  image features per scene (§2);
- tokenizer ``seed-story-vit``: the Qwen-VL ViT-G with its attention pool (§1.1) and the
  MLLM's input/output resamplers (§1.2);
- generator ``seed-story-detokenizer``: the perceiver resampler feeding an SDXL UNet (§1.5).

Importing this package does not import torch.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
