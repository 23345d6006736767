"""The 448-pixel inference transform of docs/seed-story.md §1.1, in PIL and numpy (no torchvision).

``Resize((448, 448))`` with the default bilinear filter (PIL's, as torchvision uses for PIL
images), no aspect-ratio preservation, then ``/255`` and CLIP mean/std.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from storysdk.errors import ConfigError

from .constants import CLIP_MEAN, CLIP_STD, IMAGE_SIZE

if TYPE_CHECKING:
    import torch

__all__ = ["MIN_SIDE", "check_image", "preprocess"]

MIN_SIDE = 14  # one ViT patch (§1.1 patch_size)


def check_image(image: object, what: str = "image") -> Image.Image:
    """Return ``image`` if it is an RGB PIL image of at least one patch per side, else raise ConfigError."""
    if not isinstance(image, Image.Image):
        raise ConfigError(f"{what} must be a PIL image, got {type(image).__name__}; open it with PIL.Image.open")
    if image.mode != "RGB":
        raise ConfigError(
            f"{what} has mode {image.mode!r}; the SEED-Story ViT reads RGB images: pass image.convert('RGB')"
        )
    w, h = image.size
    if w < MIN_SIDE or h < MIN_SIDE:
        raise ConfigError(
            f"{what} is {w}x{h} pixels; it must be at least {MIN_SIDE}x{MIN_SIDE} (it is resized to "
            f"{IMAGE_SIZE}x{IMAGE_SIZE}); give a larger picture"
        )
    return image


def preprocess(images: list[Image.Image], size: int = IMAGE_SIZE) -> torch.Tensor:
    """(B, 3, size, size) float32 normalised pixels for the ViT (§1.1 ``qwen_448_transform``)."""
    import torch

    mean = np.asarray(CLIP_MEAN, dtype=np.float32)[:, None, None]
    std = np.asarray(CLIP_STD, dtype=np.float32)[:, None, None]
    out = []
    for i, image in enumerate(images):
        check_image(image, f"image {i}")
        arr = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
        out.append((arr.transpose(2, 0, 1) - mean) / std)
    return torch.from_numpy(np.stack(out))
