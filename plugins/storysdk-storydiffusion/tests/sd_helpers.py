"""Test helpers of the storydiffusion plugin: tiny-UNet inputs and an independent reference attention."""

from __future__ import annotations

import math
from typing import Any

import torch


def unet_inputs(unet: Any, batch: int, latent: int, seed: int = 0) -> dict[str, Any]:
    """Seeded random inputs for one UNet call at ``latent`` x ``latent`` latents."""
    g = torch.Generator().manual_seed(seed)
    cfg = unet.config
    pooled = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
    return {
        "sample": torch.randn(batch, cfg.in_channels, latent, latent, generator=g),
        "timestep": torch.tensor(500),
        "encoder_hidden_states": torch.randn(batch, 8, cfg.cross_attention_dim, generator=g),
        "added_cond_kwargs": {
            "text_embeds": torch.randn(batch, pooled, generator=g),
            "time_ids": torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]]).repeat(batch, 1),
        },
    }


def reference_attention(attn: Any, query_tokens: torch.Tensor, kv_tokens: torch.Tensor) -> torch.Tensor:
    """Textbook multi-head attention, written out: softmax(QK^T / sqrt(d)) V, then the output projection.

    ``query_tokens`` (Lq, C) and ``kv_tokens`` (Lk, C) are hidden states of one image.
    """
    w_q, w_k, w_v = attn.to_q.weight, attn.to_k.weight, attn.to_v.weight
    q = query_tokens @ w_q.T
    k = kv_tokens @ w_k.T
    v = kv_tokens @ w_v.T
    if attn.to_q.bias is not None:
        q, k, v = q + attn.to_q.bias, k + attn.to_k.bias, v + attn.to_v.bias
    heads = attn.heads
    d = q.shape[-1] // heads
    outs = []
    for h in range(heads):
        qh, kh, vh = q[:, h * d : (h + 1) * d], k[:, h * d : (h + 1) * d], v[:, h * d : (h + 1) * d]
        scores = (qh @ kh.T) / math.sqrt(d)
        outs.append(torch.softmax(scores, dim=-1) @ vh)
    out = torch.cat(outs, dim=-1)
    return out @ attn.to_out[0].weight.T + attn.to_out[0].bias
