"""Installing Consistent Self-Attention on a UNet, and refusing UNets it cannot patch.

Only the ``attn1`` (self-attention) layers of the up blocks get a
:class:`~.attention.ConsistentSelfAttnProcessor`; every other layer gets diffusers' plain
``AttnProcessor2_0`` (docs/storydiffusion.md §1.2). The up-block self-attention must sit at 1/32
and/or 1/16 of the pixel size, as in SDXL (``up_blocks.0`` and ``up_blocks.1``): that is how
upstream picks ``sa32`` or ``sa64`` (by token count), so other geometries (SD 1.5's 1/8 layers,
for example) are refused with a clear error instead of silently mis-sampled.
"""

from __future__ import annotations

import re
from typing import Any

from storysdk.errors import ComponentError

from .attention import ConsistentSelfAttnProcessor
from .state import ConsistencyState

__all__ = ["CSAHandle", "csa_layer_names", "install_csa", "up_block_scales"]

_UP_SELF_ATTN = re.compile(r"^up_blocks\.(\d+)\..*\.attn1\.processor$")
SDXL_SCALES = (32, 16)  # docs/storydiffusion.md §1.2: up_blocks.0 at 1/32, up_blocks.1 at 1/16


def csa_layer_names(unet: Any) -> list[str]:
    """Processor names of the up-block self-attention layers (the ones CSA patches, §1.2)."""
    procs = getattr(unet, "attn_processors", None)
    if not isinstance(procs, dict):
        raise ComponentError(
            f"{type(unet).__name__} has no diffusers attention processors; consistent self-attention "
            "needs a diffusers UNet2DConditionModel (an SDXL-architecture checkpoint)"
        )
    return [name for name in procs if _UP_SELF_ATTN.match(name)]


def up_block_scales(unet: Any, vae_scale_factor: int = 8) -> dict[int, int]:
    """``{up block index: pixel downsampling}`` for the up blocks that have self-attention."""
    levels = len(unet.config.block_out_channels)
    out: dict[int, int] = {}
    for name in csa_layer_names(unet):
        block = int(_UP_SELF_ATTN.match(name).group(1))  # type: ignore[union-attr]
        out[block] = vae_scale_factor * 2 ** (levels - 1 - block)
    return out


def check_unet(unet: Any, vae_scale_factor: int = 8) -> list[str]:
    """The names of the layers to patch; :class:`ComponentError` when the UNet is not SDXL-shaped."""
    names = csa_layer_names(unet)
    if not names:
        raise ComponentError(
            f"{type(unet).__name__} has no self-attention (attn1) layers in its up blocks, so consistent "
            "self-attention has nothing to patch; use an SDXL-architecture UNet"
        )
    scales = up_block_scales(unet, vae_scale_factor)
    bad = {b: s for b, s in scales.items() if s not in SDXL_SCALES}
    if bad:
        where = ", ".join(f"up_blocks.{b} at 1/{s}" for b, s in sorted(bad.items()))
        raise ComponentError(
            f"this UNet has up-block self-attention at {where} of the pixel size; StoryDiffusion's "
            "consistent self-attention only handles SDXL's geometry (1/32 and 1/16, docs/storydiffusion.md "
            "§1.2), so SD 1.5-style UNets are not supported; use an SDXL-architecture checkpoint"
        )
    return names


class CSAHandle:
    """The installed processors; :meth:`remove` (or leaving the ``with`` block) restores the UNet."""

    def __init__(self, unet: Any, state: ConsistencyState, layers: list[str], saved: dict[str, Any], hook: Any) -> None:
        self.unet = unet
        self.state = state
        self.layers = layers
        self._saved = saved
        self._hook = hook

    @property
    def processors(self) -> dict[str, ConsistentSelfAttnProcessor]:
        procs = self.unet.attn_processors
        return {name: procs[name] for name in self.layers}

    def remove(self) -> None:
        """Put the original processors back and drop the UNet hook."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
            self.unet.set_attn_processor(self._saved)

    def __enter__(self) -> CSAHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def install_csa(unet: Any, state: ConsistencyState, *, vae_scale_factor: int = 8) -> CSAHandle:
    """Patch ``unet`` for ``state``: CSA on up-block ``attn1``, ``AttnProcessor2_0`` elsewhere.

    Also registers a forward pre-hook that passes the UNet batch size to
    :meth:`ConsistencyState.on_unet_call`, which refuses batches without CFG and schedulers that
    call the UNet more than once per step (§1.3).
    """
    from diffusers.models.attention_processor import AttnProcessor2_0

    layers = check_unet(unet, vae_scale_factor)
    saved = dict(unet.attn_processors)
    chosen = set(layers)
    new: dict[str, Any] = {
        name: ConsistentSelfAttnProcessor(state, name) if name in chosen else AttnProcessor2_0()
        for name in saved
    }
    unet.set_attn_processor(new)

    def pre_hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        sample = args[0] if args else kwargs.get("sample")
        state.on_unet_call(int(sample.shape[0]))

    hook = unet.register_forward_pre_hook(pre_hook, with_kwargs=True)
    return CSAHandle(unet, state, layers, saved, hook)
