"""The storybook composer: one self-contained, valid HTML5 file with every scene's pictures and sounds."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterator, Sequence
from html.parser import HTMLParser

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from storysdk import Pipeline, StoryRequest
from storysdk.builtins.storybook import MIX_LABEL, READ_ALOUD_LABEL, StorybookComposer
from storysdk.errors import ComponentError, ConfigError
from storysdk.interfaces import Generator, RenderContext
from storysdk.mixing import Mix, mixdown
from storysdk.model import AudioAsset, Cue, ImageAsset, Scene, Story, StoryPlan, Track
from storysdk.testing import make_registry
from storysdk.timeline import Timeline, timeline_of

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


def clip(i: int) -> np.ndarray:
    t = np.arange(800) / 8000
    return (0.1 * (i + 1) * np.sin(2 * np.pi * 440 * t))[None].astype(np.float32)


def make_story() -> Story:
    """Assembled by hand: pictures for scenes 0, 1, 3, clips for 0, 2, 3; mixed without loudness
    normalisation, so the mix is the clips themselves (their peak is far under the ceiling)."""
    plan = StoryPlan(scenes=[Scene(i, f"p{i}", caption=c) for i, c in enumerate(CAPTIONS)], title="Fox & <Hound>")
    story = Story(plan, mix=Mix(loudness=None))
    for i in (0, 1, 3):
        story.add(ImageAsset(i, Image.new("RGB", (24, 16), colour(i))))
    for i in (0, 2, 3):  # scene 2: audio only
        story.add(AudioAsset(i, clip(i), sample_rate=8000))
    return story


def parse(path) -> Collector:
    c = Collector()
    c.feed(path.read_text(encoding="utf-8"))
    c.close()
    return c


def decode_image(src: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB"))


def decode_audio(src: str) -> tuple[np.ndarray, int]:
    data, sr = sf.read(io.BytesIO(base64.b64decode(src.split(",", 1)[1])), dtype="float32", always_2d=True)
    return data.T, sr


def sections(doc: Collector) -> dict[str, list[tuple[str, dict]]]:
    """The tags inside each section, by the section's id."""
    out: dict[str, list[tuple[str, dict]]] = {}
    current = None
    for tag, attrs in doc.tags:
        if tag == "section":
            current = attrs["id"]
            out[current] = []
        elif current is not None:
            out[current].append((tag, attrs))
    return out


def test_embedded_storybook(tmp_path) -> None:
    story = make_story()
    paths = StorybookComposer().compose(story, tmp_path)
    assert paths == [tmp_path / "storybook.html"]
    raw = paths[0].read_text(encoding="utf-8")
    doc = parse(paths[0])
    assert doc.doctype.lower() == "doctype html"
    assert doc.errors == [] and doc.stack == []
    # the whole story's player, then the scenes in order (all have a picture or a clip)
    assert list(sections(doc)) == ["story", "scene-000", "scene-001", "scene-002", "scene-003"]
    # captions escaped in the source, intact as text
    assert "<script>" not in raw and "<b>upon" not in raw
    assert doc.text["figcaption"] == [CAPTIONS[0], CAPTIONS[1], CAPTIONS[3]]
    assert [t for t, _ in sections(doc)["scene-002"]] == ["div", "audio"]  # no picture, no caption: a player
    assert doc.text["h1"] == ["Fox & <Hound>"] and doc.text["title"] == ["Fox & <Hound>"]
    assert doc.text["div"] == [MIX_LABEL]  # one image and one audio track: no track labels
    assert [t for t, _ in doc.tags].count("script") == 0
    # every picture is there, embedded, decoding to the story's own pixels
    imgs = [a["src"] for t, a in doc.tags if t == "img"]
    audios = [a["src"] for t, a in doc.tags if t == "audio"]
    assert len(imgs) == 3 and len(audios) == 1 + 3
    for src, i in zip(imgs, (0, 1, 3)):
        assert src.startswith("data:image/png;base64,")
        assert np.array_equal(decode_image(src), np.asarray(story.images[i].image))
    assert all(src.startswith("data:audio/flac;base64,") for src in audios)
    # the whole story: each scene as long as its clip, scene 1 (no clip, no planned length) 3 s of silence
    whole, sr = decode_audio(audios[0])
    ref = np.concatenate([clip(0), np.zeros((1, 3 * 8000), np.float32), clip(2), clip(3)], axis=1)
    assert sr == 8000 and whole.shape == ref.shape and np.max(np.abs(whole - ref)) < 2**-22
    # each scene's player: its part of the mix, here its clip
    for src, i in zip(audios[1:], (0, 2, 3)):
        data, sr = decode_audio(src)
        assert sr == 8000 and data.shape == (1, 800)
        assert np.max(np.abs(data - clip(i))) < 2**-22
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
        files / "story.wav",
        files / "images" / "scene-000.jpg",
        files / "audio" / "scene-000.wav",
        files / "images" / "scene-001.jpg",
        files / "audio" / "scene-002.wav",
        files / "images" / "scene-003.jpg",
        files / "audio" / "scene-003.wav",
    ]
    doc = parse(paths[0])
    refs = [a["src"] for t, a in doc.tags if t in ("img", "audio")]
    assert refs == [p.relative_to(tmp_path).as_posix() for p in paths[1:]]
    assert all((tmp_path / r).is_file() for r in refs)
    data, sr = sf.read(files / "audio" / "scene-002.wav", dtype="float32", always_2d=True)
    assert np.array_equal(data.T, clip(2))  # 32-bit float: the mix's samples exactly
    assert Image.open(files / "images" / "scene-001.jpg").format == "JPEG"


def test_deterministic(tmp_path) -> None:
    a = StorybookComposer().compose(make_story(), tmp_path / "a")[0].read_bytes()
    b = StorybookComposer().compose(make_story(), tmp_path / "b")[0].read_bytes()
    assert a == b


def test_title_option_and_requires(tmp_path) -> None:
    assert set(StorybookComposer.requires) == {"image", "audio"}
    (path,) = StorybookComposer(title="My tale").compose(make_story(), tmp_path)
    assert parse(path).text["h1"] == ["My tale"]


def test_a_story_without_audio_has_no_players(tmp_path) -> None:
    story = Story(StoryPlan(scenes=[Scene(0, "p", caption="only a picture")]),
                  images={0: ImageAsset(0, Image.new("RGB", (8, 8), (1, 2, 3)))})
    doc = parse(StorybookComposer().compose(story, tmp_path)[0])
    assert list(sections(doc)) == ["scene-000"] and not [t for t, _ in doc.tags if t == "audio"]


# -- many tracks ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """A pipeline story: two image tracks, a narration that ducks and sets the pace, an ambience."""
    out = tmp_path_factory.mktemp("many")
    pipe = Pipeline(
        planner="fake-planner",
        tracks={
            "frames": {"generator": "fake-image"},
            "sketch": {"generator": ("fake-image", {"width": 32, "height": 24})},
            "narration": {"generator": ("fake-audio", {"per_character": 0.06}), "duck": 12},
            "ambience": {"planner": "fake-events", "generator": "fake-audio", "gain": -6},
        },
        timing={"mode": "track", "track": "narration", "padding": 0.5},
        composers=["storybook"],
        registry=make_registry(),
    )
    story = pipe.run(StoryRequest(script="a fox wakes\nrain on the cave\nthe end", seed=4), out_dir=out)
    return story, out


def test_every_track_is_shown_labelled_with_its_sound_in_the_mix(many) -> None:
    story, out = many
    doc = parse(story.files["storybook"][0])
    assert doc.errors == []
    mixed = mixdown(story)
    timeline = timeline_of(story)
    rate = mixed.sample_rate
    parts = sections(doc)
    assert list(parts) == ["story", "scene-000", "scene-001", "scene-002"]
    whole, _ = decode_audio(next(a["src"] for t, a in parts["story"] if t == "audio"))
    assert np.max(np.abs(whole - mixed.samples)) < 2**-22
    assert doc.text["div"] == [MIX_LABEL] + ["frames", "sketch", "narration", "ambience"] * 3
    for scene in story.plan.scenes:
        tags = parts[f"scene-{scene.index:03d}"]
        imgs = [a for t, a in tags if t == "img"]
        assert [a["data-track"] for a in imgs] == ["frames", "sketch"]
        for a in imgs:  # the pictures the tracks saved, tracks/<track>/scene-NNNN.png
            saved = Image.open(out / "tracks" / a["data-track"] / f"scene-{scene.index:04d}.png").convert("RGB")
            assert np.array_equal(decode_image(a["src"]), np.asarray(saved))
        assert (int(imgs[1]["width"]), int(imgs[1]["height"])) == (32, 24)
        players = [a for t, a in tags if t == "div" and a.get("class") == "player"]
        assert [a["data-track"] for a in players] == ["narration", "ambience"]
        audios = [a["src"] for t, a in tags if t == "audio"]
        span = timeline.scene(scene.index)
        lo, hi = round(span.start * rate), round(span.end * rate)
        for name, src in zip(("narration", "ambience"), audios):
            data, sr = decode_audio(src)
            assert sr == rate and np.max(np.abs(data - mixed.tracks[name][:, lo:hi])) < 2**-22
        # independently: the narration is not ducked, so its player is its clip at the master gain,
        # then the scene's 0.5 s of padding in silence
        voice = story.tracks["narration"].assets[scene.index].samples
        data, _ = decode_audio(audios[0])
        ref = np.zeros((1, hi - lo))
        ref[:, : voice.shape[1]] = voice * 10 ** (mixed.master_gain / 20)
        assert np.max(np.abs(data - ref)) < 2**-21
        assert voice.shape[1] == round(0.06 * len(scene.prompt) * rate)


def test_the_tracks_option_picks_and_orders_tracks(many, tmp_path) -> None:
    story, _ = many
    (path,) = StorybookComposer(tracks=["sketch", "ambience"]).compose(story, tmp_path)
    doc = parse(path)
    imgs = [a["data-track"] for t, a in doc.tags if t == "img"]
    players = [a["data-track"] for t, a in doc.tags if t == "div" and a.get("class") == "player"]
    assert imgs == ["sketch"] * 3 and players == ["ambience"] * 3
    assert doc.text["div"] == [MIX_LABEL]  # one track of each kind: no labels
    (path,) = StorybookComposer(tracks=["narration", "sketch", "frames"]).compose(story, tmp_path / "b")
    doc = parse(path)
    assert [a["data-track"] for t, a in doc.tags if t == "img"][:2] == ["sketch", "frames"]
    assert doc.text["div"][:3] == [MIX_LABEL, "sketch", "frames"]
    only_pictures = parse(StorybookComposer(tracks=["frames"]).compose(story, tmp_path / "c")[0])
    assert [a["data-track"] for t, a in only_pictures.tags if t == "div" and "data-track" in a] == []
    only_sound = parse(StorybookComposer(tracks=["narration"]).compose(story, tmp_path / "e")[0])
    assert only_sound.text["p"] == [s.caption for s in story.plan.scenes]  # no picture: the caption as a paragraph
    assert "figure" not in [t for t, _ in only_sound.tags]
    with pytest.raises(ConfigError, match=r"composer 'storybook': tracks names 'narator', which is not one of the "
                                          r"story's tracks \(frames, sketch, narration, ambience\)\. Did you mean "
                                          r"'narration'\?.*leave tracks unset"):
        StorybookComposer(tracks=["sketch", "narator"]).compose(story, tmp_path / "d")


def test_an_unknown_track_in_a_pipeline_is_a_clear_error(tmp_path) -> None:
    pipe = Pipeline(planner="fake-planner", generators=["fake-image", "fake-audio"],
                    composers=[("storybook", {"tracks": ["pictures"]})], registry=make_registry())
    with pytest.raises(ComponentError, match=r"tracks names 'pictures', which is not one of the story's tracks "
                                             r"\(fake-image, fake-audio\)"):
        pipe.run(StoryRequest(script="a\nb", seed=1), out_dir=tmp_path)


def test_a_track_planner_s_pictures_are_named_by_cue(tmp_path) -> None:
    plan = StoryPlan(scenes=[Scene(0, "a", caption="first", duration=2.0), Scene(1, "b", caption="second", duration=1.0)])
    cues = [Cue(index=k, prompt=f"shot {k}", caption=f"shot {k}", start=s, duration=d, scene=sc)
            for k, (s, d, sc) in enumerate([(0.0, 1.0, 0), (1.0, 1.0, 0), (2.0, 1.0, 1)])]
    shots = Track("shots", "image", cues, {k: ImageAsset(k, Image.new("RGB", (6, 4), colour(k))) for k in range(3)},
                  planner="events")
    timeline = Timeline.of_scenes(plan.scenes, {0: 2.0, 1: 1.0})
    timeline.place(shots)
    story = Story(plan, tracks={"shots": shots}, timeline=timeline)
    paths = StorybookComposer(embed=False).compose(story, tmp_path)
    files = tmp_path / "storybook_files" / "shots"
    assert paths[1:] == [files / "cue-000.png", files / "cue-001.png", files / "cue-002.png"]
    doc = parse(paths[0])
    assert [len([t for t, _ in tags if t == "img"]) for tags in sections(doc).values()] == [2, 1]
    assert doc.text["figcaption"] == ["first", "second"]


@pytest.mark.parametrize(
    "options,match",
    [
        ({"image_format": "gif"}, "option image_format='gif': input should be 'png', 'jpeg' or 'jpg'"),
        ({"image_format": "webp"}, "option image_format='webp'"),
        ({"audio_format": "mp3"}, r"option audio_format='mp3': input should be 'flac' or 'wav' \(sound format"),
        ({"quality": 0}, "option quality=0: input should be greater than or equal to 1"),
        ({"embed": "no"}, "option embed='no': input should be a valid boolean"),
        ({"tracks": []}, r"option tracks=\[\]: list should have at least 1 item"),
        ({"tracks": "frames"}, "option tracks='frames': input should be a valid list"),
        ({"titel": "x"}, "has no option 'titel'. Did you mean 'title'"),
    ],
)
def test_bad_options(options, match) -> None:
    with pytest.raises(ConfigError, match=match):
        StorybookComposer(**options)


# -- read aloud -----------------------------------------------------------------------------------
class Reader(Generator):
    """A test voice: a 0.1 s tone per word, its sentences recorded in metadata["sentences"]."""

    name = "reader"
    modality = "audio"

    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterator[AudioAsset]:
        for scene in scenes:
            sentences, t = [], 0.0
            for text in re.split(r"(?<=[.!?])\s+", scene.prompt.strip()):
                d = 0.1 * len(text.split())
                sentences.append({"text": text, "start": t, "end": t + d})
                t += d
            n = int(round(t * 8000))
            wave = 0.2 * np.sin(2 * np.pi * 300 * np.arange(n) / 8000)
            yield AudioAsset(scene.index, wave[None].astype(np.float32), 8000, made_by=self.name,
                             metadata={"sentences": sentences})


READ = "A fox wakes. It yawns!\nRain falls on the cave."


@pytest.fixture(scope="module")
def read_aloud(tmp_path_factory):
    out = tmp_path_factory.mktemp("read")
    pipe = Pipeline(
        planner="fake-planner",
        tracks={"frames": {"generator": "fake-image"},
                "ambience": {"generator": "fake-audio", "gain": -6},
                "voice": {"generator": Reader(), "text": "{narration}", "duck": 10}},
        timing={"mode": "track", "track": "voice", "padding": 0.5},
        composers=["storybook"],
        registry=make_registry(),
    )
    return pipe.run(StoryRequest(script=READ, seed=4), out_dir=out)


def readers(tags: list[tuple[str, dict]]) -> list[dict]:
    return [a for t, a in tags if t == "div" and "read-aloud" in a.get("class", "").split()]


def test_each_scene_has_a_read_aloud_control_for_its_narration(read_aloud) -> None:
    story = read_aloud
    doc = parse(story.files["storybook"][0])
    assert doc.errors == []
    mixed, timeline = mixdown(story), timeline_of(story)
    rate = mixed.sample_rate
    parts = sections(doc)
    # the narration's player comes first, labelled "Read aloud"; the ambience keeps its own label
    assert doc.text["div"] == [MIX_LABEL] + [READ_ALOUD_LABEL, "ambience"] * 2
    assert doc.text["p"] == ["A fox wakes. It yawns!", "Rain falls on the cave."]  # the text it reads, beside it
    assert doc.text["figcaption"] == READ.splitlines()
    for scene in story.plan.scenes:
        tags = parts[f"scene-{scene.index:03d}"]
        (control,) = readers(tags)
        assert control["data-track"] == "voice" and control["aria-label"] == f"Read aloud: scene {scene.index}"
        players = [a["data-track"] for t, a in tags if t == "div" and "player" in a.get("class", "").split()]
        assert players == ["voice", "ambience"]
        audios = [a for t, a in tags if t == "audio"]
        assert audios[0]["aria-label"] == READ_ALOUD_LABEL
        data, sr = decode_audio(audios[0]["src"])
        span = timeline.scene(scene.index)
        lo, hi = round(span.start * rate), round(span.end * rate)
        assert sr == rate and np.max(np.abs(data - mixed.tracks["voice"][:, lo:hi])) < 2**-22
        # independently: the voice is not ducked; its clip at the master gain, then 0.5 s of padding in silence
        words = len(scene.prompt.split())
        clip = story.tracks["voice"].assets[scene.index].samples
        assert clip.shape[1] == round(0.1 * words * 8000) and data.shape[1] == round((0.1 * words + 0.5) * rate)
        ref = np.zeros_like(data)
        ref[:, : clip.shape[1]] = clip * 10 ** (mixed.master_gain / 20)
        assert np.max(np.abs(data - ref)) < 2**-21


def test_narration_track_option_names_the_reader(read_aloud, many, tmp_path) -> None:
    story = read_aloud
    doc = parse(StorybookComposer(narration_track="ambience").compose(story, tmp_path / "a")[0])
    assert doc.text["div"] == [MIX_LABEL] + [READ_ALOUD_LABEL, "voice"] * 2  # no sentences: Scene.narration
    assert doc.text["p"] == READ.splitlines()
    # without sentences and without the option: no read-aloud control (the many-tracks story)
    plain = parse(StorybookComposer().compose(many[0], tmp_path / "b")[0])
    assert all(readers(tags) == [] for tags in sections(plain).values()) and "p" not in plain.text
    # the narration track left out by tracks: no control
    only = parse(StorybookComposer(tracks=["frames", "ambience"]).compose(story, tmp_path / "c")[0])
    assert all(readers(tags) == [] for tags in sections(only).values())
    with pytest.raises(ConfigError, match=r"narration_track = 'voise': the story has no such track; its audio "
                                          r"tracks: ambience, voice\. Did you mean 'voice'\?"):
        StorybookComposer(narration_track="voise").compose(story, tmp_path / "x")
    with pytest.raises(ConfigError, match="narration_track = 'frames' is an image track; choose an audio track"):
        StorybookComposer(narration_track="frames").compose(story, tmp_path / "x")
    with pytest.raises(ConfigError, match="composer 'storybook': narration_track = 'frames' is an image track; "
                                          "audio tracks: voice"):
        Pipeline(planner="fake-planner", tracks={"frames": {"generator": "fake-image"}, "voice": {"generator": "fake-audio"}},
                 composers=[("storybook", {"narration_track": "frames"})], registry=make_registry())
