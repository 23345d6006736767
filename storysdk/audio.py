"""Audio utilities shared by composers and audio plugins: resampling, channel mapping,
crossfade joining, and deterministic reading/writing through ``soundfile``.

Every function takes and returns float32 arrays shaped ``(channels, frames)``; no torch.

* :func:`resample` is a band-limited polyphase resampler (Kaiser-windowed sinc) for any
  rational ratio ``target_sr / orig_sr``.
* :func:`crossfade_join` joins clips exactly as AudioStory does (plugins/storysdk-audiostory/docs/audiostory.md §1.7, §9):
  linear ramps that include both end points, falling back to a hard cut when a piece is
  shorter than the fade.
* :func:`write_audio` writes WAV (32-bit float by default, so a write/read round trip is
  exact) or FLAC (24-bit PCM), byte-identical for identical input.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .atomic import atomic_write
from .errors import ConfigError

__all__ = [
    "AUDIO_FORMATS",
    "as_samples",
    "crossfade_join",
    "crossfade_offsets",
    "encode_audio",
    "peak_normalize",
    "read_audio",
    "resample",
    "resampled_length",
    "to_channels",
    "write_audio",
]

#: Container formats :func:`write_audio` accepts, with their default ``soundfile`` subtype.
AUDIO_FORMATS: dict[str, str] = {"wav": "FLOAT", "flac": "PCM_24"}

# Filter design of :func:`resample`; see its docstring for the measured quality.
_ZERO_CROSSINGS = 64  # half-length of the windowed sinc, in zero crossings of the low-pass
_ROLLOFF = 0.95  # cut-off as a fraction of the lower of the two Nyquist frequencies
_KAISER_BETA = 10.0  # Kaiser window shape
_CHUNK = 4096  # output frames computed per vectorised step (bounds memory)
_MAX_TABLE = 1 << 23  # largest phase table (phases x taps) precomputed; beyond it, compute per chunk


def as_samples(samples: np.ndarray, *, what: str = "samples") -> np.ndarray:
    """``samples`` as a contiguous float32 array shaped (channels, frames); a 1-D array is mono."""
    arr = np.asarray(samples, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] < 1:
        raise ConfigError(f"{what} must be shaped (channels, frames) or (frames,), got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _check_rate(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ConfigError(f"{name} must be a positive whole number of Hz, got {value!r}")
    return int(value)


def resampled_length(frames: int, orig_sr: int, target_sr: int) -> int:
    """Length of :func:`resample`'s output: ``ceil(frames * target_sr / orig_sr)``.

    Computed in integers, so it is exact (the same rule as ``librosa.resample``).
    """
    orig_sr = _check_rate("orig_sr", orig_sr)
    target_sr = _check_rate("target_sr", target_sr)
    return -((-int(frames) * target_sr) // orig_sr)


def _kernel(tau: np.ndarray, cutoff: float, half_width: float) -> np.ndarray:
    """Kaiser-windowed sinc low-pass at ``cutoff`` (fraction of the input Nyquist), unit DC gain."""
    x = np.clip(tau / half_width, -1.0, 1.0)
    window = np.i0(_KAISER_BETA * np.sqrt(1.0 - x * x)) / np.i0(_KAISER_BETA)
    h = cutoff * np.sinc(cutoff * tau) * window
    return np.where(np.abs(tau) <= half_width, h, 0.0)


def resample(samples: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling of ``samples`` (channels, frames) from ``orig_sr`` to ``target_sr``.

    The ratio is reduced with ``gcd`` to ``up / down``; output frame ``n`` sits at input time
    ``n * down / up`` and is the dot product of the input with a Kaiser-windowed sinc
    (64 zero crossings each side, Kaiser beta 10, cut-off 0.95 of the lower Nyquist frequency)
    evaluated at that time: one polyphase filter per phase ``(n * down) % up``. Samples outside
    the clip count as zero, so the first and last ~64 periods of the lower rate roll off.
    Measured away from the edges: a sine below 0.9 of the lower Nyquist frequency is
    reproduced within 2e-5 of full scale; a tone above the new Nyquist frequency is
    attenuated by more than 100 dB.

    Output length is ``ceil(frames * target_sr / orig_sr)`` (see :func:`resampled_length`).
    Equal rates return a float32 copy unchanged.
    """
    x = as_samples(samples)
    orig_sr = _check_rate("orig_sr", orig_sr)
    target_sr = _check_rate("target_sr", target_sr)
    if orig_sr == target_sr:
        return x.copy()
    g = math.gcd(orig_sr, target_sr)
    up, down = target_sr // g, orig_sr // g
    channels, frames = x.shape
    n_out = resampled_length(frames, orig_sr, target_sr)
    if frames == 0:
        return np.zeros((channels, 0), dtype=np.float32)

    cutoff = _ROLLOFF * min(1.0, up / down)  # fraction of the input Nyquist frequency
    half_width = _ZERO_CROSSINGS / cutoff  # in input samples
    reach = int(math.ceil(half_width))
    offsets = np.arange(-reach, reach + 1)  # taps k0 + offsets around floor(t)
    taps = offsets.size

    table = None
    if up * taps <= _MAX_TABLE:
        phases = np.arange(up)[:, None] / up
        table = _kernel(phases - offsets[None, :], cutoff, half_width)  # (up, taps)

    # frames first, so that each output's taps are one contiguous (taps, channels) block
    xpad = np.zeros((frames + 2 * reach + 1, channels), dtype=np.float64)
    xpad[reach : reach + frames] = x.T
    windows = sliding_window_view(xpad, taps, axis=0)  # (positions, channels, taps), a view
    out = np.empty((channels, n_out), dtype=np.float64)
    for start in range(0, n_out, _CHUNK):
        n = np.arange(start, min(start + _CHUNK, n_out), dtype=np.int64)
        k0 = (n * down) // up
        phase = (n * down) % up
        if table is not None:
            weights = table[phase]
        else:
            weights = _kernel((phase / up)[:, None] - offsets[None, :], cutoff, half_width)
        # window k0 starts at xpad[k0] == x[k0 - reach], i.e. tap offsets -reach..reach
        out[:, start : start + n.size] = np.einsum("nt,nct->cn", weights, windows[k0])
    return out.astype(np.float32)


def to_channels(samples: np.ndarray, channels: int) -> np.ndarray:
    """Map ``samples`` to ``channels`` channels.

    Same count: unchanged (a copy). Mono to N: the channel is repeated. N to mono: the mean
    of the channels. Any other mapping (for example stereo to 5.1) has no single right answer
    and is a :class:`ConfigError`.
    """
    x = as_samples(samples)
    if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels < 1:
        raise ConfigError(f"channels must be a whole number >= 1, got {channels!r}")
    have = x.shape[0]
    if have == channels:
        return x.copy()
    if have == 1:
        return np.repeat(x, channels, axis=0)
    if channels == 1:
        return x.mean(axis=0, keepdims=True, dtype=np.float64).astype(np.float32)
    raise ConfigError(
        f"cannot map {have} audio channels to {channels}; only mono<->N mappings are defined. "
        f"Mix the clip to mono or to {channels} channels yourself first"
    )


def peak_normalize(samples: np.ndarray, peak: float = 1.0) -> np.ndarray:
    """Scale ``samples`` so that the largest absolute value equals ``peak`` (silence is unchanged)."""
    x = as_samples(samples)
    if not (isinstance(peak, (int, float)) and 0 < peak <= 1.0):
        raise ConfigError(f"peak must be a number in (0, 1], got {peak!r}")
    top = float(np.max(np.abs(x))) if x.size else 0.0
    if top == 0.0:
        return x.copy()
    return (x.astype(np.float64) * (peak / top)).astype(np.float32)


def crossfade_offsets(lengths: Sequence[int], fade: int) -> list[int]:
    """Start frame of each clip on the timeline :func:`crossfade_join` produces.

    A join overlaps the two pieces by ``fade`` frames unless the running mix or the next clip
    is shorter than ``fade`` (then it is a hard cut and the overlap is zero).
    """
    fade = _check_fade(fade)
    starts: list[int] = []
    total = 0
    for i, n in enumerate(lengths):
        if i == 0:
            starts.append(0)
            total = int(n)
            continue
        overlap = fade if (fade > 0 and total >= fade and n >= fade) else 0
        starts.append(total - overlap)
        total = total - overlap + int(n)
    return starts


def _check_fade(fade: int) -> int:
    if isinstance(fade, bool) or not isinstance(fade, (int, np.integer)) or fade < 0:
        raise ConfigError(f"fade must be a whole number of samples >= 0, got {fade!r}")
    return int(fade)


def crossfade_join(clips: Sequence[np.ndarray], fade: int) -> np.ndarray:
    """Join ``clips`` (each (channels, frames)) into one track with linear crossfades.

    plugins/storysdk-audiostory/docs/audiostory.md §1.7/§9: at each join the last ``fade`` frames of the running mix are
    multiplied by a ramp from 1 to 0 and the first ``fade`` frames of the next clip by a ramp
    from 0 to 1 (both ``linspace`` ramps include their end points) and summed; when the
    running mix or the next clip is strictly shorter than ``fade`` (or ``fade`` is 0) the clip
    is appended with a hard cut. The length is ``sum(lengths) - fade`` per crossfaded join.

    Mono clips are repeated to the largest channel count among the clips; other channel
    mismatches are a :class:`ConfigError` (see :func:`to_channels`). All clips must share
    one sample rate (use :func:`resample` first).
    """
    fade = _check_fade(fade)
    if len(clips) == 0:
        raise ConfigError("crossfade_join needs at least one clip")
    parts = [as_samples(c, what=f"clip {i}") for i, c in enumerate(clips)]
    channels = max(p.shape[0] for p in parts)
    parts = [to_channels(p, channels) for p in parts]
    starts = crossfade_offsets([p.shape[1] for p in parts], fade)
    total = starts[-1] + parts[-1].shape[1]
    out = np.zeros((channels, total), dtype=np.float32)
    fade_out = np.linspace(1.0, 0.0, fade, dtype=np.float32)
    fade_in = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    end = 0
    for start, part in zip(starts, parts):
        n = part.shape[1]
        overlap = end - start
        if overlap > 0:
            head = part[:, :overlap]
            out[:, start:end] = out[:, start:end] * fade_out + head * fade_in
            out[:, end : start + n] = part[:, overlap:]
        else:
            out[:, start : start + n] = part
        end = start + n
    return out


def _check_format(fmt: str) -> str:
    key = str(fmt).lower()
    if key not in AUDIO_FORMATS:
        raise ConfigError(f"unknown audio format {fmt!r}; use one of: {', '.join(AUDIO_FORMATS)}")
    return key


def _strip_wav_peak(data: bytes) -> bytes:
    """Drop the optional PEAK chunk libsndfile writes into float WAVs: it holds a timestamp."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return data
    pos, chunks = 12, []
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        stop = min(len(data), pos + 8 + size + (size & 1))
        if cid != b"PEAK":
            chunks.append(data[pos:stop])
        pos = stop
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + len(body).to_bytes(4, "little") + body


def encode_audio(
    samples: np.ndarray, sample_rate: int, format: str = "wav", subtype: str | None = None
) -> bytes:
    """Encode ``samples`` (channels, frames) as WAV or FLAC bytes; identical input, identical bytes.

    ``subtype`` is a ``soundfile`` subtype; the default is ``FLOAT`` for WAV (exact round
    trip) and ``PCM_24`` for FLAC. Integer subtypes clip the signal to [-1, 1] first.
    """
    import soundfile as sf

    fmt = _check_format(format)
    x = as_samples(samples)
    sample_rate = _check_rate("sample_rate", sample_rate)
    sub = (subtype or AUDIO_FORMATS[fmt]).upper()
    if not sf.check_format(fmt.upper(), sub):
        raise ConfigError(
            f"subtype {sub!r} is not valid for {fmt}; valid: {', '.join(sorted(sf.available_subtypes(fmt.upper())))}"
        )
    if sub not in ("FLOAT", "DOUBLE"):
        x = np.clip(x, -1.0, 1.0)
    buf = io.BytesIO()
    sf.write(buf, x.T, sample_rate, format=fmt.upper(), subtype=sub)
    data = buf.getvalue()
    return _strip_wav_peak(data) if fmt == "wav" else data


def write_audio(
    path: str | Path,
    samples: np.ndarray,
    sr: int,
    format: str = "wav",
    subtype: str | None = None,
) -> Path:
    """Write ``samples`` (channels, frames) to ``path`` atomically (temp file, then ``os.replace``).

    See :func:`encode_audio` for formats and subtypes. Returns the path.
    """
    path = Path(path)
    data = encode_audio(samples, sr, format, subtype)
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    return path


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read an audio file as (float32 samples shaped (channels, frames), sample rate)."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"audio file {str(path)!r} does not exist; give the path of a WAV or FLAC file")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise ConfigError(f"cannot read audio file {str(path)!r} ({exc}); use WAV or FLAC") from exc
    return np.ascontiguousarray(data.T), int(sr)
