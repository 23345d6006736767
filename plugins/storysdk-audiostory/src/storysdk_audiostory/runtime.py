"""What :mod:`.loading` and :mod:`.release` return, one per component: the planner's tokenizer
and LLM (:class:`PlannerRuntime`), the bridge heads (:class:`BridgeRuntime`) and the audio side
(:class:`AudioRuntime`: DiT, VAE, Flan-T5, with the helpers around them: unconditional branch
cache, text encoding, VAE decode). Each instance holds per-run caches only on itself. Imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
import torch

from .dit import TangoFluxDiT
from .presets import vae_clip_seconds

if TYPE_CHECKING:
    from .bridge import BridgeHeads
    from .grammar import SpecialIds

__all__ = ["AudioRuntime", "BridgeRuntime", "PlannerRuntime"]


@attrs.define(eq=False)
class PlannerRuntime:
    """The planner's tokenizer, LLM, resolved special ids and longest clip (seconds)."""

    tokenizer: Any
    llm: Any
    special: SpecialIds
    max_clip_seconds: float


@attrs.define(eq=False)
class BridgeRuntime:
    """Projection heads + fuser and the scale of the inference path (docs/audiostory.md §1.5, §9)."""

    heads: BridgeHeads
    scale: float
    device: torch.device
    dtype: torch.dtype


@attrs.define(eq=False)
class AudioRuntime:
    """DiT + VAE (+ the T5 encoder while it is needed) on one device.

    ``uncond_states(n)`` is the T5 encoding of ``""`` padded to ``n`` tokens *with its attention
    mask* (docs/audiostory.md §9), cached per ``n``; with ``drop_text_encoder()`` the encoder can be
    released once the caches the run needs exist (§1.6: "cached so the text encoder need not
    stay loaded").
    """

    dit: TangoFluxDiT
    vae: Any
    t5_tokenizer: Any
    t5: Any | None
    device: torch.device
    dtype: torch.dtype
    vae_dtype: torch.dtype = torch.float32
    _uncond: dict[int, tuple[torch.Tensor, torch.Tensor]] = attrs.field(factory=dict)

    @property
    def sample_rate(self) -> int:
        return int(self.vae.config.sampling_rate)

    @property
    def clip_seconds(self) -> float:
        """Longest clip the DiT window decodes to (29.95 s for the release, §1.7/§3)."""
        return vae_clip_seconds(self.vae.config, self.dit.audio_seq_len)

    def _encode(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.t5 is None:
            from storysdk.errors import ComponentError

            raise ComponentError(
                "the T5 encoder of this runtime was released after AudioStory cached its unconditional "
                "embedding; give the 'tangoflux' generator its own runtime (do not share one with 'audiostory')"
            )
        with torch.no_grad():
            out = self.t5(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))[0]
        return out.to(self.dtype)

    def uncond_states(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, length, D) encoding of ``""`` padded to ``length`` and its mask (1, length), cached."""
        if length not in self._uncond:
            batch = self.t5_tokenizer([""], max_length=length, padding="max_length", truncation=True, return_tensors="pt")
            states = self._encode(batch.input_ids, batch.attention_mask)
            self._uncond[length] = (states, batch.attention_mask.to(self.device).bool())
        return self._uncond[length]

    def encode_caption(self, caption: str, max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, L, D) T5 states of one caption (its own length, no padding) and its mask (§2)."""
        limit = max_length or int(getattr(self.t5_tokenizer, "model_max_length", 512) or 512)
        limit = min(limit, 100_000)
        batch = self.t5_tokenizer([caption], max_length=limit, padding=True, truncation=True, return_tensors="pt")
        return self._encode(batch.input_ids, batch.attention_mask), batch.attention_mask.to(self.device).bool()

    def drop_text_encoder(self) -> None:
        """Release the T5 encoder (the unconditional caches stay)."""
        self.t5 = None

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, L, C) latents -> (B, channels, L * hop) float32 waveforms (§1.7: ``decode(x.transpose(1, 2))``)."""
        with torch.no_grad():
            z = latents.transpose(1, 2).to(self.device, self.vae_dtype)
            return self.vae.decode(z).sample.float()
