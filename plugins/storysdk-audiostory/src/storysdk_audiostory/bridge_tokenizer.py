"""Tokenizer ``audiostory-bridge``: query hidden states -> DiT conditioning (docs/audiostory.md §1.5, §9).

Consumes the ``audiostory-queries`` tokens of the ``audiostory`` planner and produces
``tangoflux-cond`` tokens: ``C = (projector(H_t5) + MHA(S, R, R)) / t5_feature_scale``, the
inference path's single division (the released training code's double scaling is not followed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import field_validator
from storysdk.errors import ConfigError
from storysdk.interfaces import RenderContext, Tokenizer
from storysdk.model import Scene, StoryPlan, Tokens
from storysdk.options import Field

from .generators import COND_KIND
from .options import AudioStoryDeviceOptions, folder_path
from .planner import QUERIES_KIND

if TYPE_CHECKING:
    from .runtime import BridgeRuntime

__all__ = ["AudioStoryBridge"]

_MIXED_SHAPES = "scenes carry query states of different shapes; plan them with one planner"


def _no_queries(scene: Scene) -> str:
    return (
        f"scene {scene.index} has no {QUERIES_KIND!r} tokens; the audiostory-bridge tokenizer needs a plan "
        "from the 'audiostory' planner (for other planners use the 'tangoflux' generator)"
    )


def _shape(tok: Tokens, key: str) -> tuple[int, ...]:
    value = tok.tensors.get(key)
    if value is None or not hasattr(value, "shape"):
        raise ConfigError(f"{QUERIES_KIND!r} tokens made by {tok.made_by!r} have no {key!r} tensor; re-plan the story")
    return tuple(int(d) for d in value.shape)


class AudioStoryBridge(Tokenizer):
    """Projection heads + 8-head fuser (declared options: ``storysdk plugins --options
    audiostory-bridge``): ``checkpoint`` (AudioStory release folder), ``t5_feature_scale``
    (default: the checkpoint's config, else 10.0), and ``preset``, ``device``, ``dtype``,
    ``weights_seed`` (tiny weights)."""

    name = "audiostory-bridge"
    description = "AudioStory bridge: projection heads + 8-head fuser turn LLM query states into DiT conditioning"
    tiny_preset = True
    produces = COND_KIND
    consumes: ClassVar[tuple[str, ...]] = (QUERIES_KIND,)

    class Options(AudioStoryDeviceOptions):
        checkpoint: str | None = Field(
            None,
            description="the AudioStory release folder (config.yaml + pytorch_model.bin); needed unless preset='tiny'",
        )
        t5_feature_scale: float | None = Field(
            None,
            gt=0,
            description="divisor of the fused conditioning (None: the checkpoint's config, else 10.0; "
            "docs/audiostory.md §9)",
        )

        _paths = field_validator("checkpoint", mode="before")(folder_path)

    options: Options

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._rt: BridgeRuntime | None = None

    def runtime(self) -> BridgeRuntime:
        """The heads and fuser, loaded on first use."""
        if self._rt is None:
            from .loading import load_bridge_runtime

            o = self.options
            self._rt = load_bridge_runtime(
                preset=o.preset, checkpoint=o.checkpoint, device=o.device, dtype=o.dtype,
                weights_seed=o.weights_seed, component=f"tokenizer {self.name!r}",
            )
        return self._rt

    def check_plan(self, plan: StoryPlan) -> None:
        """Every scene carries the ``audiostory-queries`` of the ``audiostory`` planner, all of one
        shape; the weights would load (a checkpoint for the real ones; no model is loaded here)."""
        if self._rt is None:
            from .loading import preset_of

            o = self.options
            preset_of(f"tokenizer {self.name!r}", preset=o.preset, checkpoint=o.checkpoint, device=o.device,
                      dtype=o.dtype)
        shapes = set()
        for scene in plan.scenes:
            tok = scene.tokens.get(QUERIES_KIND)
            if tok is None:
                raise ConfigError(_no_queries(scene))
            shapes.add((_shape(tok, "t5"), _shape(tok, "aud")))
        if len(shapes) > 1:
            raise ConfigError(_MIXED_SHAPES)

    def tokenize(self, scenes: Sequence[Scene], ctx: RenderContext) -> list[Tokens]:
        """One ``tangoflux-cond`` :class:`Tokens` (``cond``: (N, 1024)) per scene, each computed on its own."""
        import torch

        if not scenes:
            return []
        rt = self.runtime()
        t5, aud = [], []
        for scene in scenes:
            tok = scene.tokens.get(QUERIES_KIND)
            if tok is None:
                raise ConfigError(_no_queries(scene))
            t5.append(torch.as_tensor(tok["t5"]))
            aud.append(torch.as_tensor(tok["aud"]))
        if len({x.shape for x in t5}) != 1 or len({x.shape for x in aud}) != 1:
            raise ConfigError(_MIXED_SHAPES)
        if t5[0].shape[-1] != rt.heads.llm_dim:
            raise ConfigError(
                f"query states are {t5[0].shape[-1]} wide but the bridge expects {rt.heads.llm_dim}; "
                "use the same preset/checkpoint for the planner and the bridge"
            )
        scale = self.options.t5_feature_scale if self.options.t5_feature_scale is not None else rt.scale
        out = []
        with torch.no_grad():
            for h_t5, h_aud in zip(t5, aud):  # one scene at a time: its bits never depend on the others
                cond = rt.heads(h_t5[None].to(rt.device, rt.dtype), h_aud[None].to(rt.device, rt.dtype), scale)
                out.append(Tokens(kind=COND_KIND, made_by=self.name, tensors={"cond": cond[0].float().cpu()},
                                  metadata={"scale": scale}))
        return out
