"""`storysdk batch`: the stories file, a single-process batch, failures, re-runs, accelerate launch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import pytest
from PIL import Image

import storysdk.registry
from storysdk.batch import RESULTS_FILE, StoryRecord, run_batch
from storysdk.batchfile import load_batch_file, parse_batch_file
from storysdk.cli import main
from storysdk.errors import ConfigError
from storysdk.hookspecs import hookimpl
from storysdk.interfaces import Generator, ProgressEvent, RenderContext
from storysdk.model import ImageAsset, Modality, Scene
from storysdk.storyfile import parse_story_file
from storysdk.testing import make_registry

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_TIMEOUT = 180


def story_text(lines: Sequence[str], *, seed: int = 3, image: str = "", audio: bool = True) -> str:
    script = "\n".join(lines)
    text = f"[story]\nseed = {seed}\nwidth = 8\nheight = 8\nscript = '''\n{script}\n'''\n\n"
    text += '[planner]\nname = "fake-planner"\n\n[tracks.frames.generator]\nname = "fake-image"\n' + image + "\n"
    if audio:
        text += '[tracks.sound]\ngain = -3\n[tracks.sound.generator]\nname = "fake-audio"\nsample_rate = 800\n\n'
    return text + '[[composers]]\nname = "fake-composer"\n'


GOOD = story_text(["a cat", "a dog", "a bird"])
# fails while rendering: the fake image generator raises on its second scene
RENDER_FAILS = story_text(["a cat", "a dog"], image="fail_scenes = [1]\n")
# fails while parsing: not TOML
PARSE_FAILS = "[story\nscript = 'a cat'\n"
# fails while building the pipeline: no such component
UNKNOWN = GOOD.replace('name = "fake-composer"', 'name = "no-such-composer"')


def write_batch(folder: Path, lines: Sequence[dict[str, object]], name: str = "stories.jsonl") -> Path:
    path = folder / name
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


@pytest.fixture
def batch_dir(tmp_path: Path) -> Path:
    (tmp_path / "stories").mkdir()
    (tmp_path / "stories" / "tale.toml").write_text(GOOD)
    (tmp_path / "stories" / "other.toml").write_text(story_text(["a fox", "a hen"], seed=11, audio=False))
    write_batch(tmp_path / "stories", [
        {"story": "tale.toml"},
        {"id": "tale-seed-5", "story": "tale.toml", "seed": 5},
        {"id": "broken", "toml": RENDER_FAILS},
        {"story": "other.toml"},
        {"id": "not-toml", "toml": PARSE_FAILS},
        {"id": "unknown", "toml": UNKNOWN},
    ])
    return tmp_path


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def reference_run(text: str, out: Path, seed: int | None = None) -> Path:
    sf = parse_story_file(text)
    if seed is not None:
        sf.request.seed = seed
    sf.pipeline(registry=make_registry()).run(sf.request, out_dir=out)
    return out


# -- the stories file -------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ('{"id": "a", "toml": ""}\n{"id": "b", "toml": ""', "stories file line 2 is not valid JSON"),
    ('# my stories\n{"toml": ""}', "line 1 is not valid JSON (JSON Lines has no comments)"),
    ('["toml", ""]', "line 1: each line must be a JSON object"),
    ('{"id": "a"}', 'line 1: give exactly one of "story"'),
    ('{"id": "a", "toml": "", "story": "x.toml"}', 'line 1: give exactly one of "story"'),
    ('{"id": "a", "toml": "", "steps": 3}', "line 1: unknown key(s) 'steps'"),
    ('{"id": "a", "toml": ""}\n\n{"id": "A", "toml": ""}', "line 3: id 'A' is already used by line 1"),
    ('{"id": "../up", "toml": ""}', "line 1: id '../up' cannot name a folder"),
    ('{"id": "a/b", "toml": ""}', "id 'a/b' cannot name a folder"),
    ('{"id": ".hidden", "toml": ""}', "id '.hidden' cannot name a folder"),
    ('{"id": "", "toml": ""}', "id '' cannot name a folder"),
    ('{"id": 7, "toml": ""}', "id 7 cannot name a folder"),
    ('{"id": "results.jsonl", "toml": ""}', "id 'results.jsonl' cannot name a folder"),
    ('{"id": "' + "x" * 101 + '", "toml": ""}', "cannot name a folder"),
    ('{"id": "a", "toml": "", "seed": true}', '"seed" must be a whole number'),
    ('{"id": "a", "toml": "", "seed": -1}', '"seed" must be a whole number'),
    ('{"id": "a", "toml": 3}', '"toml" must be the story file'),
    ('{"id": "a", "story": "missing.toml"}', "line 1: story file 'missing.toml' does not exist"),
    ("\n\n", "holds no stories"),
])
def test_stories_file_errors_name_the_line(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_batch_file(text, base_dir=tmp_path)
    assert expected in str(info.value)


def test_stories_file_ids_paths_and_seeds(batch_dir: Path) -> None:
    entries = load_batch_file(batch_dir / "stories" / "stories.jsonl")
    assert [e.id for e in entries] == ["tale", "tale-seed-5", "broken", "other", "not-toml", "unknown"]
    assert [e.line for e in entries] == [1, 2, 3, 4, 5, 6]
    assert entries[0].text == GOOD and entries[0].base_dir == (batch_dir / "stories").resolve()
    assert [e.seed for e in entries[:2]] == [None, 5]
    assert entries[0].fingerprint() != entries[1].fingerprint()  # the seed decides the output
    assert entries[0].fingerprint({"preset": "tiny"}) != entries[0].fingerprint()
    inline = parse_batch_file('\n{"toml": "[story]"}\n', base_dir=batch_dir)
    assert inline[0].id == "line-2" and inline[0].base_dir == batch_dir.resolve()
    with pytest.raises(ConfigError, match="does not exist"):
        load_batch_file(batch_dir / "nope.jsonl")


def test_story_file_that_is_not_text(tmp_path: Path) -> None:
    (tmp_path / "latin1.toml").write_bytes(b"[story]\nscript = '\xe9t\xe9'\n")
    with pytest.raises(ConfigError, match=r"line 2: story file .*latin1.toml. is not UTF-8 text \(byte 0xe9 at line 2, byte offset 18\); save it as UTF-8"):
        parse_batch_file('\n{"story": "latin1.toml"}', base_dir=tmp_path)


def test_parser_and_batch_module_do_not_import_torch() -> None:
    code = ("import argparse, sys; from storysdk.batch import add_parser; import storysdk.batchfile; "
            "p = argparse.ArgumentParser(); add_parser(p.add_subparsers()); "
            "bad = [m for m in ('torch', 'accelerate') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- one process --------------------------------------------------------------------------------
def test_single_process_batch_records_failures_and_finishes_the_rest(batch_dir: Path) -> None:
    out = batch_dir / "out"
    lines: list[str] = []
    result = run_batch(batch_dir / "stories" / "stories.jsonl", out, registry=make_registry(), log=lines.append)
    assert [r.id for r in result.records] == ["tale", "tale-seed-5", "broken", "other", "not-toml", "unknown"]
    status = {r.id: r.status for r in result.records}
    assert status == {"tale": "done", "tale-seed-5": "done", "broken": "failed", "other": "done",
                      "not-toml": "failed", "unknown": "failed"}
    assert (result.exit_code, result.summary()) == (1, "3 done, 3 failed, 0 skipped")
    errors = {r.id: (r.error_type, r.error) for r in result.failed}
    assert errors["broken"][0] == "RuntimeError" and "told to fail on scene 1" in errors["broken"][1]
    assert errors["not-toml"][0] == "ConfigError" and "not valid TOML" in errors["not-toml"][1]
    assert errors["unknown"][0] == "UnknownComponentError" and "no-such-composer" in errors["unknown"][1]
    assert "fake-image" in result.records[2].traceback  # the pipeline's note on where it failed
    assert "story broken: failed in" in "\n".join(lines)

    # the outputs are those of a plain pipeline run, seed override included
    ref = reference_run(GOOD, batch_dir / "ref")
    ref5 = reference_run(GOOD, batch_dir / "ref5", seed=5)
    for i in range(3):
        name = f"tracks/frames/scene-{i:04d}.png"
        assert (out / "tale" / name).read_bytes() == (ref / name).read_bytes()
        assert (out / "tale-seed-5" / name).read_bytes() == (ref5 / name).read_bytes()
        assert (out / "tale" / name).read_bytes() != (ref5 / name).read_bytes()
    assert sorted(p.name for p in (out / "other" / "tracks" / "frames").glob("*.png")) == ["scene-0000.png", "scene-0001.png"]
    assert not (out / "other" / "tracks" / "sound").exists()

    # status records: in each folder and merged in input order
    tale = json.loads((out / "tale" / "batch.json").read_text())
    assert tale["status"] == "done" and tale["rank"] == 0 and tale["device"] == "cpu"
    assert tale["files"] == {"fake-composer": ["story.json"]} and tale["seconds"] >= 0
    assert tale["fingerprint"] == load_batch_file(batch_dir / "stories" / "stories.jsonl")[0].fingerprint()
    merged = [json.loads(line) for line in (out / RESULTS_FILE).read_text().splitlines()]
    assert [m["id"] for m in merged] == [r.id for r in result.records]
    assert [StoryRecord.from_dict(m) for m in merged] == result.records


def test_rerun_skips_finished_stories_and_retries_failed_ones(batch_dir: Path) -> None:
    stories = batch_dir / "stories" / "stories.jsonl"
    out = batch_dir / "out"
    first = run_batch(stories, out, registry=make_registry())
    before = mtimes(out / "tale") | mtimes(out / "other")
    events: list[ProgressEvent] = []
    second = run_batch(stories, out, registry=make_registry(), progress=events.append)
    assert second.summary() == "0 done, 3 failed, 3 skipped"
    assert [r.id for r in second.skipped] == ["tale", "tale-seed-5", "other"]
    assert mtimes(out / "tale") | mtimes(out / "other") == before  # not rendered again
    assert [r.started for r in second.skipped] == [r.started for r in first.records if r.status == "done"]
    # only the failed stories ran; the one that parses resumed its folder (its plan was loaded,
    # not made again) and got as far as its generator again
    assert {(e.stage, e.component) for e in events} == {("generate", "fake-image (frames)")}  # two tracks: named
    assert {r.id: r.started > f.started for r, f in zip(second.failed, first.failed)} == {
        "broken": True, "not-toml": True, "unknown": True}

    # retry_failed=False leaves unchanged failures alone
    third = run_batch(stories, out, registry=make_registry(), retry_failed=False)
    assert [r.started for r in third.failed] == [r.started for r in second.failed]
    assert third.exit_code == 1 and third.summary() == "0 done, 3 failed, 3 skipped"

    # a changed story runs again, replacing its earlier output (both entries read tale.toml)
    (batch_dir / "stories" / "tale.toml").write_text(GOOD.replace("a dog", "a wolf"))
    fourth = run_batch(stories, out, registry=make_registry(), retry_failed=False)
    assert [r.id for r in fourth.done] == ["tale", "tale-seed-5"] and [r.id for r in fourth.skipped] == ["other"]
    ref = reference_run(GOOD.replace("a dog", "a wolf"), batch_dir / "ref")
    assert (out / "tale" / "tracks" / "frames" / "scene-0001.png").read_bytes() == (ref / "tracks" / "frames" / "scene-0001.png").read_bytes()
    assert json.loads((out / "tale" / "story.json").read_text())[1]["caption"] == "a wolf"


class FlakyImage(Generator):
    """Fails on scene 1 until the file ``unlock`` exists; logs each scene it renders."""

    name = "flaky-image"
    modality: ClassVar[Modality] = "image"

    def __init__(self, log: str = "", unlock: str = "") -> None:
        self.log, self.unlock = Path(log), Path(unlock)

    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterator[ImageAsset]:
        for scene in scenes:
            if scene.index == 1 and not self.unlock.exists():
                raise RuntimeError("scene 1 is not ready")
            with self.log.open("a") as fh:
                fh.write(f"{scene.index}\n")
            yield ImageAsset(scene.index, Image.new("RGB", (4, 4), (40 * scene.index, 0, 0)), made_by=self.name)


class FlakyPlugin:
    @hookimpl
    def register_generators(self, register: object) -> None:
        register(FlakyImage)  # type: ignore[operator]


def test_failed_story_resumes_its_folder(tmp_path: Path) -> None:
    log, unlock = tmp_path / "rendered.log", tmp_path / "unlock"
    text = ('[story]\nscript = """\none\ntwo\nthree\n"""\n[planner]\nname = "fake-planner"\n'
            f'[[generators]]\nname = "flaky-image"\nlog = "{log}"\nunlock = "{unlock}"\n')
    stories = write_batch(tmp_path, [{"id": "flaky", "toml": text}, {"id": "fine", "toml": GOOD}])
    registry = make_registry(FlakyPlugin())
    first = run_batch(stories, tmp_path / "out", registry=registry)
    assert [r.status for r in first.records] == ["failed", "done"]
    assert "scene 1 is not ready" in first.records[0].error
    scene0 = (tmp_path / "out" / "flaky" / "tracks" / "flaky-image" / "scene-0000.png").stat().st_mtime_ns
    unlock.touch()
    second = run_batch(stories, tmp_path / "out", registry=registry)
    assert [(r.status, r.skipped) for r in second.records] == [("done", False), ("done", True)]
    assert log.read_text().split() == ["0", "1", "2"]  # scene 0 was not rendered twice
    assert (tmp_path / "out" / "flaky" / "tracks" / "flaky-image" / "scene-0000.png").stat().st_mtime_ns == scene0


class Interrupting(Generator):
    name = "interrupting"
    modality: ClassVar[Modality] = "image"

    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterator[ImageAsset]:
        raise KeyboardInterrupt
        yield  # a generator function


class InterruptPlugin:
    @hookimpl
    def register_generators(self, register: object) -> None:
        register(Interrupting)  # type: ignore[operator]


def test_ctrl_c_stops_the_batch(tmp_path: Path) -> None:
    text = GOOD.replace('name = "fake-image"', 'name = "interrupting"')
    stories = write_batch(tmp_path, [{"id": "stop", "toml": text}, {"id": "later", "toml": GOOD}])
    with pytest.raises(KeyboardInterrupt):
        run_batch(stories, tmp_path / "out", registry=make_registry(InterruptPlugin()))
    assert json.loads((tmp_path / "out" / "stop" / "batch.json").read_text())["status"] == "running"
    assert not (tmp_path / "out" / "later").exists() and not (tmp_path / "out" / RESULTS_FILE).exists()
    # the next run picks the interrupted story up again
    again = run_batch(stories, tmp_path / "out", registry=make_registry())
    assert [(r.id, r.status) for r in again.records] == [("stop", "failed"), ("later", "done")]
    assert again.records[0].error_type == "UnknownComponentError"  # no plugin registers it now


def test_entries_given_directly_need_unique_ids(tmp_path: Path) -> None:
    entries = parse_batch_file(f'{{"id": "a", "toml": {json.dumps(GOOD)}}}', base_dir=tmp_path)
    with pytest.raises(ConfigError, match="same id"):
        run_batch(entries * 2, tmp_path / "out", registry=make_registry())
    result = run_batch(entries, tmp_path / "out", registry=make_registry())
    assert [(r.id, r.status) for r in result.records] == [("a", "done")]


def test_cli_batch_exit_codes(batch_dir: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(storysdk.registry, "_default", make_registry())
    good = write_batch(batch_dir, [{"id": "one", "story": "stories/tale.toml"}], "good.jsonl")
    assert main(["batch", str(good), "--out", str(batch_dir / "a"), "--quiet"]) == 0
    assert "batch: 1 done, 0 failed, 0 skipped" in capsys.readouterr().out
    assert main(["batch", str(good), "--out", str(batch_dir / "a")]) == 0
    assert "batch: 0 done, 0 failed, 1 skipped" in capsys.readouterr().out
    mixed = batch_dir / "stories" / "stories.jsonl"
    assert main(["batch", str(mixed), "--out", str(batch_dir / "b"), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "batch: 3 done, 3 failed, 0 skipped" in captured.out
    assert "failed: broken: RuntimeError: fake-image was told to fail on scene 1" in captured.err
    bad = batch_dir / "bad.jsonl"
    bad.write_text('{"id": "x"}\n')
    assert main(["batch", str(bad), "--out", str(batch_dir / "c")]) == 2
    assert "bad.jsonl line 1: give exactly one of" in capsys.readouterr().err
    assert not (batch_dir / "c").exists()


# -- accelerate launch, two CPU processes ------------------------------------------------------------
def launch_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(STORYSDK_PLUGINS="storysdk.testing:FakesPlugin", STORYSDK_LOAD_PLUGINS="",
               HF_HOME=str(tmp_path / "hf"), OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return env


def launch(args: Sequence[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # accelerate's --cpu launcher starts several processes only through MPI; the torchrun-based
    # launcher (--multi_gpu) starts them anywhere, and storysdk puts them on CPU (gloo) when
    # the machine has no GPU
    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", "0", *args]
    return subprocess.run(cmd, cwd=tmp_path, env=launch_env(tmp_path), capture_output=True, text=True,
                          timeout=LAUNCH_TIMEOUT)


def test_accelerate_launch_two_cpu_processes(tmp_path: Path) -> None:
    stories = [{"id": f"s{i}", "toml": story_text([f"scene {i} a", f"scene {i} b"], seed=i)} for i in range(4)]
    stories.insert(2, {"id": "broken", "toml": RENDER_FAILS})
    path = write_batch(tmp_path, stories)
    out = tmp_path / "out"
    proc = launch(["-m", "storysdk", "batch", str(path), "--out", str(out)], tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]  # a story failed
    assert "batch: 4 done, 1 failed, 0 skipped" in proc.stdout
    assert "[rank 0] story" in proc.stderr and "[rank 1] story" in proc.stderr
    merged = [json.loads(line) for line in (out / RESULTS_FILE).read_text().splitlines()]
    assert [m["id"] for m in merged] == ["s0", "s1", "broken", "s2", "s3"]
    assert [m["status"] for m in merged] == ["done", "done", "failed", "done", "done"]
    assert {m["rank"] for m in merged} == {0, 1}
    assert [m["rank"] for m in merged] == [0, 1, 0, 1, 0]  # every 2nd pending story
    assert merged[2]["error_type"] == "RuntimeError" and not merged[2]["skipped"]
    for m in merged:
        assert json.loads((out / m["id"] / "batch.json").read_text())["rank"] == m["rank"]
    ref = reference_run(stories[1]["toml"], tmp_path / "ref", seed=None)  # type: ignore[arg-type]
    assert (out / "s1" / "tracks" / "frames" / "scene-0001.png").read_bytes() == (ref / "tracks" / "frames" / "scene-0001.png").read_bytes()

    before = {m["id"]: mtimes(out / m["id"]) for m in merged if m["status"] == "done"}
    again = launch(["-m", "storysdk", "batch", str(path), "--out", str(out), "--quiet"], tmp_path)
    assert again.returncode == 1, again.stderr[-3000:]
    assert "batch: 0 done, 1 failed, 4 skipped" in again.stdout
    merged2 = [json.loads(line) for line in (out / RESULTS_FILE).read_text().splitlines()]
    assert [m["skipped"] for m in merged2] == [True, True, False, True, True]
    assert merged2[2]["rank"] == 0 and merged2[2]["started"] > merged[2]["started"]
    assert {k: mtimes(out / k) for k in before} == before


SPLIT_SCRIPT = """
import os, sys
from storysdk.batch import run_batch
# rank 1 writes elsewhere: two machines that share no folder
out = sys.argv[2] if os.environ["RANK"] == "0" else sys.argv[3]
print("rank", os.environ["RANK"], run_batch(sys.argv[1], out).summary())
"""


def test_processes_without_a_shared_folder_merge_on_the_main_process(tmp_path: Path) -> None:
    path = write_batch(tmp_path, [{"id": f"s{i}", "toml": story_text([f"x {i}"], seed=i, audio=False)}
                                  for i in range(3)])
    (tmp_path / "split.py").write_text(SPLIT_SCRIPT)
    main_out, other_out = tmp_path / "main", tmp_path / "other"
    proc = launch(["split.py", str(path), str(main_out), str(other_out)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("3 done, 0 failed, 0 skipped") == 2
    merged = [json.loads(line) for line in (main_out / RESULTS_FILE).read_text().splitlines()]
    assert [(m["id"], m["rank"], m["status"]) for m in merged] == [("s0", 0, "done"), ("s1", 1, "done"), ("s2", 0, "done")]
    assert (other_out / "s1" / "tracks" / "frames" / "scene-0000.png").is_file()
    assert sorted(p.name for p in (main_out / "s1").iterdir()) == ["batch.json"]  # the record, not the files
    assert not (other_out / RESULTS_FILE).exists()
    # the main process knows s1 is done: a re-run renders nothing
    again = run_batch(path, main_out, registry=make_registry())
    assert again.summary() == "0 done, 0 failed, 3 skipped"


def test_batch_applies_its_limits_to_every_story(tmp_path: Path) -> None:
    from storysdk import Limits
    from storysdk.batch import run_batch

    stories = tmp_path / "stories.jsonl"
    stories.write_text(json.dumps({"id": "three", "toml": '[story]\nscript = "a\\nb\\nc"\n[planner]\nname = "fake-planner"\n'
                                   '[[generators]]\nname = "fake-image"\n'}) + "\n", encoding="utf-8")
    result = run_batch(stories, tmp_path / "out", registry=make_registry(), limits=Limits(scenes=2))
    [rec] = result.failed
    assert rec.error_type == "LimitError" and "scenes" in rec.error


def test_batch_refuses_a_story_with_more_tracks_than_its_limit(tmp_path: Path) -> None:
    from storysdk import Limits

    stories = write_batch(tmp_path, [{"id": "two-tracks", "toml": GOOD},
                                     {"id": "one-track", "toml": story_text(["a fox"], audio=False)}])
    result = run_batch(stories, tmp_path / "out", registry=make_registry(), limits=Limits(tracks=1))
    assert [(r.id, r.status) for r in result.records] == [("two-tracks", "failed"), ("one-track", "done")]
    rec = result.records[0]
    assert rec.error_type == "LimitError"
    assert rec.error.startswith("number of tracks = 2 is over the limit tracks = 1 ")
    assert not (tmp_path / "out" / "two-tracks" / "tracks").exists()  # refused before anything rendered
    assert (tmp_path / "out" / "one-track" / "tracks" / "frames" / "scene-0000.png").is_file()


def test_the_stories_file_of_docs_batching_md_reads_as_written(tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "batching.md").read_text(encoding="utf-8")
    section = doc.split("## The stories file", 1)[1].split("\n## ", 1)[0]
    block = section.split("```\n", 2)[1]
    (tmp_path / "stories.jsonl").write_text(block, encoding="utf-8")
    (tmp_path / "attic.toml").write_text(GOOD, encoding="utf-8")
    entries = load_batch_file(tmp_path / "stories.jsonl")
    assert [(e.id, e.seed) for e in entries] == [("attic", None), ("attic-seed-8", 8), ("fox", None)]
    fox = parse_story_file(entries[2].text)
    assert fox.tracks == {"frames": {"generator": {"name": "diffusers-image", "steps": 2}}}
    assert [c["name"] for c in fox.composers] == ["frames"] and fox.defaults == {"preset": "tiny"}
