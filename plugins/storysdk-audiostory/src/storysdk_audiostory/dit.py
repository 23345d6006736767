"""The TangoFlux DiT (docs/audiostory.md §2): diffusers' FluxTransformer2DModel with TangoFlux's
duration embedder and pooled projection, under TangoFlux's parameter names
(``transformer.*``, ``fc.0.*``, ``duration_emebdder.time_positional_embedding.{0,1}.*`` -- sic).

This module imports torch; it is imported only when a model is built.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from . import constants as C

__all__ = ["DurationEmbedder", "FourierTimeFeatures", "TangoFluxDiT"]


class FourierTimeFeatures(nn.Module):
    """``[t, sin(2 pi t w), cos(2 pi t w)]`` with ``dim // 2`` learned frequencies ``w`` (§2)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"dim must be even, got {dim}")
        self.weights = nn.Parameter(torch.randn(dim // 2))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        t = t[..., None]
        freqs = t * self.weights[None] * 2 * math.pi
        return torch.cat((t, freqs.sin(), freqs.cos()), dim=-1)


class DurationEmbedder(nn.Module):
    """Seconds -> one conditioning token: clamp to [min, max], normalise to [0, 1], Fourier, Linear (§2)."""

    def __init__(self, dim: int, min_value: float, max_value: float, internal_dim: int = C.DURATION_FOURIER_DIM) -> None:
        super().__init__()
        self.time_positional_embedding = nn.Sequential(
            FourierTimeFeatures(internal_dim), nn.Linear(internal_dim + 1, dim)
        )
        self.dim = dim
        self.min_value = float(min_value)
        self.max_value = float(max_value)

    def forward(self, seconds: torch.Tensor) -> torch.Tensor:
        """(B,) seconds -> (B, 1, dim)."""
        s = seconds.clamp(self.min_value, self.max_value)
        s = (s - self.min_value) / (self.max_value - self.min_value)
        s = s.to(next(self.time_positional_embedding.parameters()).dtype)
        return self.time_positional_embedding(s).view(-1, 1, self.dim)


class TangoFluxDiT(nn.Module):
    """FluxTransformer2DModel + ``fc`` (pooled projection) + duration embedder (§2).

    ``text_dim`` is the conditioning width (Flan-T5 d_model, 1024); the transformer's
    ``joint_attention_dim`` and ``pooled_projection_dim`` are set from it as TangoFlux does.
    ``audio_seq_len`` latent frames cover ``max_duration`` seconds.
    """

    def __init__(
        self,
        *,
        in_channels: int = 64,
        num_layers: int = 6,
        num_single_layers: int = 18,
        attention_head_dim: int = 128,
        num_attention_heads: int = 8,
        joint_attention_dim: int = 1024,
        text_dim: int = 1024,
        audio_seq_len: int = C.AUDIO_SEQ_LEN,
        max_duration: float = C.MAX_DURATION,
        axes_dims_rope: tuple[int, int, int] = (16, 56, 56),
    ) -> None:
        super().__init__()
        from diffusers import FluxTransformer2DModel

        self.config_dict: dict[str, Any] = dict(
            in_channels=in_channels,
            num_layers=num_layers,
            num_single_layers=num_single_layers,
            attention_head_dim=attention_head_dim,
            num_attention_heads=num_attention_heads,
            joint_attention_dim=joint_attention_dim,
            text_dim=text_dim,
            audio_seq_len=audio_seq_len,
            max_duration=max_duration,
            axes_dims_rope=tuple(axes_dims_rope),
        )
        self.in_channels = in_channels
        self.text_dim = text_dim
        self.audio_seq_len = audio_seq_len
        self.max_duration = float(max_duration)
        self.fc = nn.Sequential(nn.Linear(text_dim, joint_attention_dim), nn.ReLU())
        self.duration_emebdder = DurationEmbedder(text_dim, 0.0, max_duration)
        self.transformer = FluxTransformer2DModel(
            patch_size=1,
            in_channels=in_channels,
            num_layers=num_layers,
            num_single_layers=num_single_layers,
            attention_head_dim=attention_head_dim,
            num_attention_heads=num_attention_heads,
            joint_attention_dim=joint_attention_dim,
            pooled_projection_dim=text_dim,
            guidance_embeds=False,
            axes_dims_rope=tuple(axes_dims_rope),
        )

    @property
    def dtype(self) -> torch.dtype:
        return self.fc[0].weight.dtype

    @property
    def device(self) -> torch.device:
        return self.fc[0].weight.device

    def pooled(self, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``fc(mean over tokens)``: plain mean (AudioStory, §1.6) or masked mean (TangoFlux, §2)."""
        if mask is None:
            mean = context.mean(dim=1)
        else:
            m = mask.to(context.dtype)[..., None]
            mean = (context * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)
        return self.fc(mean)

    def velocity(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        context: torch.Tensor,
        pooled: torch.Tensor,
    ) -> torch.Tensor:
        """One transformer call: ``context`` already holds the duration token (§1.6, §2).

        Position ids: text all zero, audio frame ``p`` on all three RoPE axes.
        """
        seq = latents.shape[1]
        txt_ids = torch.zeros(context.shape[1], 3, device=latents.device)
        img_ids = torch.arange(seq, device=latents.device, dtype=torch.float32)[:, None].repeat(1, 3)
        return self.transformer(
            hidden_states=latents,
            encoder_hidden_states=context,
            pooled_projections=pooled,
            timestep=timestep,
            img_ids=img_ids,
            txt_ids=txt_ids,
            guidance=None,
            return_dict=False,
        )[0]
