"""``template-contact-sheet``: one PNG with a thumbnail of every picture and its scene number.

A composer gets the finished :class:`storysdk.Story` (the plan, its tracks with every asset,
its timeline) and an output folder, writes its files there and returns their paths. It never
renders anything. This one shows the pictures of one image track: the one its ``track``
option names, or the story's first image track.

Layout (all sizes in pixels): cells of ``thumb`` x (``thumb`` + ``label_height``) in rows of
``columns``, separated and surrounded by ``padding``. Each picture is scaled to fit the
``thumb`` x ``thumb`` square (aspect ratio kept, centred) and its scene number ``#<index>``
is written in black, centred in the strip below it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

from PIL import Image, ImageDraw, ImageFont, ImageOps
from pydantic import field_validator

import storysdk
from storysdk.model import Modality
from storysdk.output import atomic_write

__all__ = ["ContactSheetComposer", "label_font"]


def label_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's built-in scalable font at ``size`` pixels (offline; no font file needed)."""
    return ImageFont.load_default(size=size)


class ContactSheetComposer(storysdk.Composer):
    """Writes ``contact-sheet.png`` (or ``filename``): thumbnails of an image track's pictures, in
    cue order (for a track whose cues are the scenes: scene order).

    The options are declared in :class:`Options`; ``label_size + 4`` is the height of the
    label strip under each thumbnail.
    """

    name: ClassVar[str] = "template-contact-sheet"
    description: ClassVar[str] = "a PNG contact sheet of all pictures (example plugin)"
    # The pipeline skips this composer (with a progress message) when a story has no pictures.
    requires: ClassVar[tuple[Modality, ...]] = ("image",)
    # An option naming a track, with the modality it must have: the pipeline checks its value
    # against its tracks when it is built, before anything renders.
    track_options: ClassVar[dict[str, Modality]] = {"track": "image"}

    class Options(storysdk.Options):
        columns: int = storysdk.Field(4, ge=1, description="thumbnails per row")
        thumb: int = storysdk.Field(128, ge=8, description="side in pixels of the square each picture is fitted into")
        padding: int = storysdk.Field(8, ge=0, description="gap between and around cells, pixels")
        label_size: int = storysdk.Field(14, ge=6, description="font size of the scene numbers, pixels")
        filename: str = storysdk.Field("contact-sheet.png", description="file written in the output folder, a .png")
        track: str | None = storysdk.Field(
            None, description="the image track whose pictures it shows, by name; None: the story's first image track"
        )

        # A rule the bounds cannot say: a validator; its message becomes the ConfigError's.
        @field_validator("filename")
        @classmethod
        def _plain_png(cls, value: str) -> str:
            if not value.lower().endswith(".png") or Path(value).name != value:
                raise ValueError(f"filename must be a plain file name ending in .png, got {value!r}")
            return value

    options: Options

    @property
    def label_height(self) -> int:
        return self.options.label_size + 4

    def compose(self, story: storysdk.Story, out_dir: Path) -> list[Path]:
        """Write the sheet and return ``[path]``; ``[]`` when the track has no pictures."""
        track = story.image_track(self.options.track)  # None: the story has no image track
        pictures = track.ordered() if track is not None else []  # (cue, asset) pairs in cue order
        if not pictures:
            return []
        opts = self.options
        thumb, padding = opts.thumb, opts.padding
        cols = min(opts.columns, len(pictures))
        rows = math.ceil(len(pictures) / cols)
        cell_w, cell_h = thumb, thumb + self.label_height
        size = (cols * cell_w + (cols + 1) * padding, rows * cell_h + (rows + 1) * padding)
        sheet = Image.new("RGB", size, "white")
        draw = ImageDraw.Draw(sheet)
        font = label_font(opts.label_size)
        for i, (cue, asset) in enumerate(pictures):
            x = padding + (i % cols) * (cell_w + padding)
            y = padding + (i // cols) * (cell_h + padding)
            small = ImageOps.contain(asset.image.convert("RGB"), (thumb, thumb))
            sheet.paste(small, (x + (thumb - small.width) // 2, y + (thumb - small.height) // 2))
            centre = (x + cell_w // 2, y + thumb + self.label_height // 2)
            draw.text(centre, f"#{cue.scene}", fill="black", font=font, anchor="mm")  # the scene the cue belongs to
        path = Path(out_dir) / opts.filename
        # Write to a temporary file and rename: an interrupted run never leaves half a PNG.
        with atomic_write(path) as fh:
            sheet.save(fh, format="PNG")
        return [path]
