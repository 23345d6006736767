"""The ``soundtrack`` composer: every scene's clip, in scene order, on one crossfaded timeline.

The join is AudioStory's (audiostory.md §1.7, §9): a linear crossfade of
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
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from ..audio import (
    AUDIO_FORMATS,
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
from .frames import atomic_write_bytes

__all__ = ["AUDIOSTORY_CROSSFADE", "SoundtrackComposer"]

AUDIOSTORY_CROSSFADE = 3.0  # audiostory.md §1.7: 3 s linear crossfade (what its generator pads)


def _optional_positive_int(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive whole number or None, got {value!r}")
    return value


class SoundtrackComposer(Composer):
    """Joins the story's audio clips into ``soundtrack.<format>`` plus a ``soundtrack.json`` timeline.

    Options: ``crossfade`` in seconds (``None``: the clips' declared padding, else 0,
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

    def __init__(
        self,
        *,
        crossfade: float | None = None,
        sample_rate: int | None = None,
        channels: int | None = None,
        format: str = "wav",
        subtype: str | None = None,
        peak: float | None = None,
    ) -> None:
        if crossfade is not None and (
            isinstance(crossfade, bool) or not isinstance(crossfade, (int, float)) or not crossfade >= 0
        ):
            raise ConfigError(f"crossfade must be a number of seconds >= 0 (or None), got {crossfade!r}")
        self.crossfade = None if crossfade is None else float(crossfade)
        self.sample_rate = _optional_positive_int("sample_rate", sample_rate)
        self.channels = _optional_positive_int("channels", channels)
        fmt = str(format).lower()
        if fmt not in AUDIO_FORMATS:
            raise ConfigError(f"unknown audio format {format!r}; use one of: {', '.join(AUDIO_FORMATS)}")
        self.format = fmt
        if subtype is not None:
            import soundfile as sf

            if not sf.check_format(fmt.upper(), str(subtype).upper()):
                valid = ", ".join(sorted(sf.available_subtypes(fmt.upper())))
                raise ConfigError(f"subtype {subtype!r} is not valid for {fmt}; valid: {valid}")
        self.subtype = subtype
        if peak is not None and (isinstance(peak, bool) or not isinstance(peak, (int, float)) or not 0 < peak <= 1):
            raise ConfigError(f"peak must be a number in (0, 1] or None, got {peak!r}")
        self.peak = peak

    def compose(self, story: Story, out_dir: Path) -> list[Path]:
        clips = story.ordered_audio()
        if not clips:
            return []
        rate = self.sample_rate or max(a.sample_rate for _, a in clips)
        channels = self.channels or max(a.channels for _, a in clips)
        parts = [to_channels(resample(a.samples, a.sample_rate, rate), channels) for _, a in clips]
        fade = int(self._crossfade_seconds([a for _, a in clips]) * rate)  # audiostory.md §9: int(seconds x rate)
        joined = crossfade_join(parts, fade)
        if self.peak is not None:
            joined = peak_normalize(joined, self.peak)
        starts = crossfade_offsets([p.shape[1] for p in parts], fade)

        folder = Path(out_dir)
        audio_path = folder / f"soundtrack.{self.format}"
        data = encode_audio(joined, rate, self.format, self.subtype)
        scenes: list[dict[str, Any]] = []
        for (scene, asset), start, part in zip(clips, starts, parts):
            end = start + part.shape[1]
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
            "channels": channels,
            "frames": int(joined.shape[1]),
            "duration": joined.shape[1] / rate,
            "crossfade": fade / rate,
            "crossfade_frames": fade,
            "scenes": scenes,
        }
        text = json.dumps(timeline, indent=2, ensure_ascii=False) + "\n"
        return [
            atomic_write_bytes(audio_path, data),
            atomic_write_bytes(folder / "soundtrack.json", text.encode("utf-8")),
        ]

    def _crossfade_seconds(self, clips: list[AudioAsset]) -> float:
        if self.crossfade is not None:
            return self.crossfade
        declared = [c.metadata.get("crossfade") for c in clips[:-1]]
        if declared and all(isinstance(d, (int, float)) and not isinstance(d, bool) and d >= 0 for d in declared):
            return float(max(declared))  # type: ignore[type-var]
        return 0.0
