"""The pipeline: both shapes, seeds, progress, saving as assets appear, resume, contract errors."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from storysdk import (
    AudioAsset,
    ComponentError,
    Composer,
    ConfigError,
    Generator,
    ImageAsset,
    OutputFolderError,
    Pipeline,
    ProgressEvent,
    RenderContext,
    Scene,
    Story,
    StoryPlan,
    StoryRequest,
    Tokens,
)
from storysdk.testing import FakeAudioGenerator, FakeImageGenerator, FakePlanner, make_registry

SCRIPT = "a red fox\na blue bird\na green frog\na white owl"
#: Where the generators=[...] shorthand saves each track: tracks/<generator name>/.
IMAGES, AUDIO = "tracks/fake-image", "tracks/fake-audio"


def tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def mixed(reg: Any = None, **kw: Any) -> Pipeline:
    return Pipeline(
        planner="fake-planner",
        tokenizers=["fake-tokenizer"],
        generators=["fake-image", "fake-audio"],
        composers=["fake-composer"],
        registry=reg or make_registry(),
        **kw,
    )


def test_plan_then_render_writes_every_asset_and_the_plan(tmp_path: Path) -> None:
    story = mixed().run(StoryRequest(script=SCRIPT, seed=1), out_dir=tmp_path)
    assert sorted(story.images) == sorted(story.audio) == [0, 1, 2, 3]
    files = tree(tmp_path)
    for i in range(4):
        assert f"{IMAGES}/scene-{i:04d}.png" in files and f"{AUDIO}/scene-{i:04d}.wav" in files
    assert not (tmp_path / "images").exists() and not (tmp_path / "audio").exists()
    assert {"plan.json", "run.json", "story.json", "files.json"} <= set(files)
    assert StoryPlan.load(tmp_path / "plan.json") == story.plan
    assert all(s.tokens["fake"].tensors["bytes"].tobytes() == s.prompt.encode() for s in story.plan.scenes)
    assert story.files["fake-composer"] == [tmp_path / "story.json"]
    umask = os.umask(0)
    os.umask(umask)
    for name in ("plan.json", f"{IMAGES}/scene-0000.png", f"{AUDIO}/scene-0000.wav", "story.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_same_seed_gives_byte_identical_files_and_other_seed_differs(tmp_path: Path) -> None:
    mixed().run(StoryRequest(script=SCRIPT, seed=7), out_dir=tmp_path / "a")
    mixed().run(StoryRequest(script=SCRIPT, seed=7), out_dir=tmp_path / "b")
    mixed().run(StoryRequest(script=SCRIPT, seed=8), out_dir=tmp_path / "c")
    a, b, c = tree(tmp_path / "a"), tree(tmp_path / "b"), tree(tmp_path / "c")
    assert a == b
    assert a[f"{IMAGES}/scene-0000.png"] != c[f"{IMAGES}/scene-0000.png"]


def test_scene_seed_does_not_depend_on_batch_company() -> None:
    plan = StoryPlan(scenes=[Scene(i, "x") for i in range(3)], seed=3)
    ctx = RenderContext(plan=plan, seed=3)
    gen = FakeImageGenerator(width=8, height=8)
    together = {a.scene_index: a.image.tobytes() for a in gen.generate(plan.scenes, ctx)}
    alone = {a.scene_index: a.image.tobytes() for s in plan.scenes for a in gen.generate([s], ctx)}
    assert together == alone


def test_progress_reports_every_stage(tmp_path: Path) -> None:
    events: list[ProgressEvent] = []
    mixed().run(StoryRequest(script=SCRIPT), out_dir=tmp_path, progress=events.append)
    stages = [e.stage for e in events]
    assert stages[0] == "plan" and stages[-1] == "compose"
    gen = [e for e in events if e.stage == "generate" and e.component == "fake-image" and e.scene_index is not None]
    assert [e.done for e in gen] == [1, 2, 3, 4] and all(e.total == 4 for e in gen)


class Interrupt:
    """A progress callback that raises KeyboardInterrupt after ``n`` saved assets."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self, ev: ProgressEvent) -> None:
        if ev.stage == "generate" and ev.scene_index is not None:
            self.n -= 1
            if self.n == 0:
                raise KeyboardInterrupt


class CountingImages(FakeImageGenerator):
    name = "counting-image"
    calls: list[int]

    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterator[ImageAsset]:
        self.calls = getattr(self, "calls", []) + [s.index for s in scenes]
        yield from super().generate(scenes, ctx)


def test_interrupted_run_resumes_to_the_same_files(tmp_path: Path) -> None:
    req = StoryRequest(script=SCRIPT, seed=5)
    mixed().run(req, out_dir=tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        mixed().run(req, out_dir=tmp_path / "cut", progress=Interrupt(6))
    partial = tree(tmp_path / "cut")
    assert f"{IMAGES}/scene-0003.png" in partial and f"{AUDIO}/scene-0001.wav" in partial
    assert f"{AUDIO}/scene-0002.wav" not in partial and "story.json" not in partial
    assert not [p for p in (tmp_path / "cut").rglob("*.part")]

    # the resumed pipeline has the same fingerprint (same names and options); swap in a
    # generator that records what it is asked to render
    counting = CountingImages()
    pipe = mixed()
    pipe.tracks["fake-image"].generator = counting
    story = pipe.run(req, out_dir=tmp_path / "cut")
    assert getattr(counting, "calls", []) == []  # every picture was already there
    assert sorted(story.audio) == [0, 1, 2, 3]
    assert tree(tmp_path / "cut") == tree(tmp_path / "full")


def test_resume_renders_only_missing_scenes(tmp_path: Path) -> None:
    req = StoryRequest(script=SCRIPT, seed=5)
    with pytest.raises(KeyboardInterrupt):
        mixed().run(req, out_dir=tmp_path, progress=Interrupt(2))
    pipe = mixed()
    counting = CountingImages()
    pipe.tracks["fake-image"].generator = counting
    pipe.run(req, out_dir=tmp_path)
    assert counting.calls == [2, 3]


def test_folder_of_another_story_is_refused_unless_overwrite(tmp_path: Path) -> None:
    mixed().run(StoryRequest(script=SCRIPT, seed=1), out_dir=tmp_path)
    with pytest.raises(OutputFolderError, match="different story.*--overwrite"):
        mixed().run(StoryRequest(script=SCRIPT, seed=2), out_dir=tmp_path)
    mixed().run(StoryRequest(script="one\ntwo", seed=2), out_dir=tmp_path, overwrite=True)
    assert (tmp_path / IMAGES / "scene-0001.png").is_file() and not (tmp_path / IMAGES / "scene-0003.png").exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(OutputFolderError, match="not written by storysdk"):
        mixed().run(StoryRequest(script=SCRIPT), out_dir=foreign)


def test_interleaved_steps_see_earlier_assets_and_resume(tmp_path: Path) -> None:
    reg = make_registry()

    def pipe() -> Pipeline:
        return Pipeline(planner="fake-interleaved", generators=["fake-image"], composers=["fake-composer"], registry=reg)

    req = StoryRequest(prompt="go", num_scenes=4, seed=9, width=16, height=16)
    story = pipe().run(req, out_dir=tmp_path / "full")
    prompts = [s.prompt for s in story.plan.scenes]
    assert len(prompts) == 4 and prompts[0] == "go"
    for prev, scene in zip(story.plan.scenes, story.plan.scenes[1:]):
        mean = np.asarray(story.images[prev.index].image, dtype=np.float64).mean(axis=(0, 1))
        assert scene.prompt == "after " + ",".join(str(int(v)) for v in mean)
    with pytest.raises(KeyboardInterrupt):
        pipe().run(req, out_dir=tmp_path / "cut", progress=Interrupt(2))
    assert len(StoryPlan.load(tmp_path / "cut" / "plan.json").scenes) == 2
    pipe().run(req, out_dir=tmp_path / "cut")
    assert tree(tmp_path / "cut") == tree(tmp_path / "full")


def test_interleaved_planner_state_is_per_run() -> None:
    reg = make_registry()
    p = Pipeline(planner="fake-interleaved", generators=["fake-image"], registry=reg)
    p.run(StoryRequest(prompt="x", num_scenes=3))
    before = dict(vars(p.planner))
    p.run(StoryRequest(prompt="x", num_scenes=3))
    assert not hasattr(p.planner, "state") and list(vars(p.planner)) == ["options"]
    assert vars(p.planner) == before  # a run leaves nothing behind on the planner


class PlannerWithTokens(FakePlanner):
    name = "planner-tokens"

    def plan(self, request: StoryRequest) -> StoryPlan:
        plan = super().plan(request)
        for s in plan.scenes:
            s.tokens["feat"] = Tokens("feat", self.name, {"x": np.full((2, 3), s.index, np.float32)}, {"n": s.index})
        return plan


def test_planner_tokens_are_saved_and_restored_on_resume(tmp_path: Path) -> None:
    from storysdk.output import OutputFolder

    reg = make_registry()
    req = StoryRequest(script=SCRIPT)
    with pytest.raises(KeyboardInterrupt):
        Pipeline(PlannerWithTokens(), generators=["fake-image"], registry=reg).run(
            req, out_dir=tmp_path, progress=Interrupt(1)
        )
    plan = OutputFolder(tmp_path).load_plan()
    assert plan is not None
    tok = plan.scene(2).tokens["feat"]
    assert tok.made_by == "planner-tokens" and tok.metadata == {"n": 2}
    np.testing.assert_array_equal(tok.tensors["x"], np.full((2, 3), 2, np.float32))


class NoAsset(FakeImageGenerator):
    name = "no-asset"

    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterator[ImageAsset]:
        yield from list(super().generate(scenes, ctx))[:-1]


class WrongScene(FakeImageGenerator):
    name = "wrong-scene"

    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterator[ImageAsset]:
        for a in super().generate(scenes, ctx):
            a.scene_index += 100
            yield a


class Crash(FakeImageGenerator):
    name = "crash"
    batching = False

    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterator[ImageAsset]:
        if scenes[0].index == 2:
            raise RuntimeError("out of memory")
        yield from super().generate(scenes, ctx)


@pytest.mark.parametrize(
    "gen, error, fragment",
    [
        (NoAsset(), ComponentError, r"made no asset for scene\(s\) \[3\]"),
        (WrongScene(), ComponentError, "not asked"),
        (FakeAudioGenerator(), None, None),
    ],
)
def test_generator_contract(tmp_path: Path, gen: Any, error: Any, fragment: Any) -> None:
    pipe = Pipeline("fake-planner", generators=[gen], registry=make_registry())
    if error is None:
        pipe.run(StoryRequest(script=SCRIPT))
        return
    with pytest.raises(error, match=fragment):
        pipe.run(StoryRequest(script=SCRIPT), out_dir=tmp_path)


def test_wrong_modality_asset_is_refused() -> None:
    class Liar(FakeAudioGenerator):
        name = "liar"
        modality = "image"

    with pytest.raises(ComponentError, match="must yield ImageAsset"):
        Pipeline("fake-planner", generators=[Liar()], registry=make_registry()).run(StoryRequest(script=SCRIPT))


def test_a_crash_keeps_finished_assets_and_says_how_to_resume(tmp_path: Path) -> None:
    pipe = Pipeline("fake-planner", generators=[Crash()], registry=make_registry())
    with pytest.raises(RuntimeError, match="out of memory") as info:
        pipe.run(StoryRequest(script=SCRIPT), out_dir=tmp_path)
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "crash" in notes and "run again to resume" in notes
    assert (tmp_path / "tracks/crash/scene-0001.png").is_file() and not (tmp_path / "tracks/crash/scene-0002.png").exists()


def test_two_generators_of_one_modality_are_refused() -> None:
    with pytest.raises(ConfigError, match="two image generators"):
        Pipeline("fake-planner", generators=["fake-image", FakeImageGenerator()], registry=make_registry())


def test_composers_need_an_output_folder() -> None:
    with pytest.raises(ConfigError, match="out_dir"):
        mixed().run(StoryRequest(script=SCRIPT))


class Boom(Composer):
    name = "boom"

    def compose(self, story: Story, out_dir: Path) -> list[Path]:
        raise ValueError("bad layout")


class NeedsAudio(Composer):
    name = "needs-audio"
    requires = ("audio",)

    def compose(self, story: Story, out_dir: Path) -> list[Path]:  # pragma: no cover - must be skipped
        raise AssertionError("should have been skipped")


def test_a_failing_composer_does_not_stop_the_others(tmp_path: Path) -> None:
    pipe = Pipeline(
        "fake-planner", generators=["fake-image"], composers=[Boom(), NeedsAudio(), "fake-composer"], registry=make_registry()
    )
    with pytest.raises(ComponentError, match="composer\\(s\\) boom failed \\(ValueError: bad layout\\)"):
        pipe.run(StoryRequest(script=SCRIPT), out_dir=tmp_path)
    assert (tmp_path / "story.json").is_file()


def test_a_given_plan_is_rendered_as_edited(tmp_path: Path) -> None:
    pipe = Pipeline("fake-planner", generators=["fake-image"], composers=["fake-composer"], registry=make_registry())
    plan = pipe.plan(StoryRequest(script=SCRIPT))
    plan.scenes[1].caption = "EDITED"
    pipe.run(StoryRequest(script=SCRIPT), plan=StoryPlan.from_json(plan.to_json()), out_dir=tmp_path)
    assert '"caption": "EDITED"' in (tmp_path / "story.json").read_text()


def test_defaults_go_only_to_components_that_take_them() -> None:
    pipe = Pipeline(
        "fake-planner",
        generators=["fake-image", ("fake-audio", {"sample_rate": 4000})],
        defaults={"width": 8, "sample_rate": 16000},
        registry=make_registry(),
    )
    assert pipe.generators[0].options.width == 8  # type: ignore[attr-defined]
    assert pipe.generators[1].options.sample_rate == 4000  # type: ignore[attr-defined]  # explicit options win
    assert pipe.describe()["generator"][0] == {"name": "fake-image", "options": {"width": 8}}
    assert pipe.describe()["generator"][1] == {"name": "fake-audio", "options": {"sample_rate": 4000}}
    assert pipe.describe()["planner"] == [{"name": "fake-planner", "options": {}}]  # takes neither


def test_a_default_no_component_takes_is_an_error_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as err:
        Pipeline("fake-planner", generators=["fake-image", "fake-audio"], defaults={"sample_rat": 16000},
                 registry=make_registry())
    text = str(err.value)
    assert text.startswith("defaults: no component of this pipeline takes the option 'sample_rat'. Did you mean 'sample_rate'?")
    assert "Options they take: channels, duration, fail_scenes, height, per_character, sample_rate, width" in text
    with pytest.raises(ConfigError, match="takes the option 'preset'"):  # no model-backed component here
        Pipeline("fake-planner", generators=["fake-image"], defaults={"preset": "tiny"}, registry=make_registry())


def test_runtime_options_go_where_they_are_taken_and_are_skipped_elsewhere() -> None:
    reg = make_registry()
    pipe = Pipeline(
        "fake-planner",
        generators=["fake-image", ("fake-audio", {"sample_rate": 4000})],
        runtime={"preset": "tiny", "device": "cpu", "width": 16, "sample_rate": 22050},
        registry=reg,
    )
    assert pipe.generators[0].options.width == 16  # type: ignore[attr-defined]
    assert pipe.generators[1].options.sample_rate == 4000  # type: ignore[attr-defined]
    assert pipe.describe()["generator"][0] == {"name": "fake-image", "options": {"width": 16}}
    # defaults win over runtime options; the model-backed components take the runtime preset
    both = Pipeline(
        "fake-planner",
        tokenizers=["clip-text"],
        generators=["diffusers-image"],
        defaults={"width": 24},
        runtime={"width": 16, "preset": "tiny", "sample_rate": 22050},
        registry=reg,
    )
    gen, tok = both.generators[0], both.tokenizers[0]
    assert gen.options.width == 24 and gen.options.preset == "tiny"  # type: ignore[attr-defined]
    assert tok.options.preset == "tiny" and "width" not in both.describe()["tokenizer"][0]["options"]  # type: ignore[attr-defined]


def test_bad_specs_are_config_errors() -> None:
    reg = make_registry()
    with pytest.raises(ConfigError, match="needs a 'name'"):
        Pipeline({"steps": 3}, registry=reg)
    with pytest.raises(ConfigError, match="is not a storysdk.Planner"):
        Pipeline(FakeImageGenerator(), registry=reg)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="cannot build"):
        Pipeline(42, registry=reg)  # type: ignore[arg-type]


class _PaddedAudio(Generator):
    """Clips that declare AudioStory-style crossfade padding in their metadata."""

    name = "padded-audio"
    modality = "audio"

    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterator[AudioAsset]:
        for s in scenes:
            rng = np.random.default_rng(ctx.scene_seed(s))
            yield AudioAsset(s.index, rng.uniform(-0.5, 0.5, (1, 4000)).astype(np.float32), 8000,
                             made_by=self.name, metadata={"crossfade": 0.25, "note": "padded"})


def test_resumed_assets_keep_their_metadata(tmp_path: Path) -> None:
    # the clips set each scene's length (timing mode "track"): what they sound, less their padding
    pipe = Pipeline(planner="fake-planner", generators=[_PaddedAudio()], composers=["soundtrack"],
                    timing={"mode": "track", "track": "padded-audio"}, registry=make_registry())
    req = StoryRequest(script="a\nb\nc", seed=2)
    first = pipe.run(req, out_dir=tmp_path)
    wav = (tmp_path / "soundtrack.wav").read_bytes()
    timeline = (tmp_path / "timeline.json").read_bytes()
    assert first.audio[1].metadata == {"crossfade": 0.25, "note": "padded"}
    assert [(s.start, s.duration) for s in first.timeline.scenes] == [(0.0, 0.25), (0.25, 0.25), (0.5, 0.25)]
    again = pipe.run(req, out_dir=tmp_path)  # every clip is loaded from disk
    assert again.audio[1].metadata == {"crossfade": 0.25, "note": "padded", "resumed": True}
    # the declared padding still drives the timeline and the join: 3 clips of 0.5 s, each sounding
    # 0.25 s, the contiguous ones crossfaded over their 0.25 s padding, the last one's padding past
    # the story's end (0.75 s) left out
    assert (tmp_path / "timeline.json").read_bytes() == timeline
    assert (tmp_path / "soundtrack.wav").read_bytes() == wav
    import soundfile as sf

    assert sf.info(str(tmp_path / "soundtrack.wav")).frames == 3 * 4000 - 2 * 2000 - 2000
