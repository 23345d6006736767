"""The Qwen-VL ViT-G with its attention pool (docs/seed-story.md §1.1), in our own torch code.

Module and parameter names are Qwen-VL's ``transformer.visual`` names, so ``qwen_vit_G.pt``
(and the ``transformer.visual.`` tensors of a Qwen-VL-Chat checkpoint) load key for key.
The fused ``in_proj`` of each block is laid out **per head** (q, k, v rows of head 0, then
head 1, ...), not as ``nn.MultiheadAttention``'s [all q; all k; all v] (§9).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .configs import ViTConfig
from .resampler import Resampler, resize_positions


__all__ = ["VisionTransformer"]


class VisualAttention(nn.Module):
    """Multi-head self-attention with a fused, per-head-interleaved ``in_proj`` (§9)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj = nn.Linear(width, 3 * width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, w = x.shape
        head_dim = w // self.heads
        qkv = self.in_proj(x).view(b, n, self.heads, 3 * head_dim)  # per head: [q | k | v]
        q, k, v = qkv.split(head_dim, dim=-1)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(head_dim), no mask
        return self.out_proj(out.transpose(1, 2).reshape(b, n, w))


class ResidualBlock(nn.Module):
    """Pre-LN block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))`` with exact GELU."""

    def __init__(self, width: int, heads: int, mlp_width: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=1e-6)
        self.attn = VisualAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, mlp_width))
        self.mlp.add_module("gelu", nn.GELU())
        self.mlp.add_module("c_proj", nn.Linear(mlp_width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class _Transformer(nn.Module):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualBlock(cfg.width, cfg.heads, cfg.mlp_width) for _ in range(cfg.layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


class VisionTransformer(nn.Module):
    """(B, 3, 448, 448) normalised pixels -> (B, n_queries, output_dim) features (§1.1)."""

    def __init__(self, cfg: ViTConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or ViTConfig()
        self.config = cfg
        self.conv1 = nn.Conv2d(3, cfg.width, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.positional_embedding = nn.Parameter(torch.randn(256, cfg.width) * cfg.width**-0.5)  # 16x16 table
        self.ln_pre = nn.LayerNorm(cfg.width, eps=1e-6)
        self.transformer = _Transformer(cfg)
        grid = int(math.isqrt(cfg.n_queries))
        self.attn_pool = Resampler(grid, cfg.output_dim, cfg.pool_heads, kv_dim=cfg.width, eps=1e-6)
        self.ln_post = nn.LayerNorm(cfg.output_dim, eps=1e-6)
        self.proj = nn.Parameter(torch.randn(cfg.output_dim, cfg.output_dim) * cfg.output_dim**-0.5)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        side = self.config.image_size
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != (3, side, side):
            raise ValueError(f"the ViT takes (batch, 3, {side}, {side}) pixels, got {tuple(pixels.shape)}")
        x = self.conv1(pixels.to(self.conv1.weight.dtype))
        x = x.flatten(2).transpose(1, 2)  # (B, 1024, width), row-major patches
        x = x + resize_positions(self.positional_embedding, x.shape[1])  # 16x16 -> 32x32 bicubic
        x = self.transformer(self.ln_pre(x))
        x = self.ln_post(self.attn_pool(x))
        return x @ self.proj
