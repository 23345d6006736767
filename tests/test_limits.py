"""Limits on the work one request may ask for (storysdk.limits), checked before any model loads."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import attrs
import pytest

import storysdk.registry
from storysdk import ConfigError, Pipeline, Scene, StoryPlan, StoryRequest
from storysdk.builtins.diffusers_image import DiffusersImageGenerator
from storysdk.cli import main
from storysdk.limits import LIMITS, LimitError, Limits
from storysdk.testing import make_registry


@pytest.fixture(autouse=True)
def fake_default_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storysdk.registry, "_default", make_registry())


@pytest.fixture
def no_model_load(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Loading a diffusers-image model fails the test: limits are checked before any model loads."""
    loads: list[str] = []

    def load(self: Any) -> Any:
        loads.append(self.name)
        raise AssertionError("a model was loaded although the request is over a limit")

    monkeypatch.setattr(DiffusersImageGenerator, "load", load)
    return loads


def _limit_error(exc: pytest.ExceptionInfo[LimitError], limit: str, value: float, maximum: float) -> str:
    err = exc.value
    assert isinstance(err, ConfigError)
    assert (err.limit, err.value, err.maximum) == (limit, value, maximum)
    text = str(err)
    # names the limit, the value, and how to raise it on the command line and in Python
    assert f"over the limit {limit} = " in text
    assert f"--limit {limit}=" in text and f"Limits({limit}=" in text
    return text


# -- the Limits value ---------------------------------------------------------------------------
def test_defaults_are_documented_one_by_one() -> None:
    limits = Limits()
    assert [f.name for f in attrs.fields(Limits)] == list(LIMITS)
    assert limits.to_dict() == {
        "pixels": 2048 * 2048, "side": 8192, "scenes": 256, "tracks": 8, "cues": 1024, "steps": 200, "tokens": 8192,
        "prompt": 10_000, "caption": 10_000, "script": 200_000, "page": 40_000_000, "font": 512,
        "fps": 120.0, "sample_rate": 192_000, "scene_seconds": 120.0, "story_seconds": 3600.0,
        "body": 16 * 1024 * 1024,
    }
    for info in LIMITS.values():
        assert info.unit and info.what and info.why
    assert set(Limits.none().to_dict().values()) == {None}


def test_parse_reads_the_command_line_forms() -> None:
    limits = Limits.parse(["pixels=3072x2048", "steps=none", "body=32MiB", "frames=12", "scene-seconds=30.5",
                           "page = 1e6", "side=1_000"])
    assert limits.pixels == 3072 * 2048 and limits.steps is None and limits.body == 32 * 1024 * 1024
    assert limits.scenes == 12 and limits.scene_seconds == 30.5 and limits.page == 1_000_000 and limits.side == 1000
    assert limits.tokens == Limits().tokens  # the others keep their defaults
    base = Limits(steps=10)
    assert Limits.parse(["scenes=3"], base=base).steps == 10
    assert Limits.from_mapping({"steps": 50, "story_seconds": float("inf"), "tokens": None}).to_dict()["story_seconds"] is None
    tracks = Limits.parse(["tracks=2", "cues=none"])
    assert (tracks.tracks, tracks.cues) == (2, None)
    assert Limits.parse(["track=3", "events=40"]).to_dict() | {} == {**Limits().to_dict(), "tracks": 3, "cues": 40}


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["stepz=3"], "unknown limit 'stepz'. Did you mean 'steps'?"),
        (["steps"], "write NAME=VALUE"),
        (["steps="], "write NAME=VALUE"),
        (["steps=many"], "limit steps = 'many' is not a number"),
        (["pixels=big"], "(or WIDTHxHEIGHT)"),
        (["steps=1.5"], "limit steps must be a whole number"),
        (["steps=-1"], "limit steps must be a positive number"),
        (["steps=0"], "limit steps must be a positive number"),
        (["fps=nan"], "limit fps must be a positive number"),
        (["tracks=2.5"], "limit tracks must be a whole number"),
        (["trakcs=2"], "unknown limit 'trakcs'. Did you mean 'tracks'?"),
    ],
)
def test_parse_refuses_bad_flags(items: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        Limits.parse(items)
    assert message in str(exc.value)


def test_limits_refuse_wrong_types() -> None:
    with pytest.raises(ConfigError, match="limit steps must be a positive number"):
        Limits(steps=True)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="limits must be a table"):
        Limits.from_mapping([("steps", 3)])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="limits must be a storysdk.Limits"):
        Pipeline(planner="fake-planner", limits={"steps": 3})  # type: ignore[arg-type]


def test_a_limit_error_survives_pickling() -> None:  # a worker process reports it to its parent
    with pytest.raises(LimitError) as exc:
        Limits().check_options("generator", "g", {"steps": 1_000_000})
    copy = pickle.loads(pickle.dumps(exc.value))
    assert str(copy) == str(exc.value) and copy.limit == "steps" and copy.value == 1_000_000


# -- the request --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "limit", "value", "where"),
    [
        ({"width": 1_000_000}, "side", 1_000_000, "request width = 1000000"),
        ({"height": 9000}, "side", 9000, "request height = 9000"),
        ({"width": 4096, "height": 4096}, "pixels", 4096 * 4096, "request width x height (4096 x 4096) = 16777216"),
        ({"num_scenes": 3000}, "scenes", 3000, "request num_scenes = 3000"),
        ({"duration": 1e6}, "story_seconds", 1e6, "request duration = 1000000"),
        ({"prompt": "w" * 10_001}, "prompt", 10_001, "length of request prompt in characters = 10001"),
        ({"negative_prompt": "n" * 20_000}, "prompt", 20_000, "request negative_prompt"),
        ({"start_caption": "c" * 10_001}, "caption", 10_001, "request start_caption"),
        ({"script": "a cat\n" * 40_000}, "script", 240_000, "request script"),
        ({"characters": "[A] x\n" * 40_000}, "script", 240_000, "request characters"),
    ],
)
def test_check_request(fields: dict[str, Any], limit: str, value: float, where: str) -> None:
    request = StoryRequest(**fields)
    with pytest.raises(LimitError) as exc:
        Limits().check_request(request)
    assert where in _limit_error(exc, limit, value, getattr(Limits(), limit))
    Limits.none().check_request(request)  # no limits: accepted
    Limits(**{limit: value}).check_request(request)  # raised to the value: accepted


def test_check_request_accepts_ordinary_requests() -> None:
    Limits().check_request(StoryRequest(prompt="a fox", script="a\nb", width=1024, height=1024, num_scenes=30,
                                        duration=600.0, characters="[Fox] a small fox"))
    from storysdk import Character

    with pytest.raises(LimitError, match="character 'Fox' description"):
        Limits().check_request(StoryRequest(characters=[Character("Fox", "x" * 10_001)]))


# -- the plan -----------------------------------------------------------------------------------
def _plan(n: int = 2, **kw: Any) -> StoryPlan:
    caption = kw.pop("caption", "a caption")
    duration = kw.pop("duration", None)
    return StoryPlan(scenes=[Scene(i, f"prompt {i}", caption=caption, duration=duration) for i in range(n)], **kw)


def test_check_plan() -> None:
    limits = Limits()
    limits.check_plan(_plan(256, width=1024, height=1024, duration=10.0))
    with pytest.raises(LimitError) as exc:
        limits.check_plan(_plan(3000))
    assert "number of scenes in the plan = 3000" in _limit_error(exc, "scenes", 3000, 256)
    thirty_k_words = " ".join(["word"] * 30_000)
    with pytest.raises(LimitError) as exc:
        limits.check_plan(_plan(caption=thirty_k_words))
    assert "length of scene 0 caption in characters" in _limit_error(exc, "caption", len(thirty_k_words), 10_000)
    with pytest.raises(LimitError) as exc:
        limits.check_plan(_plan(width=100_000, height=64))
    assert "plan width = 100000" in _limit_error(exc, "side", 100_000, 8192)
    with pytest.raises(LimitError) as exc:
        limits.check_plan(_plan(duration=121.0))
    assert "scene 0 duration = 121" in _limit_error(exc, "scene_seconds", 121.0, 120.0)
    with pytest.raises(LimitError) as exc:
        limits.check_plan(_plan(40, duration=100.0))  # 40 x 100 s > 1 hour
    assert "the scenes' durations together = 4000" in _limit_error(exc, "story_seconds", 4000.0, 3600.0)
    with pytest.raises(LimitError, match="length of plan title"):
        limits.check_plan(_plan(title="t" * 10_001))


# -- component options --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "options", "limit", "value", "where"),
    [
        ("generator", {"steps": 1_000_000}, "steps", 1_000_000, "option steps = 1000000"),
        ("generator", {"width": 1_000_000}, "side", 1_000_000, "option width = 1000000"),
        ("generator", {"width": 4096, "height": 2048}, "pixels", 4096 * 2048, "option width x height (4096 x 2048)"),
        ("generator", {"extra": {"num_inference_steps": 500}}, "steps", 500, "option extra num_inference_steps = 500"),
        ("generator", {"extra": {"audio_length_in_s": 500.0}}, "scene_seconds", 500.0, "extra audio_length_in_s"),
        ("generator", {"duration": 600.0}, "scene_seconds", 600.0, "option duration = 600"),
        ("planner", {"duration": 7200.0}, "story_seconds", 7200.0, "option duration = 7200"),
        ("planner", {"max_new_tokens": 100_000}, "tokens", 100_000, "option max_new_tokens = 100000"),
        ("planner", {"num_scenes": 3000}, "scenes", 3000, "option num_scenes = 3000"),
        ("planner", {"max_frames": 3000}, "scenes", 3000, "option max_frames = 3000"),
        ("composer", {"page_size": (100_000, 100_000)}, "side", 100_000, "option page_size[0] = 100000"),
        ("composer", {"page_size": (8000, 8000)}, "page", 64_000_000, "option page_size (8000 x 8000) = 64000000"),
        ("composer", {"size": (7680, 7680)}, "page", 7680 * 7680, "option size (7680 x 7680)"),
        ("composer", {"width": 20_000}, "side", 20_000, "composer 'c' option width = 20000"),
        ("composer", {"font_size": 100_000}, "font", 100_000, "option font_size = 100000"),
        ("composer", {"fps": 10_000.0}, "fps", 10_000.0, "option fps = 10000"),
        ("composer", {"sample_rate": 10**9}, "sample_rate", 10**9, "option sample_rate = 1000000000"),
        ("composer", {"row_height": 10**6}, "side", 10**6, "option row_height = 1000000"),
        ("composer", {"still_duration": 1e5}, "scene_seconds", 1e5, "option still_duration = 100000"),
        ("generator", {"negative_prompt": "n" * 10_001}, "prompt", 10_001, "option negative_prompt"),
    ],
)
def test_check_options(kind: str, options: dict[str, Any], limit: str, value: float, where: str) -> None:
    with pytest.raises(LimitError) as exc:
        Limits().check_options(kind, "c", options)
    assert f"{kind} 'c' " in str(exc.value)
    assert where in _limit_error(exc, limit, value, getattr(Limits(), limit))
    Limits.none().check_options(kind, "c", options)


def test_check_options_of_every_registered_component_default_fits() -> None:
    """Every component's default options (built-ins, fakes and the installed plugins) are within the defaults."""
    from storysdk.registry import Registry

    limits = Limits()
    everything = Registry()  # the built-ins and every installed plugin
    assert {"storydiffusion", "seed-story", "audiostory", "comic", "video"} <= {c.name for c in everything.components()}
    for registry in (make_registry(), everything):
        for info in registry.components():
            defaults = {o.name: o.default for o in info.option_info() if not o.required}
            limits.check_options(info.kind, info.name, defaults)


def test_check_options_reads_an_options_object_and_ignores_other_types() -> None:
    gen = DiffusersImageGenerator(preset="tiny", steps=300)
    with pytest.raises(LimitError, match="generator 'diffusers-image' option steps = 300"):
        Limits().check_options("generator", gen.name, gen.options)
    Limits().check_options("generator", "g", {"steps": "lots", "width": None, "page_size": "A4", "fps": True})
    with pytest.raises(ConfigError, match="check_options takes a component's Options or a mapping"):
        Limits().check_options("generator", "g", 5)


def test_check_body() -> None:
    Limits().check_body(16 * 1024 * 1024)
    with pytest.raises(LimitError) as exc:
        Limits().check_body(16 * 1024 * 1024 + 1)
    text = _limit_error(exc, "body", 16 * 1024 * 1024 + 1, 16 * 1024 * 1024)
    assert "storysdk serve" in text and "ServerConfig.limits" in text


# -- the pipeline: refused before anything is claimed, planned or loaded -----------------------
def _image_pipe(**options: Any) -> Pipeline:
    return Pipeline(planner="script", generators=[("diffusers-image", {"preset": "tiny", "steps": 1, **options})])


def test_width_one_million_is_refused_before_any_model_loads(tmp_path: Path, no_model_load: list[str]) -> None:
    out = tmp_path / "out"
    with pytest.raises(LimitError, match="request width = 1000000 is over the limit side = 8192"):
        _image_pipe().run(StoryRequest(script="a cat", width=1_000_000, height=64), out_dir=out)
    with pytest.raises(LimitError, match="generator 'diffusers-image' option width = 1000000"):
        _image_pipe(width=1_000_000).run(StoryRequest(script="a cat"), out_dir=out)
    assert no_model_load == [] and not out.exists()  # the folder was not even claimed


def test_a_million_steps_are_refused_before_any_model_loads(tmp_path: Path, no_model_load: list[str]) -> None:
    with pytest.raises(LimitError, match="generator 'diffusers-image' option steps = 1000000"):
        _image_pipe(steps=1_000_000).run(StoryRequest(script="a cat"), out_dir=tmp_path / "out")
    pipe = Pipeline(planner="script", generators=[("diffusers-image", {"preset": "tiny"})],
                    defaults={"steps": 1_000_000})  # through the defaults too
    with pytest.raises(LimitError, match="option steps = 1000000"):
        pipe.plan(StoryRequest(script="a cat"))
    assert no_model_load == [] and not (tmp_path / "out").exists()


def test_a_3000_frame_story_is_refused_before_any_model_loads(tmp_path: Path, no_model_load: list[str]) -> None:
    script = "\n".join(f"frame {i}" for i in range(3000))
    with pytest.raises(LimitError, match="number of scenes in the plan = 3000 is over the limit scenes = 256"):
        _image_pipe().run(StoryRequest(script=script), out_dir=tmp_path / "out")
    with pytest.raises(LimitError, match="number of scenes in the plan = 3000"):
        _image_pipe().plan(StoryRequest(script=script))
    assert no_model_load == [] and not (tmp_path / "out" / "images").exists()


def test_a_30k_word_caption_is_refused_before_any_model_loads(tmp_path: Path, no_model_load: list[str]) -> None:
    caption = " ".join(["word"] * 30_000)
    with pytest.raises(LimitError, match="length of scene 0 caption in characters = 149999"):
        _image_pipe().run(StoryRequest(script=f"a cat #{caption}"), out_dir=tmp_path / "out")
    assert no_model_load == []


def test_scene_texts_count_under_the_caption_limit() -> None:
    """A scene's texts (what its tracks' text templates render: a narration is read aloud) are
    captions to the limits: a 100k-character narration is refused, naming the limit and its fix."""
    narration = "Once upon a time. " * 5556  # 100008 characters
    plan = _plan(3)
    plan.scenes[1].texts.update(narration=narration, ambience="rain")
    with pytest.raises(LimitError) as exc:
        Limits().check_plan(plan)
    text = _limit_error(exc, "caption", len(narration), 10_000)
    assert text.startswith(f"length of scene 1 narration text in characters = {len(narration)} is over the limit "
                           "caption = 10000 (one caption or scene text")
    assert "--limit caption=100008 (storysdk run, plan or serve)" in text
    plan.scenes[1].texts["narration"] = "n" * 10_000  # at the limit: allowed; one over: refused, whatever the role
    Limits().check_plan(plan)
    plan.scenes[2].texts["music"] = "m" * 10_001
    with pytest.raises(LimitError, match="length of scene 2 music text in characters = 10001 is over the limit caption"):
        Limits().check_plan(plan)
    Limits(caption=10_001).check_plan(plan)
    Limits(caption=None).check_plan(plan)
    Limits.parse(["caption=none"]).check_plan(plan)


def test_a_100k_character_narration_is_refused_before_the_folder_is_claimed(tmp_path: Path) -> None:
    pipe = Pipeline(planner="fake-planner",
                    tracks={"narration": {"generator": "fake-audio", "text": "{narration}"}})
    plan = _plan(2)
    plan.scenes[0].texts["narration"] = "word " * 20_000
    with pytest.raises(LimitError, match="length of scene 0 narration text in characters = 100000 is over the limit "
                                         r"caption = 10000 .*--limit caption=100000"):
        pipe.run(StoryRequest(), plan=plan, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    pipe.limits = Limits(caption=100_000)
    story = pipe.run(StoryRequest(), plan=plan, out_dir=tmp_path / "raised")
    assert sorted(story.track("narration").assets) == [0, 1]


def test_a_comic_page_of_100000_squared_is_refused_before_any_model_loads(tmp_path: Path,
                                                                         no_model_load: list[str]) -> None:
    pipe = Pipeline(planner="script", generators=[("diffusers-image", {"preset": "tiny", "steps": 1})],
                    composers=[("comic", {"style": "Pages", "page_size": (100_000, 100_000)})])
    with pytest.raises(LimitError, match=r"composer 'comic' option page_size\[0\] = 100000 is over the limit side"):
        pipe.run(StoryRequest(script="a cat"), out_dir=tmp_path / "out")
    assert no_model_load == [] and not (tmp_path / "out").exists()


def test_a_given_plan_is_checked_before_the_folder_is_claimed(tmp_path: Path) -> None:
    pipe = Pipeline(planner="fake-planner", generators=["fake-image"])
    with pytest.raises(LimitError, match="number of scenes in the plan = 300"):
        pipe.run(StoryRequest(), plan=_plan(300), out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_raised_limits_let_the_run_through_and_the_setter_replaces_them(tmp_path: Path) -> None:
    request = StoryRequest(script="\n".join(f"s{i}" for i in range(5)), width=16, height=16)
    pipe = Pipeline(planner="fake-planner", generators=["fake-image"], limits=Limits(scenes=4))
    with pytest.raises(LimitError, match="over the limit scenes = 4"):
        pipe.run(request)
    pipe.limits = Limits(scenes=5)
    assert len(pipe.run(request).images) == 5
    with pytest.raises(LimitError, match="fake-audio' option sample_rate = 8000"):
        Pipeline(planner="fake-planner", generators=["fake-audio"], limits=Limits(sample_rate=4000)).run(request)


def test_an_interleaved_story_stops_at_the_scenes_limit() -> None:
    pipe = Pipeline(planner="fake-interleaved", generators=["fake-image"], max_scenes=20, limits=Limits(scenes=3))
    story = pipe.run(StoryRequest(prompt="go", width=8, height=8))
    assert [s.index for s in story.plan.scenes] == [0, 1, 2]
    with pytest.raises(LimitError, match="request num_scenes = 5"):
        pipe.run(StoryRequest(prompt="go", width=8, height=8, num_scenes=5))


# -- the command line ---------------------------------------------------------------------------
STORY = """
[story]
seed = 1
width = 16
height = 16
script = '''
a cat
a dog
a bird
'''

[planner]
name = "fake-planner"

[[generators]]
name = "fake-image"
"""


def test_cli_refuses_with_the_flag_to_raise_and_the_flag_raises(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    story = tmp_path / "tale.toml"
    story.write_text(STORY.replace("width = 16", "width = 10000"))
    assert main(["run", str(story), "--out", str(tmp_path / "a"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("storysdk: error: request width = 10000 is over the limit side = 8192")
    assert "--limit side=10000" in err and "Traceback" not in err and err.count("\n") == 1
    assert main(["run", str(story), "--out", str(tmp_path / "a"), "--quiet", "--limit", "side=10000"]) == 0
    assert main(["plan", str(story), "--out", "-", "--limit", "scenes=2", "--limit", "side=none"]) == 2
    assert "number of scenes in the plan = 3 is over the limit scenes = 2" in capsys.readouterr().err
    assert main(["run", str(story), "--out", str(tmp_path / "b"), "--limit", "stepz=3"]) == 2
    assert "unknown limit 'stepz'. Did you mean 'steps'?" in capsys.readouterr().err


def test_cli_limits_command_lists_the_values(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["limits"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:] if line.strip() and line.split()[0] in LIMITS}
    assert rows == {name: ("none" if v is None else str(int(v)) if float(v).is_integer() else str(v))
                    for name, v in Limits().to_dict().items()}
    assert "--limit NAME=VALUE" in out
    assert main(["limits", "--json", "--limit", "steps=400", "--limit", "pixels=none"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["steps"]["value"] == 400 and data["pixels"]["value"] is None and data["scenes"]["value"] == 256
    assert set(data) == set(LIMITS) and data["steps"]["why"] == LIMITS["steps"].why


# -- the docs show the real values and output ---------------------------------------------------
DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_the_story_file_guide_lists_every_limit_with_its_default_and_reason() -> None:
    doc = (DOCS / "story-files.md").read_text(encoding="utf-8")
    section = doc.split("\n## Limits\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| `")]
    table = {r[0].strip("| `"): (r[1], r[3].rstrip(" |")) for r in rows}
    assert list(table) == list(LIMITS)
    for name, (default, why) in table.items():
        value = getattr(Limits(), name)
        assert default == (str(int(value)) if float(value).is_integer() else str(value)), name
        assert why == LIMITS[name].why, name
    (shown,) = [line for line in section.splitlines() if line.startswith("storysdk: error: ")]
    with pytest.raises(LimitError) as exc:
        Limits().check_request(StoryRequest(width=1_000_000))
    assert shown == f"storysdk: error: {exc.value}"


def test_the_cli_docs_limits_examples_are_the_real_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    doc = (DOCS / "cli.md").read_text(encoding="utf-8")
    block = doc.split("$ storysdk limits --limit steps=400\n", 1)[1].split("```", 1)[0]
    assert main(["limits", "--limit", "steps=400"]) == 0
    assert capsys.readouterr().out == block
    (tmp_path / "huge.toml").write_text(STORY.replace("width = 16", "width = 1000000"))
    monkeypatch.chdir(tmp_path)
    block = doc.split("$ storysdk run huge.toml\n", 1)[1].split("```", 1)[0]
    assert main(["run", "huge.toml"]) == 2
    assert capsys.readouterr().err == block
    assert not (tmp_path / "out").exists()


# -- tracks and cues: the work of a story is tracks x scenes (x cues with track planners) -------
TRACKS = {
    "frames": {"generator": "fake-image"},
    "voice": {"generator": ("fake-audio", {"per_character": 0.05}), "text": "{caption}"},
    "fx": {"planner": ("fake-events", {"per_scene": 4}), "generator": "fake-audio", "gain": -6},
}


def test_check_tracks_and_check_cues_name_the_track_and_the_limit() -> None:
    limits = Limits(tracks=2, cues=7)
    limits.check_tracks(2)
    limits.check_tracks(["frames", "voice"])
    with pytest.raises(LimitError) as exc:
        limits.check_tracks(TRACKS)
    assert _limit_error(exc, "tracks", 3, 2).startswith("number of tracks = 3 is over the limit tracks = 2 ")
    limits.check_cues("fx", 7)
    with pytest.raises(LimitError) as exc:
        limits.check_cues("fx", list(range(8)), planner="fake-events")
    assert _limit_error(exc, "cues", 8, 7).startswith(
        "number of cues planned by planner 'fake-events' for track 'fx' = 8 is over the limit cues = 7 ")
    Limits(tracks=None, cues=None).check_tracks(10_000)
    Limits.none().check_cues("fx", 10**9)


def test_a_pipeline_with_more_tracks_than_the_limit_is_refused_before_it_plans(tmp_path: Path) -> None:
    events: list[Any] = []
    pipe = Pipeline(planner="fake-planner", tracks=TRACKS, limits=Limits(tracks=2))
    with pytest.raises(LimitError) as exc:
        pipe.run(StoryRequest(script="a\nb", seed=1), out_dir=tmp_path / "o", progress=events.append)
    _limit_error(exc, "tracks", 3, 2)
    assert events == [] and not (tmp_path / "o").exists()  # nothing planned, no folder claimed
    with pytest.raises(LimitError):
        pipe.plan(StoryRequest(script="a\nb", seed=1))
    pipe.limits = Limits(tracks=3)
    story = pipe.run(StoryRequest(script="a\nb", seed=1), out_dir=tmp_path / "o")
    assert sorted(story.tracks) == ["frames", "fx", "voice"]


def test_a_track_planners_cues_over_the_limit_are_refused_before_its_generator_renders(tmp_path: Path) -> None:
    events: list[Any] = []
    pipe = Pipeline(planner="fake-planner", tracks=TRACKS, limits=Limits(cues=7))
    with pytest.raises(LimitError) as exc:  # 2 scenes x 4 events
        pipe.run(StoryRequest(script="a\nb", seed=1), out_dir=tmp_path / "o", progress=events.append)
    _limit_error(exc, "cues", 8, 7)
    assert "track 'fx'" in str(exc.value)
    rendered = [e.component for e in events if e.stage == "generate" and e.done > 0]
    assert not any(c.endswith("(fx)") for c in rendered)  # the fx track rendered nothing
    assert not list((tmp_path / "o" / "tracks" / "fx").glob("cue-*.wav"))
    pipe.limits = Limits(cues=8)
    story = pipe.run(StoryRequest(script="a\nb", seed=1), out_dir=tmp_path / "o")
    assert len(story.tracks["fx"].cues) == len(story.tracks["fx"].assets) == 8
