"""The frames composer: one file per picture of an image track, fixed encoders, optional captions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from storysdk import Pipeline, StoryRequest
from storysdk.builtins.frames import FramesComposer
from storysdk.captions import draw_caption
from storysdk.errors import ConfigError
from storysdk.model import AudioAsset, Cue, ImageAsset, Scene, Story, StoryPlan, Track
from storysdk.testing import make_registry


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
        ({"track": 3}, "option track=3: input should be a valid string"),
        ({"fromat": "png"}, "has no option 'fromat'. Did you mean 'format'"),
    ],
)
def test_bad_options(options, match) -> None:
    with pytest.raises(ConfigError, match=match):
        FramesComposer(**options)


def test_frames_of_the_second_image_track(tmp_path) -> None:
    pipe = Pipeline(planner="fake-planner",
                    tracks={"frames": {"generator": "fake-image"},
                            "sketch": {"generator": ("fake-image", {"width": 20, "height": 12})}},
                    composers=[("frames", {"track": "sketch"}), {"name": "frames", "dir": "first"}],
                    registry=make_registry())
    story = pipe.run(StoryRequest(script="one\ntwo\nthree", seed=2), out_dir=tmp_path)
    paths = story.files["frames"]
    assert paths == [tmp_path / "frames" / f"scene-{i:03d}.png" for i in range(3)]
    for i, path in enumerate(paths):
        saved = Image.open(tmp_path / "tracks" / "sketch" / f"scene-{i:04d}.png").convert("RGB")
        assert saved.size == (20, 12)
        assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), np.asarray(saved))
    first = story.files["first/frames"]  # no track: the first image track
    assert first == [tmp_path / "first" / "frames" / f"scene-{i:03d}.png" for i in range(3)]
    for i, path in enumerate(first):
        saved = Image.open(tmp_path / "tracks" / "frames" / f"scene-{i:04d}.png").convert("RGB")
        assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), np.asarray(saved))


def test_a_track_planner_s_pictures_are_named_by_cue(tmp_path) -> None:
    plan = StoryPlan(scenes=[Scene(0, "a", caption="first"), Scene(1, "b", caption="second")])
    cues = [Cue(index=k, prompt=f"shot {k}", caption=f"shot {k}", start=s, duration=1.0, scene=sc)
            for k, (s, sc) in enumerate([(1.0, 0), (0.0, 0), (3.0, 1)])]
    shots = Track("shots", "image", cues, {k: ImageAsset(k, pattern(k)) for k in range(3)}, planner="events")
    story = Story(plan, tracks={"shots": shots})
    paths = FramesComposer(captions=True, font_size=8).compose(story, tmp_path)
    # in story order: scene 0's cues by start (cue 1 at 0 s, then cue 0), then scene 1's
    assert [p.name for p in paths] == ["cue-001.png", "cue-000.png", "cue-002.png"]
    got = np.asarray(Image.open(paths[0]).convert("RGB"))
    assert np.array_equal(got, np.asarray(draw_caption(pattern(1), "shot 1", font_size=8)))  # the cue's caption


def test_the_track_option_is_checked_when_the_pipeline_is_built() -> None:
    assert FramesComposer.track_options == {"track": "image"}
    with pytest.raises(ConfigError, match=r"composer 'frames': track = 'voice' is an audio track; image tracks: "
                                          r"fake-image"):
        Pipeline(planner="fake-planner", tracks={"fake-image": {"generator": "fake-image"},
                                                 "voice": {"generator": "fake-audio"}},
                 composers=[("frames", {"track": "voice"})], registry=make_registry())
    with pytest.raises(ConfigError, match=r"track 'audio' is an audio track; choose an image track: images"):
        story = make_story()
        story.add(AudioAsset(0, np.zeros((1, 80), np.float32), 8000))
        FramesComposer(track="audio").compose(story, Path("/nonexistent"))
