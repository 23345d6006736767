"""The ``comic`` composer: StoryDiffusion's comic typesetting (plugins/storysdk-storydiffusion/docs/storydiffusion.md §4) plus a
page-based layout for mixed aspect ratios.

Styles (``style`` option; upstream's exact names, misspelling included):

* ``"Classic Comic Style"`` (default): rows of 4 panels (<= 8 panels), otherwise rows of 4, 6,
  4, ... (the last row padded); each row shuffles the pattern ``[1, 1, 2]`` (4 panels) or
  ``[1, 1, 2, 2]`` (6 panels) with ``random.Random(seed)``: a ``1`` is one captioned panel, a
  ``2`` two panels stacked and shrunk by half, without captions. Rows are joined side by
  side, resized to the narrowest row's width and stacked: one page.
* ``"Four Pannel"`` (or ``"Four Panel"``): every panel captioned, 2 x 2 panels per page
  (768 px frames -> 1576 x 1576 pages).
* ``"No typesetting (default)"`` (or ``"No typesetting"``): the frames as they are, one file
  each, no border and no caption (as upstream, which skips typesetting and captions there).
* ``"Pages"`` (new): fixed-size pages (``page_size``, default A4 at 200 dpi) filled with
  justified rows: each row's panels share one height and span the page width between the
  margins; rows go top-down, and a row that does not fit starts the next page.

Every panel of the upstream styles first gets a 10 px white border. Deviations from upstream:

* The pad panel is a plain white panel of the bordered panel size (upstream pads with
  ``images/pad_images.png``, which is not part of the release we follow; in "Four Pannel"
  upstream also resized the pad to the *unbordered* size, which shrank pages with padding
  by 20 px; ours stay 2 x 2 panels).
* Frames whose size differs from the first frame are fitted, aspect kept, onto a white
  panel of the first frame's size (upstream assumes one size; use "Pages" for mixed sizes).
* An unknown style is an error here (upstream silently falls back to Classic).
* Upstream shuffles with Python's global ``random`` right after the last frame re-seeded it
  with the story seed; we use a private ``random.Random(seed)`` (same sequence, no global
  state). ``layout_seed`` defaults to the plan's seed.
* Caption font: see :mod:`storysdk.captions` (Pillow's built-in font scaled with the frame
  width unless ``font_size``/``font_path`` are given).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

import attrs
from PIL import Image, ImageOps
from pydantic import field_validator, model_validator

from ..captions import default_font_size, draw_caption
from ..errors import ConfigError
from ..interfaces import Composer
from ..model import Modality, Story
from ..options import Field, Options
from .fields import check_font_path, font_path_field, font_size_field, lower_case, pair, quality_field
from .frames import IMAGE_FORMATS, atomic_write_bytes, check_image_format, encode_image, pictures, track_field

__all__ = [
    "BORDER",
    "STYLES",
    "ComicComposer",
    "PagePanel",
    "classic_page",
    "distribute_rows",
    "four_panel_pages",
    "pack_pages",
    "resolve_style",
]

CLASSIC = "Classic Comic Style"
FOUR = "Four Pannel"  # sic, plugins/storysdk-storydiffusion/docs/storydiffusion.md §4
NONE = "No typesetting (default)"
PAGES = "Pages"
#: Accepted style names -> canonical style.
STYLES: dict[str, str] = {
    CLASSIC: CLASSIC,
    FOUR: FOUR,
    "Four Panel": FOUR,
    NONE: NONE,
    "No typesetting": NONE,
    PAGES: PAGES,
}
BORDER = 10  # plugins/storysdk-storydiffusion/docs/storydiffusion.md §4: add_white_border, 10 px
HALF = 2  # plugins/storysdk-storydiffusion/docs/storydiffusion.md §4: stacked pairs are shrunk by 1/2
DEFAULT_PAGE_SIZE = (1654, 2339)  # A4 at 200 dpi (our choice for "Pages")


def resolve_style(style: str) -> str:
    """The canonical style for ``style`` (exact upstream names, aliases, any letter case)."""
    if style in STYLES:
        return STYLES[style]
    folded = {k.casefold(): v for k, v in STYLES.items()}
    if isinstance(style, str) and style.casefold() in folded:
        return folded[style.casefold()]
    raise ConfigError(
        f"unknown comic style {style!r}; use one of: {', '.join(repr(s) for s in STYLES)}"
    )


def distribute_rows(count: int) -> list[int]:
    """Row sizes of the Classic layout for ``count`` panels (plugins/storysdk-storydiffusion/docs/storydiffusion.md §4, distribute_images2).

    Rows of 4 when there are at most 8 panels, otherwise alternately 4 and 6; a last row that
    is not full keeps its size (the rest is padding), except that fewer than 4 remaining
    panels always make a row of 4.
    """
    sizes = [4] if count <= 8 else [4, 6]
    rows: list[int] = []
    remaining = count
    while remaining > 0:
        size = sizes[len(rows) % len(sizes)]
        if remaining < min(sizes):
            size = min(sizes)
        rows.append(size)
        remaining -= size
    return rows


def _hstack(images: Sequence[Image.Image]) -> Image.Image:
    """Side by side, top-aligned, on black (upstream's combine_images_horizontally)."""
    out = Image.new("RGB", (sum(i.width for i in images), max(i.height for i in images)))
    x = 0
    for im in images:
        out.paste(im, (x, 0))
        x += im.width
    return out


def _vstack_to_narrowest(images: Sequence[Image.Image]) -> Image.Image:
    """Resize all to the narrowest width (aspect kept, LANCZOS) and stack (combine_images_vertically_with_resize)."""
    width = min(i.width for i in images)
    resized = [im.resize((width, int(width * im.height / im.width)), Image.Resampling.LANCZOS) for im in images]
    out = Image.new("RGB", (width, sum(i.height for i in resized)))
    y = 0
    for im in resized:
        out.paste(im, (0, y))
        y += im.height
    return out


def _stack_half(pair: Sequence[Image.Image]) -> Image.Image:
    """Two panels stacked vertically, then shrunk by 1/2 (concat_images_vertically_and_scale)."""
    stacked = Image.new("RGB", (pair[0].width, sum(i.height for i in pair)))
    y = 0
    for im in pair:
        stacked.paste(im, (0, y))
        y += im.height
    return stacked.resize((stacked.width // HALF, stacked.height // HALF), Image.Resampling.LANCZOS)


@attrs.frozen
class _Captioner:
    enabled: bool
    font_size: int | None
    font_path: str | None

    def __call__(self, image: Image.Image, text: str) -> Image.Image:
        return draw_caption(image, text, self.font_size, self.font_path) if self.enabled else image


def classic_page(
    panels: Sequence[Image.Image],
    captions: Sequence[str],
    pad: Image.Image,
    rng: random.Random,
    caption: _Captioner,
) -> Image.Image:
    """One Classic Comic Style page from bordered ``panels`` (plugins/storysdk-storydiffusion/docs/storydiffusion.md §4)."""
    rows: list[Image.Image] = []
    start = 0
    for size in distribute_rows(len(panels)):
        group = list(panels[start : start + size])
        texts = list(captions[start : start + size])
        group += [pad] * (size - len(group))
        texts += [""] * (size - len(texts))
        start += size
        pattern = [1, 1, 2, 2] if size == 6 else [1, 1, 2]
        rng.shuffle(pattern)
        items: list[Image.Image] = []
        i = 0
        for span in pattern:
            if span == 1:
                items.append(caption(group[i], texts[i]))
            else:  # a stacked pair: no captions (plugins/storysdk-storydiffusion/docs/storydiffusion.md §4)
                items.append(_stack_half(group[i : i + 2]))
            i += span
        rows.append(_hstack(items))
    return _vstack_to_narrowest(rows)


def four_panel_pages(
    panels: Sequence[Image.Image], captions: Sequence[str], pad: Image.Image, caption: _Captioner
) -> list[Image.Image]:
    """Four Pannel pages: captioned panels, padded to a multiple of 4, two rows of two each."""
    items = [caption(p, t) for p, t in zip(panels, captions)]
    items += [pad] * (-len(items) % 4)
    return [
        _vstack_to_narrowest([_hstack(items[i : i + 2]), _hstack(items[i + 2 : i + 4])])
        for i in range(0, len(items), 4)
    ]


@attrs.frozen
class PagePanel:
    """Where panel ``index`` goes in the Pages layout: page number and box (x, y, width, height)."""

    index: int
    page: int
    box: tuple[int, int, int, int]


def _justify(aspects: Sequence[float], height: float, width: int, gutter: int) -> tuple[list[int], int]:
    h = max(1, round(height))
    widths = [max(1, round(a * height)) for a in aspects]
    if len(widths) > 0:
        widths[-1] = max(1, width - gutter * (len(widths) - 1) - sum(widths[:-1]))
    return widths, h


def pack_pages(
    sizes: Sequence[tuple[int, int]],
    page_size: tuple[int, int],
    margin: int,
    gutter: int,
    row_height: float,
) -> list[PagePanel]:
    """Justified-row layout of panels of ``sizes`` on pages of ``page_size``.

    A row takes panels in order while their width at ``row_height`` (plus gutters) stays
    below the content width; when one more panel would reach it, the row is closed with or
    without that panel, whichever makes the justified height (the height at which the row
    spans the content width exactly) closer to ``row_height``. The last row is not stretched
    (it keeps ``row_height`` and is centred). No row is taller than the content area (a
    clamped row is centred). Rows are placed top-down, ``gutter`` apart, from the top margin;
    a row that does not fit starts a new page.
    """
    page_w, page_h = page_size
    content_w, content_h = page_w - 2 * margin, page_h - 2 * margin
    aspects = [w / h for w, h in sizes]

    def justified(k: list[int]) -> float:
        return (content_w - gutter * (len(k) - 1)) / sum(aspects[i] for i in k)

    rows: list[tuple[list[int], float, bool]] = []  # (panels, height, spans full width)
    current: list[int] = []
    for i in range(len(sizes)):
        trial = current + [i]
        natural = sum(aspects[j] for j in trial) * row_height + gutter * (len(trial) - 1)
        if natural < content_w:
            current = trial
            continue
        if current and abs(justified(current) - row_height) < abs(justified(trial) - row_height):
            rows.append((current, justified(current), True))
            current = [i]
            if aspects[i] * row_height >= content_w:  # the panel alone already spans the page
                rows.append((current, justified(current), True))
                current = []
        else:
            rows.append((trial, justified(trial), True))
            current = []
    if current:
        rows.append((current, row_height, False))

    placed: list[PagePanel] = []
    page, y = 0, margin
    for members, height, full in rows:
        height = min(height, content_h)
        asp = [aspects[j] for j in members]
        natural_w = round(sum(asp) * height + gutter * (len(members) - 1))
        clamped = full and natural_w < content_w - 1
        if full and not clamped:
            widths, h = _justify(asp, height, content_w, gutter)
        else:
            h = max(1, round(height))
            widths = [max(1, round(a * height)) for a in asp]
        if y > margin and y + h > margin + content_h:
            page, y = page + 1, margin
        row_w = sum(widths) + gutter * (len(widths) - 1)
        x = margin + (content_w - row_w) // 2
        for j, w in zip(members, widths):
            placed.append(PagePanel(j, page, (x, y, w, h)))
            x += w + gutter
        y += h + gutter
    return placed


def _fit(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    image = image.convert("RGB") if image.mode != "RGB" else image
    if image.size == size:
        return image
    fitted = ImageOps.contain(image, size, Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", size, "white")
    canvas.paste(fitted, ((size[0] - fitted.width) // 2, (size[1] - fitted.height) // 2))
    return canvas


class ComicComposer(Composer):
    """Typesets the pictures of an image track into comic pages ``comic/page-001.<ext>``, ...

    The options are declared in :class:`Options`: ``track`` (the image track; ``None``: the
    story's first image track), ``style`` (see the module docstring),
    ``layout_seed`` for the Classic layout (default: the plan's seed; formerly ``seed``),
    ``format`` png/jpeg/webp and ``quality``, ``captions`` (``None``: the style's own
    behaviour; ``False`` draws none), ``font_size``/``font_path``; for "Pages": ``page_size``
    (width, height), ``margin``, ``gutter`` and ``row_height`` (default: a third of the content
    height, less gutters; Pages captions use ``font_size`` or the default size for a frame
    ``row_height`` px wide). Scenes without a picture are skipped.
    """

    name = "comic"
    description = "comic pages (StoryDiffusion typesetting styles, or fixed-size pages)"
    requires: ClassVar[tuple[Modality, ...]] = ("image",)
    track_options: ClassVar[dict[str, Modality]] = {"track": "image"}

    class Options(Options):
        track: str | None = track_field()
        style: str = Field(
            CLASSIC,
            description="typesetting style, in any letter case: 'Classic Comic Style', 'Four Pannel' "
            "(upstream's spelling) or 'Four Panel', 'No typesetting (default)' or 'No typesetting', or 'Pages'",
        )
        layout_seed: int | None = Field(
            None, description="seed of the Classic layout's shuffled rows; None: the story's seed, plan.seed"
        )
        format: Literal["png", "jpeg", "jpg", "webp"] = Field(
            "png", description="page file format: png, jpeg, jpg or webp, in any letter case"
        )
        quality: int = quality_field(95)
        captions: bool | None = Field(
            None, description="draw the captions: None keeps the style's own behaviour, false draws none, true always"
        )
        font_size: int | None = font_size_field()
        font_path: str | None = font_path_field()
        page_size: tuple[int, int] = Field(
            DEFAULT_PAGE_SIZE,
            description="'Pages' style: [width, height] of a page in pixels; default A4 at 200 dpi",
            json_schema_extra={"constraint": "two whole numbers >= 1"},
        )
        margin: int = Field(60, ge=0, description="'Pages' style: margin around the panels, pixels")
        gutter: int = Field(20, ge=0, description="'Pages' style: gap between panels and rows, pixels")
        row_height: int | None = Field(
            None, ge=1, description="'Pages' style: target row height in pixels; None: a third of the content height"
        )

        renamed: ClassVar[dict[str, str]] = {"seed": "layout_seed"}

        _lower = lower_case("format")
        _pair = pair("page_size")
        _font = check_font_path()

        @field_validator("style")
        @classmethod
        def _style(cls, value: str) -> str:
            return resolve_style(value)  # its ConfigError names the styles

        @field_validator("page_size")
        @classmethod
        def _page(cls, value: tuple[int, int]) -> tuple[int, int]:
            if min(value) < 1:
                raise ValueError(f"page_size must be two whole numbers >= 1 (width, height in pixels), got {list(value)}")
            return value

        @model_validator(mode="after")
        def _room(self) -> ComicComposer.Options:
            w, h = self.page_size
            if w - 2 * self.margin < 16 or h - 2 * self.margin < 16:
                raise ValueError(
                    f"page_size {list(self.page_size)} leaves no room inside margins of {self.margin} px; "
                    "use a larger page or a smaller margin"
                )
            return self

    options: Options

    def compose(self, story: Story, out_dir: Path) -> list[Path]:
        track = story.image_track(self.options.track)
        shown = pictures(story, track) if track is not None else []
        if not shown:
            return []
        images = [p.asset.image for p in shown]
        texts = [p.caption for p in shown]
        opts = self.options
        fmt = check_image_format(opts.format)
        if opts.style == PAGES:
            pages = self._pages(images, texts)
        elif opts.style == NONE:
            captioner = _Captioner(bool(opts.captions), opts.font_size, opts.font_path)
            pages = [captioner(im.convert("RGB"), t) for im, t in zip(images, texts)]
        else:
            size = images[0].size
            panels = [ImageOps.expand(_fit(im, size), border=BORDER, fill="white") for im in images]
            pad = Image.new("RGB", panels[0].size, "white")
            font_size = opts.font_size or default_font_size(size[0])
            captioner = _Captioner(opts.captions is not False, font_size, opts.font_path)
            if opts.style == FOUR:
                pages = four_panel_pages(panels, texts, pad, captioner)
            else:
                seed = story.plan.seed if opts.layout_seed is None else opts.layout_seed
                pages = [classic_page(panels, texts, pad, random.Random(seed), captioner)]
        folder = Path(out_dir) / "comic"
        ext = IMAGE_FORMATS[fmt][1]
        return [
            atomic_write_bytes(folder / f"page-{n:03d}.{ext}", encode_image(page, fmt, opts.quality))
            for n, page in enumerate(pages, start=1)
        ]

    def _pages(self, images: Sequence[Image.Image], texts: Sequence[str]) -> list[Image.Image]:
        opts = self.options
        _, h = opts.page_size
        content_h = h - 2 * opts.margin
        row_height = opts.row_height or max(16, (content_h - 2 * opts.gutter) / 3)
        layout = pack_pages([im.size for im in images], opts.page_size, opts.margin, opts.gutter, row_height)
        font_size = opts.font_size or default_font_size(round(row_height))
        captioner = _Captioner(opts.captions is not False, font_size, opts.font_path)
        pages = [Image.new("RGB", opts.page_size, "white") for _ in range(layout[-1].page + 1)]
        for p in layout:
            x, y, pw, ph = p.box
            panel = images[p.index].convert("RGB").resize((pw, ph), Image.Resampling.LANCZOS)
            pages[p.page].paste(captioner(panel, texts[p.index]), (x, y))
        return pages
