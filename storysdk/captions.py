"""Caption drawing as StoryDiffusion's comic typesetting does it (plugins/storysdk-storydiffusion/docs/storydiffusion.md §4).

Words are wrapped greedily to the image width (measured with ``textbbox``), lines are laid
out from the bottom up and centred, a white rectangle with alpha 200/255 and 5 px padding
is composited behind them, and the text is drawn in black.

Deviations from upstream, each with a way back to the faithful behaviour:

* Font: upstream uses ``fonts/Inkfree.ttf`` at size 45, which we do not ship. The default
  is Pillow's built-in scalable font (``ImageFont.load_default(size=...)``); pass
  ``font_path`` for any TrueType font (Inkfree.ttf included).
* Size: ``font_size=None`` means ``round(45 * width / 768)`` but at least
  :data:`MIN_FONT_SIZE`, so captions on small frames stay readable and 768-px frames get
  upstream's 45; pass ``font_size=45`` for the fixed upstream size.
* Line gap: upstream places each line (its height + 20) px above the line below (the bottom
  line 20 px above the bottom edge), tuned for its 45 px font. We scale the 20 px with the
  font, ``round(20 * font_size / 45)`` (see :func:`line_gap`), so small captions are not
  spread apart; at font size 45 (768-px frames by default) it is exactly upstream's 20.
* A first word wider than the image does not produce an empty line above it (upstream's
  wrapper appends the empty current line in that case).
"""

from __future__ import annotations

from pathlib import Path

import attrs
from PIL import Image, ImageDraw, ImageFont

from .errors import ConfigError

__all__ = [
    "CAPTION_ALPHA",
    "CAPTION_BOTTOM",
    "CAPTION_PADDING",
    "MIN_FONT_SIZE",
    "REFERENCE_FONT_SIZE",
    "REFERENCE_WIDTH",
    "CaptionLayout",
    "check_font_options",
    "default_font_size",
    "line_gap",
    "draw_caption",
    "layout_caption",
    "load_font",
    "wrap_words",
]

REFERENCE_FONT_SIZE = 45  # plugins/storysdk-storydiffusion/docs/storydiffusion.md §4: Inkfree.ttf at size 45
REFERENCE_WIDTH = 768  # plugins/storysdk-storydiffusion/docs/storydiffusion.md §4: the UI's default frame size, 768 x 768
MIN_FONT_SIZE = 12  # our floor for the scaled default size (deviation, see module docstring)
CAPTION_BOTTOM = 20  # plugins/storysdk-storydiffusion/docs/storydiffusion.md §4: each line sits (its height + 20) px above the one below
CAPTION_PADDING = 5  # plugins/storysdk-storydiffusion/docs/storydiffusion.md §4: the background rectangle's padding
CAPTION_ALPHA = 200  # plugins/storysdk-storydiffusion/docs/storydiffusion.md §4: background alpha 200/255, white


def default_font_size(width: int) -> int:
    """``round(45 * width / 768)``, at least :data:`MIN_FONT_SIZE`: upstream's 45 px at 768 px."""
    return max(MIN_FONT_SIZE, round(REFERENCE_FONT_SIZE * width / REFERENCE_WIDTH))


def line_gap(font_size: int) -> int:
    """The gap below each caption line: upstream's 20 px at its font size 45, scaled with the font."""
    return max(1, round(CAPTION_BOTTOM * font_size / REFERENCE_FONT_SIZE))


def load_font(size: int, font_path: str | Path | None = None) -> ImageFont.FreeTypeFont:
    """A scalable font of ``size`` px: the TrueType file ``font_path``, or Pillow's built-in font."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"font_size must be a whole number of pixels >= 1, got {size!r}")
    if font_path is None:
        font = ImageFont.load_default(size=size)
        if not isinstance(font, ImageFont.FreeTypeFont):  # pragma: no cover - Pillow without FreeType
            raise ConfigError(
                "this Pillow has no FreeType support, so its built-in font cannot be scaled; "
                "install a Pillow wheel with FreeType or pass font_path"
            )
        return font
    path = Path(font_path)
    if not path.is_file():
        raise ConfigError(f"font file {str(path)!r} does not exist; give the path of a .ttf/.otf file")
    try:
        # BASIC layout, as load_default uses: the same pixels whether or not libraqm is installed
        return ImageFont.truetype(str(path), size, layout_engine=ImageFont.Layout.BASIC)
    except OSError as exc:
        raise ConfigError(f"cannot load font {str(path)!r} ({exc}); give a TrueType or OpenType font") from exc


def check_font_options(font_size: int | None, font_path: str | Path | None) -> None:
    """Validate caption font options early (a component's ``__init__``), loading ``font_path`` once."""
    if font_size is not None and (isinstance(font_size, bool) or not isinstance(font_size, int) or font_size < 1):
        raise ConfigError(f"font_size must be a whole number of pixels >= 1 (or None), got {font_size!r}")
    if font_path is not None:
        load_font(font_size or REFERENCE_FONT_SIZE, font_path)


def wrap_words(
    draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont, max_width: int
) -> list[str]:
    """Greedy word wrap: add words to a line while its ``textbbox`` width is <= ``max_width``."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        left, _, right, _ = draw.textbbox((0, 0), candidate, font=font)
        if right - left <= max_width or not current:
            current = candidate
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    return lines


@attrs.frozen
class CaptionLayout:
    """Where a caption goes: ``lines`` top to bottom, each line's text origin in ``positions``,
    and the background ``rectangle`` (x0, y0, x1, y1), inclusive as ``ImageDraw.rectangle`` takes it."""

    lines: tuple[str, ...]
    positions: tuple[tuple[int, int], ...]
    rectangle: tuple[int, int, int, int]


def layout_caption(
    image_size: tuple[int, int], text: str, font: ImageFont.FreeTypeFont
) -> CaptionLayout | None:
    """The geometry of StoryDiffusion's ``add_caption`` (bottom-mid) for ``text``; ``None`` if empty.

    Bottom line first: its origin is ``((W - w) // 2, H - (h + g))`` with ``(w, h)`` the size
    of its ``textbbox`` and ``g`` = :func:`line_gap` (20 at font size 45); each line above sits
    ``(its h + g)`` px above the line below. The
    rectangle spans the widest line, centred, padded by 5 px, from the top line's origin to
    the bottom line's origin plus the *top* line's height (upstream reuses the last height it
    measured; identical for one-line captions). Like upstream, the rectangle ignores the
    ``textbbox``'s top offset, so with large fonts the glyphs' lowest pixels can reach a few
    px below it.
    """
    width, height = image_size
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = wrap_words(measure, text, font, width)
    if not lines:
        return None
    positions: list[tuple[int, int]] = []
    widest = 0
    text_height = 0
    gap = line_gap(int(font.size))
    y = height
    for line in reversed(lines):  # bottom line first
        left, top, right, bottom = measure.textbbox((0, 0), line, font=font)
        text_width, text_height = right - left, bottom - top
        y = y - (text_height + gap)
        positions.append(((width - text_width) // 2, y))
        widest = max(widest, text_width)
    x0 = (width - widest) // 2
    rect = (
        x0 - CAPTION_PADDING,
        positions[-1][1] - CAPTION_PADDING,
        x0 + widest + CAPTION_PADDING,
        positions[0][1] + text_height + CAPTION_PADDING,
    )
    return CaptionLayout(tuple(lines), tuple(reversed(positions)), rect)


def draw_caption(
    image: Image.Image,
    text: str,
    font_size: int | None = None,
    font_path: str | Path | None = None,
) -> Image.Image:
    """A new RGB image: ``image`` with ``text`` captioned at the bottom, StoryDiffusion style.

    ``font_size=None`` scales with the image width (see :func:`default_font_size`);
    ``font_path`` selects a TrueType font instead of Pillow's built-in one. Empty or
    whitespace-only text returns an unchanged RGB copy.
    """
    base = image.convert("RGB") if image.mode != "RGB" else image.copy()
    if not text or not text.strip():
        return base
    font = load_font(default_font_size(base.width) if font_size is None else font_size, font_path)
    layout = layout_caption(base.size, text, font)
    if layout is None:  # pragma: no cover - guarded by the strip() test above
        return base
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    ImageDraw.Draw(overlay).rectangle(layout.rectangle, fill=(255, 255, 255, CAPTION_ALPHA))
    out = Image.alpha_composite(base.convert("RGBA"), overlay)
    draw = ImageDraw.Draw(out)
    for line, pos in zip(layout.lines, layout.positions):
        draw.text(pos, line, fill="black", font=font)
    return out.convert("RGB")
