"""Build or load the models each component needs: the ``tiny`` preset in code, or the released
weights from local folders (see :mod:`.release` for the checkpoint layouts of docs/audiostory.md §4).

Which weights, device and dtype come from :func:`storysdk.runtime.resolve` (the released
weights need ``checkpoint=<local folder>``). What is built is returned as the holders of
:mod:`.runtime`. Imports torch inside functions only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import constants as C
from .presets import TINY, build_bridge, build_dit, build_llm, build_t5, build_vae, vae_clip_seconds

if TYPE_CHECKING:
    from storysdk.runtime import Resolved

    from .runtime import AudioRuntime, BridgeRuntime, PlannerRuntime

__all__ = ["load_audio_runtime", "load_bridge_runtime", "load_planner_runtime", "preset_of", "tiny_clip_seconds"]


def _resolve(who: str, preset: str | None, checkpoint: str | None, device: str | None, dtype: str | None) -> Resolved:
    from storysdk.runtime import resolve

    return resolve(who, preset=preset, model=checkpoint, device=device, dtype=dtype, needs_model=True)


def preset_of(who: str, *, preset: str | None, checkpoint: str | None, device: str | None, dtype: str | None) -> str:
    """``"tiny"`` or ``"full"``, as loading will decide, with its errors (the real weights without
    ``checkpoint``, a device that is not there) but no model loaded and no ``preset='auto'``
    warning (loading gives that one)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return _resolve(who, preset, checkpoint, device, dtype).preset


def tiny_clip_seconds() -> float:
    """Seconds the tiny DiT window decodes to (30.0: 240 latent frames, hop 32 at 256 Hz)."""
    return vae_clip_seconds(TINY["vae"], TINY["dit"]["audio_seq_len"])


def load_planner_runtime(
    *, preset: str | None, checkpoint: str | None, base_llm: str | None, device: str | None,
    dtype: str | None, weights_seed: int = 0, component: str = "planner 'audiostory'",
) -> PlannerRuntime:
    """Tokenizer + LLM (+ LoRA merged) for the planner; ``component`` names it in errors."""
    from .grammar import SpecialIds
    from .runtime import PlannerRuntime

    r = _resolve(component, preset, checkpoint, device, dtype)
    if r.preset == "tiny":
        from .qwen_tokenizer import tiny_qwen_tokenizer

        tok = tiny_qwen_tokenizer()
        llm = build_llm(TINY["llm"], len(tok), weights_seed, pad_token_id=tok.pad_token_id).to(r.device, r.dtype)
        special = SpecialIds.from_tokenizer(tok, TINY["num_t5"], TINY["num_aud"])
        return PlannerRuntime(tok, llm, special, tiny_clip_seconds())
    from .release import load_release_planner

    assert checkpoint is not None  # resolve(needs_model=True) refused the full preset without one
    return load_release_planner(checkpoint, base_llm=base_llm, device=r.device, dtype=r.dtype)


def load_bridge_runtime(
    *, preset: str | None, checkpoint: str | None, device: str | None, dtype: str | None, weights_seed: int = 0,
    component: str = "tokenizer 'audiostory-bridge'",
) -> BridgeRuntime:
    """Projection heads + fuser for the bridge tokenizer; ``component`` names it in errors."""
    from .runtime import BridgeRuntime

    r = _resolve(component, preset, checkpoint, device, dtype)
    if r.preset == "tiny":
        heads = build_bridge(TINY["llm"]["hidden_size"], TINY["bridge_dim"], TINY["fuser_heads"], weights_seed)
        return BridgeRuntime(heads.to(r.device, r.dtype), C.T5_FEATURE_SCALE, r.device, r.dtype)
    from .release import load_release_bridge

    assert checkpoint is not None
    return load_release_bridge(checkpoint, device=r.device, dtype=r.dtype)


def load_audio_runtime(
    *, preset: str | None, checkpoint: str | None, vae: str | None, text_encoder: str | None,
    device: str | None, dtype: str | None, weights_seed: int = 0, component: str = "generator 'audiostory'",
) -> AudioRuntime:
    """DiT + VAE + Flan-T5 for a generator; ``component`` names it in errors."""
    import torch

    from .runtime import AudioRuntime

    r = _resolve(component, preset, checkpoint, device, dtype)
    if r.preset == "tiny":
        from storysdk.tiny import t5_tokenizer

        tok = t5_tokenizer(vocab_size=TINY["t5_vocab"], model_max_length=512)
        t5 = build_t5(TINY["t5"], len(tok), weights_seed, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        return AudioRuntime(
            dit=build_dit(TINY["dit"], weights_seed).to(r.device, r.dtype),
            vae=build_vae(TINY["vae"], weights_seed).to(r.device, torch.float32),
            t5_tokenizer=tok,
            t5=t5.to(r.device, r.dtype),
            device=r.device,
            dtype=r.dtype,
        )
    from .release import load_release_audio

    assert checkpoint is not None
    return load_release_audio(checkpoint, vae=vae, text_encoder=text_encoder, device=r.device, dtype=r.dtype)
