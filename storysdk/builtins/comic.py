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
  state). ``seed`` defaults to the plan's seed.
* Caption font: see :mod:`storysdk.captions` (Pillow's built-in font scaled with the frame
  width unless ``font_size``/``font_path`` are given).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import attrs
from PIL import Image, ImageOps

from ..captions import check_font_options, default_font_size, draw_caption
from ..errors import ConfigError
from ..interfaces import Composer
from ..model import Modality, Story
from .frames import IMAGE_FORMATS, atomic_write_bytes, check_image_format, check_quality, encode_image

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


def _positive_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return value


class ComicComposer(Composer):
    """Typesets the story's pictures into comic pages ``comic/page-001.<ext>``, ...

    Options: ``style`` (see the module docstring), ``seed`` for the Classic layout (default:
    the plan's seed), ``format`` png/jpeg/webp and ``quality``, ``captions`` (``None``: the
    style's own behaviour; ``False`` draws none), ``font_size``/``font_path``; for "Pages":
    ``page_size`` (width, height), ``margin``, ``gutter`` and ``row_height`` (default: a third
    of the content height, less gutters; Pages captions use ``font_size`` or the default size
    for a frame ``row_height`` px wide). Scenes without a picture are skipped.
    """

    name = "comic"
    description = "comic pages (StoryDiffusion typesetting styles, or fixed-size pages)"
    requires: ClassVar[tuple[Modality, ...]] = ("image",)

    def __init__(
        self,
        *,
        style: str = CLASSIC,
        seed: int | None = None,
        format: str = "png",
        quality: int = 95,
        captions: bool | None = None,
        font_size: int | None = None,
        font_path: str | None = None,
        page_size: Sequence[int] = DEFAULT_PAGE_SIZE,
        margin: int = 60,
        gutter: int = 20,
        row_height: int | None = None,
    ) -> None:
        self.style = resolve_style(style)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ConfigError(f"seed must be a whole number or None, got {seed!r}")
        self.seed = seed
        self.format = check_image_format(format)
        self.quality = check_quality(quality)
        if captions is not None and not isinstance(captions, bool):
            raise ConfigError(f"captions must be true, false or None, got {captions!r}")
        self.captions = captions
        check_font_options(font_size, font_path)
        self.font_size = font_size
        self.font_path = font_path
        if (
            not isinstance(page_size, (tuple, list))
            or len(page_size) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in page_size)
        ):
            raise ConfigError(
                f"page_size must be two positive whole numbers (width, height) in pixels, got {page_size!r}"
            )
        self.page_size = (int(page_size[0]), int(page_size[1]))
        self.margin = _positive_int("margin", margin, 0)
        self.gutter = _positive_int("gutter", gutter, 0)
        if row_height is not None:
            _positive_int("row_height", row_height)
        w, h = self.page_size
        if w - 2 * self.margin < 16 or h - 2 * self.margin < 16:
            raise ConfigError(
                f"page_size {self.page_size} leaves no room inside margins of {self.margin} px; "
                "use a larger page or a smaller margin"
            )
        self.row_height = row_height

    def compose(self, story: Story, out_dir: Path) -> list[Path]:
        scenes = story.ordered_images()
        if not scenes:
            return []
        images = [a.image for _, a in scenes]
        texts = [s.caption for s, _ in scenes]
        if self.style == PAGES:
            pages = self._pages(images, texts)
        elif self.style == NONE:
            captioner = _Captioner(bool(self.captions), self.font_size, self.font_path)
            pages = [captioner(im.convert("RGB"), t) for im, t in zip(images, texts)]
        else:
            size = images[0].size
            panels = [ImageOps.expand(_fit(im, size), border=BORDER, fill="white") for im in images]
            pad = Image.new("RGB", panels[0].size, "white")
            font_size = self.font_size or default_font_size(size[0])
            captioner = _Captioner(self.captions is not False, font_size, self.font_path)
            if self.style == FOUR:
                pages = four_panel_pages(panels, texts, pad, captioner)
            else:
                seed = story.plan.seed if self.seed is None else self.seed
                pages = [classic_page(panels, texts, pad, random.Random(seed), captioner)]
        folder = Path(out_dir) / "comic"
        ext = IMAGE_FORMATS[self.format][1]
        return [
            atomic_write_bytes(folder / f"page-{n:03d}.{ext}", encode_image(page, self.format, self.quality))
            for n, page in enumerate(pages, start=1)
        ]

    def _pages(self, images: Sequence[Image.Image], texts: Sequence[str]) -> list[Image.Image]:
        w, h = self.page_size
        content_h = h - 2 * self.margin
        row_height = self.row_height or max(16, (content_h - 2 * self.gutter) / 3)
        layout = pack_pages([im.size for im in images], self.page_size, self.margin, self.gutter, row_height)
        font_size = self.font_size or default_font_size(round(row_height))
        captioner = _Captioner(self.captions is not False, font_size, self.font_path)
        pages = [Image.new("RGB", self.page_size, "white") for _ in range(layout[-1].page + 1)]
        for p in layout:
            x, y, pw, ph = p.box
            panel = images[p.index].convert("RGB").resize((pw, ph), Image.Resampling.LANCZOS)
            pages[p.page].paste(captioner(panel, texts[p.index]), (x, y))
        return pages
