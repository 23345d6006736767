"""The video composer: MP4s read back with PyAV (timeline, streams, audio, subtitles, blends)."""

from __future__ import annotations

import hashlib
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from storysdk import Pipeline, StoryRequest
from storysdk.builtins.soundtrack import Silence, SoundtrackComposer, join_clips
from storysdk.builtins.video import VideoComposer, fit_picture, plan_timeline
from storysdk.errors import ConfigError
from storysdk.model import AudioAsset, ImageAsset, Scene, Story, StoryPlan
from storysdk.testing import make_registry
from storysdk.video_encode import mov_text_payload

SR = 16000
FREQ = 400.0  # 40 samples per period at 16 kHz: a 40-sample RMS window sees whole periods
RED, GREEN, BLUE, YELLOW = (230, 20, 20), (20, 200, 40), (30, 40, 220), (240, 220, 30)
COLOURS = {"red": RED, "green": GREEN, "blue": BLUE, "yellow": YELLOW, "black": (0, 0, 0)}


def tone(seconds: float, amp: float, rate: int = SR, channels: int = 1) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return np.tile((amp * np.sin(2 * np.pi * FREQ * t)).astype(np.float32), (channels, 1))


def make_story(spec: list[tuple[Any, Any, str]], size: tuple[int, int] = (65, 49), durations=None) -> Story:
    """spec: (colour or None, (seconds, amplitude) or None, caption) per scene."""
    scenes = [Scene(i, f"p{i}", caption=c, duration=(durations or {}).get(i)) for i, (_, _, c) in enumerate(spec)]
    story = Story(StoryPlan(scenes=scenes))
    for i, (colour, clip, _) in enumerate(spec):
        if colour is not None:
            story.add(ImageAsset(i, Image.new("RGB", size, colour), made_by="test"))
        if clip is not None:
            story.add(AudioAsset(i, tone(*clip), sample_rate=SR, made_by="test"))
    return story


def streams(path: Path) -> tuple[list[tuple[str, str]], float]:
    with av.open(str(path)) as c:
        return [(s.type, s.codec_context.name) for s in c.streams], c.duration / 1e6


def video_frames(path: Path) -> tuple[list[float], list[np.ndarray], tuple[int, int]]:
    """Each decoded frame's time (s) and RGB pixels, and the frame size."""
    times, pixels = [], []
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        size = (vs.codec_context.width, vs.codec_context.height)
        for f in c.decode(video=0):
            times.append(float(f.pts * f.time_base))
            pixels.append(f.to_ndarray(format="rgb24"))
    return times, pixels, size


def nearest(pixel: np.ndarray) -> str:
    return min(COLOURS, key=lambda k: float(np.abs(np.asarray(COLOURS[k]) - pixel).sum()))


def audio_track(path: Path) -> tuple[np.ndarray, int]:
    """Decoded samples placed by each frame's pts (the decoder drops AAC's priming samples,
    which the MP4 edit list marks, so the first frame's pts is 0)."""
    with av.open(str(path)) as c:
        st = c.streams.audio[0]
        rate = st.codec_context.sample_rate
        assert st.start_time == 0
        parts = []
        for f in c.decode(audio=0):
            parts.append((int(f.pts * f.time_base * rate), f.to_ndarray()))
    total = max(p + a.shape[1] for p, a in parts)
    out = np.zeros((parts[0][1].shape[0], total), np.float32)
    for p, a in parts:
        out[:, p : p + a.shape[1]] = a
    return out, rate


def level_changes(x: np.ndarray, rate: int, levels: list[float]) -> list[float]:
    """Times where the 40-sample RMS (whole periods of FREQ) first crosses halfway from each
    tone level (RMS = amp / sqrt 2) to the next one."""
    win = int(rate / FREQ)
    rms = np.sqrt(np.convolve(x[0].astype(np.float64) ** 2, np.ones(win) / win, mode="valid"))
    times, pos = [], 0
    for a, b in zip(levels, levels[1:]):
        mid = (a + b) / 2 / np.sqrt(2)
        above = rms[pos:] > mid if b > a else rms[pos:] < mid
        i = pos + int(np.argmax(above))
        times.append((i + win / 2) / rate)  # the window is centred half a window later
        pos = i + win
    return times


def subtitles(path: Path) -> list[tuple[int, int, str]]:
    with av.open(str(path)) as c:
        ss = c.streams.subtitles[0]
        assert ss.time_base == Fraction(1, 1000)
        cues = []
        for p in c.demux(ss):
            data = bytes(p)
            if p.size and int.from_bytes(data[:2], "big"):  # the muxer writes empty samples in gaps
                n = int.from_bytes(data[:2], "big")
                cues.append((int(p.pts), int(p.pts + p.duration), data[2 : 2 + n].decode("utf-8")))
                texts = [s.dialogue.decode() for s in ss.codec_context.decode(p)]
                assert texts == [cues[-1][2]]
    return cues


def frame_of(seconds: float, fps: float = 24) -> int:
    return int(np.floor(seconds * fps + 0.5))


# -- timeline, streams, audio alignment, subtitles ------------------------------------------------
def test_pictures_audio_and_subtitles_follow_the_clips(tmp_path: Path) -> None:
    story = make_story([(RED, (0.5, 0.5), "red fox"), (GREEN, (0.8, 0.1), "green frog é"), (BLUE, (0.5, 0.3), "")])
    mp4, js = VideoComposer().compose(story, tmp_path)
    assert (mp4.name, js.name) == ("story.mp4", "video.json")
    kinds, duration = streams(mp4)
    assert kinds == [("video", "h264"), ("audio", "aac"), ("subtitle", "mov_text")]
    assert duration == pytest.approx(1.8, abs=1 / 24)

    times, pixels, size = video_frames(mp4)
    assert size == (64, 48)  # 65 x 49 rounded down to even
    assert len(times) == frame_of(1.8) == 43
    assert times == pytest.approx([n / 24 for n in range(43)])
    names = [nearest(p[24, 32]) for p in pixels]
    changes = [times[i] for i in range(1, len(names)) if names[i] != names[i - 1]]
    assert names[0] == "red" and names[-1] == "blue" and len(changes) == 2
    for got, want in zip(changes, [0.5, 1.3]):
        assert abs(got - want) <= 0.5 / 24 + 1e-9
    for p, name in zip(pixels, names):  # flat pictures stay flat through H.264
        assert np.abs(p.astype(int) - COLOURS[name]).max() <= 6

    samples, rate = audio_track(mp4)
    assert rate == SR and samples.shape[0] == 1
    assert samples.shape[1] >= 28800  # the whole track (AAC pads the last frame)
    got = level_changes(samples, rate, [0.5, 0.1, 0.3])
    assert got == pytest.approx([0.5, 1.3], abs=0.003)
    rms = [float(np.sqrt(np.mean(samples[0, a:b] ** 2))) for a, b in [(800, 7200), (8800, 20000), (21600, 28000)]]
    assert rms == pytest.approx([0.5 / np.sqrt(2), 0.1 / np.sqrt(2), 0.3 / np.sqrt(2)], rel=0.05)

    ms = lambda f: int(np.floor(f / 24 * 1000 + 0.5))  # noqa: E731
    assert subtitles(mp4) == [(0, ms(12), "red fox"), (ms(12), ms(31), "green frog é")]  # empty caption: no cue

    info = json.loads(js.read_text())
    assert (info["width"], info["height"], info["frames"], info["fps"]) == (64, 48, 43, 24.0)
    assert [(s["index"], s["start"], s["end"], s["audio"]) for s in info["scenes"]] == [
        (0, 0.0, 0.5, True),
        (1, 0.5, 1.3, True),
        (2, 1.3, 1.8, True),
    ]
    assert [(s["start_frame"], s["end_frame"]) for s in info["scenes"]] == [(0, 12), (12, 31), (31, 43)]
    assert info["audio"]["samples"] == 28800 and info["subtitles"] is True


def test_scene_without_audio_gets_still_duration_and_silence(tmp_path: Path) -> None:
    story = make_story([(RED, (0.5, 0.5), "a"), (GREEN, None, "b"), (BLUE, (0.5, 0.3), "c")])
    mp4, js = VideoComposer(still_duration=0.75).compose(story, tmp_path)
    times, pixels, _ = video_frames(mp4)
    names = [nearest(p[24, 32]) for p in pixels]
    assert len(names) == frame_of(1.75)
    assert names == ["red"] * frame_of(0.5) + ["green"] * (frame_of(1.25) - frame_of(0.5)) + ["blue"] * (
        frame_of(1.75) - frame_of(1.25)
    )
    samples, rate = audio_track(mp4)
    # silence where scene 1 is, and scene 2's clip starts after it, on time
    assert float(np.abs(samples[0, int(0.52 * SR) : int(1.23 * SR)]).max()) < 0.01
    assert level_changes(samples, rate, [0.5, 0.0, 0.3]) == pytest.approx([0.5, 1.25], abs=0.003)
    scenes = json.loads(js.read_text())["scenes"]
    assert [(s["start"], s["end"], s["audio"]) for s in scenes] == [
        (0.0, 0.5, True),
        (0.5, 1.25, False),
        (1.25, 1.75, True),
    ]


def test_still_duration_default_is_the_planned_duration_else_three_seconds() -> None:
    story = make_story([(RED, (0.5, 0.5), ""), (GREEN, None, ""), (BLUE, None, "")], durations={1: 0.4})
    tl = plan_timeline(story, Fraction(24))
    assert tl is not None
    bounds = [Fraction(0), Fraction(1, 2), Fraction(9, 10), Fraction(39, 10)]  # 0.5 s clip, 0.4 s planned, 3 s
    assert [(s.start, s.end) for s in tl.shots] == list(zip(bounds, bounds[1:]))
    assert tl.track is not None and tl.track.frames == int(3.9 * SR)
    assert tl.frames == frame_of(3.9) and [s.first_frame for s in tl.shots] == [0, 12, frame_of(0.9)]
    forced = plan_timeline(story, Fraction(24), still_duration=1.0)
    assert forced is not None and [float(s.end - s.start) for s in forced.shots] == [0.5, 1.0, 1.0]


def test_audio_without_picture_keeps_the_previous_picture_black_before_the_first(tmp_path: Path) -> None:
    story = make_story(
        [(None, (0.25, 0.5), "dark"), (RED, (0.5, 0.3), "r"), (None, (0.5, 0.1), "still red"), (BLUE, (0.25, 0.5), "b")]
    )
    mp4, js = VideoComposer().compose(story, tmp_path)
    _, pixels, _ = video_frames(mp4)
    names = [nearest(p[24, 32]) for p in pixels]
    bounds = [frame_of(t) for t in (0.25, 1.25, 1.5)]
    assert names == ["black"] * bounds[0] + ["red"] * (bounds[1] - bounds[0]) + ["blue"] * (bounds[2] - bounds[1])
    scenes = json.loads(js.read_text())["scenes"]
    assert [s["picture"] for s in scenes] == [None, 1, 1, 3]
    assert [c[2] for c in subtitles(mp4)] == ["dark", "r", "still red", "b"]  # each scene's own caption


def test_story_without_audio_is_a_video_of_stills(tmp_path: Path) -> None:
    story = make_story([(RED, None, "x"), (BLUE, None, "")], size=(64, 48))
    mp4, js = VideoComposer(still_duration=0.5).compose(story, tmp_path / "a")
    kinds, duration = streams(mp4)
    assert kinds == [("video", "h264"), ("subtitle", "mov_text")]
    assert duration == pytest.approx(1.0, abs=1e-3)
    _, pixels, _ = video_frames(mp4)
    assert [nearest(p[24, 32]) for p in pixels] == ["red"] * 12 + ["blue"] * 12
    assert json.loads(js.read_text())["audio"] is None
    # a silent AAC track on request; no subtitle track without captions
    mp4, _ = VideoComposer(still_duration=0.5, audio="always", subtitles=False).compose(story, tmp_path / "b")
    assert streams(mp4)[0] == [("video", "h264"), ("audio", "aac")]
    samples, rate = audio_track(mp4)
    assert rate == 48000 and samples.shape[0] == 2 and samples.shape[1] >= 48000 and not samples.any()
    # audio="none" drops the track of a story that has audio, but keeps its timeline
    voiced = make_story([(RED, (0.5, 0.5), ""), (BLUE, (0.25, 0.5), "")])
    mp4, _ = VideoComposer(audio="none").compose(voiced, tmp_path / "c")
    assert streams(mp4)[0] == [("video", "h264")]
    assert len(video_frames(mp4)[0]) == frame_of(0.75)


def test_transition_frames_are_centred_blends(tmp_path: Path) -> None:
    story = make_story([(RED, (1.0, 0.5), ""), (BLUE, (1.0, 0.3), "")], size=(64, 48))
    mp4, _ = VideoComposer(transition=0.5).compose(story, tmp_path)
    _, pixels, _ = video_frames(mp4)
    red, blue = np.asarray(RED, float), np.asarray(BLUE, float)
    change, width = 24, 0.5 * 24  # boundary frame, dissolve length in frames
    for n, p in enumerate(pixels):
        w = min(1.0, max(0.0, (n - change) / width + 0.5))
        want = red * (1 - w) + blue * w
        assert np.abs(p[24, 32] - want).max() <= 6, (n, p[24, 32], want)
    pure = [min(np.abs(p[24, 32] - c).max() for c in (red, blue)) <= 6 for p in pixels]
    assert [n for n, ok in enumerate(pure) if not ok] == list(range(change - 5, change + 6))
    assert np.abs(pixels[change][24, 32] - (red + blue) / 2).max() <= 6  # an even mix at the change
    # a dissolve takes at most half of a short neighbouring span
    short = make_story([(RED, (0.25, 0.5), ""), (BLUE, (1.0, 0.3), "")], size=(64, 48))
    mp4, _ = VideoComposer(transition=2.0).compose(short, tmp_path / "short")
    _, pixels, _ = video_frames(mp4)
    for n, p in enumerate(pixels):
        w = min(1.0, max(0.0, (n - 6) / 6 + 0.5))  # span of 6 frames: width 6
        assert np.abs(p[24, 32] - (red * (1 - w) + blue * w)).max() <= 6, n


def test_burned_captions_change_only_the_caption_area(tmp_path: Path) -> None:
    story = make_story([(BLUE, (0.25, 0.5), "Hello there"), (RED, (0.25, 0.5), "")], size=(128, 96))
    plain, _ = VideoComposer(subtitles=False).compose(story, tmp_path / "plain")
    burned, _ = VideoComposer(subtitles=False, burn_captions=True).compose(story, tmp_path / "burn")
    _, a, _ = video_frames(plain)
    _, b, _ = video_frames(burned)
    assert len(a) == len(b) == 12
    first_a, first_b = a[0].astype(int), b[0].astype(int)
    assert np.abs(first_a - BLUE).max() <= 6  # off: the flat picture
    diff = np.abs(first_a - first_b).max(axis=2)
    rows = np.nonzero(diff.max(axis=1) > 40)[0]
    assert rows.size and rows.min() > 96 // 2  # on: changed at the bottom only
    assert diff[: 96 // 2].max() <= 6
    assert first_b[rows].max() > 200 and first_b[rows].min() < 60  # white box with dark text
    assert np.abs(a[-1].astype(int) - b[-1].astype(int)).max() <= 6  # an empty caption burns nothing


def test_crossfade_timeline_matches_the_soundtrack_composer(tmp_path: Path) -> None:
    story = make_story([(RED, (0.75, 0.5), ""), (GREEN, (0.5, 0.1), ""), (BLUE, (0.5, 0.3), "")])
    for i in (0, 1):
        story.audio[i].metadata["crossfade"] = 0.125  # declared padding, as AudioStory's generator does
    _, js = VideoComposer().compose(story, tmp_path)
    _, sj = SoundtrackComposer().compose(story, tmp_path)
    video, sound = json.loads(js.read_text()), json.loads(sj.read_text())
    assert [s["start"] for s in video["scenes"]] == [s["start"] for s in sound["scenes"]] == [0.0, 0.625, 1.0]
    assert video["audio"]["samples"] == sound["frames"] == int(1.5 * SR)
    assert video["audio"]["crossfade"] == 0.125
    assert [s["start_frame"] for s in video["scenes"]] == [0, 15, 24]  # picture changes as the next clip fades in
    mp4 = tmp_path / "story.mp4"
    samples, rate = audio_track(mp4)
    joined = join_clips(list(story.audio.values())).samples[0]
    n = joined.size  # AAC at 192 kbit/s keeps the waveform close
    assert float(np.sqrt(np.mean((samples[0, :n] - joined) ** 2))) < 0.01


def test_join_clips_inserts_silence_with_hard_cuts() -> None:
    a, b, c = (AudioAsset(i, tone(s, 0.4), SR) for i, s in enumerate((0.5, 0.25, 0.5)))
    track = join_clips([a, b, Silence(0.25), c], crossfade=0.125)
    fade = 2000
    assert track.fade == fade and track.starts == (0, 8000 - fade, 12000 - fade, 16000 - fade)
    assert track.ends == (8000, 12000 - fade, 16000 - fade, 24000 - fade)
    x = track.samples[0]
    w = np.linspace(0.0, 1.0, fade)
    mixed = a.samples[0, -fade:] * (1 - w) + b.samples[0, :fade] * w
    ref_ab = np.concatenate([a.samples[0, :-fade], mixed, b.samples[0, fade:]])
    assert np.allclose(x[: ref_ab.size], ref_ab, atol=1e-6)
    assert not x[ref_ab.size : ref_ab.size + 4000].any()
    assert np.array_equal(x[ref_ab.size + 4000 :], c.samples[0])
    with pytest.raises(ConfigError, match="at least one audio clip"):
        join_clips([Silence(1.0)])


def test_rates_and_channels(tmp_path: Path) -> None:
    story = make_story([(RED, None, ""), (BLUE, None, "")], size=(32, 32))
    story.add(AudioAsset(0, tone(0.25, 0.5, 22000), 22000))  # not an AAC rate: resampled to 48 kHz
    story.add(AudioAsset(1, tone(0.25, 0.3, 22000, channels=2), 22000))
    mp4, js = VideoComposer().compose(story, tmp_path)
    samples, rate = audio_track(mp4)
    assert (rate, samples.shape[0]) == (48000, 2)
    info = json.loads(js.read_text())["audio"]
    assert (info["sample_rate"], info["channels"], info["samples"]) == (48000, 2, 2 * 12000)
    mono, _ = VideoComposer(channels=1, sample_rate=16000).compose(story, tmp_path / "m")
    samples, rate = audio_track(mono)
    assert (rate, samples.shape[0]) == (16000, 1)
    story.add(AudioAsset(1, np.zeros((3, 4000), np.float32), 16000))
    with pytest.raises(ConfigError, match="channels=1 or 2"):
        VideoComposer().compose(story, tmp_path / "x")


def test_letterbox_and_explicit_size(tmp_path: Path) -> None:
    wide = Image.new("RGB", (100, 50), RED)
    boxed = np.asarray(fit_picture(wide, (40, 40)))
    assert np.array_equal(boxed[:10], np.zeros((10, 40, 3), np.uint8))  # 40 x 20 picture centred
    assert np.array_equal(boxed[30:], np.zeros((10, 40, 3), np.uint8))
    assert (boxed[12:28] == RED).all()
    odd = Image.new("RGB", (5, 3))
    odd.putpixel((4, 2), (255, 255, 255))
    assert np.asarray(fit_picture(odd, (4, 2))).max() == 0  # cropped at the right/bottom, not scaled
    story = make_story([(RED, None, ""), (BLUE, None, "")], size=(64, 48))
    story.images[1] = ImageAsset(1, Image.new("RGB", (20, 40), BLUE))
    mp4, _ = VideoComposer(still_duration=0.25, width=80, subtitles=False).compose(story, tmp_path)
    _, pixels, size = video_frames(mp4)
    assert size == (80, 60)  # height follows the first picture's aspect
    last = pixels[-1].astype(int)
    assert np.abs(last[30, 40] - BLUE).max() <= 6 and last[30, 5].max() <= 16  # pillarboxed


def test_same_story_same_bytes(tmp_path: Path) -> None:
    story = make_story([(RED, (0.25, 0.5), "a"), (BLUE, (0.25, 0.3), "b")])
    digests = []
    for name in ("a", "b"):
        mp4, js = VideoComposer(transition=0.1).compose(story, tmp_path / name)
        digests.append((hashlib.sha256(mp4.read_bytes()).hexdigest(), js.read_text()))
    assert digests[0] == digests[1]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fps": 0}, "option fps=0: input should be greater than 0"),
        ({"fps": "24"}, "option fps='24': input should be a valid number"),
        ({"fps": 1000}, r"option fps=1000: input should be less than or equal to 240 \(frames per second"),
        ({"still_duration": 0}, "option still_duration=0: input should be greater than 0"),
        ({"still_duration": float("inf")}, "option still_duration=inf: input should be a finite number"),
        ({"transition": -1}, "option transition=-1: input should be greater than or equal to 0"),
        ({"subtitles": "yes"}, "option subtitles='yes': input should be a valid boolean"),
        ({"burn_captions": 1}, "option burn_captions=1: input should be a valid boolean"),
        ({"width": 65}, r"option width=65: .*width must be even \(H.264 in yuv420p needs even sizes\), got 65; use 64"),
        ({"height": 1}, "option height=1: input should be greater than or equal to 2"),
        ({"size": [64, 48], "width": 64}, "give either size = \\[width, height\\] or width/height, not both"),
        ({"size": [64]}, r"option size=\[64\]: .*size must be two whole numbers \[width, height\] in pixels, got 1"),
        ({"size": [64, 47]}, "size: the height must be even .* use 46"),
        ({"size": [10000, 48]}, "size: the width must be from 2 to 8192 pixels, got 10000"),
        ({"crf": 60}, "option crf=60: input should be less than or equal to 51"),
        ({"x264_preset": "quick"}, "option x264_preset='quick': input should be 'ultrafast', 'superfast'"),
        ({"threads": -1}, "option threads=-1: input should be greater than or equal to 0"),
        ({"audio": "loud"}, "option audio='loud': input should be 'auto', 'always' or 'none'"),
        ({"audio_bitrate": 100}, "option audio_bitrate=100: input should be greater than or equal to 8000"),
        ({"sample_rate": 22000}, "option sample_rate=22000: .*AAC cannot store sample_rate 22000; use one of 96000"),
        ({"sample_rate": 16000.0}, "option sample_rate=16000.0: input should be a valid integer"),
        ({"channels": 6}, "option channels=6: input should be less than or equal to 2"),
        ({"crossfade": -0.5}, "option crossfade=-0.5: input should be greater than or equal to 0"),
        ({"filename": "out/story.mp4"}, r"filename must be a file name ending in .mp4 \(no folders\), got 'out/story.mp4'"),
        ({"filename": "story.avi"}, "option filename='story.avi'"),
        ({"font_size": 0}, "option font_size=0: input should be greater than or equal to 1"),
        ({"preset": "fast"}, "has no option 'preset'. Did you mean 'x264_preset'"),
    ],
)
def test_bad_options_raise_config_error(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        VideoComposer(**options)


def test_frame_rates(tmp_path: Path) -> None:
    assert VideoComposer().fps == 24
    assert VideoComposer(fps=29.97).fps == Fraction(30000, 1001)
    assert VideoComposer(fps=23.976).fps == Fraction(24000, 1001)
    assert VideoComposer(fps=12.5).fps == Fraction(25, 2)
    assert VideoComposer(fps=30).fps == 30
    story = make_story([(RED, (0.5, 0.5), ""), (BLUE, (0.5, 0.3), "")], size=(32, 32))
    mp4, _ = VideoComposer(fps=29.97).compose(story, tmp_path)
    times, pixels, _ = video_frames(mp4)
    rate = 30000 / 1001
    assert len(times) == 30 and times == pytest.approx([n / rate for n in range(30)])
    assert [nearest(p[16, 16]) for p in pixels] == ["red"] * frame_of(0.5, rate) + ["blue"] * (30 - frame_of(0.5, rate))


def test_no_pictures_no_file(tmp_path: Path) -> None:
    story = make_story([(None, (0.25, 0.5), "a")])
    assert VideoComposer().compose(story, tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_mov_text_payload() -> None:
    assert mov_text_payload("héllo") == b"\x00\x06h\xc3\xa9llo"
    long = mov_text_payload("é" * 40000)  # 80,000 bytes: cut at a whole character
    assert int.from_bytes(long[:2], "big") == 65534 == len(long) - 2
    long[2:].decode("utf-8")


def test_pipeline_with_fake_components_writes_the_mp4(tmp_path: Path) -> None:
    pipe = Pipeline(
        planner="fake-planner",
        generators=["fake-image", "fake-audio"],
        composers=[("video", {"transition": 0.2})],
        registry=make_registry(),
        runtime={"preset": "tiny"},  # the CLI's --preset: "preset" is not the x264 preset, so it is left out
    )
    assert pipe.composers[0].options.x264_preset == "medium"
    # as a strict default ([defaults] of a story file) a "preset" nothing takes is an error
    with pytest.raises(ConfigError, match="no component of this pipeline takes the option 'preset'"):
        Pipeline(planner="fake-planner", generators=["fake-image"], composers=["video"],
                 registry=make_registry(), defaults={"preset": "tiny"})
    request = StoryRequest(script="a red fox\na blue bird\na green frog", seed=3, width=48, height=32)
    story = pipe.run(request, out_dir=tmp_path)
    mp4 = tmp_path / "story.mp4"
    assert story.files["video"] == [mp4, tmp_path / "video.json"]
    kinds, duration = streams(mp4)
    assert kinds == [("video", "h264"), ("audio", "aac"), ("subtitle", "mov_text")]
    assert duration == pytest.approx(3.0, abs=1 / 24)  # three 1 s clips at 8 kHz
    _, pixels, size = video_frames(mp4)
    assert size == (48, 32) and len(pixels) == 72
    assert [c[2] for c in subtitles(mp4)] == ["a red fox", "a blue bird", "a green frog"]
    samples, rate = audio_track(mp4)
    assert rate == 8000 and samples.shape[1] >= 24000
