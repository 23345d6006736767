"""The output folder is claimed atomically and locked for the whole run (issue 12, item 3).

Two runs started at the same instant never both claim a folder; a live second writer is
refused with an OutputFolderError naming the holder; a lock left by a killed process is taken
over; ``overwrite`` and resume still work; write failures name the file.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from storysdk import OutputFolderError, Pipeline, ProgressEvent, StoryRequest
from storysdk.atomic import is_temp_name
from storysdk.output import LOCK_FILE, OWNER_FILE, OutputFolder
from storysdk.testing import make_registry

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "a red fox\na blue bird\na green frog"
TRIALS = 40


def pipe() -> Pipeline:
    return Pipeline(planner="fake-planner", generators=["fake-image", "fake-audio"], composers=["fake-composer"],
                    registry=make_registry())


def request(seed: int) -> StoryRequest:
    return StoryRequest(script=SCRIPT, seed=seed, width=16, height=16)


def tree(root: Path) -> dict[str, str]:
    """Every file but the lock's (relative path -> SHA-256)."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != LOCK_FILE
    }


def python(code: str, *args: str, **kw: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


# -- two runs at the same instant --------------------------------------------------------------

RACE = """
import json, multiprocessing as mp, sys, time
from pathlib import Path
from storysdk import OutputFolderError, Pipeline, StoryRequest
from storysdk.testing import make_registry

def worker(k, barrier, root, trials, out):
    pipe = Pipeline(planner="fake-planner", generators=["fake-image", "fake-audio"],
                    composers=["fake-composer"], registry=make_registry())
    req = StoryRequest(script="a red fox\\na blue bird\\na green frog", seed=k, width=16, height=16)
    slow = lambda ev: time.sleep(0.1) if ev.stage == "plan" and ev.done == 0 else None  # hold the folder a while
    for t in range(trials):
        barrier.wait()
        try:
            pipe.run(req, out_dir=Path(root) / f"trial-{t:02d}", progress=slow)
            out.put((t, k, "claimed", ""))
        except OutputFolderError as exc:
            out.put((t, k, "refused", str(exc)))
        except Exception as exc:
            out.put((t, k, "crashed", repr(exc)))

if __name__ == "__main__":
    root, trials = sys.argv[1], int(sys.argv[2])
    ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(k, barrier, root, trials, out)) for k in (1, 2)]
    for p in procs:
        p.start()
    for _ in range(2 * trials):
        print(json.dumps(out.get(timeout=120)), flush=True)
    for p in procs:
        p.join(60)
"""


def test_two_runs_started_at_the_same_instant_never_both_claim(tmp_path: Path) -> None:
    (tmp_path / "race.py").write_text(textwrap.dedent(RACE))
    proc = subprocess.run([sys.executable, str(tmp_path / "race.py"), str(tmp_path / "race"), str(TRIALS)],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results: dict[int, dict[int, tuple[str, str]]] = {}
    for line in proc.stdout.splitlines():
        t, k, outcome, message = json.loads(line)
        results.setdefault(t, {})[k] = (outcome, message)
    assert sorted(results) == list(range(TRIALS)) and all(sorted(r) == [1, 2] for r in results.values())
    # what each story alone writes, to compare the winners' folders with, file for file
    refs = {k: tree(pipe().run(request(k), out_dir=tmp_path / f"ref-{k}").out_dir) for k in (1, 2)}  # type: ignore[arg-type]
    busy = 0
    for t, r in sorted(results.items()):
        outcomes = sorted(o for o, _ in r.values())
        assert outcomes == ["claimed", "refused"], (t, r)
        winner = next(k for k, (o, _) in r.items() if o == "claimed")
        message = next(m for o, m in r.values() if o == "refused")
        # refused either while the winner held the folder, or after it finished (another story)
        assert "being written by another storysdk run right now" in message or "different story" in message, message
        busy += "right now" in message
        folder = tmp_path / "race" / f"trial-{t:02d}"
        assert tree(folder) == refs[winner], t  # nothing of the other story in it
        assert not (folder / OWNER_FILE).exists()
    assert busy >= TRIALS // 2  # the runs did overlap: most refusals met a held lock


# -- a live holder, a killed holder -------------------------------------------------------------

HOLDER = """
import sys, time
from pathlib import Path
from storysdk import Pipeline, StoryRequest
from storysdk.testing import make_registry

seen = []
def progress(ev):
    if ev.stage == "generate" and ev.scene_index is not None:
        seen.append(ev.scene_index)
        if len(seen) == 2:  # two pictures saved: stop here, holding the folder, until killed
            print("ready", flush=True)
            time.sleep(600)

pipe = Pipeline(planner="fake-planner", generators=["fake-image", "fake-audio"], composers=["fake-composer"],
                registry=make_registry())
pipe.run(StoryRequest(script="a red fox\\na blue bird\\na green frog", seed=int(sys.argv[2]), width=16, height=16),
         out_dir=Path(sys.argv[1]), progress=progress)
"""


def test_a_live_writer_is_refused_and_a_killed_one_is_taken_over(tmp_path: Path) -> None:
    folder = tmp_path / "story"
    holder = python(HOLDER, str(folder), "4")
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        owner = json.loads((folder / OWNER_FILE).read_text())
        assert owner["pid"] == holder.pid and owner["host"] == socket.gethostname()
        for seed in (4, 5):  # the same story (a resume) and another one: both refused while it runs
            with pytest.raises(OutputFolderError, match=rf"{folder} is being written by another storysdk run right "
                                                        rf"now \(pid {holder.pid} on host {socket.gethostname()}, since"):
                pipe().run(request(seed), out_dir=folder, overwrite=seed == 5)
        assert (folder / "tracks" / "fake-image" / "scene-0001.png").is_file()  # refusing touched nothing
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(30)
    assert holder.returncode == -signal.SIGKILL
    assert (folder / OWNER_FILE).is_file()  # a killed process leaves its record behind
    left = folder / "tracks" / "fake-image" / ".scene-0002.png.k1ll3d_x.part"  # and maybe half a temporary file
    left.write_bytes(b"\x89PNG half")
    events: list[ProgressEvent] = []
    story = pipe().run(request(4), out_dir=folder, progress=events.append)
    took = [e for e in events if e.stage == "resume" and e.component == "lock"]
    assert len(took) == 1 and f"pid {holder.pid} on host {socket.gethostname()}" in took[0].message
    assert "stopped without releasing it" in took[0].message
    rendered = sorted(e.scene_index for e in events if e.stage == "generate" and e.component == "fake-image"
                      and e.scene_index is not None)
    assert rendered == [2]  # scenes 0 and 1 were resumed
    assert not left.exists() and not (folder / OWNER_FILE).exists()
    assert sorted(story.images) == [0, 1, 2]
    assert tree(folder) == tree(pipe().run(request(4), out_dir=tmp_path / "ref").out_dir)  # type: ignore[arg-type]


def test_a_second_folder_object_in_the_same_process_is_refused(tmp_path: Path) -> None:
    first = OutputFolder(tmp_path / "f")
    with first:
        assert first.locked and (tmp_path / "f" / LOCK_FILE).is_file()
        with pytest.raises(OutputFolderError, match=rf"pid {os.getpid()} on host"):
            OutputFolder(tmp_path / "f").lock()
        errors: list[BaseException] = []

        def other_thread() -> None:  # a server's second worker thread
            try:
                pipe().run(request(1), out_dir=tmp_path / "f")
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
        assert len(errors) == 1 and isinstance(errors[0], OutputFolderError)
        assert first.took_over is None  # nobody held it before
    assert not first.locked and not (tmp_path / "f" / OWNER_FILE).exists()
    pipe().run(request(1), out_dir=tmp_path / "f")  # free again


def test_the_lock_is_released_when_a_run_fails(tmp_path: Path) -> None:
    bad = Pipeline(planner="fake-planner", generators=[("fake-image", {"fail_scenes": [1]})], registry=make_registry())
    with pytest.raises(RuntimeError, match="told to fail"):
        bad.run(request(1), out_dir=tmp_path)
    assert not (tmp_path / OWNER_FILE).exists()
    with OutputFolder(tmp_path) as folder:
        assert folder.took_over is None  # released properly, not left behind
    with pytest.raises(OutputFolderError, match="different story"):
        pipe().run(request(1), out_dir=tmp_path)  # a refusal releases the lock too
    OutputFolder(tmp_path).lock()


def test_overwrite_replaces_everything_the_earlier_run_wrote(tmp_path: Path) -> None:
    pipe().run(request(1), out_dir=tmp_path / "f")
    folder = tmp_path / "f"
    # what an earlier run's composers listed, and files that are not theirs to remove
    (folder / "comic").mkdir()
    (folder / "comic" / "page-2.png").write_bytes(b"old page")
    (folder / "notes.txt").write_text("mine")
    outside = tmp_path / "outside.txt"
    outside.write_text("not in the folder")
    manifest = json.loads((folder / "files.json").read_text())
    manifest["comic"] = ["comic/page-2.png", "../outside.txt", str(outside), "run.json"]
    (folder / "files.json").write_text(json.dumps(manifest))
    with pytest.raises(OutputFolderError, match="different story"):
        pipe().run(request(2), out_dir=folder)
    pipe().run(StoryRequest(script="only one", seed=2, width=16, height=16), out_dir=folder, overwrite=True)
    assert not (folder / "comic").exists()  # the listed page and the folder it left empty
    assert outside.read_text() == "not in the folder" and (folder / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (folder / "tracks" / "fake-image").glob("*.png")) == ["scene-0000.png"]
    ref = pipe().run(StoryRequest(script="only one", seed=2, width=16, height=16), out_dir=tmp_path / "ref").out_dir
    assert {k: v for k, v in tree(folder).items() if k != "notes.txt"} == tree(ref)  # type: ignore[arg-type]


def test_a_foreign_folder_is_refused_without_leaving_a_lock_file(tmp_path: Path) -> None:
    (tmp_path / "photos.txt").write_text("mine")
    with pytest.raises(OutputFolderError, match="not empty and was not written by storysdk"):
        pipe().run(request(1), out_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos.txt"]


def test_unusable_folders_and_run_records_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputFolderError, match=r"file is a file, not a folder; give a folder path with --out"):
        pipe().run(request(1), out_dir=tmp_path / "file")
    with pytest.raises(OutputFolderError, match=r"cannot create the output folder .*file/sub"):
        pipe().run(request(1), out_dir=tmp_path / "file" / "sub")
    pipe().run(request(1), out_dir=tmp_path / "f")
    (tmp_path / "f" / "run.json").write_text("{not json")
    with pytest.raises(OutputFolderError, match=r"run.json is damaged .*pass --overwrite"):
        pipe().run(request(1), out_dir=tmp_path / "f")
    pipe().run(request(1), out_dir=tmp_path / "f", overwrite=True)
    assert tree(tmp_path / "f") == tree(pipe().run(request(1), out_dir=tmp_path / "ref").out_dir)  # type: ignore[arg-type]


def test_a_full_disk_names_the_file_and_the_run_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import storysdk.output as output

    real = output.atomic_write
    writes: list[Path] = []

    def full_after_three_pngs(path: Path, mode: str = "wb") -> Any:
        if path.suffix == ".png":
            writes.append(path)
            if len(writes) == 3:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, mode)

    monkeypatch.setattr(output, "atomic_write", full_after_three_pngs)
    with pytest.raises(OutputFolderError) as info:
        pipe().run(request(3), out_dir=tmp_path / "f")
    message = str(info.value)
    assert f"cannot write {tmp_path / 'f' / 'tracks' / 'fake-image' / 'scene-0002.png'} (No space left on device)" in message
    assert "the finished assets are kept" in message and "run the same command again to resume" in message
    monkeypatch.setattr(output, "atomic_write", real)
    events: list[ProgressEvent] = []
    pipe().run(request(3), out_dir=tmp_path / "f", progress=events.append)
    # only the picture that failed is rendered again (its sidecar, written first, is simply replaced)
    assert [e.scene_index for e in events if e.stage == "generate" and e.component == "fake-image"
            and e.scene_index is not None] == [2]
    assert tree(tmp_path / "f") == tree(pipe().run(request(3), out_dir=tmp_path / "ref").out_dir)  # type: ignore[arg-type]


def test_run_info_can_be_extended_and_stays_sorted(tmp_path: Path) -> None:
    folder = OutputFolder(tmp_path)
    with pytest.raises(OutputFolderError, match="claim the folder first"):
        folder.update_run_info({"weights": {}})
    with folder:
        assert folder.check_or_claim({"fingerprint": "ab" * 32, "seed": 1}) is False
        folder.update_run_info({"weights": {"generator fake-image": "tiny"}})
        assert folder.check_or_claim({"fingerprint": "ab" * 32, "seed": 1}) is True  # held already: resumes
    text = (tmp_path / "run.json").read_text()
    assert json.loads(text) == {"fingerprint": "ab" * 32, "seed": 1, "weights": {"generator fake-image": "tiny"}}
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


def test_temporary_file_names_are_recognised() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        from storysdk.atomic import atomic_path, atomic_write

        names: list[str] = []
        with atomic_write(Path(d) / "plan.json", "w") as fh:
            names.extend(p.name for p in Path(d).iterdir())
            fh.write("{}")
        with atomic_path(Path(d) / "scene-0001.wav") as tmp:
            names.append(tmp.name)
            tmp.write_bytes(b"")
        assert names[1].endswith(".part.wav")  # the extension stays last, for libraries that read it
        assert all(is_temp_name(n) for n in names), names
        assert sorted(p.name for p in Path(d).iterdir()) == ["plan.json", "scene-0001.wav"]
    for name in ("plan.json", ".storysdk.lock", ".hidden.part", "scene.part", ".x.abc.part", ".x.ABCDEFGH.part"):
        assert not is_temp_name(name), name


def test_a_folder_whose_story_was_refused_before_planning_is_free_for_another(tmp_path: Path) -> None:
    from storysdk import ConfigError, Limits, Pipeline, StoryRequest
    from storysdk.testing import make_registry

    out = tmp_path / "out"
    pipe = Pipeline(planner="fake-planner", generators=["fake-image"], registry=make_registry(),
                    limits=Limits(scenes=2))
    with pytest.raises(ConfigError, match="scenes"):
        pipe.run(StoryRequest(script="a\nb\nc", seed=1), out_dir=out)  # refused: 3 scenes > 2
    story = pipe.run(StoryRequest(script="a\nb", seed=1), out_dir=out)  # the fixed story, no --overwrite
    assert sorted(story.images) == [0, 1]
    with pytest.raises(Exception, match="different story"):
        pipe.run(StoryRequest(script="x\ny", seed=1), out_dir=out)  # a folder holding a story stays guarded
