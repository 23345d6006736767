"""The story's clock: timing modes, cue spans of every kind of track, timeline.json, timeline_of."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from storysdk import AudioAsset, ConfigError, ImageAsset, Pipeline, Scene, Story, StoryPlan, StoryRequest
from storysdk.model import Cue, Track
from storysdk.timeline import CueSpan, Span, Timeline, Timing, scene_durations, timeline_of
from storysdk.testing import make_registry

SCRIPT = "a lighthouse at dusk\na ship in the fog\nthe end"
RATE = 8000  # fake-audio's sample rate


def spans(timeline: Timeline, track: str) -> list[tuple[int, int, float, float]]:
    return [(c.index, c.scene, round(c.start, 6), round(c.duration, 6)) for c in timeline.tracks[track]]


def scene_spans(timeline: Timeline) -> list[tuple[int, float, float]]:
    return [(s.index, round(s.start, 6), round(s.duration, 6)) for s in timeline.scenes]


def voiced(text: str, per_character: float) -> float:
    """How long fake-audio speaks ``text``: its frame count at 8 kHz, in seconds."""
    return round(len(text) * per_character * RATE) / RATE


# -- timing modes -----------------------------------------------------------------------------
def test_mode_plan_uses_each_scenes_duration(tmp_path: Path) -> None:
    plan = StoryPlan(scenes=[Scene(0, "a", duration=2.0), Scene(1, "b"), Scene(2, "c", duration=0.5)], seed=1)
    pipe = Pipeline(planner="fake-planner", tracks={"frames": {"generator": "fake-image"}}, registry=make_registry())
    story = pipe.run(StoryRequest(seed=1), plan=plan, out_dir=tmp_path)
    assert scene_spans(story.timeline) == [(0, 0.0, 2.0), (1, 2.0, 3.0), (2, 5.0, 0.5)]  # 3 s: nothing times scene 1
    assert story.timeline.total == 5.5
    assert spans(story.timeline, "frames") == [(0, 0, 0.0, 2.0), (1, 1, 2.0, 3.0), (2, 2, 5.0, 0.5)]
    # seconds: the length of a scene nothing else times
    pipe = Pipeline(planner="fake-planner", tracks={"frames": {"generator": "fake-image"}},
                    timing={"seconds": 1.25}, registry=make_registry())
    story = pipe.run(StoryRequest(seed=1), plan=plan)
    assert scene_spans(story.timeline) == [(0, 0.0, 2.0), (1, 2.0, 1.25), (2, 3.25, 0.5)]


def test_mode_fixed_gives_every_scene_the_same_length() -> None:
    pipe = Pipeline(planner=("fake-planner", {"duration": 4.0}), tracks={
        "frames": {"generator": "fake-image"}, "amb": {"generator": "fake-audio"}},
        timing={"mode": "fixed", "seconds": 1.5}, registry=make_registry())
    story = pipe.run(StoryRequest(script=SCRIPT, seed=1))
    assert scene_spans(story.timeline) == [(0, 0.0, 1.5), (1, 1.5, 1.5), (2, 3.0, 1.5)]
    # a scene-cued audio track renders each cue at its span: fake-audio's clip is the cue's duration
    assert [a.frames for a in story.tracks["amb"].assets.values()] == [12000, 12000, 12000]  # type: ignore[union-attr]
    assert spans(story.timeline, "amb") == [(0, 0, 0.0, 1.5), (1, 1, 1.5, 1.5), (2, 2, 3.0, 1.5)]


def test_mode_track_a_narration_track_sets_each_scenes_length(tmp_path: Path) -> None:
    plan = StoryPlan(scenes=[
        Scene(0, "lighthouse", "A lighthouse at dusk", duration=1.0, texts={"voice": "The lamp was lit at dusk."}),
        Scene(1, "ship", "A ship", duration=2.5),  # no voice text: no clip, the planned 2.5 s
        Scene(2, "fog", "Fog", texts={"voice": "Fog."}),  # short: the minimum
        Scene(3, "end", "The end", texts={"voice": "And the ship came home at last, at dawn."}),
    ], seed=4)
    pipe = Pipeline(planner="fake-planner", tracks={
        "frames": {"generator": "fake-image"},
        "narration": {"generator": ("fake-audio", {"per_character": 0.05}), "text": "{voice}", "duck": 10},
        "ambience": {"generator": "fake-audio", "gain": -6},
        "events": {"planner": ("fake-events", {"per_scene": 2}), "generator": "fake-audio"},
    }, timing={"mode": "track", "track": "narration", "padding": 0.5, "minimum": 1.2}, registry=make_registry())
    story = pipe.run(StoryRequest(seed=4), plan=plan, out_dir=tmp_path)

    spoken = {0: voiced("The lamp was lit at dusk.", 0.05), 2: voiced("Fog.", 0.05),
              3: voiced("And the ship came home at last, at dawn.", 0.05)}
    lengths = [max(spoken[0] + 0.5, 1.2), 2.5, max(spoken[2] + 0.5, 1.2), max(spoken[3] + 0.5, 1.2)]
    assert lengths[2] == 1.2 and lengths[0] == 1.75
    starts = list(np.cumsum([0.0, *lengths[:-1]]))
    assert scene_spans(story.timeline) == [(i, round(starts[i], 6), round(lengths[i], 6)) for i in range(4)]
    assert story.timeline.total == pytest.approx(sum(lengths))
    # the narration's cues span what each clip sounds, from its scene's start
    assert spans(story.timeline, "narration") == [(i, i, round(starts[i], 6), spoken[i]) for i in (0, 2, 3)]
    # scene-cued tracks span their scenes; the ambience clips are rendered at those lengths
    for track in ("frames", "ambience"):
        assert spans(story.timeline, track) == [(i, i, round(starts[i], 6), round(lengths[i], 6)) for i in range(4)]
    assert [story.tracks["ambience"].assets[i].frames for i in range(4)] == [  # type: ignore[union-attr]
        round(length * RATE) for length in lengths]
    # the track planner's cues split each timed scene in two, inside the scene's span
    want = []
    for i in range(4):
        half = lengths[i] / 2
        want += [(2 * i, i, round(starts[i], 6), round(half, 6)), (2 * i + 1, i, round(starts[i] + half, 6), round(half, 6))]
    assert spans(story.timeline, "events") == want
    for cue in story.timeline.tracks["events"]:
        scene = story.timeline.scene(cue.scene)
        assert scene.start - 1e-9 <= cue.start and cue.end <= scene.end + 1e-9
    # timeline.json holds what the story holds
    assert (tmp_path / "timeline.json").read_text() == story.timeline.to_json()


def test_mode_track_under_an_interleaved_planner() -> None:
    pipe = Pipeline(planner="fake-interleaved", tracks={
        "frames": {"generator": "fake-image"},
        "voice": {"generator": ("fake-audio", {"per_character": 0.1}), "text": "{caption}"},
    }, timing={"mode": "track", "track": "voice", "padding": 0.25}, registry=make_registry())
    story = pipe.run(StoryRequest(prompt="dawn", num_scenes=3, seed=1))
    captions = [s.caption for s in story.plan.scenes]
    assert captions == ["opening", "scene 1", "scene 2"]
    lengths = [voiced(c, 0.1) + 0.25 for c in captions]
    assert scene_spans(story.timeline) == [(0, 0.0, 0.95), (1, 0.95, 0.95), (2, 1.9, 0.95)]
    assert [round(x, 6) for x in lengths] == [0.95, 0.95, 0.95]
    assert spans(story.timeline, "frames") == [(0, 0, 0.0, 0.95), (1, 1, 0.95, 0.95), (2, 2, 1.9, 0.95)]


@pytest.mark.parametrize("timing, match", [
    ({"mode": "track"}, r'needs track = '),
    ({"mode": "plan", "track": "voice"}, r'set mode = "track"'),
    ({"mode": "track", "track": "voise"}, r"Did you mean 'voice'"),
    ({"mode": "track", "track": "frames"}, r"must be an audio track"),
    ({"mode": "track", "track": "events"}, r"without a track planner"),
    ({"mode": "sometimes"}, r"mode"),
    ({"seconds": 0}, r"seconds"),
    ({"padding": -1}, r"padding"),
    ({"minimum": float("nan")}, r"minimum"),
    ({"lenght": 2}, r"timing: unknown key 'lenght'"),
    ({"seconds": 2, "paddig": 1}, r"Did you mean 'padding'"),
])
def test_bad_timing_is_refused(timing: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Pipeline(planner="fake-planner", tracks={"frames": {"generator": "fake-image"}, "voice": {"generator": "fake-audio"},
                                                 "events": {"planner": "fake-events", "generator": "fake-audio"}},
                 timing=timing, registry=make_registry())


def test_scene_durations_alone() -> None:
    scenes = [Scene(0, "a", duration=2.0), Scene(1, "b")]
    assert scene_durations(scenes, Timing()) == {0: 2.0, 1: 3.0}
    assert scene_durations(scenes, Timing(mode="fixed", seconds=0.5)) == {0: 0.5, 1: 0.5}
    pace = Track("voice", "audio", [Cue.of_scene(scenes[0])],
                 {0: AudioAsset(0, np.zeros((1, 12000), np.float32), 8000, metadata={"crossfade": 0.5})})
    # a clip's declared crossfade padding does not count; the scene without a clip keeps its 3 s
    assert scene_durations(scenes, Timing(mode="track", track="voice", padding=0.1), pace) == {0: 1.1, 1: 3.0}


# -- timeline.json --------------------------------------------------------------------------
def test_timeline_json_is_deterministic_and_round_trips(tmp_path: Path) -> None:
    def run(out: Path) -> Story:
        pipe = Pipeline(planner="fake-planner", tracks={
            "frames": {"generator": "fake-image"},
            "voice": {"generator": ("fake-audio", {"per_character": 0.03}), "text": "{caption}"},
            "events": {"planner": ("fake-events", {"per_scene": 3}), "generator": "fake-audio"},
        }, timing={"mode": "track", "track": "voice", "padding": 0.2}, registry=make_registry())
        return pipe.run(StoryRequest(script=SCRIPT, seed=9), out_dir=out)

    story = run(tmp_path / "a")
    run(tmp_path / "b")
    text = (tmp_path / "a/timeline.json").read_text()
    assert text == (tmp_path / "b/timeline.json").read_text()
    data = json.loads(text)
    assert data["format"] == 1 and list(data["tracks"]) == ["frames", "voice", "events"]
    assert data["timing"] == {"mode": "track", "seconds": 3.0, "track": "voice", "padding": 0.2, "minimum": 0.0}
    lengths = [voiced(line, 0.03) + 0.2 for line in SCRIPT.splitlines()]
    assert data["duration"] == pytest.approx(sum(lengths))
    assert [s["duration"] for s in data["scenes"]] == [round(x, 6) for x in lengths]
    for s in data["scenes"]:
        assert s["end"] == round(s["start"] + s["duration"], 6)
    assert len(data["tracks"]["events"]) == 9
    loaded = Timeline.from_dict(data)
    assert loaded.to_json() == text
    assert loaded.total == story.timeline.total and loaded.scene(2) == story.timeline.scene(2)
    assert loaded.tracks["events"][4] == CueSpan(4, 1, data["tracks"]["events"][4]["start"],
                                                 data["tracks"]["events"][4]["duration"])


@pytest.mark.parametrize("data", [
    [], {"scenes": [{"index": 0, "start": 0}]}, {"scenes": [{"index": 0, "start": -1, "duration": 1}]},
    {"scenes": [{"index": 0, "start": 0, "duration": "1"}]}, {"scenes": [], "tracks": {"a": [{"index": 0}]}},
    {"format": 2, "scenes": []}, {"scenes": [], "tracks": []},
])
def test_a_malformed_timeline_is_a_config_error(data: Any) -> None:
    with pytest.raises(ConfigError, match=r"timeline"):
        Timeline.from_dict(data)


# -- a story assembled by hand ----------------------------------------------------------------
def clip(seconds: float, rate: int = 8000, **meta: Any) -> AudioAsset:
    return AudioAsset(0, np.zeros((1, round(seconds * rate)), np.float32), rate, metadata=meta)


def test_timeline_of_a_hand_made_story() -> None:
    plan = StoryPlan(scenes=[Scene(0, "a"), Scene(1, "b", duration=2.0), Scene(2, "c")])
    picture = Image.new("RGB", (4, 4))
    story = Story(plan=plan, images={i: ImageAsset(i, picture) for i in range(3)},
                  audio={0: clip(0.5), 2: clip(4.0, crossfade=1.5)})
    timeline = timeline_of(story)
    # scene 0: its clip (0.5 s); scene 1: no clip, planned 2 s; scene 2: 4 s less 1.5 s of crossfade padding
    assert scene_spans(timeline) == [(0, 0.0, 0.5), (1, 0.5, 2.0), (2, 2.5, 2.5)]
    assert list(timeline.tracks) == ["images", "audio"]
    assert spans(timeline, "images") == [(0, 0, 0.0, 0.5), (1, 1, 0.5, 2.0), (2, 2, 2.5, 2.5)]
    assert spans(timeline, "audio") == [(0, 0, 0.0, 0.5), (2, 2, 2.5, 2.5)]
    # without audio: planned, else 3 s
    bare = timeline_of(Story(plan=plan, images={0: ImageAsset(0, picture)}))
    assert scene_spans(bare) == [(0, 0.0, 3.0), (1, 3.0, 2.0), (2, 5.0, 3.0)]
    assert spans(bare, "images") == [(0, 0, 0.0, 3.0)]


def test_timeline_of_hand_made_tracks_keeps_a_track_planners_cues() -> None:
    plan = StoryPlan(scenes=[Scene(0, "a", duration=2.0), Scene(1, "b", duration=2.0)])
    frames = Track("frames", "image", [Cue.of_scene(s) for s in plan.scenes],
                   {i: ImageAsset(i, Image.new("RGB", (2, 2))) for i in range(2)})
    events = Track("events", "audio", [Cue(0, "x", start=0.5, scene=0, duration=1.0), Cue(1, "y", start=2.25, scene=1)],
                   {0: clip(1.0), 1: clip(0.75)}, planner="fake-events")
    story = Story(plan=plan, tracks={"frames": frames, "events": events})
    timeline = timeline_of(story)
    # the first audio track has a track planner: its clips of a scene time it (1 s, 0.75 s)
    assert scene_spans(timeline) == [(0, 0.0, 1.0), (1, 1.0, 0.75)]
    assert spans(timeline, "frames") == [(0, 0, 0.0, 1.0), (1, 1, 1.0, 0.75)]
    # its cues keep their own starts; a cue without a duration lasts its clip
    assert spans(timeline, "events") == [(0, 0, 0.5, 1.0), (1, 1, 2.25, 0.75)]
    assert [c.start for c in events.cues] == [0.5, 2.25] and [c.start for c in frames.cues] == [0.0, 0.0]  # untouched
    # a story's own timeline wins
    own = Timeline([Span(0, 0.0, 9.0)], {}, {})
    story.timeline = own
    assert timeline_of(story) is own
    # a cue of a scene the plan does not have
    bad = Story(plan=plan, tracks={"events": Track("events", "audio", [Cue(0, "x", scene=7)], {0: clip(1.0)}, planner="p")})
    with pytest.raises(ConfigError, match=r"cue 0 belongs to scene 7"):
        timeline_of(bad)
