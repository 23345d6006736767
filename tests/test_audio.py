"""storysdk.audio: resampling against analytic signals, AudioStory's crossfade join, file I/O."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from storysdk.audio import (
    crossfade_join,
    crossfade_offsets,
    encode_audio,
    peak_normalize,
    read_audio,
    resample,
    resampled_length,
    to_channels,
    write_audio,
)
from storysdk.errors import ConfigError


def sine(freq: float, sr: int, frames: int, phase: float = 0.0) -> np.ndarray:
    t = np.arange(frames) / sr
    return np.sin(2 * np.pi * freq * t + phase)


# ---------------------------------------------------------------- resample


@pytest.mark.parametrize(
    "frames,orig,target",
    [(44100, 44100, 32000), (1000, 44100, 32000), (1001, 32000, 44100), (7, 48000, 44100), (1, 8000, 44100), (0, 16000, 22050)],
)
def test_resampled_length_is_ceiling(frames: int, orig: int, target: int) -> None:
    expected = math.ceil(Fraction(frames * target, orig))
    assert resampled_length(frames, orig, target) == expected
    out = resample(np.zeros((2, frames), np.float32), orig, target)
    assert out.shape == (2, expected)
    assert out.dtype == np.float32


def test_equal_rates_is_identity_copy() -> None:
    x = np.random.default_rng(0).standard_normal((2, 500)).astype(np.float32)
    y = resample(x, 32000, 32000)
    assert np.array_equal(x, y)
    y[0, 0] += 1
    assert x[0, 0] != y[0, 0]


@pytest.mark.parametrize(
    "orig,target,freq",
    [
        (44100, 32000, 1000.0),  # AudioStory's 44.1 kHz -> 32 kHz
        (44100, 32000, 13000.0),  # 0.81 of the new Nyquist
        (16000, 44100, 3000.0),  # upsampling
        (48000, 44100, 17000.0),
    ],
)
def test_sine_matches_analytic_samples_away_from_edges(orig: int, target: int, freq: float) -> None:
    frames = orig // 4
    x = sine(freq, orig, frames, phase=0.3).astype(np.float32)[None]
    y = resample(x, orig, target)
    ref = sine(freq, target, y.shape[1], phase=0.3)
    edge = 400
    err = np.max(np.abs(y[0, edge:-edge] - ref[edge:-edge]))
    assert err < 1e-4, err


def test_tone_above_new_nyquist_is_attenuated() -> None:
    orig, target = 44100, 32000
    x = sine(18000.0, orig, orig // 4).astype(np.float32)[None]  # above 16 kHz
    y = resample(x, orig, target)
    edge = 400
    level = np.max(np.abs(y[0, edge:-edge]))
    assert level < 1e-4  # more than 80 dB down
    # and a tone just below the cut-off keeps full amplitude
    z = resample(sine(14000.0, orig, orig // 4).astype(np.float32)[None], orig, target)
    assert abs(np.max(np.abs(z[0, edge:-edge])) - 1.0) < 1e-3


def test_channels_are_resampled_independently() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 2000)).astype(np.float32)
    y = resample(x, 22050, 32000)
    for c in range(3):
        assert np.allclose(y[c], resample(x[c], 22050, 32000)[0], atol=1e-7)


def test_untabled_phases_path_for_awkward_ratio() -> None:
    # 100003 / 100000 has 100003 phases: too many to tabulate, weights are computed per chunk
    orig, target = 100000, 100003
    x = sine(5000.0, orig, 3000).astype(np.float32)[None]
    y = resample(x, orig, target)
    assert y.shape[1] == math.ceil(Fraction(3000 * target, orig))
    ref = sine(5000.0, target, y.shape[1])
    assert np.max(np.abs(y[0, 300:-300] - ref[300:-300])) < 1e-4


def test_resample_rejects_bad_rates() -> None:
    with pytest.raises(ConfigError, match="orig_sr"):
        resample(np.zeros((1, 10), np.float32), 0, 16000)
    with pytest.raises(ConfigError, match="target_sr"):
        resample(np.zeros((1, 10), np.float32), 16000, 1.5)  # type: ignore[arg-type]


# ---------------------------------------------------------------- channels, peak


def test_to_channels() -> None:
    mono = np.arange(5, dtype=np.float32)[None]
    assert np.array_equal(to_channels(mono, 2), np.vstack([mono, mono]))
    stereo = np.array([[1, 2, 3], [3, 4, 5]], np.float32)
    assert np.array_equal(to_channels(stereo, 1), np.array([[2, 3, 4]], np.float32))
    with pytest.raises(ConfigError, match="cannot map 2 audio channels to 6"):
        to_channels(stereo, 6)


def test_peak_normalize() -> None:
    x = np.array([[0.1, -0.4, 0.2]], np.float32)
    y = peak_normalize(x, 0.8)
    assert np.allclose(y, x * 2.0)
    assert np.array_equal(peak_normalize(np.zeros((1, 4), np.float32)), np.zeros((1, 4), np.float32))
    with pytest.raises(ConfigError):
        peak_normalize(x, 1.5)


# ---------------------------------------------------------------- crossfade


def reference_join(clips: list[np.ndarray], fade: int) -> np.ndarray:
    """AudioStory's loop as the spec words it: running mix, ramps 1->0 and 0->1, hard-cut fallback."""
    result = clips[0].astype(np.float64)
    for nxt in clips[1:]:
        nxt = nxt.astype(np.float64)
        if fade == 0 or result.shape[1] < fade or nxt.shape[1] < fade:
            result = np.concatenate([result, nxt], axis=1)
            continue
        out_ramp = np.array([1.0 - j / (fade - 1) for j in range(fade)]) if fade > 1 else np.array([1.0])
        in_ramp = np.array([j / (fade - 1) for j in range(fade)]) if fade > 1 else np.array([0.0])
        merged = result[:, -fade:] * out_ramp + nxt[:, :fade] * in_ramp
        result = np.concatenate([result[:, :-fade], merged, nxt[:, fade:]], axis=1)
    return result


def test_crossfade_length_and_values() -> None:
    rng = np.random.default_rng(2)
    clips = [rng.standard_normal((2, n)).astype(np.float32) for n in (1000, 700, 1200)]
    fade = 300
    out = crossfade_join(clips, fade)
    assert out.shape == (2, 1000 + 700 + 1200 - 2 * fade)
    assert out.dtype == np.float32
    assert np.allclose(out, reference_join(clips, fade), atol=1e-6)
    # the ramps include both end points: first overlap sample is all tail, last all head
    assert out[0, 1000 - fade] == clips[0][0, 1000 - fade]
    assert out[0, 999] == clips[1][0, fade - 1]
    assert crossfade_offsets([1000, 700, 1200], fade) == [0, 700, 1100]


def test_crossfade_falls_back_to_hard_cut_for_short_pieces() -> None:
    rng = np.random.default_rng(3)
    a, short, b = (rng.standard_normal((1, n)).astype(np.float32) for n in (500, 99, 500))
    fade = 100
    out = crossfade_join([a, short, b], fade)
    # a+short is a hard cut (short < fade); (a+short)+b crossfades
    assert out.shape[1] == 500 + 99 + 500 - fade
    assert np.array_equal(out[:, :599 - fade], np.concatenate([a, short], axis=1)[:, : 599 - fade])
    assert np.allclose(out, reference_join([a, short, b], fade), atol=1e-6)
    assert crossfade_offsets([500, 99, 500], fade) == [0, 500, 499]
    # a first clip shorter than the fade: the running mix is too short, hard cut
    first = crossfade_join([short, a], fade)
    assert np.array_equal(first, np.concatenate([short, a], axis=1))
    # exactly fade long is not "shorter": it crossfades
    assert crossfade_join([a[:, :100], b], fade).shape[1] == 500


def test_zero_fade_is_concatenation() -> None:
    clips = [np.full((1, n), float(n), np.float32) for n in (3, 4, 5)]
    assert np.array_equal(crossfade_join(clips, 0), np.concatenate(clips, axis=1))


def test_mono_is_upmixed_to_stereo() -> None:
    rng = np.random.default_rng(4)
    mono = rng.standard_normal((1, 400)).astype(np.float32)
    stereo = rng.standard_normal((2, 400)).astype(np.float32)
    out = crossfade_join([mono, stereo], 50)
    assert out.shape == (2, 750)
    assert np.allclose(out, reference_join([np.vstack([mono, mono]), stereo], 50), atol=1e-6)


def test_crossfade_rejects_bad_input() -> None:
    with pytest.raises(ConfigError, match="at least one clip"):
        crossfade_join([], 10)
    with pytest.raises(ConfigError, match="fade"):
        crossfade_join([np.zeros((1, 5), np.float32)], -1)


# ---------------------------------------------------------------- files


def test_wav_round_trip_is_exact_and_deterministic(tmp_path) -> None:
    x = (np.random.default_rng(5).standard_normal((2, 999)) * 0.5).astype(np.float32)
    p = write_audio(tmp_path / "a.wav", x, 32000)
    y, sr = read_audio(p)
    assert sr == 32000 and y.dtype == np.float32
    assert np.array_equal(x, y)
    q = write_audio(tmp_path / "b.wav", x, 32000)
    assert p.read_bytes() == q.read_bytes()
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.wav", "b.wav"]  # no temp files left


def test_flac_is_24_bit(tmp_path) -> None:
    x = (np.random.default_rng(6).standard_normal((1, 500)) * 0.3).astype(np.float32)
    x[0, 0] = 1.7  # clipped to full scale for PCM
    p = write_audio(tmp_path / "a.flac", x, 44100, format="flac")
    y, sr = read_audio(p)
    assert sr == 44100 and y.shape == (1, 500)
    assert abs(y[0, 0] - 1.0) < 1e-6
    assert np.max(np.abs(y[0, 1:] - x[0, 1:])) <= 2.0**-23 + 1e-9
    assert encode_audio(x, 44100, "flac") == p.read_bytes()


def test_audio_io_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="unknown audio format"):
        encode_audio(np.zeros((1, 5), np.float32), 16000, "mp3")
    with pytest.raises(ConfigError, match="subtype"):
        encode_audio(np.zeros((1, 5), np.float32), 16000, "flac", subtype="FLOAT")
    with pytest.raises(ConfigError, match="does not exist"):
        read_audio(tmp_path / "missing.wav")
