"""Saved assets are verified when a run resumes (issue 12, item 5).

A damaged picture or clip (truncated by a crash, replaced, edited) is rendered again with a
``resume`` progress event naming the file; an edited plan.json is refused; a damaged token file
is a clear error. Every resumed folder ends byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import storysdk.registry
from storysdk import OutputFolderError, Pipeline, ProgressEvent, Scene, StoryPlan, StoryRequest, Tokens
from storysdk.cli import main
from storysdk.output import FILE_RECORD_KEY, LOCK_FILE, OutputFolder
from storysdk.testing import FakePlanner, make_registry

SCRIPT = "a red fox\na blue bird\na green frog"
REQUEST = StoryRequest(script=SCRIPT, seed=11, width=16, height=16)


def pipe() -> Pipeline:
    return Pipeline(planner="fake-planner", generators=["fake-image", "fake-audio"], composers=["fake-composer"],
                    registry=make_registry())


def tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != LOCK_FILE
    }


@pytest.fixture
def ref(tmp_path: Path) -> dict[str, str]:
    pipe().run(REQUEST, out_dir=tmp_path / "ref")
    return tree(tmp_path / "ref")


def finished(tmp_path: Path) -> Path:
    pipe().run(REQUEST, out_dir=tmp_path / "f")
    return tmp_path / "f"


def resume(folder: Path) -> tuple[list[ProgressEvent], list[tuple[str, int]]]:
    """Run again; the resume events and which (generator, scene) were rendered."""
    events: list[ProgressEvent] = []
    pipe().run(REQUEST, out_dir=folder, progress=events.append)
    rendered = [(e.component, e.scene_index) for e in events
                if e.stage == "generate" and e.scene_index is not None]
    return [e for e in events if e.stage == "resume"], rendered  # type: ignore[return-value]


def png(size: tuple[int, int], colour: tuple[int, int, int] = (9, 9, 9)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def drop_record(sidecar: Path) -> None:
    """Make a sidecar look like one written before files were recorded."""
    meta = json.loads(sidecar.read_text())
    meta.pop(FILE_RECORD_KEY)
    sidecar.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), r"truncated: \d+ bytes, \d+ were written"),
        (lambda p: p.write_bytes(b""), r"truncated: 0 bytes"),
        (lambda p: p.write_bytes(png((32, 24))), r"(truncated|longer than saved|SHA-256 differs)"),
        (lambda p: p.write_bytes(bytes([p.read_bytes()[0]]) + bytes(b ^ 0xFF if i == 60 else b for i, b in
                                                                    enumerate(p.read_bytes()[1:], 1))),
         r"its bytes changed since it was written \(SHA-256 differs\)"),
        (lambda p: p.with_suffix(".json").unlink(), r"its metadata file scene-0001.json is missing"),
        (lambda p: p.with_suffix(".json").write_text("{half"), r"its metadata file scene-0001.json is damaged"),
    ],
    ids=["truncated", "empty", "replaced", "bit-flip", "no-sidecar", "bad-sidecar"],
)
def test_a_damaged_picture_is_rendered_again(tmp_path: Path, ref: dict[str, str], damage, problem: str) -> None:  # type: ignore[no-untyped-def]
    folder = finished(tmp_path)
    damage(folder / "tracks" / "fake-image" / "scene-0001.png")
    notes, rendered = resume(folder)
    assert rendered == [("fake-image", 1)]
    assert len(notes) == 1 and notes[0].component == "fake-image" and notes[0].scene_index == 1
    assert notes[0].message.startswith("tracks/fake-image/scene-0001.png is damaged (")
    assert notes[0].message.endswith("); rendering it again")
    assert re.search(problem, notes[0].message), notes[0].message
    assert tree(folder) == ref


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:-100]), r"truncated: \d+ bytes, \d+ were written"),
        (lambda p: p.write_bytes(b"RIFF\x00\x00\x00\x00WAVE"), r"truncated: 12 bytes"),
    ],
    ids=["truncated", "header-only"],
)
def test_a_damaged_clip_is_rendered_again(tmp_path: Path, ref: dict[str, str], damage, problem: str) -> None:  # type: ignore[no-untyped-def]
    folder = finished(tmp_path)
    damage(folder / "tracks" / "fake-audio" / "scene-0002.wav")
    notes, rendered = resume(folder)
    assert rendered == [("fake-audio", 2)]
    assert len(notes) == 1 and notes[0].message.startswith("tracks/fake-audio/scene-0002.wav is damaged (")
    assert re.search(problem, notes[0].message), notes[0].message
    assert tree(folder) == ref


def test_files_without_a_record_are_checked_against_the_plan_and_the_wav_header(tmp_path: Path,
                                                                                ref: dict[str, str]) -> None:
    """Sidecars written before files were recorded: the PNG must decode at the plan's size,
    the WAV must be whole."""
    folder = finished(tmp_path)
    for name in ("tracks/fake-image/scene-0000", "tracks/fake-image/scene-0001", "tracks/fake-image/scene-0002", "tracks/fake-audio/scene-0000", "tracks/fake-audio/scene-0001"):
        drop_record(folder / f"{name}.json")
    (folder / "tracks" / "fake-image" / "scene-0000.png").write_bytes(png((32, 16)))  # a sound PNG of the wrong size
    cut = folder / "tracks" / "fake-image" / "scene-0001.png"
    cut.write_bytes(cut.read_bytes()[:-12])  # the IEND chunk is gone
    wav = folder / "tracks" / "fake-audio" / "scene-0001.wav"
    wav.write_bytes(wav.read_bytes()[:-40])  # the data chunk is shorter than its header says
    notes, rendered = resume(folder)
    assert sorted(rendered) == [("fake-audio", 1), ("fake-image", 0), ("fake-image", 1)]
    messages = {e.message.split(" is damaged")[0]: e.message for e in notes}
    assert "is 32x16 pixels, the run's picture is 16x16" in messages["tracks/fake-image/scene-0000.png"]
    assert "truncated: the PNG has no end chunk" in messages["tracks/fake-image/scene-0001.png"]
    assert re.search(r"truncated: \d+ bytes, the WAV header declares \d+", messages["tracks/fake-audio/scene-0001.wav"])
    # scene 2's picture and scene 0's clip, recordless but sound, were kept as they are
    now, kept = tree(folder), {"tracks/fake-image/scene-0002.json", "tracks/fake-audio/scene-0000.json"}
    assert {k: v for k, v in now.items() if k not in kept} == {k: v for k, v in ref.items() if k not in kept}
    assert all(now[k] != ref[k] for k in kept)


def test_a_wrong_sample_rate_or_length_is_caught_by_the_record(tmp_path: Path, ref: dict[str, str]) -> None:
    from storysdk.audio import encode_audio

    folder = finished(tmp_path)
    sidecar = folder / "tracks" / "fake-audio" / "scene-0000.json"
    meta = json.loads(sidecar.read_text())
    record = meta[FILE_RECORD_KEY]
    assert set(record) == {"bytes", "sha256", "sample_rate", "channels", "frames"}
    # a sound WAV at another rate whose digest is recorded: the length check still holds
    other = encode_audio(np.zeros((1, record["frames"]), np.float32), record["sample_rate"] * 2, "wav", "FLOAT")
    (folder / "tracks" / "fake-audio" / "scene-0000.wav").write_bytes(other)
    meta[FILE_RECORD_KEY] = {**record, "bytes": len(other), "sha256": hashlib.sha256(other).hexdigest()}
    sidecar.write_text(json.dumps(meta))
    notes, rendered = resume(folder)
    assert rendered == [("fake-audio", 0)]
    assert f"has sample rate {record['sample_rate'] * 2}, the run's clip has {record['sample_rate']}" in notes[0].message
    assert tree(folder) == ref


def test_sound_assets_resume_with_their_metadata_and_no_events(tmp_path: Path, ref: dict[str, str]) -> None:
    folder = finished(tmp_path)
    story = pipe().run(REQUEST, out_dir=folder)
    notes, rendered = resume(folder)
    assert notes == [] and rendered == []
    assert story.images[0].metadata == {"resumed": True} and story.audio[0].metadata == {"resumed": True}
    assert story.images[0].image.size == (16, 16)
    assert tree(folder) == ref


def test_loading_a_damaged_asset_without_a_callback_is_an_error(tmp_path: Path) -> None:
    folder = finished(tmp_path)
    path = folder / "tracks" / "fake-image" / "scene-0002.png"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(OutputFolderError, match=r"scene-0002.png is damaged \(truncated: 40 bytes, \d+ were written\); "
                                                r"delete it .* to have the scene rendered again"):
        OutputFolder(folder).track("fake-image").load_image(2)
    assert path.is_file()  # only reported, not removed
    seen: list[tuple[Path, str]] = []
    assert OutputFolder(folder).track("fake-image").load_image(2, damaged=lambda p, why: seen.append((p, why))) is None
    assert seen and seen[0][0] == path and not path.exists() and not path.with_suffix(".json").exists()
    assert OutputFolder(folder).track("fake-audio").load_audio(7) is None  # none saved


def test_the_cli_says_which_file_it_renders_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(storysdk.registry, "_default", make_registry())
    story = tmp_path / "tale.toml"
    story.write_text(f"""
[story]
seed = 11
width = 16
height = 16
script = '''
{SCRIPT}
'''
[planner]
name = "fake-planner"
[[generators]]
name = "fake-image"
""")
    assert main(["run", str(story), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    png_path = tmp_path / "o" / "tracks" / "fake-image" / "scene-0000.png"
    good = png_path.read_bytes()
    png_path.write_bytes(good[:100])
    capsys.readouterr()
    assert main(["run", str(story), "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "resume   fake-image scene 0 (tracks/fake-image/scene-0000.png is damaged (truncated: 100 bytes" in err
    assert "rendering it again)" in err
    assert png_path.read_bytes() == good


# -- the plan -----------------------------------------------------------------------------------


def test_an_edited_plan_is_refused_on_resume(tmp_path: Path, ref: dict[str, str]) -> None:
    folder = finished(tmp_path)
    plan_file = folder / "plan.json"
    original = plan_file.read_text()
    run = json.loads((folder / "run.json").read_text())
    assert run["plan_sha256"] == hashlib.sha256(original.encode()).hexdigest() and "plan_sha256_previous" not in run
    plan_file.write_text(original.replace("a blue bird", "a black cat"))
    with pytest.raises(OutputFolderError, match=r"plan.json was changed after this run wrote it .*run it with "
                                                r"`storysdk run --plan FILE`.*pass --overwrite.*put the original"):
        pipe().run(REQUEST, out_dir=folder)
    plan_file.write_text("{not json")  # damaged the same way
    with pytest.raises(OutputFolderError, match="plan.json was changed after this run wrote it"):
        pipe().run(REQUEST, out_dir=folder)
    plan_file.write_text(original)  # put back: resumes
    notes, rendered = resume(folder)
    assert notes == [] and rendered == []
    assert tree(folder) == ref


def test_a_run_killed_between_the_digest_and_the_plan_still_resumes(tmp_path: Path) -> None:
    """run.json records the new plan's digest before plan.json is replaced: the previous one is accepted."""
    folder = OutputFolder(tmp_path)
    with folder:
        folder.check_or_claim({"fingerprint": "f" * 64, "seed": 0})
        one = StoryPlan(scenes=[Scene(0, "one")], seed=1)
        two = StoryPlan(scenes=[Scene(0, "one"), Scene(1, "two")], seed=1)
        folder.save_plan(one)
        real = folder._write

        def killed(path: Path, data: bytes) -> Path:
            if path.name == "plan.json":
                raise KeyboardInterrupt  # the process stops before plan.json is replaced
            return real(path, data)

        folder._write = killed  # type: ignore[method-assign]
        with pytest.raises(KeyboardInterrupt):
            folder.save_plan(two)
        folder._write = real  # type: ignore[method-assign]
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["plan_sha256"] == hashlib.sha256((two.to_json() + "\n").encode()).hexdigest()
    loaded = OutputFolder(tmp_path).load_plan()
    assert loaded is not None and loaded.to_dict() == one.to_dict()
    with OutputFolder(tmp_path) as again:
        again.save_plan(two)
    assert OutputFolder(tmp_path).load_plan().to_dict() == two.to_dict()  # type: ignore[union-attr]


def test_an_interleaved_story_resumes_after_a_damaged_picture(tmp_path: Path) -> None:
    reg = make_registry()

    def interleaved() -> Pipeline:
        return Pipeline(planner="fake-interleaved", generators=["fake-image"], composers=["fake-composer"], registry=reg)

    req = StoryRequest(prompt="go", num_scenes=4, seed=9, width=16, height=16)
    interleaved().run(req, out_dir=tmp_path / "full")
    interleaved().run(req, out_dir=tmp_path / "cut")
    (tmp_path / "cut" / "tracks" / "fake-image" / "scene-0002.png").write_bytes(b"")
    events: list[ProgressEvent] = []
    interleaved().run(req, out_dir=tmp_path / "cut", progress=events.append)
    assert [e.scene_index for e in events if e.stage == "resume"] == [2]
    assert tree(tmp_path / "cut") == tree(tmp_path / "full")
    run = json.loads((tmp_path / "cut" / "run.json").read_text())
    final = StoryPlan.load(tmp_path / "full" / "plan.json")
    three = StoryPlan.from_dict({**final.to_dict(), "scenes": final.to_dict()["scenes"][:3]})
    digest = lambda plan: hashlib.sha256((plan.to_json() + "\n").encode()).hexdigest()  # noqa: E731
    assert (run["plan_sha256"], run["plan_sha256_previous"]) == (digest(final), digest(three))  # the last step's two


class PlannerWithTokens(FakePlanner):
    name = "planner-tokens"

    def plan(self, request: StoryRequest) -> StoryPlan:
        plan = super().plan(request)
        for s in plan.scenes:
            s.tokens["feat"] = Tokens("feat", self.name, {"x": np.full((2, 3), s.index, np.float32)}, {"n": s.index})
        return plan


def test_a_damaged_token_file_is_a_clear_error(tmp_path: Path) -> None:
    def run() -> None:
        Pipeline(PlannerWithTokens(), generators=["fake-image"], registry=make_registry()).run(
            StoryRequest(script=SCRIPT, seed=1), out_dir=tmp_path)

    run()
    path = tmp_path / "tokens" / "scene-0001.feat.safetensors"
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(OutputFolderError, match=r"the token file .*scene-0001.feat.safetensors is damaged .*pass "
                                                r"--overwrite to start the folder over"):
        run()
