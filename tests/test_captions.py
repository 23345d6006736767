"""storysdk.captions: StoryDiffusion's caption geometry, checked pixel by pixel."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from storysdk.captions import default_font_size, draw_caption, load_font, wrap_words
from storysdk.errors import ConfigError

BLUE = (20, 40, 200)


def blend(c: int, alpha: int = 200) -> int:
    """White at alpha/255 over channel value c."""
    return round((255 * alpha + c * (255 - alpha)) / 255)


def test_default_font_size_scales_from_upstream_45_at_768() -> None:
    assert default_font_size(768) == 45
    assert default_font_size(1536) == 90
    assert default_font_size(512) == 30
    assert default_font_size(64) == 12  # floor


def test_wrap_is_greedy_and_fits() -> None:
    font = ImageFont.load_default(size=20)
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text = "the quick brown fox jumps over the lazy dog again and again"
    lines = wrap_words(draw, text, font, 150)
    assert " ".join(lines) == text
    assert len(lines) > 1
    width = lambda s: draw.textbbox((0, 0), s, font=font)[2] - draw.textbbox((0, 0), s, font=font)[0]  # noqa: E731
    for i, line in enumerate(lines):
        assert width(line) <= 150
        if i + 1 < len(lines):  # greedy: the next word would not have fitted
            assert width(line + " " + lines[i + 1].split()[0]) > 150
    # a word wider than the image gets a line of its own, with no empty line before it
    assert wrap_words(draw, "supercalifragilistic x", font, 30) == ["supercalifragilistic", "x"]


@pytest.mark.parametrize(
    "w,h,size,gap",
    [
        (768, 200, 45, 20),  # plugins/storysdk-storydiffusion/docs/storydiffusion.md §4: 20 px at upstream's font size 45
        (300, 200, 24, 11),  # scaled with the font: round(20 * 24 / 45)
    ],
)
def test_single_line_geometry_and_colours(w: int, h: int, size: int, gap: int) -> None:
    image = Image.new("RGB", (w, h), BLUE)
    out = draw_caption(image, "Hello there", font_size=size)
    assert out.mode == "RGB" and out.size == (w, h)
    assert image.getpixel((0, 0)) == BLUE  # input untouched

    font = ImageFont.load_default(size=size)
    left, top, right, bottom = ImageDraw.Draw(image).textbbox((0, 0), "Hello there", font=font)
    tw, th = right - left, bottom - top
    y = h - (th + gap)
    x0 = (w - tw) // 2
    rect = (x0 - 5, y - 5, x0 + tw + 5, y + th + 5)

    a = np.asarray(out).astype(int)
    expected_bg = [blend(c) for c in BLUE]
    # padding band (left of the text) is blended white; corners of the rectangle too (inclusive)
    for px, py in [(rect[0], rect[1]), (rect[2], rect[3]), (rect[0] + 2, (rect[1] + rect[3]) // 2)]:
        assert np.all(np.abs(a[py, px] - expected_bg) <= 1), (px, py, a[py, px])
    # just outside the rectangle the picture is untouched
    for px, py in [(rect[0] - 1, rect[1]), (rect[2] + 1, rect[3]), (rect[0], rect[1] - 1), (rect[0], rect[3] + 1)]:
        assert tuple(a[py, px]) == BLUE
    # outside the rectangle the picture is untouched, except glyphs: upstream's rectangle
    # ignores the textbbox's top offset, so at large sizes the text pokes out below it
    mask = np.ones((h, w), bool)
    mask[rect[1] : rect[3] + 1, rect[0] : rect[2] + 1] = False
    changed = mask & np.any(a != BLUE, axis=2)
    rows = np.nonzero(changed)[0]
    assert rows.size == 0 or (rows.min() > rect[3] and rows.max() < y + bottom)
    assert np.all(a[changed] <= BLUE)  # black text antialiased on blue, never lighter
    # there is black text inside the text box
    box = a[y + top : y + bottom, x0 : x0 + tw]
    assert (box.sum(axis=2) < 60).sum() > 20


def test_matches_an_independent_draw() -> None:
    w, h = 240, 160
    image = Image.new("RGB", (w, h), (90, 160, 30))
    font = ImageFont.load_default(size=18)
    text = "A short caption"
    d = ImageDraw.Draw(image)
    l, t, r, b = d.textbbox((0, 0), text, font=font)
    x, y = (w - (r - l)) // 2, h - ((b - t) + round(20 * 18 / 45))
    overlay = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    ImageDraw.Draw(overlay).rectangle([x - 5, y - 5, x + (r - l) + 5, y + (b - t) + 5], fill=(255, 255, 255, 200))
    expected = Image.alpha_composite(image.convert("RGBA"), overlay)
    ImageDraw.Draw(expected).text((x, y), text, fill="black", font=font)
    got = draw_caption(image, text, font_size=18)
    assert np.array_equal(np.asarray(got), np.asarray(expected.convert("RGB")))


def test_multi_line_layout_bottom_up() -> None:
    w, h = 160, 240
    image = Image.new("RGB", (w, h), BLUE)
    text = "one two three four five six seven eight"
    out = np.asarray(draw_caption(image, text, font_size=20)).astype(int)
    font = ImageFont.load_default(size=20)
    d = ImageDraw.Draw(image)
    lines = wrap_words(d, text, font, w)
    assert len(lines) >= 3
    ys, widest, y = [], 0, h
    for line in reversed(lines):
        l, t, r, b = d.textbbox((0, 0), line, font=font)
        y -= (b - t) + 9  # round(20 * 20 / 45)
        ys.append(y)
        widest = max(widest, r - l)
    top_line_y = ys[-1]
    x0 = (w - widest) // 2 - 5
    expected_bg = [blend(c) for c in BLUE]
    # the left padding column of the rectangle is blended from the top line - 5 down
    col = out[:, x0 + 1]
    assert np.all(np.abs(col[top_line_y - 5] - expected_bg) <= 1)
    assert tuple(col[top_line_y - 6]) == BLUE
    # line spacing: each line starts (height + 9) px above the one below
    assert ys[0] - ys[-1] >= 2 * 9


def test_empty_caption_returns_a_copy() -> None:
    image = Image.new("RGB", (50, 40), BLUE)
    for text in ("", "   "):
        out = draw_caption(image, text)
        assert out is not image
        assert np.array_equal(np.asarray(out), np.asarray(image))


def test_font_options_are_validated(tmp_path) -> None:
    with pytest.raises(ConfigError, match="font_size"):
        draw_caption(Image.new("RGB", (10, 10)), "x", font_size=0)
    with pytest.raises(ConfigError, match="does not exist"):
        load_font(12, tmp_path / "nope.ttf")
    bad = tmp_path / "bad.ttf"
    bad.write_bytes(b"not a font")
    with pytest.raises(ConfigError, match="cannot load font"):
        load_font(12, bad)


def test_font_path_loads_a_truetype_file(tmp_path) -> None:
    # Pillow's built-in scalable font, saved as a .ttf file: same glyphs, same picture
    path = tmp_path / "builtin.ttf"
    path.write_bytes(ImageFont.load_default(size=10).font_bytes)
    image = Image.new("RGB", (200, 120), BLUE)
    from_file = draw_caption(image, "Same glyphs", font_size=22, font_path=path)
    builtin = draw_caption(image, "Same glyphs", font_size=22)
    assert np.array_equal(np.asarray(from_file), np.asarray(builtin))
    assert not np.array_equal(np.asarray(from_file), np.asarray(image))
