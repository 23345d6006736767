"""The story's mix: every audio track placed on the timeline, with gain, ducking and loudness.

:func:`mixdown` is what the ``soundtrack``, ``video`` and ``storybook`` composers play, so they
all sound the same (docs/data-flow.md, "Mixing"). For each audio track:

1. **Placement.** Each clip starts at its cue's start on the :class:`~storysdk.timeline.Timeline`
   (``round(start * rate)``). Consecutive clips of a track whose earlier clip declares crossfade
   padding (``AudioAsset.metadata["crossfade"]``, AudioStory's 3 s, and the next cue starts where
   the earlier one ends) are joined exactly as AudioStory joins them,
   :func:`storysdk.audio.crossfade_join` with ``int(crossfade * rate)`` frames
   (plugins/storysdk-audiostory/docs/audiostory.md §1.7, §9), the run placed at its first cue's
   start. Where any other clip runs into the next one, the two crossfade linearly over the
   overlap. Clips are resampled (:func:`storysdk.audio.resample`) and channel-mapped
   (:func:`storysdk.audio.to_channels`) to the mix's; what sounds past the story's end is cut.
2. **Gain.** ``Track.gain`` dB.
3. **Ducking.** While a clip of a track with ``duck = D`` plays (from its cue's start for the
   clip's length less its crossfade padding), every track without ``duck`` is lowered by ``D``
   dB; the gain falls linearly in dB over ``attack`` seconds before the clip and comes back over
   ``release`` seconds after it. Where two ducking tracks overlap, the deeper one counts.

Then the sum is brought to ``Mix.loudness`` (integrated loudness, LUFS, ITU-R BS.1770-4 as
``pyloudnorm`` measures it; skipped for a mix shorter than one 400 ms block or silent), and,
never clipping, scaled down so that its sample peak is at most ``Mix.ceiling`` dBFS (also when
``loudness`` is ``None``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from .audio import crossfade_join, resample, to_channels
from .errors import ConfigError
from .model import AudioAsset, Story, Track
from .options import Field, Options
from .timeline import CueSpan, Timeline, timeline_of

__all__ = ["Mix", "Mixdown", "duck_envelope", "mixdown", "place_track"]

#: EBU R128's programme loudness is -23 LUFS; -16 LUFS is the common target of spoken-word and
#: streamed stories (podcast platforms), which this mix defaults to.
DEFAULT_LOUDNESS = -16.0
DEFAULT_CEILING = -1.0


class Mix(Options):
    """The master settings of a story's mix (``[mix]`` in a story file)."""

    sample_rate: int | None = Field(None, ge=8000, le=384000, description="Hz; None: the highest among the clips")
    channels: int | None = Field(None, ge=1, le=8, description="None: the most among the clips (mono clips are repeated)")
    loudness: float | None = Field(
        DEFAULT_LOUDNESS, ge=-70, le=0, allow_inf_nan=False,
        description="integrated loudness of the mix in LUFS (ITU-R BS.1770-4); None: no loudness normalisation",
    )
    ceiling: float = Field(
        DEFAULT_CEILING, ge=-60, le=0, allow_inf_nan=False,
        description="the mix's sample peak is scaled down to at most this many dBFS (it never clips)",
    )


@attrs.frozen(eq=False)
class Mixdown:
    """The result of :func:`mixdown`.

    ``samples`` (float32, (channels, frames)) is the mix at ``sample_rate``; ``tracks`` each audio
    track as it sounds in the mix (placed, with its gain, ducked, and the master gain applied),
    so ``samples`` is their sum. ``master_gain`` is the master gain in dB, ``loudness`` the mix's
    integrated loudness before it (``None`` when not measured).
    """

    samples: np.ndarray
    sample_rate: int
    tracks: dict[str, np.ndarray]
    master_gain: float
    loudness: float | None

    @property
    def frames(self) -> int:
        return int(self.samples.shape[1])

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def peak(self) -> float:
        return float(np.max(np.abs(self.samples))) if self.samples.size else 0.0


def _padding(asset: AudioAsset) -> float:
    pad = asset.metadata.get("crossfade")
    return float(pad) if isinstance(pad, (int, float)) and not isinstance(pad, bool) and pad > 0 else 0.0


def _items(track: Track, spans: Sequence[CueSpan]) -> list[tuple[CueSpan, AudioAsset]]:
    out = []
    for span in sorted(spans, key=lambda s: (s.start, s.index)):
        asset = track.assets.get(span.index)
        if isinstance(asset, AudioAsset):
            out.append((span, asset))
    return out


def place_track(track: Track, spans: Sequence[CueSpan], frames: int, rate: int, channels: int) -> np.ndarray:
    """``track``'s clips placed at their cues' starts (see the module docstring), ``frames`` long."""
    out = np.zeros((channels, frames), dtype=np.float32)
    items = _items(track, spans)
    runs: list[list[tuple[CueSpan, AudioAsset]]] = []
    for span, asset in items:
        prev = runs[-1][-1] if runs else None
        if prev is not None and _padding(prev[1]) > 0 and abs(span.start - prev[0].end) < 1e-3:
            runs[-1].append((span, asset))
        else:
            runs.append([(span, asset)])
    end = 0
    for run in runs:
        clips = [to_channels(resample(a.samples, a.sample_rate, rate), channels) for _, a in run]
        if len(clips) > 1:
            fade = int(max(_padding(a) for _, a in run[:-1]) * rate)  # plugins/storysdk-audiostory/docs/audiostory.md §9: int(seconds x rate)
            joined = crossfade_join(clips, fade)
        else:
            joined = clips[0]
        start = int(round(run[0][0].start * rate))
        if start >= frames:
            continue
        part = joined[:, : frames - start]
        n = part.shape[1]
        overlap = min(end - start, n)
        if overlap > 0:
            fade_out = np.linspace(1.0, 0.0, overlap, dtype=np.float32)
            fade_in = np.linspace(0.0, 1.0, overlap, dtype=np.float32)
            out[:, start : start + overlap] = out[:, start : start + overlap] * fade_out + part[:, :overlap] * fade_in
            out[:, start + overlap : start + n] = part[:, overlap:]
        else:
            out[:, start : start + n] = part
        end = max(end, start + n)
    return out


def duck_envelope(
    intervals: Sequence[tuple[float, float]], frames: int, rate: int, depth: float, attack: float, release: float
) -> np.ndarray:
    """The attenuation in dB (>= 0) that ducking by ``depth`` dB during ``intervals`` (seconds) gives
    at each of ``frames`` frames: ``depth`` inside an interval, falling linearly to 0 over
    ``attack`` seconds before it and ``release`` seconds after it; the largest where they overlap."""
    att = np.zeros(frames, dtype=np.float64)
    if depth <= 0 or frames == 0:
        return att
    t = np.arange(frames, dtype=np.float64) / rate
    for a, b in intervals:
        lo = max(int(np.floor((a - attack) * rate)), 0)
        hi = min(int(np.ceil((b + release) * rate)) + 1, frames)
        if hi <= lo:
            continue
        x = t[lo:hi]
        shape = np.ones_like(x)
        if attack > 0:
            shape = np.minimum(shape, np.clip((x - (a - attack)) / attack, 0.0, 1.0))
        else:
            shape = np.where(x < a, 0.0, shape)
        if release > 0:
            shape = np.minimum(shape, np.clip(1.0 - (x - b) / release, 0.0, 1.0))
        else:
            shape = np.where(x >= b, 0.0, shape)
        att[lo:hi] = np.maximum(att[lo:hi], depth * shape)
    return att


def _loudness(samples: np.ndarray, rate: int) -> float | None:
    """Integrated loudness (LUFS) of ``samples``, or ``None`` when it cannot be measured."""
    if samples.shape[1] < int(0.4 * rate) + 1 or not np.any(samples):
        return None
    import pyloudnorm

    value = float(pyloudnorm.Meter(rate).integrated_loudness(samples.T.astype(np.float64)))
    return value if np.isfinite(value) else None


def mixdown(story: Story, mix: Mix | Mapping[str, Any] | None = None, *, timeline: Timeline | None = None) -> Mixdown:
    """Mix every audio track of ``story`` on its timeline (the module docstring says how).

    ``mix`` defaults to :attr:`Story.mix`, else :class:`Mix` defaults. A story without audio is a
    :class:`ConfigError`.
    """
    if mix is None:
        mix = story.mix if story.mix is not None else Mix()
    if isinstance(mix, Mapping):
        mix = Mix(**mix)
    timeline = timeline if timeline is not None else timeline_of(story)
    tracks = [t for t in story.audio_tracks() if any(isinstance(a, AudioAsset) for a in t.assets.values())]
    if not tracks:
        raise ConfigError("the story has no audio to mix; give it an audio track")
    clips = [a for t in tracks for a in t.assets.values() if isinstance(a, AudioAsset)]
    rate = mix.sample_rate or max(a.sample_rate for a in clips)
    channels = mix.channels or max(a.channels for a in clips)
    frames = int(round(timeline.total * rate))
    placed: dict[str, np.ndarray] = {}
    for t in tracks:
        spans = timeline.tracks.get(t.name)
        if spans is None:
            raise ConfigError(f"the timeline has no cues of track {t.name!r}; place the track (Timeline.place) first")
        placed[t.name] = place_track(t, spans, frames, rate, channels).astype(np.float64) * 10.0 ** (t.gain / 20.0)
    duckers = [t for t in tracks if t.duck is not None and t.duck > 0]
    if duckers:
        attenuation = np.zeros(frames, dtype=np.float64)
        for d in duckers:
            intervals = [(s.start, s.start + max(a.seconds - _padding(a), 0.0))
                         for s, a in _items(d, timeline.tracks[d.name])]
            attenuation = np.maximum(attenuation, duck_envelope(intervals, frames, rate, float(d.duck or 0.0),
                                                                d.attack, d.release))
        gain = 10.0 ** (-attenuation / 20.0)
        for t in tracks:
            if t.duck is None or t.duck <= 0:
                placed[t.name] = placed[t.name] * gain
    total = np.sum(list(placed.values()), axis=0) if placed else np.zeros((channels, frames))
    loudness = _loudness(total, rate)
    master_db = 0.0
    if mix.loudness is not None and loudness is not None:
        master_db = mix.loudness - loudness
    peak = float(np.max(np.abs(total))) if total.size else 0.0
    ceiling = 10.0 ** (mix.ceiling / 20.0)
    if peak > 0 and peak * 10.0 ** (master_db / 20.0) > ceiling:
        master_db = 20.0 * float(np.log10(ceiling / peak))
    scale = 10.0 ** (master_db / 20.0)
    out_tracks = {name: (buf * scale).astype(np.float32) for name, buf in placed.items()}
    samples = (total * scale).astype(np.float32)
    np.clip(samples, -ceiling, ceiling, out=samples)  # float32 rounding only: the scale already keeps it under
    return Mixdown(samples, int(rate), out_tracks, master_db, loudness)
