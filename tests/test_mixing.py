"""storysdk.mixing: placement on the timeline, gain, ducking, loudness, the ceiling, rates and
channels, and determinism, each checked against a computation of its own."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest

from storysdk import Pipeline, StoryRequest
from storysdk.audio import crossfade_join, encode_audio, read_audio, resample
from storysdk.builtins.soundtrack import SoundtrackComposer
from storysdk.errors import ComponentError, ConfigError
from storysdk.mixing import Mix, duck_envelope, mixdown, place_track
from storysdk.model import AudioAsset, Cue, Scene, Story, StoryPlan, Track
from storysdk.testing import make_registry
from storysdk.timeline import Timeline, timeline_of

QUIET = Mix(loudness=None)  # only the ceiling: the master gain stays 0 dB for clips well under it


def tone(freq: float, seconds: float, rate: int, amp: float = 0.1, channels: int = 1) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return np.tile((amp * np.sin(2 * np.pi * freq * t)).astype(np.float32), (channels, 1))


def noise(seed: int, seconds: float, rate: int, sigma: float = 0.1, channels: int = 1) -> np.ndarray:
    n = int(round(seconds * rate))
    return (np.random.default_rng(seed).standard_normal((channels, n)) * sigma).astype(np.float32)


def scenes(*durations: float) -> list[Scene]:
    return [Scene(i, f"scene {i}", caption=f"caption {i}", duration=d) for i, d in enumerate(durations)]


def track(name: str, clips: list[tuple[float, np.ndarray, int]], *, scene_of=None, duration=None,
          metadata=None, **settings) -> Track:
    """A track with one cue per (start, samples, rate), cue k in scene ``scene_of[k]`` (default k)."""
    cues, assets = [], {}
    for k, (start, samples, rate) in enumerate(clips):
        scene = scene_of[k] if scene_of else k
        dur = duration[k] if duration else None
        cues.append(Cue(index=k, prompt=f"{name} {k}", start=start, scene=scene, duration=dur))
        assets[k] = AudioAsset(k, samples, rate, made_by="test", metadata=dict((metadata or {}).get(k, {})))
    return Track(name, "audio", cues, assets, generator="test", **settings)


def story_of(plan_scenes: list[Scene], *tracks: Track, mix: Mix | None = None) -> Story:
    plan = StoryPlan(scenes=plan_scenes)
    timeline = Timeline.of_scenes(plan.scenes, {s.index: s.duration for s in plan.scenes})
    for t in tracks:
        timeline.place(t)
    return Story(plan, tracks={t.name: t for t in tracks}, timeline=timeline, mix=mix)


def amplitude(x: np.ndarray, freq: float, rate: int, a: float, b: float) -> float:
    """Amplitude of the ``freq`` component of mono ``x`` over [a, b) s (a lock-in: projection on
    sin and cos; exact for a window of whole periods of every tone present)."""
    lo, hi = int(round(a * rate)), int(round(b * rate))
    n = np.arange(lo, hi)
    seg = x[lo:hi].astype(np.float64)
    s = np.sum(seg * np.sin(2 * np.pi * freq * n / rate))
    c = np.sum(seg * np.cos(2 * np.pi * freq * n / rate))
    return 2.0 * math.hypot(s, c) / (hi - lo)


def db(ratio: float) -> float:
    return 20.0 * math.log10(ratio)


# -- (a) ducking ----------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [6.0, 12.0, 20.0])
def test_narration_ducks_the_ambience_by_its_depth(depth: float) -> None:
    rate = 8000
    ambience = track("ambience", [(0.0, tone(440, 10.0, rate), rate)], scene_of=[0])
    narration = track("narration", [(3.0, tone(1000, 3.0, rate), rate)], scene_of=[0], duck=depth,
                      attack=0.2, release=0.5)
    story = story_of(scenes(10.0), ambience, narration)  # the default mix: -16 LUFS, -1 dBFS ceiling
    mix = mixdown(story)
    x = mix.samples[0]
    before = amplitude(x, 440, rate, 1.0, 2.5)  # windows of whole periods of 440 Hz and 1 kHz
    during = amplitude(x, 440, rate, 3.5, 5.5)  # away from the attack (2.8-3.0 s) and release (6.0-6.5 s)
    after = amplitude(x, 440, rate, 7.0, 9.5)
    assert db(during / before) == pytest.approx(-depth, abs=1.0)  # the acceptance check
    assert db(during / before) == pytest.approx(-depth, abs=0.01)
    assert after == pytest.approx(before, rel=1e-4)
    # the narration itself is not ducked: its 1 kHz tone is at its level times the master gain
    master = 10 ** (mix.master_gain / 20)
    assert amplitude(x, 1000, rate, 3.5, 5.5) == pytest.approx(0.1 * master, rel=1e-3)
    assert before == pytest.approx(0.1 * master, rel=1e-3)


def test_duck_envelope_ramps_linearly_in_db() -> None:
    rate, depth, attack, release = 1000, 12.0, 0.2, 0.5
    env = duck_envelope([(1.0, 2.0)], 4000, rate, depth, attack, release)

    def expected(t: float) -> float:  # written out piece by piece
        if t < 0.8 or t >= 2.5:
            return 0.0
        if t < 1.0:
            return depth * (t - 0.8) / 0.2
        if t < 2.0:
            return depth
        return depth * (1 - (t - 2.0) / 0.5)

    ref = np.array([expected(n / rate) for n in range(4000)])
    assert np.allclose(env, ref, atol=1e-9)
    assert env[900] == pytest.approx(6.0) and env[2250] == pytest.approx(6.0)  # halfway down each ramp
    # overlapping ramps: the deeper attenuation counts; no ramp: a step
    both = duck_envelope([(1.0, 2.0), (2.2, 3.0)], 4000, rate, depth, attack, release)
    assert both[2100] == pytest.approx(depth * (1 - 0.1 / 0.5)) and both[2100] > env[2100] - 1e-12
    assert both[2150] == pytest.approx(max(depth * (1 - 0.15 / 0.5), depth * (2.15 - 2.0) / 0.2))
    step = duck_envelope([(1.0, 2.0)], 4000, rate, depth, 0.0, 0.0)
    assert step[999] == 0 and step[1000] == depth and step[1999] == depth and step[2000] == 0


def test_the_ducked_track_follows_the_envelope_in_the_mix() -> None:
    rate = 1000
    steady = np.full((1, 4 * rate), 0.25, dtype=np.float32)  # DC: each frame shows its gain
    ambience = track("ambience", [(0.0, steady, rate)], scene_of=[0])
    voice = track("voice", [(1.0, np.full((1, 1000), 0.05, dtype=np.float32), rate)], scene_of=[0],
                  duck=12.0, attack=0.2, release=0.5)
    mix = mixdown(story_of(scenes(4.0), ambience, voice), QUIET)
    assert mix.master_gain == 0.0
    env = duck_envelope([(1.0, 2.0)], 4000, rate, 12.0, 0.2, 0.5)
    assert np.allclose(mix.tracks["ambience"][0], 0.25 * 10 ** (-env / 20), atol=1e-7)
    assert np.array_equal(mix.tracks["voice"][0, 1000:2000], np.full(1000, 0.05, dtype=np.float32))
    assert np.allclose(mix.samples, mix.tracks["ambience"] + mix.tracks["voice"], atol=1e-7)


def test_a_pipeline_track_with_duck_lowers_the_others(tmp_path: Path) -> None:
    reg = make_registry()
    pipe = Pipeline(
        planner="fake-planner",
        tracks={
            "ambience": {"generator": "fake-audio", "gain": -3},
            "narration": {"generator": ("fake-audio", {"per_character": 0.1}), "text": "{caption}", "duck": 12,
                          "attack": 0.05, "release": 0.05},
        },
        timing={"mode": "fixed", "seconds": 4.0},
        registry=reg,
    )
    story = pipe.run(StoryRequest(script="fox\ncave", seed=5), out_dir=tmp_path)
    mix = mixdown(story)
    rate = mix.sample_rate
    amb = story.tracks["ambience"].assets[0].samples[0].astype(np.float64)
    voice = story.tracks["narration"].assets[0]
    speaking = voice.seconds  # "fox": 0.3 s from 0 s
    master = 10 ** (mix.master_gain / 20) * 10 ** (-3 / 20)
    inside = slice(int(0.1 * rate), int((speaking - 0.05) * rate))
    outside = slice(int((speaking + 0.2) * rate), int(3.5 * rate))
    got_in = mix.tracks["ambience"][0, inside] / (amb[inside] * master)
    got_out = mix.tracks["ambience"][0, outside] / (amb[outside] * master)
    keep = np.abs(amb[inside]) > 0.05
    assert np.allclose(got_in[keep], 10 ** (-12 / 20), rtol=1e-4)
    assert np.allclose(got_out[np.abs(amb[outside]) > 0.05], 1.0, rtol=1e-4)


# -- (b) AudioStory placement ---------------------------------------------------------------------
def test_padded_contiguous_clips_are_audiostory_s_crossfade_join() -> None:
    rate, pad = 1000, 3.0  # plugins/storysdk-audiostory/docs/audiostory.md §1.7: clips 3 s longer, 3 s crossfades
    events = [4.0, 2.5, 5.0]
    clips = [noise(i, d + (pad if i < 2 else 0.0), rate, 0.05) for i, d in enumerate(events)]
    first = 1.5
    starts = [first, first + events[0], first + events[0] + events[1]]
    ambience = track("ambience", list(zip(starts, clips, [rate] * 3)), scene_of=[0, 0, 1], duration=events,
                     metadata={0: {"crossfade": pad}, 1: {"crossfade": pad}, 2: {"crossfade": 0.0}},
                     planner="events")
    story = story_of(scenes(6.0, 8.0), ambience, mix=QUIET)
    joined = crossfade_join(clips, int(pad * rate))
    expected = np.zeros((1, 14000), dtype=np.float32)
    expected[:, 1500 : 1500 + joined.shape[1]] = joined
    placed = place_track(ambience, story.timeline.tracks["ambience"], 14000, rate, 1)
    assert np.array_equal(placed, expected)  # bit-equal
    mix = mixdown(story)
    assert mix.master_gain == 0.0 and np.array_equal(mix.samples, expected)


def test_runs_allow_rounding_but_a_short_clip_ends_the_run() -> None:
    rate, pad = 1000, 3.0
    events = [4.0, 2.0, 3.0]
    starts = [0.0, 4.0, 6.0]
    meta = {0: {"crossfade": pad}, 1: {"crossfade": pad}}
    # a frame more or less than event + padding (a trim's rounding): still AudioStory's join
    clips = [noise(20, 7.001, rate), noise(21, 4.999, rate), noise(22, 3.0, rate)]
    t = track("amb", list(zip(starts, clips, [rate] * 3)), scene_of=[0, 0, 0], duration=events, metadata=meta,
              planner="events")
    spans = story_of(scenes(9.0), t).timeline.tracks["amb"]
    assert np.array_equal(place_track(t, spans, 9000, rate, 1)[:, :9000], crossfade_join(clips, 3000)[:, :9000])
    # the first clip is 1.5 s shorter than its event (clamped to its model's window): clip 1 keeps its cue
    short = [noise(23, 5.5, rate), noise(24, 5.0, rate), noise(25, 3.0, rate)]
    t = track("amb", list(zip(starts, short, [rate] * 3)), scene_of=[0, 0, 0], duration=events, metadata=meta,
              planner="events")
    placed = place_track(t, story_of(scenes(9.0), t).timeline.tracks["amb"], 9000, rate, 1)
    rest = crossfade_join(short[1:], 3000)  # clips 1 and 2 still run together, from clip 1's cue
    w = np.arange(1500) / 1499  # clip 0's padded tail (4.0-5.5 s) crossfades linearly into that run
    ref = np.zeros(9000)
    ref[:4000] = short[0][0, :4000]
    ref[4000:5500] = short[0][0, 4000:] * (1 - w) + rest[0, :1500] * w
    ref[5500:] = rest[0, 1500:5000]
    assert np.allclose(placed[0], ref, atol=1e-6)


def test_a_gap_breaks_the_run_and_overlapping_clips_crossfade_linearly() -> None:
    rate = 1000
    a, b = noise(1, 1.5, rate), noise(2, 1.0, rate)
    plain = track("fx", [(0.0, a, rate), (1.0, b, rate)], scene_of=[0, 0], duration=[1.0, 1.0])
    placed = place_track(plain, story_of(scenes(3.0), plain).timeline.tracks["fx"], 3000, rate, 1)
    w = np.arange(500) / 499  # the 0.5 s overlap: a fades out while b fades in
    ref = np.zeros(3000)
    ref[:1000] = a[0, :1000]
    ref[1000:1500] = a[0, 1000:] * (1 - w) + b[0, :500] * w
    ref[1500:2000] = b[0, 500:]
    assert np.allclose(placed[0], ref, atol=1e-6)
    # a padded clip whose next cue does not start where it ends is no run: each at its own cue
    padded = track("fx", [(0.0, noise(3, 1.2, rate), rate), (2.0, noise(4, 0.5, rate), rate)], scene_of=[0, 0],
                   duration=[1.0, 0.5], metadata={0: {"crossfade": 0.2}})
    out = place_track(padded, story_of(scenes(3.0), padded).timeline.tracks["fx"], 3000, rate, 1)
    assert np.array_equal(out[0, :1200], padded.assets[0].samples[0])
    assert not np.any(out[0, 1200:2000])
    assert np.array_equal(out[0, 2000:2500], padded.assets[1].samples[0])


def test_clips_past_the_story_s_end_are_cut() -> None:
    rate = 1000
    t = track("long", [(0.5, noise(5, 3.0, rate), rate), (2.5, noise(6, 1.0, rate), rate)], scene_of=[0, 0])
    mix = mixdown(story_of(scenes(2.0), t), QUIET)
    assert mix.frames == 2000
    assert np.array_equal(mix.samples[0, 500:], t.assets[0].samples[0, :1500])


# -- (c) gain -------------------------------------------------------------------------------------
@pytest.mark.parametrize("gain", [-6.0, -20.0, 3.5])
def test_track_gain_is_in_db(gain: float) -> None:
    rate = 1000
    clip = noise(7, 2.0, rate, 0.02)
    loud = track("a", [(0.0, clip, rate)], scene_of=[0])
    soft = track("b", [(0.0, clip.copy(), rate)], scene_of=[0], gain=gain)
    mix = mixdown(story_of(scenes(2.0), loud, soft), QUIET)
    rms = {k: float(np.sqrt(np.mean(v.astype(np.float64) ** 2))) for k, v in mix.tracks.items()}
    assert db(rms["b"] / rms["a"]) == pytest.approx(gain, abs=1e-4)


# -- (d) loudness ---------------------------------------------------------------------------------
def test_a_long_noise_mix_reaches_minus_16_lufs() -> None:
    rate = 16000
    bed = track("bed", [(0.0, noise(8, 30.0, rate, 0.01, channels=2), rate)], scene_of=[0])
    hiss = track("hiss", [(5.0, noise(9, 20.0, rate, 0.02, channels=2), rate)], scene_of=[0], gain=-4)
    mix = mixdown(story_of(scenes(30.0), bed, hiss))
    measured = pyloudnorm.Meter(rate).integrated_loudness(mix.samples.T.astype(np.float64))
    assert measured == pytest.approx(-16.0, abs=0.1)
    assert mix.output_loudness == pytest.approx(measured, abs=1e-9)
    assert mix.loudness == pytest.approx(measured - mix.master_gain, abs=0.05)
    assert mix.master_gain > 10  # the quiet bed was lifted
    custom = mixdown(story_of(scenes(30.0), bed, hiss), Mix(loudness=-23.0))
    assert pyloudnorm.Meter(rate).integrated_loudness(custom.samples.T.astype(np.float64)) == pytest.approx(-23, abs=0.1)


# -- (e) the ceiling ------------------------------------------------------------------------------
def test_a_loud_mix_is_scaled_under_the_ceiling_and_never_clips(tmp_path: Path) -> None:
    rate = 8000
    a = track("a", [(0.0, noise(10, 3.0, rate, 0.6, channels=2), rate)], scene_of=[0])
    b = track("b", [(0.0, noise(11, 3.0, rate, 0.6, channels=2), rate)], scene_of=[0])
    raw_peak = float(np.max(np.abs(a.assets[0].samples.astype(np.float64) + b.assets[0].samples)))
    assert raw_peak > 2  # far over full scale before the mix
    for mix in (Mix(), Mix(loudness=None), Mix(ceiling=-3.0), Mix(loudness=-5.0, ceiling=-0.5)):
        out = mixdown(story_of(scenes(3.0), a, b), mix)
        ceiling = 10 ** (mix.ceiling / 20)
        assert out.peak <= ceiling
        if mix.loudness is None or mix.loudness > -10:  # the ceiling is what sets the gain
            assert out.peak == pytest.approx(ceiling, rel=1e-6)
            assert out.master_gain == pytest.approx(db(ceiling / raw_peak), abs=1e-4)
    # a quiet mix with one click: the loudness target would push the click over; the ceiling wins
    quiet = noise(12, 5.0, rate, 0.001)
    quiet[0, 20000] = 0.5
    clicky = mixdown(story_of(scenes(5.0), track("c", [(0.0, quiet, rate)], scene_of=[0])))
    assert clicky.peak == pytest.approx(10 ** (-1 / 20), rel=1e-6)
    assert clicky.output_loudness < -16.5
    # written as 24-bit FLAC nothing reaches full scale
    flac = tmp_path / "m.flac"
    flac.write_bytes(encode_audio(mixdown(story_of(scenes(3.0), a, b)).samples, rate, "flac"))
    back, _ = read_audio(flac)
    assert np.max(np.abs(back)) <= 10 ** (-1 / 20) + 2 ** -23
    assert np.max(np.abs(back)) < 0.9


# -- (f) rates and channels -----------------------------------------------------------------------
def test_mixed_rates_and_channels_are_resampled_and_mapped() -> None:
    lo_rate, hi_rate = 16000, 22050
    mono = tone(1000, 1.0, lo_rate, 0.2)
    stereo = noise(13, 1.0, hi_rate, 0.05, channels=2)
    a = track("a", [(0.0, mono, lo_rate)], scene_of=[0])
    b = track("b", [(0.5, stereo, hi_rate)], scene_of=[0])
    story = story_of(scenes(2.0), a, b, mix=QUIET)
    mix = mixdown(story)
    assert (mix.sample_rate, mix.channels, mix.frames) == (hi_rate, 2, 2 * hi_rate)  # the highest, the most
    up = resample(mono, lo_rate, hi_rate)
    assert np.array_equal(mix.tracks["a"][0, : up.shape[1]], up[0])
    assert np.array_equal(mix.tracks["a"][0], mix.tracks["a"][1])  # mono repeated on both channels
    # the tone keeps its pitch and level at the new rate (0.1-0.9 s: whole periods, away from the edges)
    assert amplitude(mix.tracks["a"][0], 1000, hi_rate, 0.1, 0.9) == pytest.approx(0.2, abs=1e-3)
    start = int(round(0.5 * hi_rate))
    assert np.array_equal(mix.tracks["b"][:, start : start + hi_rate], stereo)
    # an explicit mono, 8 kHz mix: the stereo clip is the mean of its channels, resampled
    low = mixdown(story, Mix(loudness=None, sample_rate=8000, channels=1))
    assert (low.sample_rate, low.channels, low.frames) == (8000, 1, 16000)
    ref = resample(stereo.mean(axis=0, keepdims=True), hi_rate, 8000)
    assert np.allclose(low.tracks["b"][0, 4000 : 4000 + ref.shape[1]], ref[0], atol=1e-6)
    assert amplitude(low.tracks["a"][0], 1000, 8000, 0.1, 0.9) == pytest.approx(0.2, abs=1e-3)


def test_six_channels_cannot_be_loudness_normalised() -> None:
    rate = 8000
    six = track("six", [(0.0, noise(14, 1.0, rate, 0.1, channels=6), rate)], scene_of=[0])
    with pytest.raises(ConfigError, match=r"6 channels but loudness is measured .* at most 5; set \[mix\] channels"):
        mixdown(story_of(scenes(1.0), six))
    assert mixdown(story_of(scenes(1.0), six), QUIET).channels == 6


# -- (g) determinism ------------------------------------------------------------------------------
def test_the_same_story_mixes_to_the_same_bytes(tmp_path: Path) -> None:
    def build() -> Story:
        rate = 8000
        amb = track("ambience", [(0.0, noise(15, 4.0, rate, 0.05, channels=2), rate)], scene_of=[0], gain=-6)
        voice = track("voice", [(0.5, tone(500, 1.0, 16000), 16000), (2.0, tone(700, 1.0, 16000), 16000)],
                      scene_of=[0, 1], duck=9.0)
        return story_of(scenes(2.0, 2.0), amb, voice)

    one, two = mixdown(build()), mixdown(build())
    assert one.samples.tobytes() == two.samples.tobytes()
    assert all(one.tracks[k].tobytes() == two.tracks[k].tobytes() for k in one.tracks)
    for fmt in ("wav", "flac"):
        a = SoundtrackComposer(format=fmt, stems=True).compose(build(), tmp_path / f"a-{fmt}")
        b = SoundtrackComposer(format=fmt, stems=True).compose(build(), tmp_path / f"b-{fmt}")
        assert [p.name for p in a] == [p.name for p in b]
        assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


# -- stories assembled by hand, and broken clips ---------------------------------------------------
def test_a_story_assembled_by_hand_mixes_on_its_derived_timeline() -> None:
    rate = 1000
    plan = StoryPlan(scenes=[Scene(0, "a"), Scene(1, "b", duration=0.5), Scene(2, "c")])
    clips = {0: noise(16, 1.2, rate), 2: noise(17, 0.7, rate)}
    story = Story(plan, audio={i: AudioAsset(i, c, rate) for i, c in clips.items()}, mix=QUIET)
    assert story.tracks == {} and story.timeline is None
    mix = mixdown(story)
    # each scene as long as its clip; scene 1 has none and lasts its planned 0.5 s
    assert [(s.start, s.duration) for s in timeline_of(story).scenes] == [(0.0, 1.2), (1.2, 0.5), (1.7, 0.7)]
    ref = np.concatenate([clips[0][0], np.zeros(500, dtype=np.float32), clips[2][0]])
    assert np.array_equal(mix.samples[0], ref) and list(mix.tracks) == ["audio"]


def test_no_audio_and_broken_clips_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="the story has no audio to mix; give it an audio track"):
        mixdown(Story(StoryPlan(scenes=scenes(1.0))))
    bad = noise(18, 1.0, 1000)
    bad[0, 10] = np.nan
    broken = track("voice", [(0.0, bad, 1000)], scene_of=[0])
    with pytest.raises(ComponentError, match=r"track 'voice': the clip of cue 0 \(scene 0\) holds NaN or infinite "
                                             r"samples; its generator \(test\) made broken audio"):
        mixdown(story_of(scenes(1.0), broken))
    with pytest.raises(ConfigError, match=r"option ceiling=3.0: input should be less than or equal to 0"):
        mixdown(story_of(scenes(1.0), track("v", [(0.0, noise(1, 1.0, 1000), 1000)], scene_of=[0])),
                {"ceiling": 3.0})
