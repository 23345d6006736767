"""The story's mix: every audio track placed on the timeline, with gain, ducking and loudness.

:func:`mixdown` is what the ``soundtrack``, ``video`` and ``storybook`` composers play, so they
all sound the same (docs/data-flow.md, "Mixing"). For each audio track:

1. **Placement.** Each clip starts at its cue's start on the :class:`~storysdk.timeline.Timeline`
   (``round(start * rate)``). Consecutive clips of a track whose earlier clip declares crossfade
   padding (``AudioAsset.metadata["crossfade"]``, AudioStory's 3 s, and the next cue starts where
   the earlier one ends) are joined exactly as AudioStory joins them,
   :func:`storysdk.audio.crossfade_join` with ``int(crossfade * rate)`` frames
   (plugins/storysdk-audiostory/docs/audiostory.md §1.7, §9), the run placed at its first cue's
   start, as long as each clip of the run lands within :data:`RUN_DRIFT` (10 ms) of its own
   cue's start (a clip shorter than its event ends the run, and the next keeps its place).
   Where any other clip starts while earlier ones still sound, what sounds of them fades out
   linearly up to their end while the new clip fades in over the same frames. Clips are
   resampled (:func:`storysdk.audio.resample`) and channel-mapped
   (:func:`storysdk.audio.to_channels`) to the mix's; what sounds past the story's end is cut.
   A clip with NaN or infinite samples is a :class:`~storysdk.errors.ComponentError`.
2. **Gain.** ``Track.gain`` dB.
3. **Ducking.** While a clip of a track with ``duck = D`` plays (from its cue's start for the
   clip's length less its crossfade padding), every track without ``duck`` is lowered by ``D``
   dB; the gain falls linearly in dB over ``attack`` seconds before the clip and comes back over
   ``release`` seconds after it. Where two ducking tracks overlap, the deeper one counts.

Then the sum (in float64, in track order) is brought to ``Mix.loudness`` (integrated loudness,
LUFS, ITU-R BS.1770-4 as ``pyloudnorm`` measures it; skipped for a mix shorter than one 400 ms
block or silent) by one master gain, and that gain is lowered where needed so that the mix's
sample peak is at most ``Mix.ceiling`` dBFS: the mix never clips, and the ceiling wins over the
loudness target (a mix with loud peaks then ends up quieter than the target; there is no
limiter). With ``loudness = None`` only the ceiling applies. Everything is deterministic: the
same story gives the same samples, bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np
from pydantic import field_validator

from .audio import crossfade_join, crossfade_offsets, resample, resampled_length, to_channels
from .errors import ComponentError, ConfigError
from .model import AudioAsset, Story, Track
from .options import Field, Options, validate_options
from .timeline import CueSpan, Timeline, crossfade_padding, sounding_seconds, timeline_of

__all__ = ["Mix", "Mixdown", "duck_envelope", "measure_loudness", "mixdown", "place_track"]

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
        description="integrated loudness of the mix in LUFS (ITU-R BS.1770-4); None or \"off\" (a story file has "
        "no null): no loudness normalisation",
    )
    ceiling: float = Field(
        DEFAULT_CEILING, ge=-60, le=0, allow_inf_nan=False,
        description="the mix's sample peak is scaled down to at most this many dBFS (it never clips)",
    )

    @field_validator("loudness", mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.strip().lower() == "off" else value


@attrs.frozen(eq=False)
class Mixdown:
    """The result of :func:`mixdown`.

    ``samples`` (float32, (channels, frames)) is the mix at ``sample_rate``; ``tracks`` each audio
    track as it sounds in the mix (placed, with its gain, ducked, and the master gain applied),
    so ``samples`` is their sum (up to float32 rounding). ``master_gain`` is the master gain in
    dB, ``loudness`` the mix's integrated loudness before it and ``output_loudness`` after it
    (LUFS; ``None`` when not measured).
    """

    samples: np.ndarray
    sample_rate: int
    tracks: dict[str, np.ndarray]
    master_gain: float
    loudness: float | None
    output_loudness: float | None = None
    #: The settings it was mixed with.
    mix: Mix | None = None

    @property
    def frames(self) -> int:
        return int(self.samples.shape[1])

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def peak(self) -> float:
        return float(np.max(np.abs(self.samples))) if self.samples.size else 0.0




def _items(track: Track, spans: Sequence[CueSpan]) -> list[tuple[CueSpan, AudioAsset]]:
    out = []
    for span in sorted(spans, key=lambda s: (s.start, s.index)):
        asset = track.assets.get(span.index)
        if isinstance(asset, AudioAsset):
            out.append((span, asset))
    return out


#: How far (seconds) a clip of an AudioStory run may sit from its own cue's start: the run's
#: clips are where :func:`crossfade_join` puts them, a few frames off their cues at most (each
#: clip is its event's length plus the padding, rounded to whole frames); a clip farther off
#: (one shorter than its event) starts a new run, so that the clips after it keep their places.
RUN_DRIFT = 0.01


def _runs(items: Sequence[tuple[CueSpan, AudioAsset]], rate: int) -> list[list[tuple[CueSpan, AudioAsset]]]:
    """``items`` grouped into the runs AudioStory joins: a clip runs into the next one when it
    declares crossfade padding, its cue ends where the next cue starts (within 1 ms), and
    :func:`crossfade_join` puts the next clip within :data:`RUN_DRIFT` of that cue's start."""
    runs: list[list[tuple[CueSpan, AudioAsset]]] = []
    for span, asset in items:
        run = runs[-1] if runs else None
        if run is not None and crossfade_padding(run[-1][1]) > 0 and abs(span.start - run[-1][0].end) < 1e-3:
            lengths = [resampled_length(a.frames, a.sample_rate, rate) for _, a in run]
            lengths.append(resampled_length(asset.frames, asset.sample_rate, rate))
            fade = int(max(crossfade_padding(a) for _, a in run) * rate)
            at = int(round(run[0][0].start * rate)) + crossfade_offsets(lengths, fade)[-1]
            if abs(at - span.start * rate) <= RUN_DRIFT * rate:
                run.append((span, asset))
                continue
        runs.append([(span, asset)])
    return runs


def _checked(asset: AudioAsset, track: Track, span: CueSpan) -> np.ndarray:
    samples = asset.samples
    if not np.all(np.isfinite(samples)):
        raise ComponentError(
            f"track {track.name!r}: the clip of cue {span.index} (scene {span.scene}) holds NaN or infinite samples; "
            f"its generator ({asset.made_by or track.generator or 'unknown'}) made broken audio: render that cue again "
            "(a different seed, more steps, float32 weights)"
        )
    return samples


def place_track(track: Track, spans: Sequence[CueSpan], frames: int, rate: int, channels: int) -> np.ndarray:
    """``track``'s clips placed at their cues' starts (see the module docstring), ``frames`` long.

    Float32, shaped (channels, frames). A run of AudioStory-padded clips is
    :func:`storysdk.audio.crossfade_join` of the clips (resampled and channel-mapped first)
    starting at ``round(start * rate)`` of its first cue, sample for sample. Where a clip starts
    before the clips already placed end, what sounds of them fades out linearly from the new
    clip's start to their end while the new clip fades in over the same frames.
    """
    out = np.zeros((channels, frames), dtype=np.float32)
    end = 0
    for run in _runs(_items(track, spans), rate):
        clips = [to_channels(resample(_checked(a, track, s), a.sample_rate, rate), channels) for s, a in run]
        if len(clips) > 1:
            fade = int(max(crossfade_padding(a) for _, a in run[:-1]) * rate)  # plugins/storysdk-audiostory/docs/audiostory.md §9: int(seconds x rate)
            joined = crossfade_join(clips, fade)
        else:
            joined = clips[0]
        start = max(int(round(run[0][0].start * rate)), 0)
        if start >= frames:
            continue
        part = joined[:, : frames - start]
        n = part.shape[1]
        overlap = min(end, frames) - start
        if overlap > 0 and n > 0:
            # the sounding tail [start, end) fades 1 -> 0 and the new clip 0 -> 1 over the same frames
            ramp_out = np.linspace(1.0, 0.0, overlap, dtype=np.float32)
            ramp_in = np.linspace(0.0, 1.0, overlap, dtype=np.float32)[: n]
            out[:, start : start + overlap] *= ramp_out
            head = min(overlap, n)
            out[:, start : start + head] += part[:, :head] * ramp_in
            out[:, start + head : start + n] += part[:, head:]
        else:
            out[:, start : start + n] = part
        end = max(end, start + n)
    return out


def duck_envelope(
    intervals: Sequence[tuple[float, float]], frames: int, rate: int, depth: float, attack: float, release: float
) -> np.ndarray:
    """The attenuation in dB (>= 0) that ducking by ``depth`` dB during ``intervals`` (seconds) gives
    at each of ``frames`` frames (frame ``n`` at ``n / rate`` s): ``depth`` inside an interval
    ``[a, b)``, rising linearly from 0 over ``attack`` seconds before ``a`` and falling linearly
    back to 0 over ``release`` seconds after ``b``; the largest where intervals' ramps overlap."""
    att = np.zeros(frames, dtype=np.float64)
    if depth <= 0 or frames == 0:
        return att
    for a, b in intervals:
        if b <= a:
            continue
        lo = max(int(np.floor((a - attack) * rate)), 0)
        hi = min(int(np.ceil((b + release) * rate)) + 1, frames)
        if hi <= lo:
            continue
        x = np.arange(lo, hi, dtype=np.float64) / rate
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


#: pyloudnorm weighs up to five channels (ITU-R BS.1770-4: L, R, C, Ls, Rs).
LOUDNESS_CHANNELS = 5


def measure_loudness(samples: np.ndarray, rate: int) -> float | None:
    """Integrated loudness (LUFS, ITU-R BS.1770-4 as ``pyloudnorm`` measures it) of ``samples``
    (channels, frames), or ``None`` when it cannot be measured: shorter than one 400 ms gating
    block, silent, or every block gated out."""
    if samples.shape[0] > LOUDNESS_CHANNELS:
        raise ConfigError(
            f"the mix has {samples.shape[0]} channels but loudness is measured (ITU-R BS.1770-4, pyloudnorm) over at "
            f"most {LOUDNESS_CHANNELS}; set [mix] channels to {LOUDNESS_CHANNELS} or fewer, or [mix] loudness to none "
            "(no loudness normalisation)"
        )
    if samples.shape[1] < int(0.4 * rate) + 1 or not np.any(samples):
        return None
    import pyloudnorm

    value = float(pyloudnorm.Meter(rate).integrated_loudness(samples.T.astype(np.float64)))
    return value if np.isfinite(value) else None


def _mix_of(story: Story, mix: Mix | Mapping[str, Any] | None) -> Mix:
    if mix is None:
        mix = story.mix if story.mix is not None else Mix()
    if isinstance(mix, Mix):
        return mix
    if isinstance(mix, Mapping):
        return validate_options(Mix, dict(mix), kind="pipeline", name="mix")  # type: ignore[return-value]
    raise ConfigError(f"the mix settings must be a storysdk.mixing.Mix or a table of its fields, got {type(mix).__name__}")


def mixdown(story: Story, mix: Mix | Mapping[str, Any] | None = None, *, timeline: Timeline | None = None) -> Mixdown:
    """Mix every audio track of ``story`` on its timeline (the module docstring says how).

    ``mix`` defaults to :attr:`Story.mix`, else :class:`Mix` defaults; ``timeline`` to
    :func:`~storysdk.timeline.timeline_of` the story (a story assembled by hand gets one derived
    from its clips). A story without audio is a :class:`ConfigError`.
    """
    mix = _mix_of(story, mix)
    timeline = timeline if timeline is not None else timeline_of(story)
    tracks = [t for t in story.audio_tracks() if any(isinstance(a, AudioAsset) for a in t.assets.values())]
    if not tracks:
        raise ConfigError("the story has no audio to mix; give it an audio track")
    clips = [a for t in tracks for a in t.assets.values() if isinstance(a, AudioAsset)]
    rate = int(mix.sample_rate or max(a.sample_rate for a in clips))
    channels = int(mix.channels or max(a.channels for a in clips))
    frames = int(round(timeline.total * rate))
    placed: dict[str, np.ndarray] = {}
    for t in tracks:
        spans = timeline.tracks.get(t.name)
        if spans is None:
            raise ConfigError(f"the timeline has no cues of track {t.name!r}; place the track (Timeline.place) first")
        buf = place_track(t, spans, frames, rate, channels)
        if t.gain != 0.0:
            buf *= np.float32(10.0 ** (t.gain / 20.0))
        placed[t.name] = buf
    duckers = [t for t in tracks if t.duck is not None and t.duck > 0]
    if duckers and frames:
        attenuation = np.zeros(frames, dtype=np.float64)
        for d in duckers:
            intervals = [(s.start, s.start + sounding_seconds(a))
                         for s, a in _items(d, timeline.tracks[d.name])]
            np.maximum(attenuation, duck_envelope(intervals, frames, rate, float(d.duck or 0.0), d.attack, d.release),
                       out=attenuation)
        gain = (10.0 ** (-attenuation / 20.0)).astype(np.float32)
        for t in tracks:
            if t.duck is None or t.duck <= 0:
                placed[t.name] *= gain
    total = np.zeros((channels, frames), dtype=np.float64)
    for buf in placed.values():  # in track order, in float64: the same sum on every machine
        total += buf
    # more channels than BS.1770 weighs: an error only when the mix is to be normalised
    measured = mix.loudness is not None or channels <= LOUDNESS_CHANNELS
    loudness = measure_loudness(total, rate) if measured else None
    master_db = 0.0
    if mix.loudness is not None and loudness is not None:
        master_db = mix.loudness - loudness
    peak = float(np.max(np.abs(total))) if total.size else 0.0
    ceiling = 10.0 ** (mix.ceiling / 20.0)
    if peak > 0 and peak * 10.0 ** (master_db / 20.0) > ceiling:
        master_db = 20.0 * float(np.log10(ceiling / peak))
    scale = 10.0 ** (master_db / 20.0)
    out_tracks = {name: (buf * np.float32(scale)) for name, buf in placed.items()}
    samples = (total * scale).astype(np.float32)
    ceiling32 = np.float32(ceiling)
    np.clip(samples, -ceiling32, ceiling32, out=samples)  # float32 rounding only: the scale already keeps it under
    return Mixdown(samples, rate, out_tracks, master_db, loudness, measure_loudness(samples, rate) if measured else None, mix)
