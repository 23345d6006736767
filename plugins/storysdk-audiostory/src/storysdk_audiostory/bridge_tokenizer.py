"""Tokenizer ``audiostory-bridge``: query hidden states -> DiT conditioning (docs/audiostory.md §1.5, §9).

Consumes the ``audiostory-queries`` tokens of the ``audiostory`` planner and produces
``tangoflux-cond`` tokens: ``C = (projector(H_t5) + MHA(S, R, R)) / t5_feature_scale``, the
inference path's single division (the released training code's double scaling is not followed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from storysdk.errors import ConfigError
from storysdk.interfaces import RenderContext, Tokenizer
from storysdk.model import Scene, Tokens

from .generators import COND_KIND
from .planner import QUERIES_KIND

if TYPE_CHECKING:
    from .loading import BridgeRuntime

__all__ = ["AudioStoryBridge"]


class AudioStoryBridge(Tokenizer):
    """Projection heads + 8-head fuser. Options: ``preset``, ``checkpoint`` (AudioStory release
    folder), ``t5_feature_scale`` (default: the checkpoint's config, else 10.0), ``device``, ``dtype``."""

    name = "audiostory-bridge"
    description = "AudioStory bridge: projection heads + 8-head fuser turn LLM query states into DiT conditioning"
    tiny_preset = True
    produces = COND_KIND
    consumes: ClassVar[tuple[str, ...]] = (QUERIES_KIND,)

    def __init__(
        self,
        *,
        preset: str | None = None,
        checkpoint: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        t5_feature_scale: float | None = None,
        seed: int = 0,
    ) -> None:
        if t5_feature_scale is not None and not t5_feature_scale > 0:
            raise ConfigError(f"t5_feature_scale must be positive, got {t5_feature_scale}")
        self.preset = preset
        self.checkpoint = checkpoint
        self.device = device
        self.dtype = dtype
        self.t5_feature_scale = t5_feature_scale
        self.seed = int(seed)
        self._rt: BridgeRuntime | None = None

    def runtime(self) -> BridgeRuntime:
        """The heads and fuser, loaded on first use."""
        if self._rt is None:
            from .loading import load_bridge_runtime

            self._rt = load_bridge_runtime(
                preset=self.preset, checkpoint=self.checkpoint, device=self.device, dtype=self.dtype,
                seed=self.seed, component=self.name,
            )
        return self._rt

    def tokenize(self, scenes: Sequence[Scene], ctx: RenderContext) -> list[Tokens]:
        """One ``tangoflux-cond`` :class:`Tokens` (``cond``: (N, 1024)) per scene, all scenes in one batch."""
        import torch

        if not scenes:
            return []
        rt = self.runtime()
        t5, aud = [], []
        for scene in scenes:
            tok = scene.tokens.get(QUERIES_KIND)
            if tok is None:
                raise ConfigError(
                    f"scene {scene.index} has no {QUERIES_KIND!r} tokens; the audiostory-bridge tokenizer needs a plan "
                    "from the 'audiostory' planner (for other planners use the 'tangoflux' generator)"
                )
            t5.append(torch.as_tensor(tok["t5"]))
            aud.append(torch.as_tensor(tok["aud"]))
        if len({x.shape for x in t5}) != 1 or len({x.shape for x in aud}) != 1:
            raise ConfigError("scenes carry query states of different shapes; plan them with one planner")
        if t5[0].shape[-1] != rt.heads.llm_dim:
            raise ConfigError(
                f"query states are {t5[0].shape[-1]} wide but the bridge expects {rt.heads.llm_dim}; "
                "use the same preset/checkpoint for the planner and the bridge"
            )
        scale = self.t5_feature_scale if self.t5_feature_scale is not None else rt.scale
        with torch.no_grad():
            cond = rt.heads(
                torch.stack(t5).to(rt.device, rt.dtype), torch.stack(aud).to(rt.device, rt.dtype), scale
            ).float().cpu()
        return [
            Tokens(kind=COND_KIND, made_by=self.name, tensors={"cond": cond[i]}, metadata={"scale": scale})
            for i in range(len(scenes))
        ]
