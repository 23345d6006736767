"""The bad-input corpus (tests/corpus/) through the real CLI, and the CLI's error handling.

Every case of ``tests/corpus/cases.toml`` (a story file, a plan file or a stories file with one
mistake) must end in exit status 2 and one line ``storysdk: error: ...`` holding the case's
expected text, with no traceback and nothing rendered. A field of a story file, a plan file or
a stories file without a case fails :func:`test_every_field_has_a_corpus_case`, so the corpus
grows with every new field. File-system faults (``--out`` naming a file, a read-only folder, a
full disk) and unexpected errors are tested below the corpus.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import attrs
import pytest
from PIL import Image

import storysdk.registry
from storysdk import Character, CheckpointError, Planner, StoryRequest, hookimpl
from storysdk.batchfile import KEYS as BATCH_KEYS
from storysdk.cli import main
from storysdk.model import PLAN_KEYS, SCENE_KEYS
from storysdk.storyfile import OUTPUT_KEYS, TOP_LEVEL
from storysdk.testing import make_registry

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parent / "corpus"
CASES: list[dict[str, Any]] = tomllib.loads((CORPUS / "cases.toml").read_text(encoding="utf-8"))["case"]
#: Files of the corpus that are not cases: the story the plan cases render with, the good files
#: (which must pass), and a story file a stories-file case points at.
HELPERS = {"plan/base.toml", "plan/good.json", "story/good.toml", "batch/good.jsonl", "batch/latin1.toml"}
#: Story-file sections whose component errors come from the pipeline (they name the component
#: and option, not the file).
COMPONENT_FIELDS = {"defaults", "planner", "tokenizers", "generators", "composers"}


@pytest.fixture(autouse=True)
def builtins_and_fakes_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The built-ins and the fake components, whatever plugins are installed."""
    monkeypatch.setattr(storysdk.registry, "_default", make_registry())


def argv_of(case: dict[str, Any], out: Path) -> list[str]:
    path = str(CORPUS / case["file"])
    if case["kind"] == "story":
        if case.get("command") == "run":
            return ["run", path, "--out", str(out), "--quiet"]
        return ["plan", path, "--out", "-"]
    if case["kind"] == "plan":
        return ["run", str(CORPUS / "plan" / "base.toml"), "--plan", path, "--out", str(out), "--quiet"]
    assert case["kind"] == "batch", case
    return ["batch", path, "--out", str(out), "--quiet", "--device", "cpu"]


def one_error_line(err: str) -> str:
    assert "Traceback" not in err
    assert err.startswith("storysdk: error: ") and err.endswith("\n") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_corpus_case(case: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    rc = main(argv_of(case, out))
    captured = capsys.readouterr()
    err = one_error_line(captured.err)
    assert rc == 2
    assert case["expect"] in err, f"expected {case['expect']!r} in {err!r}"
    if case["kind"] in ("story", "plan") and case["field"] not in COMPONENT_FIELDS and case.get("names_file", True):
        assert str(CORPUS / case["file"]) in err  # the file is named
    assert not (out / "tracks").exists() and not (out / "plan.json").exists()  # refused before any work


def test_the_corpus_manifest_lists_every_file_once() -> None:
    files = [c["file"] for c in CASES]
    assert len(files) == len(set(files))
    on_disk = {str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*") if p.is_file()} - {"cases.toml", "README.md"}
    assert on_disk == set(files) | HELPERS
    for c in CASES:
        assert set(c) <= {"kind", "file", "field", "expect", "command", "names_file"} and c["expect"], c


def _fields(cls: Any, prefix: str = "") -> set[str]:
    return {prefix + f.name for f in attrs.fields(cls)}


def test_every_field_has_a_corpus_case() -> None:
    """A new field of a story file, a plan file or a stories file needs a case in the corpus."""
    covered = {(c["kind"], c["field"]) for c in CASES}
    story = (
        {"file", "section", "limits"}
        | _fields(StoryRequest)
        | _fields(Character, "characters.")
        | set(TOP_LEVEL)
        | {f"output.{k}" for k in OUTPUT_KEYS}
    )
    plan = {"file", "plan", "limits"} | set(PLAN_KEYS) | {f"scenes.{k}" for k in SCENE_KEYS} | _fields(Character, "characters.")
    batch = {"file", "line"} | set(BATCH_KEYS)
    wanted = {("story", f) for f in story} | {("plan", f) for f in plan} | {("batch", f) for f in batch}
    assert wanted - covered == set()
    assert covered - wanted == set()  # a case names a real field


def test_plan_keys_are_what_plans_write() -> None:
    from storysdk import Scene, StoryPlan

    plan = StoryPlan(scenes=[Scene(0, "a cat")], characters=[Character("Bob", "a man")])
    assert tuple(plan.to_dict()) == PLAN_KEYS and tuple(plan.scenes[0].to_dict()) == SCENE_KEYS
    assert tuple(plan.characters[0].to_dict()) == tuple(f.name for f in attrs.fields(Character))


def test_the_good_files_of_the_corpus_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each corpus case is a good file with one mistake: the good files themselves pass."""
    assert main(["plan", str(CORPUS / "story" / "good.toml"), "--out", str(tmp_path / "good.plan.json")]) == 0
    base = str(CORPUS / "plan" / "base.toml")
    assert main(["run", base, "--plan", str(CORPUS / "plan" / "good.json"), "--out", str(tmp_path / "p"), "--quiet"]) == 0
    pictures = tmp_path / "p" / "tracks" / "fake-image"  # the [[generators]] shorthand: a track per generator
    assert sorted(p.name for p in pictures.glob("*.png")) == ["scene-0000.png", "scene-0001.png"]
    assert main(["batch", str(CORPUS / "batch" / "good.jsonl"), "--out", str(tmp_path / "b"), "--quiet",
                 "--device", "cpu"]) == 0
    assert capsys.readouterr().err.count("storysdk: error") == 0


def test_a_story_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + (CORPUS / "story" / "good.toml").read_bytes())
    assert storysdk.load_story_file(path).request.script == (
        storysdk.load_story_file(CORPUS / "story" / "good.toml").request.script)


# -- through a real process: no traceback, exit status 2 ------------------------------------------------
def _storysdk(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STORYSDK_LOAD_PLUGINS": ""}  # the built-ins only
    return subprocess.run([sys.executable, "-m", "storysdk", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


def test_a_real_process_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    for case in ("story/not-utf8.toml", "story/duration-quoted.toml", "story/character-without-name.toml"):
        proc = _storysdk("plan", str(CORPUS / case), "--out", "-", cwd=tmp_path)
        assert proc.returncode == 2 and proc.stdout == ""
        one_error_line(proc.stderr)
    proc = _storysdk("run", str(CORPUS / "story" / "metadata-string.toml"), "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert proc.returncode == 2 and "metadata must be a table" in one_error_line(proc.stderr)
    # --traceback (before or after the command) shows where it came from, then the same line
    for argv in (["--traceback", "plan"], ["plan", "--traceback"]):
        proc = _storysdk(*argv, str(CORPUS / "story" / "duration-quoted.toml"), "--out", "-", cwd=tmp_path)
        assert proc.returncode == 2
        assert proc.stderr.startswith("Traceback (most recent call last):") and "storysdk/model.py" in proc.stderr
        assert proc.stderr.splitlines()[-1].startswith("storysdk: error: ") and "duration" in proc.stderr.splitlines()[-1]


# -- files the run cannot write -----------------------------------------------------------------------
def _story(tmp_path: Path) -> Path:
    path = tmp_path / "tale.toml"
    path.write_text((CORPUS / "plan" / "base.toml").read_text(encoding="utf-8"), encoding="utf-8")
    return path


def test_out_naming_an_existing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    story = _story(tmp_path)
    (tmp_path / "taken").write_text("not a folder")
    for out in (tmp_path / "taken", tmp_path / "taken" / "sub"):
        assert main(["run", str(story), "--out", str(out), "--quiet"]) == 2
        err = one_error_line(capsys.readouterr().err)
        assert str(tmp_path / "taken") in err and "--out" in err
    assert (tmp_path / "taken").read_text() == "not a folder"
    # storysdk plan --out naming a folder
    (tmp_path / "folder").mkdir()
    assert main(["plan", str(story), "--out", str(tmp_path / "folder")]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert str(tmp_path / "folder") in err and "is a folder where a file is needed" in err


def test_story_and_plan_paths_that_are_folders_or_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    story = _story(tmp_path)
    for argv, expect in (
        (["plan", str(tmp_path), "--out", "-"], f"story file {str(tmp_path)!r} is a folder"),
        (["plan", str(tmp_path / "nope.toml"), "--out", "-"], "does not exist; see examples/"),
        (["run", str(story), "--plan", str(tmp_path), "--out", str(tmp_path / "o")], f"plan file {str(tmp_path)!r} is a folder"),
        (["run", str(story), "--plan", str(tmp_path / "nope.json"), "--out", str(tmp_path / "o")], "write one with 'storysdk plan'"),
        (["batch", str(tmp_path), "--out", str(tmp_path / "b"), "--device", "cpu"], "is a folder; give a .jsonl file"),
    ):
        assert main(argv) == 2
        assert expect in one_error_line(capsys.readouterr().err)


def test_a_read_only_output_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    story = _story(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    # root ignores permissions: make the folder refuse new files the way a read-only one does
    import tempfile

    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args: Any, **kwargs: Any) -> Any:
        folder = Path(kwargs.get("dir") or ".")
        if folder == locked or locked in folder.parents:
            raise PermissionError(errno.EACCES, "Permission denied", str(folder / ".x.abcdefgh.part"))
        return real_mkstemp(*args, **kwargs)

    real_mkdir = Path.mkdir

    def mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
        if locked in self.parents:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(Path, "mkdir", mkdir)
    try:
        for out in (locked, locked / "sub"):
            assert main(["run", str(story), "--out", str(out), "--quiet"]) == 2
            err = one_error_line(capsys.readouterr().err)
            assert str(locked) in err and ".part" not in err
    finally:
        locked.chmod(0o755)


def test_a_full_disk_names_the_file_and_keeps_finished_assets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    story = _story(tmp_path)
    out = tmp_path / "out"
    saved: list[int] = []
    real_save = Image.Image.save

    def save(self: Image.Image, fp: Any, *args: Any, **kwargs: Any) -> None:
        saved.append(1)
        if len(saved) == 2:  # the second picture: the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    assert main(["run", str(story), "--out", str(out), "--quiet"]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert "no space left on the device while writing" in err.lower() or "No space left on device" in err
    assert str(out / "tracks" / "fake-image" / "scene-0001.png") in err
    assert "run the same command again" in err or "run again to resume" in err
    first = (out / "tracks" / "fake-image" / "scene-0000.png").read_bytes()  # the finished picture is kept
    assert not (out / "tracks" / "fake-image" / "scene-0001.png").exists()
    assert [p.name for p in (out / "tracks" / "fake-image").iterdir() if p.name.endswith(".part")] == []
    monkeypatch.setattr(Image.Image, "save", real_save)
    assert main(["run", str(story), "--out", str(out), "--quiet"]) == 0  # the same command resumes
    assert (out / "tracks" / "fake-image" / "scene-0000.png").read_bytes() == first
    assert (out / "tracks" / "fake-image" / "scene-0001.png").is_file()


# -- errors that are not the user's -----------------------------------------------------------------
class _Broken:
    @hookimpl
    def register_planners(self, register: Any) -> None:
        class Crashing(Planner):
            name = "crashing"

            def plan(self, request: Any) -> Any:
                raise RuntimeError("the planner fell over\nsecond line")

        class BadWeights(Planner):
            name = "bad-weights"

            def plan(self, request: Any) -> Any:
                raise CheckpointError("planner weights /w/model.safetensors do not match", missing=["a.weight", "b.weight"])

        register(Crashing)
        register(BadWeights)


def test_an_unexpected_error_is_one_line_with_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(storysdk.registry, "_default", make_registry(_Broken()))
    story = tmp_path / "s.toml"
    story.write_text('[story]\nscript = "a cat"\n[planner]\nname = "crashing"\n')
    assert main(["plan", str(story), "--out", "-"]) == 1
    err = one_error_line(capsys.readouterr().err)
    assert err == ("storysdk: error: RuntimeError: the planner fell over; second line; run the same command "
                   "with --traceback for the details, and report it if it is a bug\n")
    assert main(["plan", str(story), "--out", "-", "--traceback"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and 'raise RuntimeError("the planner fell over' in err
    assert err.endswith("storysdk: error: RuntimeError: the planner fell over; second line\n")
    # a StorySDKError of several lines (a checkpoint's missing keys) is still one line
    story.write_text('[story]\nscript = "a cat"\n[planner]\nname = "bad-weights"\n')
    assert main(["plan", str(story), "--out", "-"]) == 2
    assert one_error_line(capsys.readouterr().err) == (
        "storysdk: error: planner weights /w/model.safetensors do not match; missing keys (2): a.weight, b.weight\n")


def test_the_cli_docs_error_examples_are_the_real_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """docs/cli.md's errors section shows real output: each ``$ storysdk ...`` block, run in the corpus."""
    doc = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    section = doc.split("## Errors and exit status", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```\n$ ")[1:]]
    assert len(blocks) >= 3
    monkeypatch.chdir(CORPUS)
    for block in blocks:
        command, expected = block.split("\n", 1)
        argv = command.split()[1:]
        assert argv[0] in ("plan", "run", "batch")
        rc = main(argv)
        captured = capsys.readouterr()
        assert captured.err == expected and rc == 2, (command, captured.err)
    assert not (CORPUS / "out").exists()  # refused before anything was written


def test_a_seed_flag_out_of_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    story = _story(tmp_path)
    good = str(CORPUS / "plan" / "good.json")
    for argv in (["plan", str(story), "--seed", "-1", "--out", "-"],
                 ["run", str(story), "--seed", str(2**64), "--plan", good, "--out", str(tmp_path / "o"), "--quiet"]):
        assert main(argv) == 2
        assert "seed must be a whole number from 0 to 18446744073709551615" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "o").exists()
