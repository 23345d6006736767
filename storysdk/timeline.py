"""One clock for a story: every scene and every cue of every track has a start and a duration.

The pipeline decides each scene's length by a :class:`Timing` policy (docs/data-flow.md,
"The timeline"):

* ``mode = "plan"`` (default): the scene's own ``Scene.duration``; a scene without one lasts
  ``seconds`` (3 s);
* ``mode = "fixed"``: every scene lasts ``seconds``;
* ``mode = "track"``: one audio track sets the pace (a narration track, typically): a scene lasts
  as long as that track's clips for it, plus ``padding``, and at least ``minimum``; a scene the
  track has no clip for falls back to its planned duration, else ``seconds``.

Scenes follow each other without gaps, in plan order, from 0. A cue of a track without a track
planner spans its scene; a track planner places its own cues (AudioStory's events) on the same
clock. :class:`Timeline` is what composers read and what the output folder keeps as
``timeline.json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs

from .errors import ConfigError
from .model import AudioAsset, Scene, Story, Track
from .options import Field, Options

__all__ = [
    "TIMELINE_FORMAT",
    "CueSpan",
    "Span",
    "Timeline",
    "Timing",
    "crossfade_padding",
    "scene_durations",
    "sounding_seconds",
    "timeline_of",
]

TIMELINE_FORMAT = 1
#: A scene's length when nothing else says how long it is (the video composer's still length).
DEFAULT_SCENE_SECONDS = 3.0


class Timing(Options):
    """How long each scene lasts (see the module docstring); ``[timing]`` in a story file."""

    mode: Literal["plan", "fixed", "track"] = Field(
        "plan", description="plan: each scene's own duration; fixed: every scene `seconds`; track: a track's clips set it"
    )
    seconds: float = Field(
        DEFAULT_SCENE_SECONDS, gt=0, le=3600, allow_inf_nan=False,
        description="fixed: every scene's length; plan and track: the length of a scene nothing else times",
    )
    track: str | None = Field(None, description="mode track: the audio track whose clips set each scene's length")
    padding: float = Field(
        0.0, ge=0, le=600, allow_inf_nan=False, description="mode track: seconds added after the track's clips in each scene"
    )
    minimum: float = Field(
        0.0, ge=0, le=3600, allow_inf_nan=False, description="mode track: no scene is shorter than this (seconds)"
    )

    def describe(self) -> dict[str, Any]:
        return self.model_dump()


def check_timing(timing: Timing) -> None:
    if timing.mode == "track" and not timing.track:
        raise ConfigError('timing mode "track" needs track = "<the audio track that sets the pace>"')
    if timing.mode != "track" and timing.track:
        raise ConfigError(f'timing names track {timing.track!r} but its mode is {timing.mode!r}; set mode = "track"')


def crossfade_padding(asset: AudioAsset) -> float:
    """The crossfade padding a clip declares (``metadata["crossfade"]``, AudioStory's 3 s), else 0."""
    pad = asset.metadata.get("crossfade")
    return float(pad) if isinstance(pad, (int, float)) and not isinstance(pad, bool) and pad > 0 else 0.0


def sounding_seconds(asset: AudioAsset) -> float:
    """How long a clip sounds on its track: its length less the crossfade padding it declares
    (the padding sounds under the next clip)."""
    return max(asset.seconds - crossfade_padding(asset), 0.0)


def scene_durations(scenes: Sequence[Scene], timing: Timing, pace: Track | None = None) -> dict[int, float]:
    """Each scene's length in seconds under ``timing``; ``pace`` is the track of mode ``track``."""
    out: dict[int, float] = {}
    for scene in scenes:
        planned = float(scene.duration) if scene.duration is not None else timing.seconds
        if timing.mode == "fixed":
            out[scene.index] = timing.seconds
        elif timing.mode == "track" and pace is not None and pace.of_scene(scene.index):
            clips = [a for _, a in pace.of_scene(scene.index) if isinstance(a, AudioAsset)]
            spoken = sum(sounding_seconds(a) for a in clips)
            out[scene.index] = round(max(spoken + timing.padding, timing.minimum), 6)
        else:
            out[scene.index] = planned
    return out


@attrs.frozen
class Span:
    """Scene ``index`` from ``start`` for ``duration`` seconds."""

    index: int
    start: float
    duration: float

    @property
    def end(self) -> float:
        return self.start + self.duration


@attrs.frozen
class CueSpan:
    """Cue ``index`` of a track (belonging to scene ``scene``) from ``start`` for ``duration`` seconds."""

    index: int
    scene: int
    start: float
    duration: float

    @property
    def end(self) -> float:
        return self.start + self.duration


@attrs.define(eq=False)
class Timeline:
    """The story's clock: the scenes' spans (in plan order, no gaps) and each track's cues."""

    scenes: list[Span] = attrs.field(factory=list)
    tracks: dict[str, list[CueSpan]] = attrs.field(factory=dict)
    timing: dict[str, Any] = attrs.field(factory=dict)

    @property
    def total(self) -> float:
        """The story's length in seconds: the end of its last scene."""
        return self.scenes[-1].end if self.scenes else 0.0

    def scene(self, index: int) -> Span:
        for span in self.scenes:
            if span.index == index:
                return span
        raise KeyError(index)

    @classmethod
    def of_scenes(cls, scenes: Sequence[Scene], durations: Mapping[int, float], timing: Timing | None = None) -> Timeline:
        spans: list[Span] = []
        t = 0.0
        for scene in scenes:
            d = float(durations[scene.index])
            spans.append(Span(scene.index, round(t, 6), d))
            t += d
        return cls(spans, {}, timing.describe() if timing is not None else {})

    def place(self, track: Track) -> None:
        """Record ``track``'s cues (their starts and durations; a cue without a duration spans
        what its asset sounds, else nothing)."""
        spans = []
        for cue in sorted(track.cues, key=lambda c: (c.start, c.index)):
            duration = cue.duration
            if duration is None:
                asset = track.assets.get(cue.index)
                duration = sounding_seconds(asset) if isinstance(asset, AudioAsset) else 0.0
            spans.append(CueSpan(cue.index, cue.scene, float(cue.start), float(duration)))
        self.tracks[track.name] = spans

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": TIMELINE_FORMAT,
            "duration": self.total,
            "timing": dict(self.timing),
            "scenes": [{"index": s.index, "start": s.start, "duration": s.duration, "end": round(s.end, 6)} for s in self.scenes],
            "tracks": {
                name: [{"index": c.index, "scene": c.scene, "start": c.start, "duration": c.duration, "end": round(c.end, 6)}
                       for c in cues]
                for name, cues in self.tracks.items()
            },
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Timeline:
        """A timeline from :meth:`to_dict` data (``timeline.json``); anything else is a ConfigError."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"malformed timeline (an object with scenes and tracks, got {type(data).__name__}); "
                              "run the story again")
        if data.get("format", TIMELINE_FORMAT) != TIMELINE_FORMAT:
            raise ConfigError(f"timeline format {data.get('format')!r} is not supported (this storysdk reads format "
                              f"{TIMELINE_FORMAT}); run the story again with this version")
        try:
            scenes = [Span(int(s["index"]), _seconds(s["start"]), _seconds(s["duration"])) for s in data["scenes"]]
            tracks = {str(name): [CueSpan(int(c["index"]), int(c["scene"]), _seconds(c["start"]), _seconds(c["duration"]))
                                  for c in cues] for name, cues in _table(data.get("tracks", {})).items()}
            timing = dict(_table(data.get("timing", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed timeline ({type(exc).__name__}: {exc}); run the story again") from exc
        return cls(scenes, tracks, timing)


def _table(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return value


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{value!r} is not a number of seconds >= 0")
    return float(value)


def timeline_of(story: Story) -> Timeline:
    """The story's timeline: :attr:`Story.timeline`, or for a story assembled by hand one derived
    from it: each scene lasts as long as its clip on the first audio track (less declared
    crossfade padding, AudioStory's), else its planned duration, else 3 s.

    In a derived timeline the cues of a track without a track planner (``Track.planner == ""``,
    as the ``images``/``audio`` tracks of a story without tracks) span their scenes; the cues of a
    track with one keep their own start and duration (else what their clip sounds). The story's
    cues are left as they are.
    """
    if isinstance(story.timeline, Timeline):
        return story.timeline
    audio = story.audio_tracks()
    timing = Timing(mode="track", track=audio[0].name) if audio else Timing()
    durations = scene_durations(story.plan.scenes, timing, audio[0] if audio else None)
    timeline = Timeline.of_scenes(story.plan.scenes, durations, timing)
    scenes = {s.index for s in story.plan.scenes}
    for track in story.all_tracks().values():
        spans = []
        for cue in track.cues:
            if cue.scene not in scenes:
                raise ConfigError(
                    f"track {track.name!r}: cue {cue.index} belongs to scene {cue.scene}, which the story's plan "
                    "does not have; give the cue the index of one of the plan's scenes (Cue.scene)"
                )
            if track.planner:
                duration = cue.duration
                if duration is None:
                    asset = track.assets.get(cue.index)
                    duration = sounding_seconds(asset) if isinstance(asset, AudioAsset) else 0.0
                spans.append(CueSpan(cue.index, cue.scene, float(cue.start), float(duration)))
            else:
                span = timeline.scene(cue.scene)
                spans.append(CueSpan(cue.index, cue.scene, span.start, span.duration))
        timeline.tracks[track.name] = sorted(spans, key=lambda c: (c.start, c.index))
    return timeline
