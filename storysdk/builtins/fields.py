"""Option declarations the built-in composers share (image format, quality, caption font, sizes).

Each helper returns a pydantic ``Field`` (or a validator) for a component's ``Options`` class,
so the same option means the same thing, with the same bounds and description, everywhere.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationInfo, field_validator

from ..captions import check_font_options
from ..options import Field

__all__ = [
    "check_font_path",
    "font_path_field",
    "font_size_field",
    "lower_case",
    "pair",
    "quality_field",
]


def quality_field(default: int, what: str = "JPEG/WebP") -> Any:
    """``quality``: a whole number from 1 to 100."""
    return Field(default, ge=1, le=100, description=f"{what} quality from 1 to 100; PNG ignores it")


def font_size_field() -> Any:
    """``font_size``: caption font size in pixels, or ``None`` for the size scaled with the picture."""
    return Field(
        None,
        ge=1,
        description="caption font size in pixels; None: 45 px per 768 px of picture width, as StoryDiffusion's "
        "captions, at least 12",
    )


def font_path_field() -> Any:
    """``font_path``: a TrueType/OpenType file, loaded once when the component is built."""
    return Field(
        None,
        description="TrueType/OpenType font file for captions, e.g. Inkfree.ttf; None: Pillow's built-in font",
    )


def _font_path(cls: type, value: str | None, info: ValidationInfo) -> str | None:
    check_font_options(info.data.get("font_size"), value)  # a ConfigError is a ValueError
    return value


def check_font_path() -> Any:
    """A validator of ``font_path`` (declared after ``font_size``): the file exists and Pillow loads it."""
    return field_validator("font_path")(classmethod(_font_path))


def _lower(cls: type, value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def lower_case(*names: str) -> Any:
    """A validator that accepts the choices of ``names`` in any letter case (``"PNG"`` is ``"png"``)."""
    return field_validator(*names, mode="before")(classmethod(_lower))


def _pair(cls: type, value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, list):  # TOML and JSON have arrays, not tuples
        value = tuple(value)
    if isinstance(value, tuple) and len(value) != 2:
        raise ValueError(f"{info.field_name} must be two whole numbers [width, height] in pixels, got {len(value)}")
    return value


def pair(*names: str) -> Any:
    """A validator that takes ``[width, height]`` as a list or a tuple of exactly two items."""
    return field_validator(*names, mode="before")(classmethod(_pair))
