"""The ``soundtrack`` composer: the story's mix (:func:`storysdk.mixing.mixdown`) as one file.

Every audio track is placed on the story's timeline, with its gain and ducking, and the sum is
brought to the story's loudness under its peak ceiling (``[mix]`` of a story file,
``Pipeline(mix=...)``; see :mod:`storysdk.mixing`). AudioStory's padded clips crossfade into
the next on their own track exactly as AudioStory joins them
(plugins/storysdk-audiostory/docs/audiostory.md §1.7, §9).

Writes ``soundtrack.wav`` (32-bit float) or ``soundtrack.flac`` (24-bit), and
``soundtrack.json``: the mix's length, rate, channels, master gain, loudness before and after
it and peak, each audio track's settings and cues (on the story's clock), and the scenes'
spans. With ``stems = true`` also ``soundtrack-<track>.<format>`` per audio track, as that
track sounds in the mix (placed, gain, ducked, master gain): the stems add up to the mix.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import ValidationInfo, field_validator

from ..audio import encode_audio
from ..interfaces import Composer
from ..mixing import Mix, Mixdown, mixdown
from ..model import AudioAsset, Modality, Story
from ..options import Field, Options
from ..timeline import Timeline, timeline_of
from .fields import lower_case
from .frames import atomic_write_bytes

__all__ = ["SoundtrackComposer", "soundtrack_info"]

_ON_THE_TIMELINE = (
    "clips sit on the story's timeline now (timeline.json) and the soundtrack is the story's mix "
    "(storysdk.mixing); AudioStory's padded clips crossfade into the next on their own track by themselves, "
    "as AudioStory joins them. Drop crossfade"
)


def _mix_setting(option: str, key: str, example: str) -> str:
    return (
        f"the soundtrack is the story's mix now: set {key} of the story's [mix] instead "
        f"(Pipeline(mix={{'{key}': {example}}}), or [mix] {key} = {example} in a story file), and drop {option}"
    )


class SoundtrackComposer(Composer):
    """Writes the story's mix as ``soundtrack.<format>`` plus ``soundtrack.json`` (see the module docstring).

    Options (declared in :class:`Options`): ``format`` ``"wav"`` (32-bit float) or ``"flac"``
    (24-bit), ``subtype`` to override the soundfile subtype, ``stems`` to write each audio
    track as it sounds in the mix too. The mix's rate, channels, loudness and peak ceiling are
    the story's (:class:`storysdk.mixing.Mix`), not this composer's.
    """

    name = "soundtrack"
    description = "the story's mix: every audio track on the timeline, ducked and loudness-normalised"
    requires: ClassVar[tuple[Modality, ...]] = ("audio",)

    class Options(Options):
        format: Literal["wav", "flac"] = Field(
            "wav", description="file format: wav (32-bit float) or flac (24-bit), in any letter case"
        )
        subtype: str | None = Field(
            None, description="soundfile subtype overriding the format's own, e.g. PCM_16; None: the format's"
        )
        stems: bool = Field(
            False, description="also write each audio track as it sounds in the mix: soundtrack-<track>.<format>"
        )

        moved: ClassVar[dict[str, str]] = {
            "crossfade": _ON_THE_TIMELINE,
            "peak": _mix_setting("peak", "ceiling", "-1.0") + " (the ceiling is in dBFS; the mix never goes above it)",
            "sample_rate": _mix_setting("sample_rate", "sample_rate", "44100"),
            "channels": _mix_setting("channels", "channels", "2"),
        }

        _lower = lower_case("format")

        @field_validator("subtype")
        @classmethod
        def _subtype(cls, value: str | None, info: ValidationInfo) -> str | None:
            fmt = info.data.get("format")
            if value is not None and fmt is not None:
                import soundfile as sf

                if not sf.check_format(fmt.upper(), value.upper()):
                    valid = ", ".join(sorted(sf.available_subtypes(fmt.upper())))
                    raise ValueError(f"subtype {value!r} is not valid for {fmt}; valid: {valid}")
            return value

    options: Options

    def compose(self, story: Story, out_dir: Path) -> list[Path]:
        if not any(isinstance(a, AudioAsset) for t in story.audio_tracks() for a in t.assets.values()):
            return []
        opts = self.options
        timeline = timeline_of(story)
        mixed = mixdown(story, timeline=timeline)
        folder = Path(out_dir)
        audio_path = folder / f"soundtrack.{opts.format}"
        written = [atomic_write_bytes(audio_path, encode_audio(mixed.samples, mixed.sample_rate, opts.format, opts.subtype))]
        stems: dict[str, str] = {}
        if opts.stems:
            for name, samples in mixed.tracks.items():
                path = folder / f"soundtrack-{name}.{opts.format}"
                written.append(atomic_write_bytes(path, encode_audio(samples, mixed.sample_rate, opts.format, opts.subtype)))
                stems[name] = path.name
        info = soundtrack_info(story, mixed, timeline, audio_path.name, stems)
        text = json.dumps(info, indent=2, ensure_ascii=False) + "\n"
        written.append(atomic_write_bytes(folder / "soundtrack.json", text.encode("utf-8")))
        return written


def _dbfs(peak: float) -> float | None:
    return 20.0 * math.log10(peak) if peak > 0 else None


def soundtrack_info(
    story: Story, mixed: Mixdown, timeline: Timeline, file: str, stems: dict[str, str] | None = None
) -> dict[str, Any]:
    """What ``soundtrack.json`` says about ``mixed``: the mix, its tracks and cues, the scenes."""
    tracks = {t.name: t for t in story.audio_tracks()}
    entries: list[dict[str, Any]] = []
    for name in mixed.tracks:
        track = tracks[name]
        cues = [
            {"index": c.index, "scene": c.scene, "start": c.start, "end": round(c.end, 6)}
            for c in sorted(timeline.tracks.get(name, []), key=lambda c: (c.start, c.index))
            if isinstance(track.assets.get(c.index), AudioAsset)
        ]
        entry: dict[str, Any] = {
            "name": name,
            "generator": track.generator,
            "planner": track.planner,
            "gain": track.gain,
            "duck": track.duck,
            "attack": track.attack,
            "release": track.release,
        }
        if stems and name in stems:
            entry["file"] = stems[name]
        entry["cues"] = cues
        entries.append(entry)
    scenes = []
    for span in timeline.scenes:
        try:
            caption = story.plan.scene(span.index).caption
        except KeyError:
            caption = ""
        scenes.append({"index": span.index, "start": span.start, "end": round(span.end, 6), "caption": caption})
    mix = mixed.mix if mixed.mix is not None else Mix()
    return {
        "file": file,
        "duration": mixed.frames / mixed.sample_rate,
        "sample_rate": mixed.sample_rate,
        "channels": mixed.channels,
        "frames": mixed.frames,
        "master_gain_db": mixed.master_gain,
        "loudness_lufs": {"target": mix.loudness, "before": mixed.loudness, "after": mixed.output_loudness},
        "peak_dbfs": _dbfs(mixed.peak),
        "ceiling_dbfs": mix.ceiling,
        "tracks": entries,
        "scenes": scenes,
    }
