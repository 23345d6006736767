"""The options the three components share, and what they resolve to (no models loaded).

Each component declares its options in one nested ``Options`` class (see
``storysdk plugins --options seed-story``); the shared ones live here:
:class:`SeedStoryOptions` adds the released folder, the architecture and the ViT source to
:class:`storysdk.options.DeviceOptions` (preset, device, dtype, offload, weights_seed).
:func:`setup` turns them into a :class:`Setup` (preset, device, dtype, module sizes) with
:func:`storysdk.runtime.resolve`; it imports torch but loads nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import attrs
from pydantic import field_validator
from storysdk.errors import CheckpointError
from storysdk.options import DeviceOptions, Field

from .configs import Sizes, sizes_for

if TYPE_CHECKING:
    import torch

    from .vit import VisionTransformer

__all__ = ["ResidentOptions", "SeedStoryOptions", "Setup", "build_vit", "setup", "vit_source"]


class SeedStoryOptions(DeviceOptions):
    """Options of every SEED-Story component (docs/seed-story.md §1.6 names the folder's layout)."""

    pretrained: str | Path = Field(
        "pretrained",
        description="the released folder (docs/seed-story.md §1.6: Llama-2-7b-hf/, seed_story/, detokenizer/, ...); "
        "unused by the tiny preset",
    )
    architecture: Literal["released", "tiny"] | None = Field(
        None,
        description="module sizes: 'released' (Llama-2-7B, ViT-G, §1.1-§1.5) or 'tiny' (toy widths, the same "
        "token geometry); unset: 'tiny' for the tiny preset, else 'released'",
    )
    vit: str | Path | None = Field(
        None,
        description="ViT weights: qwen_vit_G.pt or a Qwen-VL-Chat folder (§1.1); unset: visual_tokenizer/qwen_vit_G.pt, "
        "QwenViT/qwen_vit_G.pt or Qwen-VL-Chat/ under pretrained",
    )


class ResidentOptions(SeedStoryOptions):
    """Options of the components whose models stay on their device (the MLLM, the ViT)."""

    offload: Literal["model", "sequential"] | None = Field(
        None, description="not taken here (the MLLM and the ViT stay on their device): set it on seed-story-detokenizer"
    )

    @field_validator("offload")
    @classmethod
    def _no_offload(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError(
                "CPU offload applies to the de-tokenizer's SDXL only (docs/seed-story.md §7); the MLLM and the ViT "
                "stay on their device: drop offload here and set it on seed-story-detokenizer"
            )
        return value


@attrs.frozen
class Setup:
    """What a component's options resolve to: preset (``tiny``/``full``), device, dtype, sizes."""

    preset: str
    device: torch.device
    dtype: torch.dtype
    sizes: Sizes
    weights_seed: int
    pretrained: Path

    @property
    def tiny(self) -> bool:
        return self.preset == "tiny"


def setup(who: str, options: SeedStoryOptions) -> Setup:
    """Resolve ``options`` (:func:`storysdk.runtime.resolve`; ``preset='auto'`` looks for ``pretrained``)."""
    from storysdk.runtime import resolve

    r = resolve(who, preset=options.preset, model=str(options.pretrained), device=options.device,
                dtype=options.dtype)
    arch = options.architecture or ("tiny" if r.preset == "tiny" else "released")
    return Setup(r.preset, r.device, r.dtype, sizes_for(arch), options.weights_seed,
                 Path(options.pretrained).expanduser())


def build_vit(s: Setup, source: str | Path | None) -> VisionTransformer:
    """The ViT of this setup: tiny seeded weights, or the released file or folder (§1.1, §1.6). On the CPU."""
    from .loading import load_vit, tiny_vit

    if s.tiny:
        return tiny_vit(s.sizes, s.weights_seed)
    return load_vit(vit_source(s.pretrained, source), s.sizes.vit)


def vit_source(pretrained: str | Path, source: str | Path | None) -> Path:
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

