"""The ``frames`` composer: one image file per picture of an image track, plus the helpers the
other built-in composers share (fixed encoder settings, atomic writes, a track's pictures in
story order).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, ClassVar, Literal

import attrs

from PIL import Image

from ..captions import draw_caption
from ..errors import ConfigError
from ..interfaces import Composer
from ..model import Cue, ImageAsset, Modality, Story, Track
from ..options import Field, Options
from ..output import atomic_write
from .fields import check_font_path, font_path_field, font_size_field, lower_case, quality_field

__all__ = [
    "IMAGE_FORMATS",
    "FramesComposer",
    "Picture",
    "atomic_write_bytes",
    "check_image_format",
    "check_quality",
    "encode_image",
    "pictures",
]

#: Accepted image format names -> (Pillow format, file extension, MIME type).
IMAGE_FORMATS: dict[str, tuple[str, str, str]] = {
    "png": ("PNG", "png", "image/png"),
    "jpeg": ("JPEG", "jpg", "image/jpeg"),
    "jpg": ("JPEG", "jpg", "image/jpeg"),
    "webp": ("WEBP", "webp", "image/webp"),
}


def check_image_format(fmt: str, allowed: tuple[str, ...] = ("png", "jpeg", "jpg", "webp")) -> str:
    """Normalise an image format name (``"jpg"`` -> ``"jpeg"``) or raise a :class:`ConfigError`."""
    key = str(fmt).lower()
    if key not in allowed:
        names = ", ".join(a for a in allowed if a != "jpg")
        raise ConfigError(f"unknown image format {fmt!r}; use one of: {names}")
    return "jpeg" if key == "jpg" else key


def check_quality(quality: int) -> int:
    """Validate a JPEG/WebP quality: a whole number from 1 to 100."""
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ConfigError(f"quality must be a whole number from 1 to 100, got {quality!r}")
    return quality


def encode_image(image: Image.Image, fmt: str = "png", quality: int = 95) -> bytes:
    """Encode ``image`` (as RGB) with fixed settings, so identical pixels give identical bytes.

    PNG: zlib level 6, no metadata chunks. JPEG: ``quality``, 4:2:0 subsampling, baseline,
    no EXIF. WebP: lossy at ``quality``, method 4, no metadata.
    """
    fmt = check_image_format(fmt)
    quality = check_quality(quality)
    rgb = image.convert("RGB") if image.mode != "RGB" else image
    buf = io.BytesIO()
    if fmt == "png":
        rgb.save(buf, format="PNG", optimize=False, compress_level=6)
    elif fmt == "jpeg":
        rgb.save(buf, format="JPEG", quality=quality, subsampling=2, optimize=False, progressive=False)
    else:
        rgb.save(buf, format="WEBP", quality=quality, method=4, lossless=False, exact=False)
    return buf.getvalue()


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    return path


@attrs.frozen(eq=False)
class Picture:
    """One picture of an image track: its ``cue``, ``asset``, the ``caption`` it is shown with
    (its scene's; a track planner's cue: the cue's own) and ``stem``, the file name it is saved
    under without extension (``scene-NNN``; a track planner's cue: ``cue-NNN``)."""

    cue: Cue
    asset: ImageAsset
    caption: str
    stem: str


def pictures(story: Story, track: Track, scene: int | None = None) -> list[Picture]:
    """The pictures of ``track`` in story order (plan scene order, then each scene's cues by start),
    or only those of scene ``scene``."""
    scenes = story.plan.scenes if scene is None else [s for s in story.plan.scenes if s.index == scene]
    out: list[Picture] = []
    for s in scenes:
        for cue, asset in track.of_scene(s.index):
            if not isinstance(asset, ImageAsset):
                continue
            if track.planner:
                out.append(Picture(cue, asset, cue.caption, f"cue-{cue.index:03d}"))
            else:
                out.append(Picture(cue, asset, s.caption, f"scene-{s.index:03d}"))
    return out


def track_field() -> Any:
    """The ``track`` option of a composer that shows one image track."""
    return Field(None, description="the image track whose pictures it uses, by name; None: the story's first image track")


class FramesComposer(Composer):
    """Writes each picture of an image track to ``frames/scene-NNN.<ext>`` (NNN = scene index), in
    scene order; a track planner's pictures go to ``frames/cue-NNN.<ext>`` (NNN = cue index).

    ``track`` names the image track (``None``: the story's first image track). With
    ``captions`` each scene's caption is drawn StoryDiffusion style (see
    :mod:`storysdk.captions`), with ``font_size`` and ``font_path`` passed on to
    :func:`~storysdk.captions.draw_caption`. The options are declared in :class:`Options`.
    """

    name = "frames"
    description = "one image file per picture of an image track"
    requires: ClassVar[tuple[Modality, ...]] = ("image",)
    track_options: ClassVar[dict[str, Modality]] = {"track": "image"}

    class Options(Options):
        track: str | None = track_field()
        format: Literal["png", "jpeg", "jpg", "webp"] = Field(
            "png", description="image file format: png, jpeg, jpg or webp, in any letter case"
        )
        quality: int = quality_field(95)
        captions: bool = Field(False, description="draw each scene's caption on its picture, StoryDiffusion style")
        font_size: int | None = font_size_field()
        font_path: str | None = font_path_field()

        _format = lower_case("format")
        _font = check_font_path()

    options: Options

    def compose(self, story: Story, out_dir: Path) -> list[Path]:
        opts = self.options
        fmt = check_image_format(opts.format)
        folder = Path(out_dir) / "frames"
        ext = IMAGE_FORMATS[fmt][1]
        track = story.image_track(opts.track)
        if track is None:
            return []
        paths: list[Path] = []
        for picture in pictures(story, track):
            image = picture.asset.image
            if opts.captions:
                image = draw_caption(image, picture.caption, opts.font_size, opts.font_path)
            path = folder / f"{picture.stem}.{ext}"
            paths.append(atomic_write_bytes(path, encode_image(image, fmt, opts.quality)))
        return paths
