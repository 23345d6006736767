"""Build or load the models each component needs: the ``tiny`` preset in code, or the released
weights from local folders (see :mod:`.release` for the checkpoint layouts of docs/audiostory.md §4).

Imports torch inside functions only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
from storysdk.errors import ConfigError

from . import constants as C
from .presets import TINY, build_bridge, build_dit, build_llm, build_t5, build_vae

if TYPE_CHECKING:
    from .bridge import BridgeHeads
    from .grammar import SpecialIds
    from .runtime import AudioRuntime

__all__ = ["BridgeRuntime", "PlannerRuntime", "load_audio_runtime", "load_bridge_runtime", "load_planner_runtime"]


@attrs.define(eq=False)
class PlannerRuntime:
    """The planner's tokenizer, LLM, resolved special ids and query counts."""

    tokenizer: Any
    llm: Any
    special: SpecialIds
    max_clip_seconds: float


@attrs.define(eq=False)
class BridgeRuntime:
    """Projection heads + fuser and the scale of the inference path (§1.5, §9)."""

    heads: BridgeHeads
    scale: float
    device: Any
    dtype: Any


def _device_dtype(device: str | None, dtype: str | None) -> tuple[Any, Any]:
    from storysdk.runtime import require_torch, resolve_device, resolve_dtype

    require_torch("the AudioStory plugin")
    dev = resolve_device(device)
    return dev, resolve_dtype(dtype, dev)


def _preset(preset: str | None, checkpoint: str | None, component: str) -> str:
    from storysdk.runtime import resolve_preset

    key = resolve_preset(preset, checkpoint)
    if key == "full" and not checkpoint:
        raise ConfigError(
            f"{component}: the released weights need checkpoint=<local folder> (see the plugin README), "
            "or use preset='tiny' for toy weights"
        )
    return key


def tiny_clip_seconds() -> float:
    from .presets import vae_clip_seconds

    return vae_clip_seconds(TINY["vae"], TINY["dit"]["audio_seq_len"])


def load_planner_runtime(
    *, preset: str | None, checkpoint: str | None, base_llm: str | None, device: str | None,
    dtype: str | None, seed: int, component: str = "audiostory",
) -> PlannerRuntime:
    """Tokenizer + LLM (+ LoRA merged) for the planner."""
    from .grammar import SpecialIds

    dev, dt = _device_dtype(device, dtype)
    if _preset(preset, checkpoint, f"planner {component!r}") == "tiny":
        from .qwen_tokenizer import tiny_qwen_tokenizer

        tok = tiny_qwen_tokenizer()
        llm = build_llm(TINY["llm"], len(tok), seed, pad_token_id=tok.pad_token_id).to(dev, dt)
        special = SpecialIds.from_tokenizer(tok, TINY["num_t5"], TINY["num_aud"])
        return PlannerRuntime(tok, llm, special, tiny_clip_seconds())
    from .release import load_release_planner

    return load_release_planner(checkpoint, base_llm=base_llm, device=dev, dtype=dt)


def load_bridge_runtime(
    *, preset: str | None, checkpoint: str | None, device: str | None, dtype: str | None, seed: int,
    component: str = "audiostory-bridge",
) -> BridgeRuntime:
    """Projection heads + fuser for the bridge tokenizer."""
    dev, dt = _device_dtype(device, dtype)
    if _preset(preset, checkpoint, f"tokenizer {component!r}") == "tiny":
        heads = build_bridge(TINY["llm"]["hidden_size"], TINY["bridge_dim"], TINY["fuser_heads"], seed).to(dev, dt)
        return BridgeRuntime(heads, C.T5_FEATURE_SCALE, dev, dt)
    from .release import load_release_bridge

    return load_release_bridge(checkpoint, device=dev, dtype=dt)


def load_audio_runtime(
    *, preset: str | None, checkpoint: str | None, vae: str | None, text_encoder: str | None,
    device: str | None, dtype: str | None, seed: int, component: str,
) -> AudioRuntime:
    """DiT + VAE + Flan-T5 for a generator."""
    import torch

    from .runtime import AudioRuntime

    dev, dt = _device_dtype(device, dtype)
    if _preset(preset, checkpoint, f"generator {component!r}") == "tiny":
        from storysdk.tiny import t5_tokenizer

        tok = t5_tokenizer(vocab_size=TINY["t5_vocab"], model_max_length=512)
        t5 = build_t5(TINY["t5"], len(tok), seed, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        return AudioRuntime(
            dit=build_dit(TINY["dit"], seed).to(dev, dt),
            vae=build_vae(TINY["vae"], seed).to(dev, torch.float32),
            t5_tokenizer=tok,
            t5=t5.to(dev, dt),
            device=dev,
            dtype=dt,
        )
    from .release import load_release_audio

    return load_release_audio(checkpoint, vae=vae, text_encoder=text_encoder, device=dev, dtype=dt)
