"""``template-contact-sheet``: one PNG with a thumbnail of every picture and its scene number.

A composer gets the finished :class:`storysdk.Story` (the plan plus every asset) and an
output folder, writes its files there and returns their paths. It never renders anything.

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

import storysdk
from storysdk.model import Modality
from storysdk.output import atomic_write

__all__ = ["ContactSheetComposer", "label_font"]


def label_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's built-in scalable font at ``size`` pixels (offline; no font file needed)."""
    return ImageFont.load_default(size=size)


class ContactSheetComposer(storysdk.Composer):
    """Writes ``contact-sheet.png`` (or ``filename``): thumbnails of all pictures, in scene order.

    Options:
        columns: thumbnails per row (at least 1).
        thumb: side of the square each picture is fitted into.
        padding: gap between and around cells.
        label_size: font size of the scene numbers; the label strip is ``label_size + 4`` high.
        filename: name of the file written in the output folder.
    """

    name: ClassVar[str] = "template-contact-sheet"
    description: ClassVar[str] = "a PNG contact sheet of all pictures (example plugin)"
    # The pipeline skips this composer (with a progress message) when a story has no pictures.
    requires: ClassVar[tuple[Modality, ...]] = ("image",)

    def __init__(
        self,
        columns: int = 4,
        thumb: int = 128,
        padding: int = 8,
        label_size: int = 14,
        filename: str = "contact-sheet.png",
    ) -> None:
        for label, value, low in (("columns", columns, 1), ("thumb", thumb, 8), ("padding", padding, 0),
                                  ("label_size", label_size, 6)):
            if not isinstance(value, int) or value < low:
                raise storysdk.ConfigError(
                    f"template-contact-sheet: {label} must be a whole number >= {low}, got {value!r}"
                )
        if not filename.lower().endswith(".png") or Path(filename).name != filename:
            raise storysdk.ConfigError(
                f"template-contact-sheet: filename must be a plain file name ending in .png, got {filename!r}"
            )
        self.columns = columns
        self.thumb = thumb
        self.padding = padding
        self.label_size = label_size
        self.filename = filename

    @property
    def label_height(self) -> int:
        return self.label_size + 4

    def compose(self, story: storysdk.Story, out_dir: Path) -> list[Path]:
        """Write the sheet and return ``[path]``; ``[]`` when the story has no pictures."""
        pictures = story.ordered_images()  # (scene, asset) pairs in scene order
        if not pictures:
            return []
        cols = min(self.columns, len(pictures))
        rows = math.ceil(len(pictures) / cols)
        cell_w, cell_h = self.thumb, self.thumb + self.label_height
        size = (cols * cell_w + (cols + 1) * self.padding, rows * cell_h + (rows + 1) * self.padding)
        sheet = Image.new("RGB", size, "white")
        draw = ImageDraw.Draw(sheet)
        font = label_font(self.label_size)
        for i, (scene, asset) in enumerate(pictures):
            x = self.padding + (i % cols) * (cell_w + self.padding)
            y = self.padding + (i // cols) * (cell_h + self.padding)
            small = ImageOps.contain(asset.image.convert("RGB"), (self.thumb, self.thumb))
            sheet.paste(small, (x + (self.thumb - small.width) // 2, y + (self.thumb - small.height) // 2))
            centre = (x + cell_w // 2, y + self.thumb + self.label_height // 2)
            draw.text(centre, f"#{scene.index}", fill="black", font=font, anchor="mm")
        path = Path(out_dir) / self.filename
        # Write to a temporary file and rename: an interrupted run never leaves half a PNG.
        with atomic_write(path) as fh:
            sheet.save(fh, format="PNG")
        return [path]
