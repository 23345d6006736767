"""Pipelines with tracks: any number per modality, the shorthand, track tables and their errors,
texts and seeds, story and track tokenizers, composers and their folders, side by side rendering."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from storysdk import (
    AudioAsset,
    ComponentError,
    Composer,
    ConfigError,
    Generator,
    ImageAsset,
    LimitError,
    Limits,
    Pipeline,
    ProgressEvent,
    RenderContext,
    Scene,
    Story,
    StoryPlan,
    StoryRequest,
    Tokenizer,
    Tokens,
    derive_seed,
    hookimpl,
)
from storysdk.model import Cue, Track
from storysdk.options import Field, Options
from storysdk.output import atomic_write
from storysdk.testing import FakeAudioGenerator, FakeImageGenerator, make_registry

SCRIPT = "a red fox\na blue bird\na green frog"


def files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".")}


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


# -- test components ----------------------------------------------------------------------
class Recorder(Generator):
    """Records what each call got: its track, scenes, the context's plan, seed and tokens."""

    name = "recorder"
    modality = "image"
    batching = True

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.calls: list[dict[str, Any]] = []

    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterator[ImageAsset]:
        self.calls.append({
            "track": ctx.track, "scenes": list(scenes), "plan": list(ctx.plan.scenes), "seed": ctx.seed,
            "tokens": {s.index: {k: bytes(t.tensors["bytes"].tobytes()) for k, t in s.tokens.items()} for s in scenes},
            "thread": threading.get_ident(),
        })
        for s in scenes:
            yield ImageAsset(s.index, Image.new("RGB", (4, 4), (s.index, 0, 0)), made_by=self.name)


class AudioRecorder(Recorder):
    name = "audio-recorder"
    modality = "audio"

    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterator[AudioAsset]:  # type: ignore[override]
        list(super().generate(scenes, ctx))
        for s in scenes:
            yield AudioAsset(s.index, np.full((1, 80), 0.01 * (s.index + 1), np.float32), 8000, made_by=self.name)


class Shout(Tokenizer):
    """Tokens holding the upper-cased prompt's bytes (``produces`` set per instance's class)."""

    name = "shout"
    produces = "shout"

    def tokenize(self, scenes: Sequence[Scene], ctx: RenderContext) -> list[Tokens]:
        return [Tokens(self.produces, self.name, {"bytes": np.frombuffer(s.prompt.upper().encode(), np.uint8).copy()})
                for s in scenes]


class ShoutFake(Shout):
    name = "shout-fake"
    produces = "fake"  # the story tokenizer's kind: a track's own tokenizer wins on its cues


class Writer(Composer):
    """Writes ``story.json`` too (the fake composer's file name)."""

    name = "writer"

    def compose(self, story: Story, out_dir: Path) -> list[Path]:
        path = Path(out_dir) / "story.json"
        with atomic_write(path, "w") as fh:
            fh.write("{}\n")
        return [path]


class Picker(Composer):
    name = "picker"
    track_options: ClassVar[dict[str, Any]] = {"track": "image", "voices": "audio"}

    class Options(Options):
        track: str | None = Field(None, description="the image track")
        voices: list[str] = Field(default_factory=list, description="audio tracks")

    def compose(self, story: Story, out_dir: Path) -> list[Path]:
        return []


def five_tracks(**kw: Any) -> Pipeline:
    return Pipeline(planner="fake-planner", tracks={
        "frames": {"generator": "fake-image"},
        "sketches": {"generator": ("fake-image", {"width": 8, "height": 8}), "text": "sketch of {prompt}"},
        "narration": {"generator": "fake-audio", "text": "{caption}"},
        "ambience": {"generator": ("fake-audio", {"sample_rate": 4000}), "gain": -6},
        "music": {"generator": {"name": "fake-audio", "channels": 2}, "text": "music for {prompt}", "duck": None},
    }, registry=make_registry(), **kw)


# -- any number of tracks per modality ------------------------------------------------------
def test_two_image_and_three_audio_tracks_render_into_their_folders(tmp_path: Path) -> None:
    story = five_tracks().run(StoryRequest(script=SCRIPT, seed=4, width=16, height=12), out_dir=tmp_path)
    assert list(story.tracks) == ["frames", "sketches", "narration", "ambience", "music"]
    assert [t.modality for t in story.tracks.values()] == ["image", "image", "audio", "audio", "audio"]
    names = set(files(tmp_path))
    for track, ext in (("frames", "png"), ("sketches", "png"), ("narration", "wav"), ("ambience", "wav"), ("music", "wav")):
        for i in range(3):
            assert f"tracks/{track}/scene-{i:04d}.{ext}" in names and f"tracks/{track}/scene-{i:04d}.json" in names
        assert sorted(story.tracks[track].assets) == [0, 1, 2]
    assert not any(n.startswith(("images/", "audio/")) for n in names)
    # each track's options and text: sizes, rates, channels
    assert story.tracks["frames"].assets[0].image.size == (16, 12)  # type: ignore[union-attr]
    assert story.tracks["sketches"].assets[0].image.size == (8, 8)  # type: ignore[union-attr]
    data, rate = sf.read(tmp_path / "tracks/ambience/scene-0002.wav", always_2d=True)
    assert rate == 4000 and data.shape == (4000, 1)  # the fake planner's 1 s scenes
    data, rate = sf.read(tmp_path / "tracks/music/scene-0000.wav", always_2d=True)
    assert rate == 8000 and data.shape == (8000, 2)
    # the sketches track renders its own text: the picture the fake draws for "sketch of a red fox"
    plan = story.plan
    want = next(iter(FakeImageGenerator(width=8, height=8).generate(
        [Scene(0, "sketch of a red fox")], RenderContext(plan=plan, seed=4))))
    assert (tmp_path / "tracks/sketches/scene-0000.png").read_bytes() == png(want.image)
    assert story.tracks["sketches"].cues[0].prompt == "sketch of a red fox"
    assert story.tracks["music"].cues[2].prompt == "music for a green frog"
    # the compat views: the first image and the first audio track, by scene
    assert story.images[1] is story.tracks["frames"].assets[1]
    assert story.audio[1] is story.tracks["narration"].assets[1]
    assert [t.name for t in story.image_tracks()] == ["frames", "sketches"]
    assert story.image_track() is story.tracks["frames"]
    assert [t.gain for t in story.audio_tracks()] == [0.0, -6.0, 0.0]


def test_shorthand_names_tracks_after_the_generators(tmp_path: Path) -> None:
    pipe = Pipeline(planner="fake-planner", generators=["fake-image", ("fake-audio", {"sample_rate": 4000})],
                    registry=make_registry())
    assert list(pipe.tracks) == ["fake-image", "fake-audio"]
    assert [g.name for g in pipe.generators] == ["fake-image", "fake-audio"]
    story = pipe.run(StoryRequest(script=SCRIPT, seed=1), out_dir=tmp_path / "a")
    names = set(files(tmp_path / "a"))
    assert {"tracks/fake-image/scene-0002.png", "tracks/fake-audio/scene-0002.wav"} <= names
    assert sorted(story.images) == sorted(story.audio) == [0, 1, 2]
    assert story.tracks["fake-audio"].assets[0].sample_rate == 4000  # type: ignore[union-attr]
    # the same story given as tracks makes the same assets
    same = Pipeline(planner="fake-planner", tracks={"fake-image": {"generator": "fake-image"},
                                                    "fake-audio": {"generator": ("fake-audio", {"sample_rate": 4000})}},
                    registry=make_registry())
    same.run(StoryRequest(script=SCRIPT, seed=1), out_dir=tmp_path / "b")
    a, b = files(tmp_path / "a"), files(tmp_path / "b")
    assert len([k for k in a if k.startswith("tracks/")]) == 12
    assert {k: v for k, v in a.items() if k.startswith("tracks/")} == {k: v for k, v in b.items() if k.startswith("tracks/")}


def test_shorthand_with_two_generators_of_one_modality_shows_the_tracks_form() -> None:
    with pytest.raises(ConfigError) as err:
        Pipeline(planner="fake-planner", generators=["fake-image", ("fake-image", {"width": 8})], registry=make_registry())
    msg = str(err.value)
    assert "two image generators" in msg and "tracks={" in msg and "[tracks.<name>]" in msg


def test_tracks_and_generators_together_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"not both"):
        Pipeline(planner="fake-planner", generators=["fake-image"], tracks={"a": {"generator": "fake-audio"}},
                 registry=make_registry())


@pytest.mark.parametrize("name", ["my track", "", "-frames", "../up", "a/b", "x" * 65, 3, "é"])
def test_bad_track_names_are_refused(name: object) -> None:
    with pytest.raises(ConfigError, match=r"letters, digits"):
        Pipeline(planner="fake-planner", tracks={name: {"generator": "fake-image"}}, registry=make_registry())  # type: ignore[dict-item]


def test_track_name_limits_accepted() -> None:
    pipe = Pipeline(planner="fake-planner", tracks={"x" * 64: {"generator": "fake-image"}, "A_1-b": {"generator": "fake-audio"}},
                    registry=make_registry())
    assert list(pipe.tracks) == ["x" * 64, "A_1-b"]


def test_unknown_track_key_gets_a_suggestion() -> None:
    with pytest.raises(ConfigError) as err:
        Pipeline(planner="fake-planner", tracks={"amb": {"generator": "fake-audio", "gian": -6}}, registry=make_registry())
    assert "track 'amb'" in str(err.value) and "Did you mean 'gain'" in str(err.value)
    with pytest.raises(ConfigError, match=r"Did you mean 'generator'"):
        Pipeline(planner="fake-planner", tracks={"amb": {"generater": "fake-audio"}}, registry=make_registry())
    with pytest.raises(ConfigError, match=r"has no generator"):
        Pipeline(planner="fake-planner", tracks={"amb": {"gain": -6}}, registry=make_registry())
    with pytest.raises(ConfigError, match=r"must be a table"):
        Pipeline(planner="fake-planner", tracks={"amb": "fake-audio"}, registry=make_registry())  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match=r"gain"):  # a setting out of range names it
        Pipeline(planner="fake-planner", tracks={"amb": {"generator": "fake-audio", "gain": 99}}, registry=make_registry())
    with pytest.raises(ConfigError, match=r"image track: gain and duck"):
        Pipeline(planner="fake-planner", tracks={"f": {"generator": "fake-image", "duck": 6}}, registry=make_registry())


def test_a_planner_that_cannot_plan_tracks_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        Pipeline(planner="fake-planner", tracks={"amb": {"planner": "script", "generator": "fake-audio"}},
                 registry=make_registry())
    msg = str(err.value)
    assert "'script' cannot plan a track's cues" in msg and "fake-events" in msg


@pytest.mark.parametrize("template", ["{prompt.__class__}", "{x!r}", "{prompt:>10}", "{0}", "{}", "{prompt[0]}", "{oops"])
def test_template_fields_must_be_plain_names(template: str) -> None:
    with pytest.raises(ConfigError, match=r"track 'f': text template"):
        Pipeline(planner="fake-planner", tracks={"f": {"generator": "fake-image", "text": template}}, registry=make_registry())


def test_a_scene_without_the_named_text_gets_no_cue(tmp_path: Path) -> None:
    plan = StoryPlan(scenes=[Scene(0, "a", "A", duration=1.0),
                             Scene(1, "b", "B", duration=1.0, texts={"ambience": "rain on a roof"}),
                             Scene(2, "c", "C", duration=1.0, texts={"ambience": "  "}),
                             Scene(3, "d", "D", duration=1.0, texts={"narration": "the end", "ambience": "wind"})],
                     seed=2)
    pipe = Pipeline(planner="fake-planner", tracks={
        "frames": {"generator": "fake-image"},
        "ambience": {"generator": "fake-audio", "text": "{ambience}, distant"},
        "voice": {"generator": "fake-audio", "text": "{narration}"},
    }, registry=make_registry())
    story = pipe.run(StoryRequest(seed=2), plan=plan, out_dir=tmp_path)
    amb = story.tracks["ambience"]
    assert [(c.index, c.scene, c.prompt) for c in amb.cues] == [(1, 1, "rain on a roof, distant"), (3, 3, "wind, distant")]
    assert sorted(amb.assets) == [1, 3]
    assert sorted(p.name for p in (tmp_path / "tracks/ambience").glob("*.wav")) == ["scene-0001.wav", "scene-0003.wav"]
    # {narration}: the scene's narration text, else its caption
    assert [c.prompt for c in story.tracks["voice"].cues] == ["A", "B", "C", "the end"]
    assert [(s.index, s.start, s.duration) for s in story.timeline.tracks["ambience"]] == [(1, 1.0, 1.0), (3, 3.0, 1.0)]


def test_per_track_seed_and_render_context(tmp_path: Path) -> None:
    a, b, planned = Recorder(), Recorder(), AudioRecorder()
    pipe = Pipeline(planner="fake-planner", tokenizers=["fake-tokenizer"], tracks={
        "a": {"generator": a},
        "b": {"generator": b, "seed": 11, "text": "{caption}!"},
        "events": {"planner": ("fake-events", {"per_scene": 2}), "generator": planned},
        "fakes": {"generator": "fake-image", "seed": 11},
        "story-seed": {"generator": "fake-image"},
    }, registry=make_registry())
    story = pipe.run(StoryRequest(script=SCRIPT, seed=5), out_dir=tmp_path)
    (ca,), (cb,), (cp,) = a.calls, b.calls, planned.calls
    assert (ca["track"], ca["seed"]) == ("a", 5) and (cb["track"], cb["seed"]) == ("b", 11)
    assert (cp["track"], cp["seed"]) == ("events", 5)
    # ctx.plan holds the track's cues: on the timeline, with the track's text
    for call, track in ((ca, "a"), (cb, "b"), (cp, "events")):
        assert all(isinstance(c, Cue) for c in call["plan"])
        assert [c.to_dict() for c in call["plan"]] == [c.to_dict() for c in story.tracks[track].cues]
    assert [(c.index, c.prompt, c.start, c.duration) for c in cb["plan"]] == [
        (0, "a red fox!", 0.0, 1.0), (1, "a blue bird!", 1.0, 1.0), (2, "a green frog!", 2.0, 1.0)]
    assert [(c.index, c.scene, c.start, c.duration) for c in cp["plan"]] == [
        (0, 0, 0.0, 0.5), (1, 0, 0.5, 0.5), (2, 1, 1.0, 0.5), (3, 1, 1.5, 0.5), (4, 2, 2.0, 0.5), (5, 2, 2.5, 0.5)]
    # the per-track seed reaches the scene seeds: the fake's pictures for seed 11 and for the story's 5
    for track, seed in (("fakes", 11), ("story-seed", 5)):
        want = next(iter(FakeImageGenerator().generate([Scene(1, "a blue bird")], RenderContext(plan=story.plan, seed=seed))))
        assert (tmp_path / f"tracks/{track}/scene-0001.png").read_bytes() == png(want.image)
    assert files(tmp_path)["tracks/fakes/scene-0001.png"] != files(tmp_path)["tracks/story-seed/scene-0001.png"]
    assert RenderContext(plan=story.plan, seed=11).scene_seed(1) == derive_seed(11, "scene", 1)


def test_story_tokens_reach_every_tracks_cues_and_track_tokenizers_their_own(tmp_path: Path) -> None:
    a, narr, planned = Recorder(), AudioRecorder(), AudioRecorder()
    pipe = Pipeline(planner="fake-planner", tokenizers=["fake-tokenizer"], tracks={
        "a": {"generator": a},
        "narr": {"generator": narr, "text": "say {caption}", "tokenizers": [Shout()]},
        "events": {"planner": "fake-events", "generator": planned, "tokenizers": [ShoutFake()]},
    }, registry=make_registry())
    story = pipe.run(StoryRequest(script=SCRIPT, seed=5), out_dir=tmp_path)
    prompts = {s.index: s.prompt for s in story.plan.scenes}
    # the story tokenizer ran on the scenes: their prompts' bytes, on every cue of a scene-cued track
    assert a.calls[0]["tokens"] == {i: {"fake": prompts[i].encode()} for i in range(3)}
    # a cue that renders another text than its scene's prompt takes none of the story tokenizers'
    # tokens (they encode the scene's prompt): only its own track's tokenizer's, made from its text
    assert narr.calls[0]["tokens"] == {i: {"shout": f"SAY {prompts[i]}".upper().encode()} for i in range(3)}
    # a track planner's cues (their own texts) likewise: a track tokenizer of that kind encodes their text
    cues = {c.index: c for c in story.tracks["events"].cues}
    assert planned.calls[0]["tokens"] == {i: {"fake": cues[i].prompt.upper().encode()} for i in range(6)}
    # the story's scenes keep the story tokens only
    assert {s.index: sorted(s.tokens) for s in story.plan.scenes} == {0: ["fake"], 1: ["fake"], 2: ["fake"]}
    assert all(s.tokens["fake"].tensors["bytes"].tobytes() == s.prompt.encode() for s in story.plan.scenes)


def test_story_tokenizer_tokens_reach_only_cues_that_render_their_scenes_prompt() -> None:
    planned, same = AudioRecorder(), AudioRecorder()
    pipe = Pipeline(planner="fake-planner", tokenizers=["fake-tokenizer"],
                    tracks={"events": {"planner": ("fake-events", {"per_scene": 3}), "generator": planned},
                            "same": {"generator": same, "text": "{prompt}"}},
                    registry=make_registry())
    story = pipe.run(StoryRequest(script=SCRIPT, seed=5))
    seen = planned.calls[0]["tokens"]
    assert len(seen) == 9
    for cue in story.tracks["events"].cues:
        assert cue.prompt != story.plan.scene(cue.scene).prompt
        assert seen[cue.index] == {}  # the scene's prompt encoded would be another text's conditioning
    assert same.calls[0]["tokens"] == {s.index: {"fake": s.prompt.encode()} for s in story.plan.scenes}


def test_resume_does_not_tokenize_finished_scenes_again(tmp_path: Path) -> None:
    events: list[ProgressEvent] = []
    pipe = Pipeline(planner="fake-planner", tokenizers=["fake-tokenizer"], tracks={
        "frames": {"generator": "fake-image"}, "events": {"planner": "fake-events", "generator": "fake-audio"}},
        registry=make_registry())
    pipe.run(StoryRequest(script=SCRIPT, seed=5), out_dir=tmp_path)
    before = files(tmp_path)
    pipe.run(StoryRequest(script=SCRIPT, seed=5), out_dir=tmp_path, progress=events.append)
    assert [e for e in events if e.stage in ("tokenize", "generate", "plan")] == []
    assert files(tmp_path) == before
    # one missing picture: the story tokenizer runs on that scene only
    (tmp_path / "tracks/frames/scene-0001.png").unlink()
    events.clear()
    pipe.run(StoryRequest(script=SCRIPT, seed=5), out_dir=tmp_path, progress=events.append)
    assert [(e.component, e.done, e.total) for e in events if e.stage == "tokenize"] == [
        ("fake-tokenizer", 0, 1), ("fake-tokenizer", 1, 1)]
    assert files(tmp_path) == before


# -- composers ------------------------------------------------------------------------------
def test_composer_dir_and_files_json(tmp_path: Path) -> None:
    pipe = Pipeline(planner="fake-planner", generators=["fake-image"],
                    composers=["fake-composer", {"name": "fake-composer", "dir": "second"},
                               ("fake-composer", {"dir": "nested/third"})], registry=make_registry())
    story = pipe.run(StoryRequest(script=SCRIPT, seed=1), out_dir=tmp_path)
    for rel in ("story.json", "second/story.json", "nested/third/story.json"):
        data = json.loads((tmp_path / rel).read_text())
        assert [d["image"] for d in data] == [True, True, True]
    assert json.loads((tmp_path / "files.json").read_text()) == {
        "fake-composer": ["story.json"], "second/fake-composer": ["second/story.json"],
        "nested/third/fake-composer": ["nested/third/story.json"]}
    assert sorted(story.files) == ["fake-composer", "nested/third/fake-composer", "second/fake-composer"]
    assert pipe.describe()["composer"][1] == {"name": "fake-composer", "options": {}, "dir": "second"}


@pytest.mark.parametrize("dirs", [("", ""), ("b", "b"), ("b", "b/"), ("b", "./b")])
def test_two_same_name_composers_in_one_folder_are_refused(dirs: tuple[str, str]) -> None:
    specs = [{"name": "fake-composer", "dir": d} if d else "fake-composer" for d in dirs]
    with pytest.raises(ConfigError, match=r"two 'fake-composer' composers would write the same files"):
        Pipeline(planner="fake-planner", generators=["fake-image"], composers=specs, registry=make_registry())


@pytest.mark.parametrize("bad", ["", " ", "/abs", "../out", "a/../../b", ".", 3])
def test_composer_dir_must_be_inside_the_folder(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"composer dir must be a folder inside the output folder"):
        Pipeline(planner="fake-planner", generators=["fake-image"], composers=[{"name": "fake-composer", "dir": bad}],
                 registry=make_registry())


@pytest.mark.parametrize("bad", ["tracks", "tracks/fake-image", "./tokens/x"])
def test_composer_dir_must_not_be_the_runs_own_folders(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"inside the run's own (tracks|tokens)/ folder"):
        Pipeline(planner="fake-planner", generators=["fake-image"], composers=[{"name": "fake-composer", "dir": bad}],
                 registry=make_registry())


def test_a_file_written_by_two_composers_is_a_component_error(tmp_path: Path) -> None:
    pipe = Pipeline(planner="fake-planner", generators=["fake-image"], composers=["fake-composer", Writer()],
                    registry=make_registry())
    with pytest.raises(ComponentError) as err:
        pipe.run(StoryRequest(script=SCRIPT, seed=1), out_dir=tmp_path)
    msg = str(err.value)
    assert "'writer'" in msg and "story.json" in msg and "'fake-composer'" in msg and "dir" in msg
    assert (tmp_path / "tracks/fake-image/scene-0002.png").is_file()  # the assets are kept
    assert json.loads((tmp_path / "files.json").read_text()) == {"fake-composer": ["story.json"], "writer": ["story.json"]}


def test_composer_track_options_are_checked_when_the_pipeline_is_built() -> None:
    tracks = {"frames": {"generator": "fake-image"}, "narr": {"generator": "fake-audio"},
              "amb": {"generator": "fake-audio"}}
    reg = make_registry()
    ok = Pipeline(planner="fake-planner", tracks=tracks, composers=[Picker(track="frames", voices=["narr", "amb"])],
                  registry=reg)
    assert ok.composers[0].options.voices == ["narr", "amb"]  # type: ignore[attr-defined]
    with pytest.raises(ConfigError) as err:
        Pipeline(planner="fake-planner", tracks=tracks, composers=[Picker(track="narr")], registry=reg)
    assert "track = 'narr' is an audio track" in str(err.value) and "image tracks: frames" in str(err.value)
    with pytest.raises(ConfigError, match=r"Did you mean 'frames'"):
        Pipeline(planner="fake-planner", tracks=tracks, composers=[Picker(track="framse")], registry=reg)
    with pytest.raises(ConfigError, match=r"voices = 'frames' is an image track"):
        Pipeline(planner="fake-planner", tracks=tracks, composers=[Picker(voices=["amb", "frames"])], registry=reg)


# -- the run's description ------------------------------------------------------------------
def test_describe_is_json_and_deterministic_and_names_the_track_order() -> None:
    def build(order: list[str]) -> Pipeline:
        table = {"frames": {"generator": ("fake-image", {"width": 8})},
                 "amb": {"planner": "fake-events", "generator": "fake-audio", "tokenizers": ["fake-tokenizer"], "gain": -3}}
        return Pipeline(planner="fake-planner", tracks={k: table[k] for k in order},
                        timing={"mode": "fixed", "seconds": 2}, mix={"loudness": -20}, registry=make_registry())

    one, two = build(["frames", "amb"]).describe(), build(["frames", "amb"]).describe()
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)
    assert json.loads(json.dumps(one)) == one  # plain JSON data
    assert one["tracks"]["amb"]["planner"] == {"name": "fake-events", "options": {}}
    assert one["tracks"]["amb"]["tokenizers"] == [{"name": "fake-tokenizer", "options": {}}]
    assert one["tracks"]["amb"]["settings"]["gain"] == -3
    assert one["timing"]["mode"] == "fixed" and one["timing"]["seconds"] == 2 and one["mix"]["loudness"] == -20
    # the order of the tracks is part of the run (the first image track is the story's pictures)
    other = build(["amb", "frames"]).describe()
    assert json.dumps(other, sort_keys=True) != json.dumps(one, sort_keys=True)


def test_describe_of_options_that_are_not_json(tmp_path: Path) -> None:
    class PathGen(Recorder):
        name = "path-gen"

        class Options(Options):
            where: Path | None = Field(None, description="a path")

    reg = make_registry()

    class Plugin:
        @hookimpl
        def register_generators(self, register: Any) -> None:
            register(PathGen)

    reg.register_plugin(Plugin(), name="path-plugin")
    pipe = Pipeline(planner="fake-planner", tracks={"p": {"generator": ("path-gen", {"where": tmp_path})}}, registry=reg)
    described = pipe.describe()
    assert json.loads(json.dumps(described)) == described
    assert described["tracks"]["p"]["generator"]["options"]["where"] == str(tmp_path)


# -- limits ---------------------------------------------------------------------------------
def test_limits_bound_the_tracks_before_they_render(tmp_path: Path) -> None:
    gen = Recorder()
    # fixed timing: 40 scenes of 100 s are more than the story_seconds limit (1 hour)
    pipe = Pipeline(planner="fake-planner", tracks={"frames": {"generator": gen}}, timing={"mode": "fixed", "seconds": 100},
                    registry=make_registry())
    script = "\n".join(f"scene {i}" for i in range(40))
    with pytest.raises(LimitError) as err:
        pipe.run(StoryRequest(script=script, seed=1), out_dir=tmp_path / "a")
    assert err.value.limit == "story_seconds" and gen.calls == []
    # a track planner's cues, once planned: 3 scenes x 8 events > 20, before the track renders
    planned = AudioRecorder()
    pipe = Pipeline(planner="fake-planner", tracks={"frames": {"generator": "fake-image"},
                                                    "events": {"planner": ("fake-events", {"per_scene": 8}), "generator": planned}},
                    registry=make_registry(), limits=Limits(cues=20))
    with pytest.raises(LimitError) as err:
        pipe.run(StoryRequest(script=SCRIPT, seed=1), out_dir=tmp_path / "b")
    assert (err.value.limit, err.value.value) == ("cues", 24) and "'events'" in str(err.value)
    assert planned.calls == [] and not (tmp_path / "b/tracks/events/cues.json").exists()
    # at most `tracks` tracks
    with pytest.raises(LimitError, match=r"tracks"):
        Pipeline(planner="fake-planner", tracks={f"t{i}": {"generator": "fake-image"} for i in range(3)},
                 registry=make_registry(), limits=Limits(tracks=2)).run(StoryRequest(script=SCRIPT, seed=1))
    # fixed seconds over scene_seconds
    with pytest.raises(LimitError) as err:
        Pipeline(planner="fake-planner", tracks={"f": {"generator": gen}}, timing={"mode": "fixed", "seconds": 200},
                 registry=make_registry()).run(StoryRequest(script=SCRIPT, seed=1))
    assert err.value.limit == "scene_seconds" and gen.calls == []
    # a track generator's options are checked before anything is planned
    pipe = Pipeline(planner="fake-planner", tracks={"big": {"generator": ("fake-image", {"width": 100_000})}},
                    registry=make_registry())
    with pytest.raises(LimitError, match=r"width"):
        pipe.run(StoryRequest(script=SCRIPT, seed=1), out_dir=tmp_path / "c")
    assert not (tmp_path / "c" / "plan.json").exists()


# -- side by side ---------------------------------------------------------------------------
class Together(Generator):
    """Meets its partner on a barrier (when given one), so both must render at the same time."""

    name = "together"
    modality = "audio"

    class Options(Options):
        device: str = Field("auto", description="where it renders")
        pitch: float = Field(220.0, description="Hz")

    def __init__(self, barrier: threading.Barrier | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.barrier = barrier
        self.threads: set[int] = set()

    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterator[AudioAsset]:
        for s in scenes:
            self.threads.add(threading.get_ident())
            # side-by-side tracks start up one at a time, until their generator first reports
            ctx.report(0, 1, s.index)
            if self.barrier is not None:
                self.barrier.wait()
            t = np.arange(800) / 8000
            rng = np.random.default_rng(ctx.scene_seed(s))
            wave = 0.2 * np.sin(2 * np.pi * self.options.pitch * t) + 0.01 * rng.standard_normal(800)
            yield AudioAsset(s.index, wave.astype(np.float32), 8000, made_by=self.name)


def test_parallel_tracks_run_in_threads_and_match_a_serial_run(tmp_path: Path) -> None:
    barrier = threading.Barrier(2, timeout=20)
    a, b = Together(barrier, pitch=220), Together(barrier, pitch=330)
    pipe = Pipeline(planner="fake-planner", tracks={"a": {"generator": a}, "b": {"generator": b}},
                    composers=["fake-composer"], parallel=True, registry=make_registry())
    pipe.run(StoryRequest(script=SCRIPT, seed=3), out_dir=tmp_path / "side")
    assert len(a.threads) == 1 and len(b.threads) == 1 and a.threads != b.threads
    assert threading.get_ident() not in a.threads | b.threads
    c, d = Together(pitch=220), Together(pitch=330)
    serial = Pipeline(planner="fake-planner", tracks={"a": {"generator": c}, "b": {"generator": d}},
                      composers=["fake-composer"], parallel=False, registry=make_registry())
    serial.run(StoryRequest(script=SCRIPT, seed=3), out_dir=tmp_path / "one")
    assert c.threads == d.threads == {threading.get_ident()}
    side, one = files(tmp_path / "side"), files(tmp_path / "one")
    assert side == one and len([k for k in side if k.endswith(".wav")]) == 6


def test_side_by_side_tracks_start_up_one_at_a_time_then_overlap() -> None:
    """Model loading (and the lazy imports of diffusers/transformers, which fail in two threads at
    once) runs one track at a time: until a generator first reports, no other track's does."""
    state = {"loading": 0, "most": 0}
    lock = threading.Lock()
    barrier = threading.Barrier(2, timeout=20)

    class Loading(Together):
        loaded = False

        def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterator[AudioAsset]:
            if self.loaded:
                yield from super().generate(scenes, ctx)
                return
            self.loaded = True
            with lock:
                state["loading"] += 1
                state["most"] = max(state["most"], state["loading"])
            time.sleep(0.05)  # "loading a model"
            with lock:
                state["loading"] -= 1
            yield from super().generate(scenes, ctx)  # reports, then meets the other track on the barrier

    a, b = Loading(barrier), Loading(barrier)
    pipe = Pipeline(planner="fake-planner", tracks={"a": {"generator": a}, "b": {"generator": b}}, parallel=True,
                    registry=make_registry())
    pipe.run(StoryRequest(script=SCRIPT, seed=3))
    assert state["most"] == 1  # never two start-ups at once
    assert a.threads != b.threads  # and the rendering still met on the barrier: side by side


def test_parallel_devices_groups_tracks_by_device() -> None:
    barrier = threading.Barrier(2, timeout=20)
    a, b, c = Together(barrier, device="cuda:0"), Together(barrier, device="cuda:1"), Together(device="cuda:0")
    pipe = Pipeline(planner="fake-planner", tracks={"a": {"generator": a}, "b": {"generator": b}, "c": {"generator": c}},
                    registry=make_registry())
    assert pipe.parallel == "devices"
    pipe.run(StoryRequest(script=SCRIPT, seed=3))
    assert a.threads == c.threads and a.threads != b.threads  # one thread per device, tracks of a device in turn


class Failing(Generator):
    """Yields scene 0, then fails (and tells the test it is about to)."""

    name = "failing"
    modality = "image"

    def __init__(self, failed: threading.Event, started: threading.Event) -> None:
        super().__init__()
        self.failed, self.started = failed, started

    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterator[ImageAsset]:
        for s in scenes:
            if s.index == 1:
                assert self.started.wait(20)
                self.failed.set()
                raise RuntimeError("the failing track broke on scene 1")
            yield ImageAsset(s.index, Image.new("RGB", (4, 4)), made_by=self.name)


class Slow(Generator):
    """Reports 'denoising steps' for a while per scene: a side-by-side failure stops it at one."""

    name = "slow"
    modality = "audio"

    def __init__(self, failed: threading.Event, started: threading.Event) -> None:
        super().__init__()
        self.failed, self.started = failed, started
        self.reports = 0

    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterator[AudioAsset]:
        for s in scenes:
            if s.index == 1:
                self.started.set()
                assert self.failed.wait(20)
            for step in range(200):
                ctx.report(step, 200, s.index)
                self.reports += 1
                time.sleep(0.005)
            yield AudioAsset(s.index, np.zeros((1, 80), np.float32), 8000, made_by=self.name)


def test_a_failure_in_one_side_by_side_track_stops_the_other(tmp_path: Path) -> None:
    failed, started = threading.Event(), threading.Event()
    slow = Slow(failed, started)
    pipe = Pipeline(planner="fake-planner", tracks={"frames": {"generator": Failing(failed, started)},
                                                    "sound": {"generator": slow}}, parallel=True, registry=make_registry())
    with pytest.raises(RuntimeError, match=r"the failing track broke on scene 1") as err:
        pipe.run(StoryRequest(script=SCRIPT, seed=1), out_dir=tmp_path)
    assert any("track 'frames'" in n for n in getattr(err.value, "__notes__", []))
    # the slow track stopped at its next report on scene 1: it never finished scene 1 or started 2
    assert 200 <= slow.reports < 400
    assert sorted(p.name for p in (tmp_path / "tracks/frames").glob("*.png")) == ["scene-0000.png"]
    assert sorted(p.name for p in (tmp_path / "tracks/sound").glob("*.wav")) == ["scene-0000.wav"]


def test_progress_calls_never_overlap_across_tracks() -> None:
    inside = [0]
    overlaps: list[int] = []
    threads: set[int] = set()

    def progress(event: ProgressEvent) -> None:
        inside[0] += 1
        threads.add(threading.get_ident())
        if inside[0] > 1:
            overlaps.append(inside[0])
        time.sleep(0.001)
        inside[0] -= 1

    class Chatty(Together):
        def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterator[AudioAsset]:
            for s in scenes:
                for k in range(20):
                    ctx.report(k, 20, s.index)
                yield from super().generate([s], ctx)

    barrier = threading.Barrier(2, timeout=20)
    pipe = Pipeline(planner="fake-planner", tracks={"a": {"generator": Chatty(barrier)}, "b": {"generator": Chatty(barrier)}},
                    parallel=True, registry=make_registry())
    pipe.run(StoryRequest(script=SCRIPT, seed=1), progress=progress)
    assert len(threads) >= 2 and overlaps == []


@pytest.mark.parametrize("to_thread", [False, True], ids=["process", "track-thread"])
def test_ctrl_c_while_tracks_render_side_by_side_stops_them(tmp_path: Path, to_thread: bool) -> None:
    """Ctrl-C stops tracks rendering side by side, also when the OS hands the signal to a track's
    thread (``to_thread``: its C handler runs there and the main thread's wait is not woken)."""
    import os
    import signal

    class Interrupting(Generator):
        name = "interrupting"
        modality = "audio"

        def __init__(self, send: bool) -> None:
            super().__init__()
            self.send = send
            self.reports = 0

        def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterator[AudioAsset]:
            for s in scenes:
                if self.send and s.index == 1:
                    time.sleep(0.2)  # the main thread waits for the tracks by now
                    if to_thread:
                        signal.pthread_kill(threading.get_ident(), signal.SIGINT)
                    else:
                        os.kill(os.getpid(), signal.SIGINT)
                for step in range(300):
                    ctx.report(step, 300, s.index)
                    self.reports += 1
                    time.sleep(0.005)
                yield AudioAsset(s.index, np.zeros((1, 80), np.float32), 8000, made_by=self.name)

    a, b = Interrupting(send=True), Interrupting(send=False)
    pipe = Pipeline(planner="fake-planner", tracks={"a": {"generator": a}, "b": {"generator": b}}, parallel=True,
                    registry=make_registry())
    started = time.monotonic()
    # Ctrl-C as in an interactive process: a process started in the background by a shell
    # (make test &, some CI runners) inherits SIGINT ignored, and Python then raises nothing
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            pipe.run(StoryRequest(script=SCRIPT, seed=1), out_dir=tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)
    # both stopped at a report during scene 1 (9 s of reports were left to do)
    assert 300 <= a.reports < 600 and 300 <= b.reports < 600
    assert time.monotonic() - started < 6
    assert sorted(p.name for p in (tmp_path / "tracks/a").glob("*.wav")) == ["scene-0000.wav"]


# -- interleaved planners -------------------------------------------------------------------
class WholePlan(Recorder):
    """An image generator that needs the whole plan (StoryDiffusion's shape)."""

    name = "whole-plan"
    needs_whole_plan = True


class WholePlugin:
    @hookimpl
    def register_generators(self, register: Any) -> None:
        register(WholePlan)


def test_interleaved_planner_renders_scene_tracks_before_each_step(tmp_path: Path) -> None:
    events: list[ProgressEvent] = []
    seen: list[dict[str, Any]] = []
    reg = make_registry(WholePlugin())
    pipe = Pipeline(planner="fake-interleaved", tracks={
        "frames": {"generator": "fake-image"},
        "voice": {"generator": "fake-audio", "text": "{caption}"},
        "ids": {"generator": "whole-plan"},
        "events": {"planner": "fake-events", "generator": "fake-audio"},
    }, registry=reg)
    step = pipe.planner.step

    def watched(ctx: Any) -> Scene | None:
        seen.append({name: sorted(t.assets) for name, t in ctx.story.tracks.items()})
        return step(ctx)

    pipe.planner.step = watched  # type: ignore[method-assign]
    story = pipe.run(StoryRequest(prompt="dawn", num_scenes=3, seed=2), out_dir=tmp_path, progress=events.append)
    # each step saw the scene-cued tracks' assets of every scene so far, and nothing of the others
    assert seen == [{"frames": [0], "voice": [0], "ids": [], "events": []},
                    {"frames": [0, 1], "voice": [0, 1], "ids": [], "events": []}]
    # the next scene quotes the mean colour of the picture before it (the fake reads story.images)
    for prev, scene in zip(story.plan.scenes, story.plan.scenes[1:]):
        mean = np.asarray(story.tracks["frames"].assets[prev.index].image, np.float64).mean(axis=(0, 1))  # type: ignore[union-attr]
        assert scene.prompt == "after " + ",".join(str(int(v)) for v in mean)
    # order of events: frames and voice of scene i, then the step for scene i+1; ids and events last
    order = [(e.stage, e.component, e.scene_index) for e in events
             if (e.stage == "generate" and e.scene_index is not None) or (e.stage == "plan" and e.message == "next scene")]
    steps = [i for i, o in enumerate(order) if o[0] == "plan"]
    assert len(steps) == 2
    for k, at in enumerate(steps):
        before = {(c, i) for _, c, i in order[:at] if c is not None}
        assert {("fake-image (frames)", k), ("fake-audio (voice)", k)} <= before
        assert not any(c.startswith(("whole-plan", "fake-audio (events)")) for c, _ in before)
    later = order[steps[-1] + 1:]
    assert {(c, i) for _, c, i in later} == {("fake-image (frames)", 2), ("fake-audio (voice)", 2),
                                             ("whole-plan (ids)", 0), ("whole-plan (ids)", 1), ("whole-plan (ids)", 2),
                                             *(("fake-audio (events)", i) for i in range(6))}
    assert sorted(story.tracks["ids"].assets) == [0, 1, 2] and sorted(story.tracks["events"].assets) == list(range(6))
    # the whole-plan generator got every scene in one call, once the story was written
    ids = pipe.tracks["ids"].generator
    assert [[s.index for s in c["scenes"]] for c in ids.calls] == [[0, 1, 2]]  # type: ignore[attr-defined]
    # a resume of the finished folder renders and plans nothing
    again: list[ProgressEvent] = []
    pipe.run(StoryRequest(prompt="dawn", num_scenes=3, seed=2), out_dir=tmp_path, progress=again.append)
    assert [e for e in again if e.stage == "generate"] == []


def test_interleaved_planner_with_a_whole_plan_pace_track_is_refused() -> None:
    class WholeVoice(AudioRecorder):
        name = "whole-voice"
        needs_whole_plan = True

    with pytest.raises(ConfigError, match=r"needs the whole plan"):
        Pipeline(planner="fake-interleaved", tracks={"voice": {"generator": WholeVoice()}},
                 timing={"mode": "track", "track": "voice"}, registry=make_registry())
    # a planner that plans the whole story first is fine with it
    voice = WholeVoice()
    story = Pipeline(planner="fake-planner", tracks={"voice": {"generator": voice}},
                     timing={"mode": "track", "track": "voice", "padding": 0.25}, registry=make_registry()
                     ).run(StoryRequest(script=SCRIPT, seed=1))
    assert [s.duration for s in story.timeline.scenes] == [0.26, 0.26, 0.26]  # 80 frames at 8 kHz + 0.25 s


# -- the model's tracks -----------------------------------------------------------------------
def test_story_add_to_tracks() -> None:
    plan = StoryPlan(scenes=[Scene(0, "a"), Scene(1, "b")])
    picture, clip = ImageAsset(1, Image.new("RGB", (2, 2))), AudioAsset(0, np.zeros((1, 8), np.float32), 8000)
    hand = Story(plan=plan)
    hand.add(picture, track="images")
    hand.add(clip, track="audio")
    assert hand.images == {1: picture} and hand.audio == {0: clip}
    assert hand.track("images").assets == {1: picture} and [c.index for c in hand.track("images").cues] == [1]
    with pytest.raises(ConfigError, match=r"'audio' is an audio track"):
        hand.add(picture, track="audio")
    with pytest.raises(ConfigError, match=r"has no track 'voice'"):
        hand.add(clip, track="voice")
    story = Story(plan=plan, tracks={"frames": Track("frames", "image"), "voice": Track("voice", "audio")})
    story.add(picture, track="frames")
    story.add(clip, track="voice")
    assert story.tracks["frames"].assets == {1: picture} and story.tracks["voice"].assets == {0: clip}
    assert story.images == {} and story.audio == {}
    with pytest.raises(ConfigError, match=r"'voice' is an audio track"):
        story.add(picture, track="voice")
    with pytest.raises(ConfigError, match=r"has no track 'images'; its tracks: frames, voice"):
        story.add(picture, track="images")


class Quiet(Generator):
    """Never reports: it stops at its next asset, which is kept."""

    name = "quiet"
    modality = "audio"

    def __init__(self, failed: threading.Event, started: threading.Event) -> None:
        super().__init__()
        self.failed, self.started = failed, started
        self.asked: list[int] = []

    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterator[AudioAsset]:
        for s in scenes:
            self.asked.append(s.index)
            if s.index == 1:
                self.started.set()
                assert self.failed.wait(20)
                time.sleep(0.3)  # the failure has reached the pipeline by now
            yield AudioAsset(s.index, np.full((1, 80), 0.1, np.float32), 8000, made_by=self.name)


def test_a_side_by_side_track_without_reports_stops_at_its_next_asset_and_keeps_it(tmp_path: Path) -> None:
    failed, started = threading.Event(), threading.Event()
    quiet = Quiet(failed, started)
    pipe = Pipeline(planner="fake-planner", tracks={"frames": {"generator": Failing(failed, started)},
                                                    "sound": {"generator": quiet}}, parallel=True, registry=make_registry())
    with pytest.raises(RuntimeError, match=r"broke on scene 1"):
        pipe.run(StoryRequest(script=SCRIPT, seed=1), out_dir=tmp_path)
    assert quiet.asked == [0, 1]
    assert sorted(p.name for p in (tmp_path / "tracks/sound").glob("*.wav")) == ["scene-0000.wav", "scene-0001.wav"]


def test_a_track_planner_that_plans_no_stories_says_so() -> None:
    pipe = Pipeline(planner="fake-events", generators=["fake-image"], registry=make_registry())
    with pytest.raises(ConfigError, match=r"fake-events plans a track's cues, not a story: use it as a track's planner"):
        pipe.run(StoryRequest(script=SCRIPT, seed=1))
