"""The de-tokenizer's perceiver resampler (``ResamplerXLV2``, docs/seed-story.md §1.5 and §9).

Regressed ViT features (B, 256, 4096) -> SDXL prompt embeddings (B, 64, 768+1280) and a
pooled vector (B, 1280). Parameter names follow upstream (``layers.{i}.0`` attention,
``layers.{i}.1.{0,1,3}`` feed-forward) so the adapted checkpoint's ``resampler.*`` keys load.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .configs import PerceiverConfig

__all__ = ["PerceiverResampler"]


class PerceiverAttention(nn.Module):
    """Latents attend to cat(inputs, latents); keys/values from one ``to_kv`` (keys first, §9)."""

    def __init__(self, dim: int, dim_head: int, heads: int) -> None:
        super().__init__()
        inner = dim_head * heads
        self.dim_head, self.heads = dim_head, heads
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        x, latents = self.norm1(x), self.norm2(latents)
        b, n_lat, _ = latents.shape
        q = self.to_q(latents)
        k, v = self.to_kv(torch.cat([x, latents], dim=1)).chunk(2, dim=-1)
        q, k, v = (t.view(b, t.shape[1], self.heads, self.dim_head).transpose(1, 2) for t in (q, k, v))
        scale = 1.0 / math.sqrt(math.sqrt(self.dim_head))  # dim_head^-1/4 on q and on k (§9)
        weight = (q * scale) @ (k * scale).transpose(-2, -1)
        weight = torch.softmax(weight.float(), dim=-1).to(weight.dtype)  # softmax in fp32 (§1.5)
        out = (weight @ v).transpose(1, 2).reshape(b, n_lat, -1)
        return self.to_out(out)


def _feed_forward(dim: int, mult: int) -> nn.Sequential:
    return nn.Sequential(
        nn.LayerNorm(dim),
        nn.Linear(dim, dim * mult, bias=False),
        nn.GELU(),
        nn.Linear(dim * mult, dim, bias=False),
    )


class AttentionPool(nn.Module):
    """CLIP-style attention pool over (mean token + 64 latents); returns the mean token only (§9)."""

    def __init__(self, seq_len: int, dim: int, heads: int, out_dim: int) -> None:
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(seq_len + 1, dim) / dim**0.5)
        self.k_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.c_proj = nn.Linear(dim, out_dim)
        self.num_heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)  # mean after norm_out, before positions
        x = x + self.positional_embedding[None].to(x.dtype)
        b, n, d = x.shape
        hd = d // self.num_heads  # head size dim/heads (§9)
        q = self.q_proj(x[:, :1]).view(b, 1, self.num_heads, hd).transpose(1, 2)
        k = self.k_proj(x).view(b, n, self.num_heads, hd).transpose(1, 2)
        v = self.v_proj(x).view(b, n, self.num_heads, hd).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, d)
        return self.c_proj(out)


class PerceiverResampler(nn.Module):
    """``forward(x) -> (prompt_embeds (B, Q, out1+out2), pooled (B, out2))`` (§1.5 steps 1-7)."""

    def __init__(self, cfg: PerceiverConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or PerceiverConfig()
        self.config = cfg
        self.latents = nn.Parameter(torch.randn(1, cfg.num_queries, cfg.dim) / cfg.dim**0.5)
        self.proj_in = nn.Linear(cfg.embedding_dim, cfg.dim)
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(cfg.dim, cfg.dim_head, cfg.heads), _feed_forward(cfg.dim, cfg.ff_mult)])
            for _ in range(cfg.depth)
        )
        self.norm_out = nn.LayerNorm(cfg.dim)
        self.unet_proj_1 = nn.Linear(cfg.dim, cfg.output1_dim)
        self.unet_proj_2 = nn.Linear(cfg.dim, cfg.output2_dim)
        self.unet_attnpool = AttentionPool(cfg.num_queries, cfg.dim, cfg.heads, cfg.output2_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 3 or x.shape[-1] != self.config.embedding_dim:
            raise ValueError(
                f"the de-tokenizer takes (batch, tokens, {self.config.embedding_dim}) features, got {tuple(x.shape)}"
            )
        if self.config.normalize:
            x = F.normalize(x, dim=1, eps=1e-12)  # over the TOKEN axis, per sample (§1.5 step 1, §9)
        x = self.proj_in(x)
        latents = self.latents.expand(x.shape[0], -1, -1)
        for attn, ff in self.layers:
            latents = attn(x, latents) + latents
            latents = ff(latents) + latents
        latents = self.norm_out(latents)
        prompt = torch.cat([self.unet_proj_1(latents), self.unet_proj_2(latents)], dim=-1)
        return prompt, self.unet_attnpool(latents)
