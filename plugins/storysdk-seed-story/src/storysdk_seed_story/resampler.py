"""The Qwen-VL cross-attention resampler (docs/seed-story.md §1.2) and its 2-D sin-cos position table (§9).

One class serves three places: the ViT's ``attn_pool`` (kv_dim 1664 -> 4096, LayerNorm eps
1e-6, §1.1) and the MLLM's input/output resamplers (kv_proj = Identity, eps 1e-5, §1.2).
Module names follow upstream so that released keys load unchanged (§9 "Key names").
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


__all__ = ["Resampler", "resize_positions", "sincos_2d"]


def sincos_2d(dim: int, grid: int) -> np.ndarray:
    """The frozen 2-D sin-cos table, shape (grid*grid, dim), float32 (§9).

    First half of the channels encodes the column (x), second half the row (y); each half is
    sin then cos, with frequencies ``1 / 10000 ** (i / (dim/4))``.
    """
    if dim % 4:
        raise ValueError(f"sin-cos table needs a channel count divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (np.arange(quarter, dtype=np.float64) / quarter)
    rows, cols = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64), indexing="ij")

    def encode(pos: np.ndarray) -> np.ndarray:
        angles = pos.reshape(-1)[:, None] * omega[None, :]
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    return np.concatenate([encode(cols), encode(rows)], axis=1).astype(np.float32)


def resize_positions(table: torch.Tensor, tokens: int) -> torch.Tensor:
    """Resize a square position table to ``tokens`` positions (§9: bicubic, align_corners=False,
    no antialias, in float32, cast back). Returned unchanged when the sizes already match."""
    src = int(math.isqrt(table.shape[0]))
    dst = int(math.isqrt(tokens))
    if src == dst:
        return table
    grid = table.float().reshape(1, src, src, -1).permute(0, 3, 1, 2)
    out = F.interpolate(grid, size=(dst, dst), mode="bicubic", align_corners=False)
    return out.permute(0, 2, 3, 1).reshape(dst * dst, -1).to(table.dtype)


class Resampler(nn.Module):
    """One cross-attention layer with ``grid**2`` learned queries (§1.2 forward, steps 1-4).

    ``forward(x)`` maps (B, N, kv_dim) to (B, grid**2, embed_dim); N must be a square.
    """

    def __init__(self, grid: int, embed_dim: int, num_heads: int, kv_dim: int | None = None, eps: float = 1e-5) -> None:
        super().__init__()
        self.grid = grid
        self.num_queries = grid * grid
        self.pos_embed = nn.Parameter(torch.from_numpy(sincos_2d(embed_dim, grid)), requires_grad=False)
        self.query = nn.Parameter(torch.randn(self.num_queries, embed_dim) * 0.02)
        self.kv_proj = nn.Linear(kv_dim, embed_dim, bias=False) if kv_dim not in (None, embed_dim) else nn.Identity()
        self.attn = nn.MultiheadAttention(embed_dim, num_heads)  # seq-first, with bias (§1.2)
        self.ln_q = nn.LayerNorm(embed_dim, eps=eps)
        self.ln_kv = nn.LayerNorm(embed_dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or math.isqrt(x.shape[1]) ** 2 != x.shape[1]:
            raise ValueError(f"resampler input must be (batch, square number of tokens, dim), got {tuple(x.shape)}")
        pos_k = resize_positions(self.pos_embed, x.shape[1])  # keys get the resized table (§9)
        kv = self.ln_kv(self.kv_proj(x)).permute(1, 0, 2)  # kv_proj before ln_kv (§9)
        q = self.ln_q(self.query)[:, None, :] + self.pos_embed[:, None, :]
        q = q.expand(-1, x.shape[0], -1)
        out = self.attn(q, kv + pos_k[:, None, :], kv, need_weights=False)[0]  # values get no positions
        return out.permute(1, 0, 2)
