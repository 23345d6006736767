"""Option handling shared by the three components (preset, architecture, device, paths)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from storysdk.errors import CheckpointError, ConfigError

from .configs import Sizes, sizes_for

if TYPE_CHECKING:
    import torch

    from .vit import VisionTransformer

__all__ = ["ModelOptions", "vit_source"]


class ModelOptions:
    """Resolved ``preset``/``architecture``/``device``/``dtype`` of one component (no models loaded)."""

    def __init__(self, preset: str | None, pretrained: str, architecture: str | None, device: str | None,
                 dtype: str | None, seed: int) -> None:
        from storysdk.runtime import require_torch, resolve_preset

        require_torch("SEED-Story")
        self.preset = resolve_preset(preset, pretrained)
        self.pretrained = str(pretrained)
        arch = architecture or ("tiny" if self.preset == "tiny" else "released")
        self.sizes: Sizes = sizes_for(arch)
        self._device, self._dtype = device, dtype
        if not isinstance(seed, int):
            raise ConfigError(f"seed must be a whole number, got {seed!r}")
        self.seed = seed

    @property
    def tiny(self) -> bool:
        return self.preset == "tiny"

    def device(self) -> torch.device:
        from storysdk.runtime import resolve_device

        return resolve_device(self._device)

    def dtype(self) -> torch.dtype:
        from storysdk.runtime import resolve_dtype

        return resolve_dtype(self._dtype, self.device())

    def vit(self, source: str | None) -> VisionTransformer:
        """The ViT of this preset: tiny seeded weights, or the released file/folder (§1.1, §1.6)."""
        from .loading import load_vit, tiny_vit

        if self.tiny:
            return tiny_vit(self.sizes, self.seed)
        return load_vit(vit_source(self.pretrained, source), self.sizes.vit)


def vit_source(pretrained: str, source: str | None) -> Path:
    """``source`` if given; else ``visual_tokenizer/qwen_vit_G.pt``, the extraction script's
    ``QwenViT/qwen_vit_G.pt`` (its path bug, §1.1), or the ``Qwen-VL-Chat`` folder."""
    if source:
        return Path(source).expanduser()
    root = Path(pretrained).expanduser()
    for candidate in (root / "visual_tokenizer/qwen_vit_G.pt", root / "QwenViT/qwen_vit_G.pt", root / "Qwen-VL-Chat"):
        if candidate.exists():
            return candidate
    raise CheckpointError(
        f"no ViT under {str(root)!r}: put qwen_vit_G.pt in visual_tokenizer/ or the Qwen-VL-Chat folder there "
        "(§1.6), or pass vit='path'"
    )


