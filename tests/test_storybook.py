"""The storybook composer: one self-contained, valid HTML5 file with every scene's assets."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from storysdk.builtins.storybook import StorybookComposer
from storysdk.errors import ConfigError
from storysdk.model import AudioAsset, ImageAsset, Scene, Story, StoryPlan

VOID = {"meta", "img", "br", "hr", "link", "input", "source"}
CAPTIONS = ['Once <b>upon</b> a time & "more"', "The fox's <script>alert(1)</script> den", "", "The end"]


class Collector(HTMLParser):
    """Collects tags, attributes, text per element, and checks that elements nest properly."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: dict[str, list[str]] = {}
        self.doctype = ""
        self.errors: list[str] = []

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack}")
        else:
            self.stack.pop()

    def handle_data(self, data) -> None:
        if self.stack and data.strip():
            self.text.setdefault(self.stack[-1], []).append(data)


def colour(i: int) -> tuple[int, int, int]:
    return (40 * i % 256, 255 - 30 * i, 90)


def make_story() -> Story:
    plan = StoryPlan(scenes=[Scene(i, f"p{i}", caption=c) for i, c in enumerate(CAPTIONS)], title="Fox & <Hound>")
    story = Story(plan)
    for i in (0, 1, 3):
        story.add(ImageAsset(i, Image.new("RGB", (24, 16), colour(i))))
    for i in (0, 2, 3):  # scene 2: audio only
        t = np.arange(800) / 8000
        story.add(AudioAsset(i, (0.1 * (i + 1) * np.sin(2 * np.pi * 440 * t))[None].astype(np.float32), sample_rate=8000))
    return story


def parse(path) -> Collector:
    c = Collector()
    c.feed(path.read_text(encoding="utf-8"))
    c.close()
    return c


def test_embedded_storybook(tmp_path) -> None:
    story = make_story()
    paths = StorybookComposer().compose(story, tmp_path)
    assert paths == [tmp_path / "storybook.html"]
    raw = paths[0].read_text(encoding="utf-8")
    doc = parse(paths[0])
    assert doc.doctype.lower() == "doctype html"
    assert doc.errors == [] and doc.stack == []
    # scene order kept; scenes with neither picture nor clip would be skipped (all have one)
    sections = [a["id"] for t, a in doc.tags if t == "section"]
    assert sections == ["scene-000", "scene-001", "scene-002", "scene-003"]
    # captions escaped in the source, intact as text
    assert "<script>" not in raw and "<b>upon" not in raw
    assert doc.text["figcaption"] == [CAPTIONS[0], CAPTIONS[1], CAPTIONS[3]]
    assert doc.text["h1"] == ["Fox & <Hound>"] and doc.text["title"] == ["Fox & <Hound>"]
    assert [t for t, _ in doc.tags].count("script") == 0
    # every asset is there, embedded, decoding to the story's own data
    imgs = [a["src"] for t, a in doc.tags if t == "img"]
    audios = [a["src"] for t, a in doc.tags if t == "audio"]
    assert len(imgs) == 3 and len(audios) == 3
    for src, i in zip(imgs, (0, 1, 3)):
        assert src.startswith("data:image/png;base64,")
        im = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")
        assert np.array_equal(np.asarray(im), np.asarray(story.images[i].image))
    for src, i in zip(audios, (0, 2, 3)):
        assert src.startswith("data:audio/flac;base64,")
        data, sr = sf.read(io.BytesIO(base64.b64decode(src.split(",", 1)[1])), dtype="float32", always_2d=True)
        assert sr == 8000
        assert np.max(np.abs(data.T - story.audio[i].samples)) < 1e-6
    assert all("controls" in a for t, a in doc.tags if t == "audio")


def test_no_external_resources(tmp_path) -> None:
    (path,) = StorybookComposer().compose(make_story(), tmp_path)
    doc = parse(path)
    for tag, attrs in doc.tags:
        assert tag not in ("script", "link", "iframe")
        for key in ("src", "href"):
            value = attrs.get(key)
            if value is not None:
                assert value.startswith("data:"), (tag, value[:40])
    assert "http://" not in path.read_text() and "https://" not in path.read_text()


def test_linked_files_and_wav_jpeg(tmp_path) -> None:
    story = make_story()
    paths = StorybookComposer(embed=False, image_format="jpeg", audio_format="wav").compose(story, tmp_path)
    files = tmp_path / "storybook_files"
    assert paths == [
        tmp_path / "storybook.html",
        files / "scene-000.jpg",
        files / "scene-000.wav",
        files / "scene-001.jpg",
        files / "scene-002.wav",
        files / "scene-003.jpg",
        files / "scene-003.wav",
    ]
    doc = parse(paths[0])
    refs = [a["src"] for t, a in doc.tags if t in ("img", "audio")]
    assert refs == [p.relative_to(tmp_path).as_posix() for p in paths[1:]]
    assert all((tmp_path / r).is_file() for r in refs)
    data, sr = sf.read(files / "scene-002.wav", dtype="float32", always_2d=True)
    assert np.array_equal(data.T, story.audio[2].samples)
    assert Image.open(files / "scene-001.jpg").format == "JPEG"


def test_deterministic(tmp_path) -> None:
    a = StorybookComposer().compose(make_story(), tmp_path / "a")[0].read_bytes()
    b = StorybookComposer().compose(make_story(), tmp_path / "b")[0].read_bytes()
    assert a == b


def test_title_option_and_requires(tmp_path) -> None:
    assert set(StorybookComposer.requires) == {"image", "audio"}
    (path,) = StorybookComposer(title="My tale").compose(make_story(), tmp_path)
    assert parse(path).text["h1"] == ["My tale"]


@pytest.mark.parametrize(
    "options,match",
    [
        ({"image_format": "gif"}, "option image_format='gif': input should be 'png', 'jpeg' or 'jpg'"),
        ({"image_format": "webp"}, "option image_format='webp'"),
        ({"audio_format": "mp3"}, r"option audio_format='mp3': input should be 'flac' or 'wav' \(clip format"),
        ({"quality": 0}, "option quality=0: input should be greater than or equal to 1"),
        ({"embed": "no"}, "option embed='no': input should be a valid boolean"),
        ({"titel": "x"}, "has no option 'titel'. Did you mean 'title'"),
    ],
)
def test_bad_options(options, match) -> None:
    with pytest.raises(ConfigError, match=match):
        StorybookComposer(**options)
