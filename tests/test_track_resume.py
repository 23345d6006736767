"""Resume per track and cue (issue 11's acceptance check): a two-track run killed (SIGKILL) during
its second track resumes, and ends with the files of an uninterrupted run, byte for byte; a track
planner's saved cues (cues.json and their tokens) are reused, not planned again."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from storysdk import AudioAsset, Generator, OutputFolderError, Planner, ProgressEvent, RenderContext, Scene, StoryRequest
from storysdk import Pipeline, StoryPlan, Tokens
from storysdk.interfaces import TrackContext
from storysdk.model import Cue
from storysdk.output import OutputFolder
from storysdk.testing import make_registry
from storysdk.testing.contract import TrackPlannerContract, folder_bytes

REPO = Path(__file__).resolve().parents[1]

#: The story both processes run: a picture track, a narration track, a track planner's track.
STORY = textwrap.dedent('''
    from storysdk import Pipeline, StoryRequest
    from storysdk.testing import make_registry

    REQUEST = StoryRequest(script="a lighthouse at dusk\\na ship in the fog\\nthe harbour at night\\nthe end", seed=5)


    def pipeline(timing=None):
        return Pipeline(
            planner="fake-planner",
            tokenizers=["fake-tokenizer"],
            tracks={
                "frames": {"generator": ("fake-image", {"width": 16, "height": 16})},
                "voice": {"generator": ("fake-audio", {"per_character": 0.02}), "text": "{caption}", "duck": 8},
                "events": {"planner": ("fake-events", {"per_scene": 2}), "generator": "fake-audio", "gain": -6},
            },
            composers=["fake-composer"],
            timing=timing,
            registry=make_registry(),
            parallel=False,
        )
''')

#: Runs the story and kills its own process (SIGKILL: no cleanup of any kind) the moment the
#: component named by argv[2] has saved its first asset.
KILLER = textwrap.dedent('''
    import os, signal, sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from story import REQUEST, pipeline

    out, victim, timing = sys.argv[1], sys.argv[2], sys.argv[3]

    def progress(event):
        if event.stage == "generate" and event.component == victim and event.done == 1:
            os.kill(os.getpid(), signal.SIGKILL)

    pipeline({"mode": "track", "track": "voice", "padding": 0.3} if timing == "track" else None).run(
        REQUEST, out_dir=out, progress=progress)
    raise SystemExit("the run finished without being killed")
''')


def load_story(folder: Path) -> ModuleType:
    (folder / "story.py").write_text(STORY)
    (folder / "killer.py").write_text(KILLER)
    spec = importlib.util.spec_from_file_location(f"story_{abs(hash(folder))}", folder / "story.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def names(root: Path, sub: str) -> list[str]:
    return sorted(p.name for p in (root / sub).iterdir()) if (root / sub).is_dir() else []


@pytest.mark.parametrize("timing, first, second, victim", [
    # plan timing: frames render, then voice (killed after its first clip), then the events
    ("plan", "frames", "voice", "fake-audio (voice)"),
    # the voice sets the pace, so it renders first; the frames track is the second (killed)
    ("track", "voice", "frames", "fake-image (frames)"),
])
def test_a_two_track_run_killed_during_its_second_track_resumes_byte_identical(
        tmp_path: Path, timing: str, first: str, second: str, victim: str) -> None:
    story = load_story(tmp_path)
    timing_table = {"mode": "track", "track": "voice", "padding": 0.3} if timing == "track" else None
    killed = tmp_path / "killed"
    proc = subprocess.run([sys.executable, str(tmp_path / "killer.py"), str(killed), victim, timing],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]

    # what the killed run left: the first track whole, one asset of the second, nothing after
    ext = {"frames": "png", "voice": "wav"}
    assert names(killed, f"tracks/{first}") == sorted(
        [f"scene-{i:04d}.{ext[first]}" for i in range(4)] + [f"scene-{i:04d}.json" for i in range(4)])
    assert names(killed, f"tracks/{second}") == sorted([f"scene-0000.{ext[second]}", "scene-0000.json"])
    assert names(killed, "tracks/events") == ["cues.json"]  # planned before any track rendered, not rendered
    assert not (killed / "timeline.json").exists() and not (killed / "story.json").exists()
    assert json.loads((killed / ".storysdk.lock.json").read_text())["pid"] != os.getpid()  # the dead run's
    left = folder_bytes(killed)

    # resume in this process: the lock of the dead run is taken over, only the rest renders
    events: list[ProgressEvent] = []
    resumed = story.pipeline(timing_table).run(story.REQUEST, out_dir=killed, progress=events.append)
    assert any(e.stage == "resume" and "took over" in e.message for e in events)
    made = sorted((e.component, e.scene_index) for e in events if e.stage == "generate" and e.scene_index is not None)
    label = {"frames": "fake-image (frames)", "voice": "fake-audio (voice)"}
    assert made == sorted([(label[second], i) for i in (1, 2, 3)] + [("fake-audio (events)", i) for i in range(8)])
    assert [e.component for e in events if e.stage == "tokenize"] == ["fake-tokenizer", "fake-tokenizer"]
    assert [e for e in events if e.stage == "tokenize"][0].total == 4  # the events track had not planned yet
    for rel, data in left.items():  # nothing the killed run finished was written again differently
        if rel.startswith("tracks/"):
            assert (killed / rel).read_bytes() == data, rel

    # an uninterrupted run of the same story: the same files, byte for byte
    whole = tmp_path / "whole"
    story.pipeline(timing_table).run(story.REQUEST, out_dir=whole)
    a, b = folder_bytes(killed), folder_bytes(whole)
    assert sorted(a) == sorted(b)
    assert [rel for rel in a if a[rel] != b[rel]] == []
    assert {"timeline.json", "story.json", "files.json", "plan.json", "run.json", "tracks/events/cues.json"} <= set(a)
    assert len([rel for rel in a if rel.startswith("tracks/events/cue-") and rel.endswith(".wav")]) == 8
    assert not (killed / ".storysdk.lock.json").exists()
    assert not [p for p in killed.rglob("*.part*")]
    assert sorted(resumed.tracks) == ["events", "frames", "voice"]
    assert json.loads((killed / "timeline.json").read_text()) == resumed.timeline.to_dict()


# -- a track planner's cues are planned once ---------------------------------------------------
class QueryEvents(Planner):
    """A track planner whose cues carry tokens (AudioStory's query states); counts its plans."""

    name = "query-events"
    plans_tracks = True

    def __init__(self, forbid: bool = False) -> None:
        super().__init__()
        self.forbid = forbid
        self.calls = 0
        self.seeds: list[int] = []

    def plan(self, request: StoryRequest) -> StoryPlan:
        raise NotImplementedError

    def plan_track(self, plan: StoryPlan, ctx: TrackContext) -> list[Cue]:
        if self.forbid:
            raise AssertionError("the saved cues should have been reused")
        self.calls += 1
        self.seeds.append(ctx.seed)
        cues: list[Cue] = []
        for scene in plan.scenes:
            span = ctx.timeline.scene(scene.index)
            for k in range(3):
                i = len(cues)
                cue = Cue(index=i, prompt=f"{ctx.text(scene)} / {k}", start=round(span.start + k * span.duration / 3, 6),
                          duration=round(span.duration / 3, 6), scene=scene.index)
                cue.tokens["query"] = Tokens("query", self.name, {"q": np.linspace(0.1, 0.2 + i, 7, dtype=np.float32)},
                                             {"cue": i})
                cues.append(cue)
        return cues


class QueryAudio(Generator):
    """A clip whose level and length come from its cue's tokens (so lost tokens change the bytes)."""

    name = "query-audio"
    modality = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[int, bytes] = {}

    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterator[AudioAsset]:
        for s in scenes:
            q = s.tokens["query"]["q"]
            self.seen[s.index] = np.asarray(q).tobytes()
            n = 400 + 10 * int(s.tokens["query"].metadata["cue"])
            yield AudioAsset(s.index, np.full((1, n), float(np.asarray(q).mean()) / 10, np.float32), 8000,
                             made_by=self.name)


class _Stop(Exception):
    pass


def query_pipeline(planner: QueryEvents, gen: QueryAudio | None = None) -> Pipeline:
    return Pipeline(planner="fake-planner", tracks={
        "frames": {"generator": "fake-image"},
        "ambience": {"planner": planner, "generator": gen or QueryAudio(), "text": "sound of {prompt}"},
    }, composers=["fake-composer"], registry=make_registry(), parallel=False)


REQ = StoryRequest(script="rain\nwind\nsea", seed=3)


def test_resume_reuses_saved_cues_and_their_tokens(tmp_path: Path) -> None:
    planner = QueryEvents()

    def stop_after_two(event: ProgressEvent) -> None:
        if event.stage == "generate" and event.component == "query-audio (ambience)" and event.done == 2:
            raise _Stop

    with pytest.raises(_Stop):
        query_pipeline(planner).run(REQ, out_dir=tmp_path / "a", progress=stop_after_two)
    assert planner.calls == 1
    track = tmp_path / "a/tracks/ambience"
    saved = json.loads((track / "cues.json").read_text())
    assert (saved["track"], saved["planner"], len(saved["cues"])) == ("ambience", "query-events", 9)
    assert saved["cues"][4] == {"index": 4, "prompt": "sound of wind / 1", "caption": "", "characters": [],
                                "duration": round(1 / 3, 6), "texts": {}, "metadata": {}, "start": round(1 + 1 / 3, 6),
                                "scene": 1}
    assert sorted(p.name for p in (track / "tokens").iterdir()) == [f"cue-{i:04d}.query.safetensors" for i in range(9)]
    assert sorted(p.name for p in track.glob("*.wav")) == ["cue-0000.wav", "cue-0001.wav"]

    # the resume loads the cues and their tokens: plan_track is not called (it would fail)
    gen = QueryAudio()
    events: list[ProgressEvent] = []
    story = query_pipeline(QueryEvents(forbid=True), gen).run(REQ, out_dir=tmp_path / "a", progress=events.append)
    assert not [e for e in events if e.stage == "plan" and e.component == "query-events"]
    assert sorted(gen.seen) == list(range(2, 9))
    for i, q in gen.seen.items():
        assert q == np.linspace(0.1, 0.2 + i, 7, dtype=np.float32).tobytes()
    assert [c.tokens["query"].metadata for c in story.tracks["ambience"].cues] == [{"cue": i} for i in range(9)]

    # the same files as an uninterrupted run
    query_pipeline(QueryEvents()).run(REQ, out_dir=tmp_path / "b")
    assert folder_bytes(tmp_path / "a") == folder_bytes(tmp_path / "b")
    assert planner.seeds == [3]  # the story's seed: the track sets none


def test_a_track_planner_gets_the_tracks_seed() -> None:
    planner = QueryEvents()
    Pipeline(planner="fake-planner", tracks={"amb": {"planner": planner, "generator": QueryAudio(), "seed": 77}},
             registry=make_registry()).run(REQ)
    assert planner.seeds == [77]


def test_a_track_planned_again_drops_the_old_cues_files(tmp_path: Path) -> None:
    query_pipeline(QueryEvents()).run(REQ, out_dir=tmp_path / "a")
    want = folder_bytes(tmp_path / "a")
    track = tmp_path / "a/tracks/ambience"
    # cues.json removed (to have the track planned again) and an old clip that is not this plan's
    (track / "cues.json").unlink()
    folder = OutputFolder(tmp_path / "a").track("ambience", cues=True)
    folder.save_asset(AudioAsset(0, np.ones((1, 50), np.float32), 8000))
    (track / "tokens/cue-0003.query.safetensors").write_bytes(b"stale")
    planner = QueryEvents()
    query_pipeline(planner).run(REQ, out_dir=tmp_path / "a")
    assert planner.calls == 1
    assert folder_bytes(tmp_path / "a") == want


def test_a_damaged_cues_file_names_itself(tmp_path: Path) -> None:
    query_pipeline(QueryEvents()).run(REQ, out_dir=tmp_path)
    (tmp_path / "tracks/ambience/cues.json").write_text('{"cues": [{"index": -1}]}')
    (tmp_path / "tracks/ambience/cue-0004.wav").unlink()
    with pytest.raises(OutputFolderError, match=r"cues\.json is damaged .*delete it to have track 'ambience' planned again"):
        query_pipeline(QueryEvents(forbid=True)).run(REQ, out_dir=tmp_path)


def test_a_track_folder_name_must_be_a_track_name(tmp_path: Path) -> None:
    from storysdk import ConfigError

    with pytest.raises(ConfigError, match=r"track name '\.\./x'"):
        OutputFolder(tmp_path).track("../x")
    assert os.path.basename(OutputFolder(tmp_path).track("frames").root) == "frames"


# -- the track planner contract, on the fake --------------------------------------------------


class TestFakeEventsContract(TrackPlannerContract):
    name = "fake-events"
    options = {"per_scene": 3}
    bad_options = [({"per_scene": 0}, "per_scene"), ({"per_scene": 17}, "per_scene")]


def test_an_interleaved_story_with_tracks_resumes_byte_identical(tmp_path: Path) -> None:
    def pipe() -> Pipeline:
        return Pipeline(planner="fake-interleaved", tokenizers=["fake-tokenizer"], tracks={
            "frames": {"generator": "fake-image"},
            "voice": {"generator": ("fake-audio", {"per_character": 0.05}), "text": "{caption}"},
            "events": {"planner": "fake-events", "generator": "fake-audio"},
        }, timing={"mode": "track", "track": "voice", "padding": 0.1}, composers=["fake-composer"],
            registry=make_registry())

    request = StoryRequest(prompt="a quiet harbour", num_scenes=4, seed=8)

    def stop(event: ProgressEvent) -> None:  # during the third scene's picture
        if event.stage == "generate" and event.component == "fake-image (frames)" and event.scene_index == 1:
            raise _Stop

    with pytest.raises(_Stop):
        pipe().run(request, out_dir=tmp_path / "a", progress=stop)
    assert len(StoryPlan.load(tmp_path / "a/plan.json").scenes) == 2
    events: list[ProgressEvent] = []
    story = pipe().run(request, out_dir=tmp_path / "a", progress=events.append)
    made = [(e.component, e.scene_index) for e in events if e.stage == "generate" and e.scene_index is not None]
    assert ("fake-image (frames)", 0) not in made and ("fake-audio (voice)", 1) not in made
    assert ("fake-image (frames)", 2) in made and len(story.plan.scenes) == 4
    pipe().run(request, out_dir=tmp_path / "b")
    assert folder_bytes(tmp_path / "a") == folder_bytes(tmp_path / "b")
