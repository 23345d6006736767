"""The storysdk command: plugins, plan, run, errors, progress output."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

import storysdk.registry
from storysdk import Composer, Field, Options, Planner, hookimpl
from storysdk.cli import ProgressBar, main
from storysdk.interfaces import ProgressEvent
from storysdk.testing import make_registry

STORY = """
[story]
seed = 3
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

[[generators]]
name = "fake-audio"

[[composers]]
name = "fake-composer"
"""


@pytest.fixture(autouse=True)
def fake_default_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storysdk.registry, "_default", make_registry())


@pytest.fixture
def story(tmp_path: Path) -> Path:
    path = tmp_path / "tale.toml"
    path.write_text(STORY)
    return path


def test_plugins_lists_components_with_plugin_and_capabilities(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    lines = {tuple(line.split()[:3]) for line in out.splitlines()[1:] if line.strip()}
    assert ("generator", "fake-image", "storysdk.testing") in lines
    assert ("composer", "fake-composer", "storysdk.testing") in lines
    assert "modality=image" in out and "batching=True" in out
    rows = {line.split()[1]: line for line in out.splitlines()[1:] if line.strip()}
    # a track planner says so; a story planner, and a generator that renders scene by scene, do not
    assert rows["fake-events"].split()[-1] == "plans_tracks=True"
    assert "plans_tracks" not in rows["fake-planner"] and "needs_whole_plan" not in rows["fake-image"]


def test_plugins_shows_a_generator_that_needs_the_whole_plan(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from storysdk.testing.fakes import FakeImageGenerator

    class Whole(FakeImageGenerator):
        name = "whole-image"
        needs_whole_plan = True

    class Plugin:
        @hookimpl
        def register_generators(self, register: Any) -> None:
            register(Whole)

    monkeypatch.setattr(storysdk.registry, "_default", make_registry(Plugin()))
    assert main(["plugins"]) == 0
    rows = {line.split()[1]: line for line in capsys.readouterr().out.splitlines()[1:] if line.strip()}
    assert rows["whole-image"].split()[-3:] == ["needs_whole_plan=True,", "modality=image,", "batching=True"] or \
        "needs_whole_plan=True" in rows["whole-image"]
    assert main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    comps = {c["name"]: c for p in data["plugins"] for c in p["components"]}
    assert comps["whole-image"]["needs_whole_plan"] is True and comps["fake-image"]["needs_whole_plan"] is False
    assert comps["fake-events"]["plans_tracks"] is True and comps["fake-planner"]["plans_tracks"] is False


def test_plugins_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    fakes = next(p for p in data["plugins"] if p["name"] == "storysdk.testing")
    assert {"kind": "generator", "name": "fake-audio", "needs_gpu": False, "tiny_preset": False,
            "modality": "audio", "batching": False, "needs_whole_plan": False, "consumes": []} in fakes["components"]
    assert data["failed"] == []


def test_plan_writes_json(story: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(story), "--seed", "9"]) == 0
    plan = json.loads(story.with_suffix(".plan.json").read_text())
    assert [s["prompt"] for s in plan["scenes"]] == ["a cat", "a dog", "a bird"] and plan["seed"] == 9
    assert main(["plan", str(story), "--out", "-"]) == 0
    assert '"a dog"' in capsys.readouterr().out


def test_run_twice_is_byte_identical_and_prints_files(story: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(story), "--out", str(tmp_path / "a"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"fake-composer: {tmp_path / 'a' / 'story.json'}" in out
    assert main(["run", str(story), "--out", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert "3/3 generate fake-image scene 2" in err
    for p in (tmp_path / "a").rglob("*"):
        if p.is_file():
            assert p.read_bytes() == (tmp_path / "b" / p.relative_to(tmp_path / "a")).read_bytes()


def test_run_with_an_edited_plan(story: Path, tmp_path: Path) -> None:
    main(["plan", str(story), "--out", str(tmp_path / "p.json")])
    data = json.loads((tmp_path / "p.json").read_text())
    data["scenes"][0]["caption"] = "A CAT"
    (tmp_path / "p.json").write_text(json.dumps(data))
    assert main(["run", str(story), "--plan", str(tmp_path / "p.json"), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert json.loads((tmp_path / "o" / "story.json").read_text())[0]["caption"] == "A CAT"


def test_errors_are_one_line_with_exit_code_2(story: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(STORY.replace('name = "fake-image"', 'name = "fake-imag"'))
    assert main(["run", str(bad), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("storysdk: error: no generator named 'fake-imag'") and "Did you mean 'fake-image'" in err
    main(["run", str(story), "--out", str(tmp_path / "y"), "--quiet"])
    assert main(["run", str(story), "--seed", "4", "--out", str(tmp_path / "y"), "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["run", str(story), "--seed", "4", "--out", str(tmp_path / "y"), "--quiet", "--overwrite"]) == 0


def test_progress_bar_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    bar = ProgressBar(stream, width=10)
    bar(ProgressEvent("generate", "g", 1, 4, 0))
    bar(ProgressEvent("step", "g", 2, 4))
    bar(ProgressEvent("generate", "g", 4, 4, 3))
    text = stream.getvalue()
    assert "[##--------] 1/4 generate g scene 0" in text
    assert "[#####-----] 2/4 step     g" in text
    assert text.endswith("[##########] 4/4 generate g scene 3\n")


def test_progress_bar_shows_tracks_rendering_side_by_side() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    bar = ProgressBar(stream, width=10)
    bar(ProgressEvent("generate", "diffusers-image (frames)", 0, 2))
    bar(ProgressEvent("step", "diffusers-image", 1, 4))  # one track: its steps are drawn
    assert stream.getvalue().endswith("[##--------] 1/4 step     diffusers-image")
    bar(ProgressEvent("generate", "diffusers-audio (music)", 0, 3))
    bar(ProgressEvent("generate", "diffusers-image (frames)", 1, 2, 0))
    assert stream.getvalue().endswith("[##--------] 1/5 generate frames 1/2 | music 0/3")
    before = stream.getvalue()
    bar(ProgressEvent("step", "diffusers-audio", 2, 4))  # two tracks at once: no steps (they would flicker)
    assert stream.getvalue() == before
    bar(ProgressEvent("generate", "diffusers-audio (music)", 2, 3, 1))
    assert stream.getvalue().endswith("[######----] 3/5 generate frames 1/2 | music 2/3")
    bar(ProgressEvent("generate", "diffusers-image (frames)", 2, 2, 1))  # frames done: its own line
    assert stream.getvalue().endswith("[##########] 2/2 generate diffusers-image (frames) scene 1\n")
    bar(ProgressEvent("step", "diffusers-audio", 3, 4))  # one track left: its steps are drawn again
    assert stream.getvalue().endswith("[#######---] 3/4 step     diffusers-audio")
    bar(ProgressEvent("generate", "diffusers-audio (music)", 3, 3, 2))
    assert stream.getvalue().endswith("[##########] 3/3 generate diffusers-audio (music) scene 2\n")


def test_progress_lines_in_a_log_name_each_track_once() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream)
    for ev in (ProgressEvent("generate", "fake-image (fake-image)", 1, 2, 0),  # the generators=[...] shorthand
               ProgressEvent("generate", "fake-audio (music)", 1, 2, 0),
               ProgressEvent("step", "fake-audio", 1, 4)):
        bar(ev)
    assert stream.getvalue() == "1/2 generate fake-image scene 0\n1/2 generate fake-audio (music) scene 0\n"


TRACKS_STORY = """
[story]
seed = 3
width = 16
height = 16
script = '''
a cat #The cat.
a dog #The dog.
'''

[planner]
name = "fake-planner"

[tracks.frames]
generator = "fake-image"

[tracks.voice]
generator = { name = "fake-audio", per_character = 0.05 }
text = "{caption}"
duck = 8

[tracks.fx]
planner = "fake-events"
generator = "fake-audio"
gain = -6

[timing]
mode = "track"
track = "voice"

[[composers]]
name = "fake-composer"
"""


def test_run_summary_lists_the_timeline_and_every_track(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tracks.toml"
    path.write_text(TRACKS_STORY)
    out = tmp_path / "o"
    assert main(["run", str(path), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    timeline = json.loads((out / "timeline.json").read_text())
    # the voice clips set the scenes' lengths: 0.05 s per character of each scene's caption
    captions = [s["caption"] for s in json.loads((out / "plan.json").read_text())["scenes"]]
    assert [s["duration"] for s in timeline["scenes"]] == pytest.approx([0.05 * len(c) for c in captions])
    assert timeline["duration"] == pytest.approx(0.05 * sum(len(c) for c in captions))
    fx = len(json.loads((out / "tracks" / "fx" / "cues.json").read_text())["cues"])
    assert fx == len(timeline["tracks"]["fx"]) > 0
    assert captured.out.splitlines()[:6] == [
        f"story: {out}",
        f"  plan: {out / 'plan.json'}",
        f"  timeline: {out / 'timeline.json'} (2 scenes, {timeline['duration']:.2f} s)",
        f"  track frames (image, fake-image): 2 pictures in {out / 'tracks' / 'frames'}",
        f"  track voice (audio, fake-audio, ducks the others by 8 dB): 2 clips in {out / 'tracks' / 'voice'}",
        f"  track fx (audio, fake-audio, gain -6 dB): {fx} clips for {fx} cues planned by fake-events in "
        f"{out / 'tracks' / 'fx'}",
    ]
    # a log (not a terminal): one line per asset, naming its track
    assert "2/2 generate fake-image (frames) scene 1\n" in captured.err
    assert "2/2 generate fake-audio (voice) scene 1\n" in captured.err
    assert f"{fx}/{fx} generate fake-audio (fx) cue {fx - 1}\n" in captured.err
    assert f"1/1 plan     fake-events (track fx: {fx} cues)\n" in captured.err


def test_limit_tracks_refuses_a_story_with_more_tracks_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tracks.toml"
    path.write_text(TRACKS_STORY)
    assert main(["run", str(path), "--out", str(tmp_path / "o"), "--limit", "tracks=2"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "storysdk: error: number of tracks = 3 is over the limit tracks = 2 (tracks per story, each rendering an "
        "asset per scene or per cue); use a smaller value, or raise the limit with --limit tracks=3 (storysdk run, "
        "plan or serve) or Limits(tracks=3) (Pipeline(limits=...), ServerConfig.limits)\n"
    )
    assert not (tmp_path / "o").exists()
    assert main(["plan", str(path), "--out", "-", "--limit", "tracks=2"]) == 2
    assert "over the limit tracks = 2" in capsys.readouterr().err
    assert main(["run", str(path), "--out", str(tmp_path / "o"), "--limit", "tracks=3", "--quiet"]) == 0


def test_plugins_options_prints_each_declared_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--options", "comic"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("composer 'comic' (plugin storysdk.builtins") and "comic pages" in lines[0]
    assert lines[1].split() == ["OPTION", "TYPE", "DEFAULT", "CONSTRAINTS", "DESCRIPTION"]
    rows = {line.split()[0]: line for line in lines[2:] if line.startswith("  ") and not line.startswith("   ")}
    assert [r for r in rows if r in ("style", "layout_seed", "format", "quality")] == [
        "style", "layout_seed", "format", "quality"]  # in the order the composer declares them
    assert set(rows) >= {"captions", "font_size", "font_path", "page_size", "margin", "gutter", "row_height"}
    assert rows["quality"].split()[:5] == ["quality", "int", "95", ">=", "1,"]
    assert "JPEG/WebP quality from 1 to 100; PNG ignores it" in rows["quality"]
    assert "seed of the Classic layout's shuffled rows; None: the story's seed" in rows["layout_seed"]
    assert rows["page_size"].split()[1:4] == ["tuple[int,", "int]", "[1654,"]
    assert '"Classic Comic Style"' in rows["style"]
    assert "  renamed: seed -> layout_seed" in lines


def test_plugins_options_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--options", "diffusers-image", "--json"]) == 0
    (comp,) = json.loads(capsys.readouterr().out)["components"]
    assert (comp["kind"], comp["name"], comp["plugin"], comp["declared"]) == (
        "generator", "diffusers-image", "storysdk.builtins", True)
    options = {o["name"]: o for o in comp["options"]}
    assert options["batch_size"] == {"name": "batch_size", "type": "int", "default": 4, "required": False,
                                     "constraints": [">= 1"], "description": "scenes per denoising batch (as memory allows)"}
    assert options["width"]["constraints"] == ["> 0", "multiple of 8"]
    assert options["preset"]["type"] == "one of 'tiny', 'full', 'auto' | None"
    assert comp["renamed"] == {"seed": "weights_seed"}


class _Twins:
    """A planner and a composer of the same name, and a component without declared options."""

    @hookimpl
    def register_planners(self, register: Any) -> None:
        class TwinPlanner(Planner):
            name = "twin"

            class Options(Options):
                scenes: int = Field(2, ge=1, description="how many scenes")

            def plan(self, request: Any) -> Any:
                raise NotImplementedError

        register(TwinPlanner)

    @hookimpl
    def register_composers(self, register: Any) -> None:
        class TwinComposer(Composer):
            name = "twin"

            def __init__(self, size: int = 3) -> None:  # an old-style component: no Options class
                self.size = size

            def compose(self, story: Any, out_dir: Any) -> Any:
                return []

        register(TwinComposer)


def test_plugins_options_covers_every_kind_of_that_name(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(storysdk.registry, "_default", make_registry(_Twins()))
    assert main(["plugins", "--options", "twin"]) == 0
    out = capsys.readouterr().out
    planner, composer = out.split("\n\n")
    assert planner.startswith("planner 'twin'") and "scenes  int   2        >= 1         how many scenes" in planner
    assert composer.startswith("composer 'twin'") and "size    any   3" in composer
    assert "declares no Options class" in composer


def test_plugins_options_unknown_name_suggests_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--options", "comik"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "storysdk: error: no component named 'comik'. Did you mean 'comic'? "
        "See 'storysdk plugins' for the registered names.\n"
    )


def test_runtime_flags_go_only_where_taken_and_defaults_are_strict(
    story: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # --preset/--device/--dtype: no fake takes them, so they change nothing (same bytes as without)
    assert main(["run", str(story), "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert main(["run", str(story), "--out", str(tmp_path / "b"), "--quiet", "--preset", "tiny", "--device", "cpu"]) == 0
    assert (tmp_path / "a" / "tracks" / "fake-image" / "scene-0002.png").read_bytes() == (
        tmp_path / "b" / "tracks" / "fake-image" / "scene-0002.png").read_bytes()
    capsys.readouterr()
    typo = tmp_path / "typo.toml"
    typo.write_text(STORY.replace("[planner]", "[defaults]\nsample_rat = 4000\n\n[planner]"))
    assert main(["plan", str(typo), "--out", "-"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("storysdk: error: defaults: no component of this pipeline takes the option 'sample_rat'. "
                          "Did you mean 'sample_rate'?") and err.count("\n") == 1


def test_the_options_example_in_the_cli_docs_is_the_real_output(capsys: pytest.CaptureFixture[str]) -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text(encoding="utf-8")
    for command in ("storysdk plugins --options frames", "storysdk plugins --options comik"):
        block = doc.split(f"$ {command}\n", 1)[1].split("```", 1)[0]
        rc = main(command.split()[1:])
        captured = capsys.readouterr()
        assert captured.out + captured.err == block
        assert rc == (0 if command.endswith("frames") else 2)
