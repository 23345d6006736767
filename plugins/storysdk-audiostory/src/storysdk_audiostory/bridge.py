"""AudioStory's bridge (docs/audiostory.md §1.5, §9): two ``mlp2x_gelu`` projection heads and the
8-head fuser, with the inference path's scale ``C = (S + MHA(S, R, R)) / t5_feature_scale``.

Parameter names follow the release (``projector.{0,2}``, ``audio_projector.{0,2}`` under
``seedx.``; ``multihead_attention.*`` at the top level). Imports torch.
"""

from __future__ import annotations

import torch
from torch import nn

from . import constants as C

__all__ = ["BridgeHeads"]


def _mlp2x_gelu(in_dim: int, dim: int) -> nn.Sequential:
    """Linear(in -> dim), GELU, Linear(dim -> dim) (upstream ``build_audio_projector('mlp2x_gelu')``)."""
    return nn.Sequential(nn.Linear(in_dim, dim), nn.GELU(), nn.Linear(dim, dim))


class BridgeHeads(nn.Module):
    """Projection heads + fuser (§1.5). ``llm_dim``: LLM hidden size (2048 for Qwen2.5-3B)."""

    def __init__(self, llm_dim: int, dim: int = C.BRIDGE_DIM, heads: int = C.FUSER_HEADS) -> None:
        super().__init__()
        self.llm_dim = llm_dim
        self.dim = dim
        self.projector = _mlp2x_gelu(llm_dim, dim)
        self.audio_projector = _mlp2x_gelu(llm_dim, dim)
        # seq-first (batch_first=False) as upstream; in_proj splits into q, k, v thirds (§9)
        self.multihead_attention = nn.MultiheadAttention(embed_dim=dim, num_heads=heads)

    def forward(self, h_t5: torch.Tensor, h_aud: torch.Tensor, scale: float = C.T5_FEATURE_SCALE) -> torch.Tensor:
        """(B, N, llm_dim), (B, M, llm_dim) -> conditioning (B, N, dim), divided once by ``scale`` (§9)."""
        s = self.projector(h_t5)
        r = self.audio_projector(h_aud)
        a = self.multihead_attention(s.transpose(0, 1), r.transpose(0, 1), r.transpose(0, 1), need_weights=False)[0]
        return (s + a.transpose(0, 1)) / scale
