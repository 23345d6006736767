"""The ``soundtrack`` composer: every scene's clip, in scene order, on one crossfaded timeline.

The join is AudioStory's (plugins/storysdk-audiostory/docs/audiostory.md §1.7, §9): a linear crossfade of
``int(crossfade * sample_rate)`` samples at each join, with a hard cut where a piece is
shorter than the fade. AudioStory generates every clip but the last 3 s longer, so the joined
track lasts about the sum of the planned durations, and records that padding in
``AudioAsset.metadata["crossfade"]``. So ``crossfade=None`` (default) uses the padding the
clips declare (the largest among all clips but the last, when every one of them declares
it) and otherwise hard cuts, so clips from generators that do not pad keep their planned
place on the timeline (what a video composer needs). Pass ``crossfade=3.0`` for AudioStory's
fade on any clips: each join then shortens the track by that much.

Writes ``soundtrack.wav`` (or ``.flac``) and ``soundtrack.json``, which records each
scene's clip extent on the joined timeline (start/end in seconds and in frames; a clip's end
overlaps the next clip's start by the crossfade).

The join itself is :func:`join_clips`, shared with the ``video`` composer so that its audio
track and picture timeline are exactly this composer's; it can also put :class:`Silence`
between clips (hard cuts on both sides), which the video composer uses for scenes without audio.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Union

import attrs
import numpy as np
from pydantic import ValidationInfo, field_validator

from ..audio import (
    crossfade_join,
    crossfade_offsets,
    encode_audio,
    peak_normalize,
    resample,
    to_channels,
)
from ..errors import ConfigError
from ..interfaces import Composer
from ..model import AudioAsset, Modality, Story
from ..options import Field, Options
from .fields import lower_case
from .frames import atomic_write_bytes

__all__ = [
    "AUDIOSTORY_CROSSFADE",
    "JoinedTrack",
    "Silence",
    "SoundtrackComposer",
    "declared_crossfade",
    "join_clips",
]

AUDIOSTORY_CROSSFADE = 3.0  # plugins/storysdk-audiostory/docs/audiostory.md §1.7: 3 s linear crossfade (what its generator pads)


@attrs.frozen
class Silence:
    """A silent stretch of ``seconds`` on a :func:`join_clips` timeline (hard cuts on both sides)."""

    seconds: float

    def __attrs_post_init__(self) -> None:
        s = self.seconds
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not s >= 0:
            raise ConfigError(f"a silence must last a number of seconds >= 0, got {s!r}")


TrackItem = Union[AudioAsset, Silence]


@attrs.frozen(eq=False)
class JoinedTrack:
    """The result of :func:`join_clips`: the track and where each item sits on it.

    ``samples`` is float32 (channels, frames) at ``sample_rate``; ``starts[i]`` and
    ``ends[i]`` are item ``i``'s first frame and one past its last (a clip's end overlaps the
    next clip's start by ``fade`` frames where they crossfade).
    """

    samples: np.ndarray
    sample_rate: int
    fade: int
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def frames(self) -> int:
        return int(self.samples.shape[1])


def declared_crossfade(clips: Sequence[AudioAsset]) -> float:
    """The crossfade the clips ask for: the largest ``metadata["crossfade"]`` among all clips
    but the last when every one of them declares it (AudioStory's padding), else 0 (hard cuts)."""
    declared = [c.metadata.get("crossfade") for c in clips[:-1]]
    if declared and all(isinstance(d, (int, float)) and not isinstance(d, bool) and d >= 0 for d in declared):
        return float(max(declared))  # type: ignore[type-var]
    return 0.0


def join_clips(
    items: Sequence[TrackItem],
    crossfade: float | None = None,
    sample_rate: int | None = None,
    channels: int | None = None,
    peak: float | None = None,
) -> JoinedTrack:
    """Join clips (and silences) in order into one track, as the ``soundtrack`` composer does.

    Every clip is resampled to ``sample_rate`` (``None``: the highest among the clips) and
    mapped to ``channels`` (``None``: the most among the clips). Consecutive clips are joined
    by :func:`storysdk.audio.crossfade_join` with a fade of ``int(crossfade * rate)`` frames
    (plugins/storysdk-audiostory/docs/audiostory.md §9); ``crossfade=None`` uses :func:`declared_crossfade`. A
    :class:`Silence` is inserted with hard cuts on both sides (``round(seconds * rate)``
    frames), so the clips after it keep their place. ``peak`` scales the whole track to that
    peak level (``None``: unchanged).
    """
    clips = [it for it in items if isinstance(it, AudioAsset)]
    if not clips:
        raise ConfigError("join_clips needs at least one audio clip; give the story some audio")
    if any(not isinstance(it, (AudioAsset, Silence)) for it in items):
        raise ConfigError("join_clips takes AudioAsset and Silence items only")
    rate = sample_rate or max(a.sample_rate for a in clips)
    chans = channels or max(a.channels for a in clips)
    seconds = declared_crossfade(clips) if crossfade is None else crossfade
    fade = int(seconds * rate)  # plugins/storysdk-audiostory/docs/audiostory.md §9: int(seconds x rate)

    pieces: list[np.ndarray] = []  # runs of crossfaded clips and silences, joined by hard cuts
    starts: list[int] = []
    ends: list[int] = []
    run: list[np.ndarray] = []
    offset = 0

    def close_run() -> None:
        nonlocal offset
        if run:
            lengths = [p.shape[1] for p in run]
            for start, n in zip(crossfade_offsets(lengths, fade), lengths):
                starts.append(offset + start)
                ends.append(offset + start + n)
            pieces.append(crossfade_join(run, fade))
            offset += pieces[-1].shape[1]
            run.clear()

    for item in items:
        if isinstance(item, AudioAsset):
            run.append(to_channels(resample(item.samples, item.sample_rate, rate), chans))
            continue
        close_run()
        n = int(round(item.seconds * rate))
        pieces.append(np.zeros((chans, n), dtype=np.float32))
        starts.append(offset)
        ends.append(offset + n)
        offset += n
    close_run()
    joined = pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=1)
    if peak is not None:
        joined = peak_normalize(joined, peak)
    return JoinedTrack(joined, rate, fade, tuple(starts), tuple(ends))


class SoundtrackComposer(Composer):
    """Joins the story's audio clips into ``soundtrack.<format>`` plus a ``soundtrack.json`` timeline.

    Options (declared in :class:`Options`): ``crossfade`` in seconds (``None``: the clips' declared padding, else 0,
    AudioStory's; see the module docstring), ``sample_rate`` (``None``:
    the highest among the clips; others are resampled with :func:`storysdk.audio.resample`),
    ``channels`` (``None``: the most among the clips; mono clips are repeated, see
    :func:`storysdk.audio.to_channels`), ``format`` ``"wav"`` (32-bit float) or ``"flac"``
    (24-bit), ``subtype`` to override the soundfile subtype, ``peak`` to scale the joined
    track to that peak level (``None``: unchanged).
    """

    name = "soundtrack"
    description = "all audio clips on one crossfaded timeline (AudioStory's join)"
    requires: ClassVar[tuple[Modality, ...]] = ("audio",)

    class Options(Options):
        crossfade: float | None = Field(
            None,
            ge=0,
            allow_inf_nan=False,
            description="seconds of linear crossfade at each join; None: the padding the clips declare "
            "(AudioStory's 3 s), else hard cuts",
        )
        sample_rate: int | None = Field(
            None, ge=1, description="sample rate of the track in Hz; None: the highest among the clips"
        )
        channels: int | None = Field(
            None, ge=1, description="channels of the track; None: the most among the clips (mono clips are repeated)"
        )
        format: Literal["wav", "flac"] = Field(
            "wav", description="file format: wav (32-bit float) or flac (24-bit), in any letter case"
        )
        subtype: str | None = Field(
            None, description="soundfile subtype overriding the format's own, e.g. PCM_16; None: the format's"
        )
        peak: float | None = Field(
            None, gt=0, le=1, description="scale the joined track to this peak level; None: unchanged"
        )

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
        clips = story.ordered_audio()
        if not clips:
            return []
        opts = self.options
        track = join_clips([a for _, a in clips], opts.crossfade, opts.sample_rate, opts.channels, opts.peak)
        rate, joined = track.sample_rate, track.samples

        folder = Path(out_dir)
        audio_path = folder / f"soundtrack.{opts.format}"
        data = encode_audio(joined, rate, opts.format, opts.subtype)
        scenes: list[dict[str, Any]] = []
        for (scene, asset), start, end in zip(clips, track.starts, track.ends):
            scenes.append(
                {
                    "index": scene.index,
                    "start": start / rate,
                    "end": end / rate,
                    "start_frame": start,
                    "end_frame": end,
                    "made_by": asset.made_by,
                    "caption": scene.caption,
                }
            )
        timeline = {
            "file": audio_path.name,
            "sample_rate": rate,
            "channels": track.channels,
            "frames": int(joined.shape[1]),
            "duration": joined.shape[1] / rate,
            "crossfade": track.fade / rate,
            "crossfade_frames": track.fade,
            "scenes": scenes,
        }
        text = json.dumps(timeline, indent=2, ensure_ascii=False) + "\n"
        return [
            atomic_write_bytes(audio_path, data),
            atomic_write_bytes(folder / "soundtrack.json", text.encode("utf-8")),
        ]
