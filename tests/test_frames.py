"""The frames composer: one file per scene, fixed encoders, optional captions."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from storysdk.builtins.frames import FramesComposer
from storysdk.captions import draw_caption
from storysdk.errors import ConfigError
from storysdk.model import ImageAsset, Scene, Story, StoryPlan


def pattern(i: int, size=(48, 32)) -> Image.Image:
    """A numbered pattern: stripes whose period and colours depend on i."""
    w, h = size
    x = np.arange(w)[None, :, None]
    y = np.arange(h)[:, None, None]
    rgb = np.array([37 * i % 256, 91 * i % 256, 151 * i % 256])[None, None, :]
    arr = (((x // (i + 2) + y // 3) % 2) * rgb + 30).clip(0, 255).astype(np.uint8)
    return Image.fromarray(np.broadcast_to(arr, (h, w, 3)).copy())


def make_story(indices=(0, 1, 2, 3), images=(0, 1, 3)) -> Story:
    story = Story(StoryPlan(scenes=[Scene(i, f"p{i}", caption=f"Caption of scene {i}") for i in indices]))
    for i in images:
        story.add(ImageAsset(i, pattern(i)))
    return story


def test_png_frames_are_lossless_and_named_by_scene_index(tmp_path) -> None:
    story = make_story()
    paths = FramesComposer().compose(story, tmp_path)
    assert paths == [tmp_path / "frames" / f"scene-{i:03d}.png" for i in (0, 1, 3)]
    for path, i in zip(paths, (0, 1, 3)):
        assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), np.asarray(pattern(i)))
    assert sorted(f.name for f in (tmp_path / "frames").iterdir()) == [p.name for p in paths]


@pytest.mark.parametrize("fmt,ext,pil", [("jpeg", "jpg", "JPEG"), ("jpg", "jpg", "JPEG"), ("webp", "webp", "WEBP")])
def test_lossy_formats_honour_quality(tmp_path, fmt: str, ext: str, pil: str) -> None:
    story = make_story(images=(0, 1, 3))
    low = FramesComposer(format=fmt, quality=5).compose(story, tmp_path / "low")
    high = FramesComposer(format=fmt, quality=100).compose(story, tmp_path / "high")
    assert all(p.suffix == f".{ext}" for p in low)
    assert all(Image.open(p).format == pil for p in low)
    for p, q, i in zip(low, high, (0, 1, 3)):
        ref = np.asarray(pattern(i)).astype(int)
        err_low = np.abs(np.asarray(Image.open(p).convert("RGB")).astype(int) - ref).mean()
        err_high = np.abs(np.asarray(Image.open(q).convert("RGB")).astype(int) - ref).mean()
        assert err_high < err_low


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_byte_identical_reruns(tmp_path, fmt: str) -> None:
    a = FramesComposer(format=fmt, quality=70, captions=True).compose(make_story(), tmp_path / "a")
    b = FramesComposer(format=fmt, quality=70, captions=True).compose(make_story(), tmp_path / "b")
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def test_captions_option(tmp_path) -> None:
    story = make_story(images=(1,))
    (plain,) = FramesComposer().compose(story, tmp_path / "plain")
    (captioned,) = FramesComposer(captions=True, font_size=10).compose(story, tmp_path / "cap")
    got = np.asarray(Image.open(captioned).convert("RGB"))
    assert np.array_equal(got, np.asarray(draw_caption(pattern(1), "Caption of scene 1", font_size=10)))
    assert not np.array_equal(got, np.asarray(Image.open(plain).convert("RGB")))


def test_no_images_and_requires(tmp_path) -> None:
    assert FramesComposer.requires == ("image",)
    assert FramesComposer().compose(make_story(images=()), tmp_path) == []


@pytest.mark.parametrize(
    "options,match",
    [
        ({"quality": 0}, r"composer 'frames': option quality=0: input should be greater than or equal to 1 "
                         r"\(JPEG/WebP quality from 1 to 100"),
        ({"quality": 101}, "option quality=101: input should be less than or equal to 100"),
        ({"quality": 50.5}, "option quality=50.5: input should be a valid integer"),
        ({"format": "bmp"}, "option format='bmp': input should be 'png', 'jpeg', 'jpg' or 'webp'"),
        ({"captions": "yes"}, "option captions='yes': input should be a valid boolean"),
        ({"font_size": -3}, "option font_size=-3: input should be greater than or equal to 1"),
        ({"font_path": "/no/such/font.ttf"}, "option font_path=.* does not exist; give the path of a .ttf/.otf file"),
        ({"fromat": "png"}, "has no option 'fromat'. Did you mean 'format'"),
    ],
)
def test_bad_options(options, match) -> None:
    with pytest.raises(ConfigError, match=match):
        FramesComposer(**options)
