"""The comic composer: StoryDiffusion's typesetting geometry and the new Pages layout."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from storysdk.builtins.comic import ComicComposer, distribute_rows
from storysdk.captions import default_font_size, draw_caption
from storysdk.errors import ConfigError
from storysdk.model import ImageAsset, Scene, Story, StoryPlan
from storysdk import StoryRequest
from storysdk.pipeline import Pipeline
from storysdk.testing import make_registry

COLOURS = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40),
]  # fmt: skip
WHITE = (255, 255, 255)


def make_story(n: int, size=(60, 40), captions: bool = False, seed: int = 0, skip=()) -> Story:
    scenes = [Scene(i, f"prompt {i}", caption=f"Panel {i}" if captions else "") for i in range(n)]
    story = Story(StoryPlan(scenes=scenes, seed=seed))
    for i in range(n):
        if i not in skip:
            sz = size[i] if isinstance(size, list) else size
            story.add(ImageAsset(i, Image.new("RGB", sz, COLOURS[i % len(COLOURS)])))
    return story


def pixel(img: Image.Image, x: float, y: float) -> tuple[int, ...]:
    return img.getpixel((int(x), int(y)))


def close(a, b, tol: int = 2) -> bool:
    return all(abs(int(p) - int(q)) <= tol for p, q in zip(a, b))


# ---------------------------------------------------------------- Classic


@pytest.mark.parametrize(
    "count,rows",
    # traced by hand through upstream's distribute_images2
    [(1, [4]), (4, [4]), (5, [4, 4]), (8, [4, 4]), (9, [4, 6]), (10, [4, 6]), (11, [4, 6, 4]),
     (14, [4, 6, 4]), (15, [4, 6, 4, 4]), (16, [4, 6, 4, 4]), (20, [4, 6, 4, 6])],
)  # fmt: skip
def test_distribute_rows(count: int, rows: list[int]) -> None:
    assert distribute_rows(count) == rows


def expected_row_items(size: int, rng: random.Random) -> list[int]:
    pattern = [1, 1, 2, 2] if size == 6 else [1, 1, 2]
    rng.shuffle(pattern)
    return pattern


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_classic_four_panels_follow_the_seeded_pattern(tmp_path, seed: int) -> None:
    story = make_story(4, seed=seed)
    (path,) = ComicComposer().compose(story, tmp_path)
    assert path == tmp_path / "comic" / "page-001.png"
    page = Image.open(path).convert("RGB")
    # bordered panel 80 x 60; a stacked pair is 40 x 60; the row is 80 + 80 + 40 wide
    assert page.size == (200, 60)
    pattern = expected_row_items(4, random.Random(seed))
    x, panel = 0, 0
    for span in pattern:
        if span == 1:
            assert close(pixel(page, x + 40, 30), COLOURS[panel])
            assert pixel(page, x + 3, 30) == WHITE  # the 10 px border
            x, panel = x + 80, panel + 1
        else:
            assert close(pixel(page, x + 20, 15), COLOURS[panel])
            assert close(pixel(page, x + 20, 45), COLOURS[panel + 1])
            x, panel = x + 40, panel + 2
    assert x == 200


def test_classic_layout_depends_on_seed_and_layout_seed_overrides(tmp_path) -> None:
    patterns = {s: expected_row_items(4, random.Random(s)) for s in range(10)}
    a, b = next((s, t) for s in patterns for t in patterns if patterns[s] != patterns[t])
    pa = ComicComposer().compose(make_story(4, seed=a), tmp_path / "a")[0].read_bytes()
    pb = ComicComposer().compose(make_story(4, seed=b), tmp_path / "b")[0].read_bytes()
    assert pa != pb
    pc = ComicComposer(layout_seed=a).compose(make_story(4, seed=b), tmp_path / "c")[0].read_bytes()
    assert pc == pa


def test_classic_rows_of_4_and_6_are_resized_to_the_narrowest(tmp_path) -> None:
    story = make_story(10, seed=3)
    page = Image.open(ComicComposer().compose(story, tmp_path)[0]).convert("RGB")
    # row of 4: 200 x 60; row of 6 (1,1,2,2): 240 x 60 -> resized to 200 x int(200 * 60 / 240) = 50
    assert page.size == (200, 110)
    rng = random.Random(3)
    expected_row_items(4, rng)  # first row consumes one shuffle
    pattern = expected_row_items(6, rng)
    scale = 200 / 240
    x, panel = 0.0, 4
    for span in pattern:
        if span == 1:
            assert close(pixel(page, (x + 40) * scale, 60 + 25), COLOURS[panel], tol=3)
            x, panel = x + 80, panel + 1
        else:
            assert close(pixel(page, (x + 20) * scale, 60 + 12), COLOURS[panel], tol=3)
            assert close(pixel(page, (x + 20) * scale, 60 + 37), COLOURS[panel + 1], tol=3)
            x, panel = x + 40, panel + 2


def test_classic_pads_with_white_and_captions_only_single_panels(tmp_path) -> None:
    story = make_story(3, captions=True, seed=5)
    page = Image.open(ComicComposer().compose(story, tmp_path)[0]).convert("RGB")
    pattern = expected_row_items(4, random.Random(5))
    frames = [story.images[i].image for i in range(3)] + [Image.new("RGB", (60, 40), WHITE)]
    caps = ["Panel 0", "Panel 1", "Panel 2", ""]
    x, panel = 0, 0
    for span in pattern:
        if span == 1:
            bordered = ImageOps.expand(frames[panel], border=10, fill="white")
            expected = draw_caption(bordered, caps[panel], font_size=default_font_size(60))
            got = page.crop((x, 0, x + 80, 60))
            assert np.array_equal(np.asarray(got), np.asarray(expected))
            if caps[panel]:
                assert not np.array_equal(np.asarray(expected), np.asarray(bordered))
            x, panel = x + 80, panel + 1
        else:  # stacked pair, no caption: the lower half of each half-panel is the plain colour
            for k, yc in ((0, 22), (1, 52)):
                colour = WHITE if panel + k == 3 else COLOURS[panel + k]
                assert close(pixel(page, x + 20, yc), colour)
            x, panel = x + 40, panel + 2


# ---------------------------------------------------------------- Four Pannel


def test_four_pannel_exact_upstream_geometry(tmp_path) -> None:
    story = make_story(5, size=(768, 768))
    paths = ComicComposer(style="Four Pannel").compose(story, tmp_path)
    assert [p.name for p in paths] == ["page-001.png", "page-002.png"]
    pages = [Image.open(p).convert("RGB") for p in paths]
    assert all(p.size == (1576, 1576) for p in pages)
    centres = [(394, 394), (1182, 394), (394, 1182), (1182, 1182)]
    for q, (cx, cy) in enumerate(centres):
        assert pages[0].getpixel((cx, cy)) == COLOURS[q]
        assert pages[0].getpixel((cx - 384 - 5, cy)) == WHITE  # inside the 10 px border
    assert pages[1].getpixel(centres[0]) == COLOURS[4]
    for cx, cy in centres[1:]:  # pad panels: plain white
        assert pages[1].getpixel((cx, cy)) == WHITE


def test_four_panel_alias_and_every_panel_captioned(tmp_path) -> None:
    story = make_story(4, captions=True)
    (path,) = ComicComposer(style="Four Panel").compose(story, tmp_path)
    page = Image.open(path).convert("RGB")
    assert page.size == (160, 120)
    for q, (x, y) in enumerate([(0, 0), (80, 0), (0, 60), (80, 60)]):
        bordered = ImageOps.expand(story.images[q].image, border=10, fill="white")
        expected = draw_caption(bordered, f"Panel {q}", font_size=default_font_size(60))
        assert np.array_equal(np.asarray(page.crop((x, y, x + 80, y + 60))), np.asarray(expected))


# ---------------------------------------------------------------- No typesetting


def test_no_typesetting_writes_frames_unchanged_and_skips_missing(tmp_path) -> None:
    story = make_story(5, captions=True, skip=(2,))
    paths = ComicComposer(style="No typesetting (default)").compose(story, tmp_path)
    assert [p.name for p in paths] == [f"page-{i:03d}.png" for i in range(1, 5)]
    for path, index in zip(paths, [0, 1, 3, 4]):
        got = np.asarray(Image.open(path).convert("RGB"))
        assert np.array_equal(got, np.asarray(story.images[index].image))
    assert len(ComicComposer(style="No typesetting").compose(story, tmp_path / "b")) == 4


# ---------------------------------------------------------------- Pages


def test_pages_justified_rows_by_hand(tmp_path) -> None:
    story = make_story(10, size=(100, 100))
    comp = ComicComposer(style="Pages", page_size=(400, 300), margin=10, gutter=10, row_height=100, captions=False)
    paths = comp.compose(story, tmp_path)
    pages = [Image.open(p).convert("RGB") for p in paths]
    assert len(pages) == 2 and all(p.size == (400, 300) for p in pages)
    # content 380 x 280. Four squares at 100 px need 430 > 380: justified with 4 -> 87.5 px
    # (|87.5-100| = 12.5) beats 3 -> 120 px (20). Widths 88, 88, 88, 86; height 88.
    xs, ws = [10, 108, 206, 304], [88, 88, 88, 86]
    for row, y in enumerate([10, 108]):  # a third row (206 + 88 > 290) goes to page 2
        for k in range(4):
            i = row * 4 + k
            assert close(pixel(pages[0], xs[k] + ws[k] / 2, y + 44), COLOURS[i])
            assert pixel(pages[0], xs[k] + 1, y + 1) == COLOURS[i]
            assert pixel(pages[0], xs[k] + ws[k] - 1, y + 87) == COLOURS[i]
        assert pixel(pages[0], 103, y + 40) == WHITE  # gutter
        assert pixel(pages[0], 200, y + 95) == WHITE  # gutter below the row
    # last row: panels 8 and 9 at the target height, centred: width 210, x from 95
    assert pixel(pages[1], 95, 10) == COLOURS[8] and pixel(pages[1], 194, 109) == COLOURS[8]
    assert pixel(pages[1], 94, 10) == WHITE and pixel(pages[1], 195, 10) == WHITE
    assert pixel(pages[1], 205, 60) == COLOURS[9] and pixel(pages[1], 304, 60) == COLOURS[9]
    assert pixel(pages[1], 305, 60) == WHITE


def test_pages_mixed_aspect_ratios_and_captions(tmp_path) -> None:
    sizes = [(200, 100), (50, 100), (100, 100), (300, 100)]
    story = make_story(4, size=sizes, captions=True)
    comp = ComicComposer(style="Pages", page_size=(500, 400), margin=20, gutter=10, row_height=100)
    (path,) = comp.compose(story, tmp_path)
    page = Image.open(path).convert("RGB")
    # content 460 wide. Aspects 2, .5, 1, 3: at 100 px 200+50+100 (+20) = 370 < 460; adding
    # the 3:1 panel reaches 680 (+30): with it h = 430/6.5 = 66.2 (|33.8|), without it
    # h = 440/3.5 = 125.7 (|25.7|) -> row 1 = panels 0-2 at 126 px; widths 251, 63, 126
    # (last one takes the rest: 440 - 251 - 63); panel 3 is the last row, 300 x 100, centred.
    h = 126
    assert pixel(page, 20 + 125, 20 + 5) == COLOURS[0]
    assert pixel(page, 20 + 251 + 10 + 31, 20 + 5) == COLOURS[1]
    assert pixel(page, 20 + 251 + 10 + 63 + 10 + 63, 20 + 5) == COLOURS[2]
    assert pixel(page, 479, 20 + 5) == COLOURS[2] and pixel(page, 480, 25) == WHITE
    y3 = 20 + h + 10
    assert pixel(page, 100, y3 + 5) == COLOURS[3] and pixel(page, 99, y3 + 5) == WHITE
    assert pixel(page, 399, y3 + 5) == COLOURS[3] and pixel(page, 400, y3 + 5) == WHITE
    # each panel carries its caption: the panel area equals an independent captioned panel
    font = default_font_size(100)
    panel3 = story.images[3].image.resize((300, 100), Image.Resampling.LANCZOS)
    expected = draw_caption(panel3, "Panel 3", font_size=font)
    assert np.array_equal(np.asarray(page.crop((100, y3, 400, y3 + 100))), np.asarray(expected))


# ---------------------------------------------------------------- general


@pytest.mark.parametrize("fmt,ext", [("png", "png"), ("jpeg", "jpg"), ("webp", "webp")])
@pytest.mark.parametrize("style", ["Classic Comic Style", "Four Pannel", "Pages"])
def test_output_is_byte_identical_across_runs(tmp_path, fmt: str, ext: str, style: str) -> None:
    kwargs = {"page_size": (300, 400)} if style == "Pages" else {}
    story = make_story(6, captions=True, seed=11)
    a = ComicComposer(style=style, format=fmt, quality=80, **kwargs).compose(story, tmp_path / "a")
    b = ComicComposer(style=style, format=fmt, quality=80, **kwargs).compose(make_story(6, captions=True, seed=11), tmp_path / "b")
    assert [p.name for p in a] == [p.name for p in b]
    assert all(p.suffix == f".{ext}" for p in a)
    assert all(p.read_bytes() == q.read_bytes() for p, q in zip(a, b))
    assert not [f for f in (tmp_path / "a" / "comic").iterdir() if f.name.startswith(".")]  # no temp files


def test_no_images_gives_no_pages(tmp_path) -> None:
    assert ComicComposer.requires == ("image",)
    assert ComicComposer().compose(make_story(3, skip=(0, 1, 2)), tmp_path) == []


@pytest.mark.parametrize(
    "options,match",
    [
        ({"style": "Manga"}, "option style='Manga': .*unknown comic style 'Manga'.*Classic Comic Style.*Four Pannel"),
        ({"quality": 0}, r"option quality=0: input should be greater than or equal to 1 \(JPEG/WebP quality"),
        ({"quality": 101}, "option quality=101: input should be less than or equal to 100"),
        ({"quality": 9.5}, "option quality=9.5: input should be a valid integer"),
        ({"format": "gif"}, "option format='gif': input should be 'png', 'jpeg', 'jpg' or 'webp'"),
        ({"page_size": (0, 100)}, r"page_size must be two whole numbers >= 1 .*got \[0, 100\]"),
        ({"page_size": (100,)}, r"page_size must be two whole numbers \[width, height\] in pixels, got 1"),
        ({"page_size": "A4"}, "option page_size='A4': input should be a valid tuple"),
        ({"page_size": (100, 100), "margin": 45}, r"page_size \[100, 100\] leaves no room inside margins of 45 px"),
        ({"gutter": -1}, "option gutter=-1: input should be greater than or equal to 0"),
        ({"margin": True}, "option margin=True: input should be a valid integer"),
        ({"row_height": 0}, "option row_height=0: input should be greater than or equal to 1"),
        ({"font_size": 0}, "option font_size=0: input should be greater than or equal to 1"),
        ({"font_path": "/no/such/font.ttf"}, "option font_path=.*font file '/no/such/font.ttf' does not exist"),
        ({"captions": "yes"}, "option captions='yes': input should be a valid boolean"),
        ({"layout_seed": "x"}, "option layout_seed='x': input should be a valid integer"),
    ],
)
def test_bad_options(options, match) -> None:
    with pytest.raises(ConfigError, match=match):
        ComicComposer(**options)


def test_options_are_declared_with_their_defaults() -> None:
    opts = ComicComposer().options
    assert (opts.style, opts.layout_seed, opts.format, opts.quality, opts.captions) == (
        "Classic Comic Style", None, "png", 95, None)
    assert (opts.page_size, opts.margin, opts.gutter, opts.row_height) == ((1654, 2339), 60, 20, None)
    # story files give arrays and any letter case; aliases resolve to the canonical style
    opts = ComicComposer(style="four panel", format="JPG", page_size=[800, 600]).options
    assert (opts.style, opts.format, opts.page_size) == ("Four Pannel", "jpg", (800, 600))


def test_the_former_seed_option_names_layout_seed() -> None:
    with pytest.raises(ConfigError, match=r"composer 'comic': option 'seed' was renamed to 'layout_seed' "
                       r"\(seed of the Classic layout's shuffled rows.*write layout_seed = \.\.\. instead"):
        ComicComposer(seed=3)
    reg = make_registry()
    with pytest.raises(ConfigError, match="renamed to 'layout_seed'"):
        reg.create("composer", "comic", seed=3)
    with pytest.raises(ConfigError, match="renamed to 'layout_seed'"):
        Pipeline(planner="fake-planner", generators=["fake-image"], composers=[("comic", {"seed": 3})], registry=reg)
    # in [defaults], 'seed' is refused with the new name and a pointer to the story's own seed
    with pytest.raises(ConfigError, match=r"takes 'seed' any more: composer 'comic' calls it 'layout_seed'.*\[story\] seed"):
        Pipeline(planner="fake-planner", generators=["fake-image"], composers=["comic"], registry=reg,
                 defaults={"seed": 3})


def test_unknown_option_suggests_the_close_name() -> None:
    with pytest.raises(ConfigError, match=r"composer 'comic' has no option 'layuot_seed'\. Did you mean 'layout_seed'\?"):
        ComicComposer(layuot_seed=1)


def test_mismatched_frame_sizes_are_fitted_onto_the_first_size(tmp_path) -> None:
    story = make_story(4, size=[(60, 40), (30, 40), (60, 40), (60, 40)])
    page = Image.open(ComicComposer(style="Four Pannel").compose(story, tmp_path)[0]).convert("RGB")
    assert page.size == (160, 120)
    # panel 1 (30 x 40) is centred on a white 60 x 40 panel inside its border
    assert pixel(page, 80 + 40, 30) == COLOURS[1]
    assert pixel(page, 80 + 12, 30) == WHITE


# ---------------------------------------------------------------- which image track


def two_image_tracks(tmp_path, composers) -> Story:
    pipe = Pipeline(planner="fake-planner",
                    tracks={"frames": {"generator": "fake-image"},
                            "sketch": {"generator": ("fake-image", {"width": 40, "height": 30}), "seed": 9},
                            "voice": {"generator": "fake-audio"}},
                    composers=composers, registry=make_registry())
    return pipe.run(StoryRequest(script="one\ntwo\nthree\nfour", seed=3), out_dir=tmp_path)


def test_the_comic_of_the_second_image_track(tmp_path) -> None:
    story = two_image_tracks(tmp_path, [{"name": "comic", "track": "sketch", "style": "No typesetting"},
                                        {"name": "comic", "dir": "first", "style": "No typesetting"}])
    pages = story.files["comic"]
    assert [p.relative_to(tmp_path).as_posix() for p in pages] == [f"comic/page-{i:03d}.png" for i in range(1, 5)]
    for i, page in enumerate(pages):  # the sketch track's own pictures, as saved in tracks/sketch/
        saved = Image.open(tmp_path / "tracks" / "sketch" / f"scene-{i:04d}.png").convert("RGB")
        assert saved.size == (40, 30)
        assert np.array_equal(np.asarray(Image.open(page).convert("RGB")), np.asarray(saved))
    # without track: the first image track
    first = story.files["first/comic"]
    for i, page in enumerate(first):
        saved = Image.open(tmp_path / "tracks" / "frames" / f"scene-{i:04d}.png").convert("RGB")
        assert np.array_equal(np.asarray(Image.open(page).convert("RGB")), np.asarray(saved))
    # a Classic page of the sketch track is the page of a story holding only those pictures
    alone = Story(story.plan, images=dict(story.tracks["sketch"].assets))
    a = ComicComposer(track="sketch").compose(story, tmp_path / "a")
    b = ComicComposer().compose(alone, tmp_path / "b")
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert a[0].read_bytes() != ComicComposer().compose(story, tmp_path / "c")[0].read_bytes()


def test_the_track_option_is_checked_when_the_pipeline_is_built() -> None:
    reg = make_registry()
    tracks = {"frames": {"generator": "fake-image"}, "voice": {"generator": "fake-audio"}}
    assert ComicComposer.track_options == {"track": "image"}
    with pytest.raises(ConfigError, match=r"composer 'comic': track = 'voice' is an audio track; image tracks: frames"):
        Pipeline(planner="fake-planner", tracks=tracks, composers=[("comic", {"track": "voice"})], registry=reg)
    with pytest.raises(ConfigError, match=r"composer 'comic': track = 'frame' is not one of the pipeline's tracks; "
                                          r"image tracks: frames. Did you mean 'frames'\?"):
        Pipeline(planner="fake-planner", tracks=tracks, composers=[("comic", {"track": "frame"})], registry=reg)
    with pytest.raises(ConfigError, match=r"option track=3: input should be a valid string"):
        ComicComposer(track=3)
    # a story assembled by hand names its tracks too
    story = make_story(2)
    with pytest.raises(ConfigError, match=r"the story has no track 'sketch'; its tracks: images"):
        ComicComposer(track="sketch").compose(story, Path("/nonexistent"))
