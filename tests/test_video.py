"""The video composer: MP4s read back with PyAV (timeline, streams, audio, subtitles, blends)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from storysdk import Pipeline, StoryRequest
from storysdk.builtins.video import VideoComposer, fit_picture, plan_video
from storysdk.captions import draw_caption
from storysdk.errors import ConfigError
from storysdk.interfaces import Generator, RenderContext
from storysdk.mixing import Mix, mixdown
from storysdk.model import AudioAsset, Cue, ImageAsset, Scene, Story, StoryPlan, Track
from storysdk.testing import make_registry
from storysdk.timeline import timeline_of
from storysdk.video_encode import mov_text_payload

SR = 16000
FREQ = 400.0  # 40 samples per period at 16 kHz: a 40-sample RMS window sees whole periods
RED, GREEN, BLUE, YELLOW = (230, 20, 20), (20, 200, 40), (30, 40, 220), (240, 220, 30)
COLOURS = {"red": RED, "green": GREEN, "blue": BLUE, "yellow": YELLOW, "black": (0, 0, 0)}
#: The mix without loudness normalisation: the tones keep the amplitudes the tests give them
#: (all under the -1 dBFS ceiling, so the master gain is 0 dB).
PLAIN = Mix(loudness=None)


def tone(seconds: float, amp: float, rate: int = SR, channels: int = 1) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return np.tile((amp * np.sin(2 * np.pi * FREQ * t)).astype(np.float32), (channels, 1))


def make_story(
    spec: list[tuple[Any, Any, str]], size: tuple[int, int] = (65, 49), durations=None, mix: Mix | None = PLAIN
) -> Story:
    """spec: (colour or None, (seconds, amplitude) or None, caption) per scene; a story made by hand."""
    scenes = [Scene(i, f"p{i}", caption=c, duration=(durations or {}).get(i)) for i, (_, _, c) in enumerate(spec)]
    story = Story(StoryPlan(scenes=scenes), mix=mix)
    for i, (colour, clip, _) in enumerate(spec):
        if colour is not None:
            story.add(ImageAsset(i, Image.new("RGB", size, colour), made_by="test"))
        if clip is not None:
            story.add(AudioAsset(i, tone(*clip), sample_rate=SR, made_by="test"))
    return story


def image_track(name: str, scenes: list[Scene], colours: dict[int, Any], size=(64, 48)) -> Track:
    cues = [Cue.of_scene(s) for s in scenes if s.index in colours]
    assets = {i: ImageAsset(i, Image.new("RGB", size, c), made_by=name) for i, c in colours.items()}
    return Track(name, "image", cues, assets, generator=name)  # type: ignore[arg-type]


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


def colour_names(path: Path, at: tuple[int, int] = (24, 32)) -> list[str]:
    return [nearest(p[at]) for p in video_frames(path)[1]]


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


def stream_seconds(path: Path) -> dict[str, float]:
    """Each stream's own length: the video's frames / rate, the audio's end of its last packet."""
    with av.open(str(path)) as c:
        out = {}
        for s in c.streams:
            if s.type == "video":
                out["video"] = float(s.frames / s.average_rate)
            elif s.type == "audio":
                end = max(float((p.pts + p.duration) * p.time_base) for p in c.demux(s) if p.pts is not None)
                out["audio"] = end
    return out


def frame_of(seconds: float, fps: float = 24) -> int:
    return int(np.floor(seconds * fps + 0.5))


def ms(frame: int, fps: float = 24) -> int:
    return int(np.floor(frame / fps * 1000 + 0.5))


# -- timeline, streams, audio alignment, subtitles ------------------------------------------------
def test_pictures_audio_and_subtitles_follow_the_timeline(tmp_path: Path) -> None:
    story = make_story([(RED, (0.5, 0.5), "red fox"), (GREEN, (0.8, 0.1), "green frog é"), (BLUE, (0.5, 0.3), "")])
    bounds = [s.start for s in timeline_of(story).scenes]  # a story made by hand: each scene as long as its clip
    assert bounds == [0.0, 0.5, 1.3]
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

    assert subtitles(mp4) == [(0, ms(12), "red fox"), (ms(12), ms(31), "green frog é")]  # empty caption: no cue

    info = json.loads(js.read_text())
    assert (info["width"], info["height"], info["frames"], info["fps"]) == (64, 48, 43, 24.0)
    assert info["track"] == "images" and info["timeline"]["duration"] == pytest.approx(1.8)
    assert info["timeline"]["timing"]["mode"] == "track" and info["timeline"]["timing"]["track"] == "audio"
    assert [(s["index"], s["start"], s["end"], s["picture"], s["text"]) for s in info["scenes"]] == [
        (0, 0.0, 0.5, 0, "red fox"),
        (1, 0.5, 1.3, 1, "green frog é"),
        (2, 1.3, pytest.approx(1.8), 2, ""),
    ]
    assert [(s["start_frame"], s["end_frame"]) for s in info["scenes"]] == [(0, 12), (12, 31), (31, 43)]
    assert info["audio"]["samples"] == 28800 and info["audio"]["source"] == "mix" and info["subtitles"] is True
    assert info["audio"]["tracks"] == ["audio"] and info["audio"]["master_gain"] == 0.0  # PLAIN: no loudness gain


def test_scene_without_audio_lasts_its_planned_duration_with_silence(tmp_path: Path) -> None:
    story = make_story([(RED, (0.5, 0.5), "a"), (GREEN, None, "b"), (BLUE, (0.5, 0.3), "c")], durations={1: 0.75})
    mp4, js = VideoComposer().compose(story, tmp_path)
    names = colour_names(mp4)
    assert len(names) == frame_of(1.75)
    assert names == ["red"] * frame_of(0.5) + ["green"] * (frame_of(1.25) - frame_of(0.5)) + ["blue"] * (
        frame_of(1.75) - frame_of(1.25)
    )
    samples, rate = audio_track(mp4)
    # silence where scene 1 is, and scene 2's clip starts after it, on time
    assert float(np.abs(samples[0, int(0.52 * SR) : int(1.23 * SR)]).max()) < 0.01
    assert level_changes(samples, rate, [0.5, 0.0, 0.3]) == pytest.approx([0.5, 1.25], abs=0.003)
    scenes = json.loads(js.read_text())["scenes"]
    assert [(s["start"], s["end"]) for s in scenes] == [(0.0, 0.5), (0.5, 1.25), (1.25, 1.75)]


def test_a_scene_with_neither_duration_nor_clip_lasts_three_seconds() -> None:
    story = make_story([(RED, (0.5, 0.5), ""), (GREEN, None, ""), (BLUE, None, "")], durations={1: 0.4})
    plan = plan_video(story, Fraction(24))
    assert plan is not None and plan.track == "images"
    bounds = [Fraction(0), Fraction(1, 2), Fraction(9, 10), Fraction(39, 10)]  # 0.5 s clip, 0.4 s planned, 3 s
    assert [(s.start, s.end) for s in plan.shots] == list(zip(bounds, bounds[1:]))
    assert plan.total == Fraction(39, 10) and plan.frames == frame_of(3.9) == 94
    assert [(s.first_frame, s.end_frame) for s in plan.shots] == [(0, 12), (12, frame_of(0.9)), (frame_of(0.9), 94)]
    assert mixdown(story).frames == int(3.9 * SR)  # the mix lasts the timeline, silence after the clip
    assert plan_video(make_story([(None, (0.5, 0.5), "")]), Fraction(24)) is None  # no pictures


def test_audio_without_picture_keeps_the_previous_picture_black_before_the_first(tmp_path: Path) -> None:
    story = make_story(
        [(None, (0.25, 0.5), "dark"), (RED, (0.5, 0.3), "r"), (None, (0.5, 0.1), "still red"), (BLUE, (0.25, 0.5), "b")]
    )
    mp4, js = VideoComposer().compose(story, tmp_path)
    names = colour_names(mp4)
    bounds = [frame_of(t) for t in (0.25, 1.25, 1.5)]
    assert names == ["black"] * bounds[0] + ["red"] * (bounds[1] - bounds[0]) + ["blue"] * (bounds[2] - bounds[1])
    scenes = json.loads(js.read_text())["scenes"]
    assert [s["picture"] for s in scenes] == [None, 1, 1, 3]
    assert [c[2] for c in subtitles(mp4)] == ["dark", "r", "still red", "b"]  # each scene's own caption


def test_story_without_audio_is_a_silent_video_of_its_timeline(tmp_path: Path) -> None:
    story = make_story([(RED, None, "x"), (BLUE, None, "")], size=(64, 48), durations={0: 0.5, 1: 0.5})
    mp4, js = VideoComposer().compose(story, tmp_path / "a")
    kinds, duration = streams(mp4)
    assert kinds == [("video", "h264"), ("subtitle", "mov_text")]
    assert duration == pytest.approx(1.0, abs=1e-3)
    assert colour_names(mp4) == ["red"] * 12 + ["blue"] * 12
    assert json.loads(js.read_text())["audio"] is None
    # a silent AAC track on request, as long as the timeline; no subtitle track without captions
    mp4, js = VideoComposer(audio="always", subtitles=False).compose(story, tmp_path / "b")
    assert streams(mp4)[0] == [("video", "h264"), ("audio", "aac")]
    samples, rate = audio_track(mp4)
    assert rate == 48000 and samples.shape[0] == 2 and samples.shape[1] >= 48000 and not samples.any()
    assert json.loads(js.read_text())["audio"]["samples"] == 48000
    # without planned durations each scene lasts Timing.seconds, 3 s
    three = make_story([(RED, None, ""), (BLUE, None, "")], size=(16, 16))
    mp4, _ = VideoComposer(x264_preset="ultrafast").compose(three, tmp_path / "c")
    assert colour_names(mp4, (8, 8)) == ["red"] * 72 + ["blue"] * 72
    # audio="none" drops the track of a story that has audio, but keeps its timeline
    voiced = make_story([(RED, (0.5, 0.5), ""), (BLUE, (0.25, 0.5), "")])
    mp4, _ = VideoComposer(audio="none").compose(voiced, tmp_path / "d")
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
    # captions="narration" burns the narration text: scene 1 now has one, so it changes too
    story.plan.scenes[1].texts["narration"] = "Spoken words"
    spoken, _ = VideoComposer(subtitles=False, burn_captions=True, captions="narration").compose(story, tmp_path / "n")
    _, c, _ = video_frames(spoken)
    assert np.abs(c[0].astype(int) - first_b).mean() < 1  # scene 0: no narration text, its caption
    assert np.abs(c[-1].astype(int) - a[-1].astype(int)).max(axis=2)[96 // 2 :].max() > 40


def test_captions_option_picks_the_caption_or_the_narration(tmp_path: Path) -> None:
    story = make_story([(RED, (0.25, 0.5), "cap 0"), (BLUE, (0.5, 0.3), "cap 1"), (GREEN, (0.25, 0.1), "")])
    story.plan.scenes[0].texts["narration"] = "Once upon a time"
    story.plan.scenes[2].texts.update(narration="The end.", ambience="rain")
    mp4, js = VideoComposer(captions="narration").compose(story, tmp_path / "n")
    frames = [0, frame_of(0.25), frame_of(0.75), frame_of(1.0)]
    want = ["Once upon a time", "cap 1", "The end."]  # scene 1 has no narration text: its caption is spoken
    assert subtitles(mp4) == [(ms(a), ms(b), t) for a, b, t in zip(frames, frames[1:], want)]
    info = json.loads(js.read_text())
    assert info["captions"] == "narration" and [s["text"] for s in info["scenes"]] == want
    mp4, _ = VideoComposer().compose(story, tmp_path / "c")
    assert [c[2] for c in subtitles(mp4)] == ["cap 0", "cap 1"]


def test_the_audio_is_the_story_mix(tmp_path: Path) -> None:
    """Loudness normalised as the mix is, and AudioStory's declared padding joined as the mix joins it."""
    story = make_story([(RED, (0.75, 0.5), ""), (GREEN, (0.5, 0.1), ""), (BLUE, (0.5, 0.3), "")], mix=None)
    for i in (0, 1):
        story.audio[i].metadata["crossfade"] = 0.125  # declared padding, as AudioStory's generator does
    mp4, js = VideoComposer().compose(story, tmp_path)
    info = json.loads(js.read_text())
    assert [s["start"] for s in info["scenes"]] == [0.0, 0.625, 1.0]  # each clip less its padding
    assert [s["start_frame"] for s in info["scenes"]] == [0, 15, 24]
    mixed = mixdown(story)  # the soundtrack composer's samples
    assert mixed.frames == int(1.5 * SR) == info["audio"]["samples"]
    assert info["audio"]["master_gain"] == pytest.approx(mixed.master_gain) and mixed.master_gain < -1
    assert info["audio"]["loudness"] == pytest.approx(mixed.loudness)
    samples, rate = audio_track(mp4)
    assert rate == mixed.sample_rate == SR
    n = mixed.frames  # AAC at 192 kbit/s keeps the waveform close
    assert float(np.sqrt(np.mean((samples[0, :n] - mixed.samples[0]) ** 2))) < 0.01
    assert float(np.max(np.abs(samples[0, n:]))) < 0.01  # nothing after the mix but AAC's padding
    # independent of the mix's own code: the first clip alone, scaled by the master gain, up to the join
    scale = 10 ** (mixed.master_gain / 20)
    head = story.audio[0].samples[0, : int(0.625 * SR) - 2000] * scale
    assert float(np.sqrt(np.mean((samples[0, : head.size] - head) ** 2))) < 0.01


def test_rates_and_channels(tmp_path: Path) -> None:
    story = make_story([(RED, None, ""), (BLUE, None, "")], size=(32, 32))
    story.add(AudioAsset(0, tone(0.25, 0.5, 22000), 22000))  # not an AAC rate: mixed at 48 kHz
    story.add(AudioAsset(1, tone(0.25, 0.3, 22000, channels=2), 22000))
    mp4, js = VideoComposer().compose(story, tmp_path)
    samples, rate = audio_track(mp4)
    assert (rate, samples.shape[0]) == (48000, 2)
    info = json.loads(js.read_text())["audio"]
    assert (info["sample_rate"], info["channels"], info["samples"]) == (48000, 2, 2 * 12000)
    assert level_changes(samples, rate, [0.5, 0.3]) == pytest.approx([0.25], abs=0.003)
    mono, _ = VideoComposer(channels=1, sample_rate=16000).compose(story, tmp_path / "m")
    samples, rate = audio_track(mono)
    assert (rate, samples.shape[0]) == (16000, 1)
    story.mix = Mix(loudness=None, sample_rate=32000)  # [mix] sample_rate, an AAC rate: kept
    samples, rate = audio_track(VideoComposer().compose(story, tmp_path / "r")[0])
    assert (rate, samples.shape[0]) == (32000, 2)
    story.add(AudioAsset(1, np.zeros((3, 4000), np.float32), 16000))
    with pytest.raises(ConfigError, match="mix has 3 channels .* pass channels=1 or 2"):
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
    story = make_story([(RED, None, ""), (BLUE, None, "")], size=(64, 48), durations={0: 0.25, 1: 0.25})
    story.images[1] = ImageAsset(1, Image.new("RGB", (20, 40), BLUE))
    mp4, _ = VideoComposer(width=80, subtitles=False).compose(story, tmp_path)
    _, pixels, size = video_frames(mp4)
    assert size == (80, 60) and len(pixels) == 12  # height follows the first picture's aspect
    last = pixels[-1].astype(int)
    assert np.abs(last[30, 40] - BLUE).max() <= 6 and last[30, 5].max() <= 16  # pillarboxed


def test_same_story_same_bytes(tmp_path: Path) -> None:
    story = make_story([(RED, (0.25, 0.5), "a"), (BLUE, (0.25, 0.3), "b")], mix=None)
    digests = []
    for name in ("a", "b"):
        mp4, js = VideoComposer(transition=0.1).compose(story, tmp_path / name)
        digests.append((hashlib.sha256(mp4.read_bytes()).hexdigest(), js.read_text()))
    assert digests[0] == digests[1]


# -- tracks: the picture track, an audio track that times the story, durations -------------------
def test_two_image_tracks_show_the_chosen_tracks_pictures(tmp_path: Path) -> None:
    scenes = [Scene(i, f"p{i}", caption=f"c{i}", duration=0.5) for i in range(3)]
    story = Story(StoryPlan(scenes=scenes), tracks={
        "frames": image_track("frames", scenes, {0: RED, 1: GREEN, 2: BLUE}),
        "sketches": image_track("sketches", scenes, {0: YELLOW, 2: GREEN}),
    })
    mp4, js = VideoComposer().compose(story, tmp_path / "first")  # None: the first image track
    assert colour_names(mp4) == ["red"] * 12 + ["green"] * 12 + ["blue"] * 12
    assert json.loads(js.read_text())["track"] == "frames"
    mp4, js = VideoComposer(track="sketches").compose(story, tmp_path / "second")
    assert colour_names(mp4) == ["yellow"] * 24 + ["green"] * 12  # scene 1 has none there: yellow stays
    info = json.loads(js.read_text())
    assert info["track"] == "sketches" and [s["picture"] for s in info["scenes"]] == [0, 0, 2]
    with pytest.raises(ConfigError, match="the story has no track 'nope'; its tracks: frames, sketches"):
        VideoComposer(track="nope").compose(story, tmp_path / "x")
    story.tracks["voice"] = Track("voice", "audio", [Cue.of_scene(scenes[0])], {0: AudioAsset(0, tone(0.5, 0.5), SR)})
    with pytest.raises(ConfigError, match="track 'voice' is an audio track; choose an image track: frames, sketches"):
        VideoComposer(track="voice").compose(story, tmp_path / "y")


def test_a_pipeline_checks_the_picture_track_and_shows_it(tmp_path: Path) -> None:
    tracks = {"frames": {"generator": "fake-image"},
              "sketches": {"generator": ("fake-image", {"width": 48}), "text": "pencil sketch of {prompt}"},
              "voice": {"generator": "fake-audio"}}
    for name, message in [("nope", "track = 'nope' is not one of the pipeline's tracks; image tracks: frames, sketches"),
                          ("voice", "track = 'voice' is an audio track; image tracks: frames, sketches")]:
        with pytest.raises(ConfigError, match=message):
            Pipeline(planner="fake-planner", tracks=tracks, composers=[("video", {"track": name})], registry=make_registry())
    pipe = Pipeline(planner="fake-planner", tracks=tracks, composers=[("video", {"track": "sketches"})],
                    registry=make_registry())
    story = pipe.run(StoryRequest(script="a red fox\na blue bird", seed=5, width=32, height=32), out_dir=tmp_path)
    _, pixels, size = video_frames(tmp_path / "story.mp4")
    assert size == (48, 32) and len(pixels) == 48  # the sketches' size, not the frames' 32 x 32
    for n, p in enumerate(pixels):  # noise pictures tinted by their prompt: each frame has its sketch's colour
        own = np.asarray(story.track("sketches").assets[n // 24].image, float).mean(axis=(0, 1))
        other = np.asarray(story.track("frames").assets[n // 24].image, float).mean(axis=(0, 1))
        shown = p.astype(float).mean(axis=(0, 1))
        assert np.abs(shown - own).max() < 3 and np.abs(shown - other).max() > 20, n
    assert json.loads((tmp_path / "video.json").read_text())["track"] == "sketches"


def test_an_audio_track_that_times_the_story_drives_the_video(tmp_path: Path) -> None:
    """Timing mode "track": each scene lasts its narration clip (its text's length) plus padding;
    pictures change within half a frame of each scene boundary, each clip starts within 3 ms of its
    scene, and the MP4's streams last the timeline (and the mix) within one video frame."""
    pipe = Pipeline(
        planner="fake-planner",
        tracks={"frames": {"generator": "fake-image"},
                "narration": {"generator": ("fake-audio", {"per_character": 0.04, "sample_rate": 16000})}},
        timing={"mode": "track", "track": "narration", "padding": 0.3},
        composers=[("video", {"fps": 25})],
        registry=make_registry(),
    )
    script = "a lighthouse at dusk\na ship\nthe storm breaks over the sea"
    story = pipe.run(StoryRequest(script=script, seed=3, width=32, height=32), out_dir=tmp_path)
    clips = [story.track("narration").assets[i] for i in range(3)]
    spans = story.timeline.scenes
    assert [s.duration for s in spans] == pytest.approx([len(line) * 0.04 + 0.3 for line in script.splitlines()])
    saved = json.loads((tmp_path / "timeline.json").read_text())["scenes"]
    mp4 = tmp_path / "story.mp4"
    info = json.loads((tmp_path / "video.json").read_text())
    assert [(s["start"], s["end"]) for s in info["scenes"]] == [(s["start"], s["end"]) for s in saved]
    assert info["timeline"]["timing"]["track"] == "narration"

    times, pixels, _ = video_frames(mp4)
    frames = [np.asarray(story.track("frames").assets[i].image, float) for i in range(3)]
    shown = [int(np.argmin([np.abs(p - f).mean() for f in frames])) for p in pixels]
    changes = [times[n] for n in range(1, len(shown)) if shown[n] != shown[n - 1]]
    assert shown[0] == 0 and shown[-1] == 2 and len(changes) == 2
    for got, span in zip(changes, spans[1:]):
        assert abs(got - span.start) <= 0.5 / 25 + 1e-9

    samples, rate = audio_track(mp4)
    assert rate == 16000
    loud = np.abs(samples[0]) > 0.3 * float(np.abs(samples[0]).max())
    onsets, ends = [], []
    for span, clip in zip(spans, clips):  # each clip sounds from its scene's start for its length, then silence
        lo, hi = int(span.start * rate), int(span.end * rate)
        on = lo + int(np.argmax(loud[lo:hi]))
        onsets.append((on - lo) / rate)
        ends.append((lo + int(np.nonzero(loud[lo:hi])[0][-1]) - lo) / rate - clip.seconds)
    assert onsets == pytest.approx([0, 0, 0], abs=0.003)
    assert ends == pytest.approx([0, 0, 0], abs=0.003)

    total = story.timeline.total
    mixed = mixdown(story)  # the soundtrack
    lengths = stream_seconds(mp4)
    assert total == pytest.approx(3.1) and len(pixels) == frame_of(round(total, 6), 25) == 78  # 77.5 rounds up
    assert info["frames"] == len(pixels)
    assert abs(lengths["video"] - total) <= 1 / 25 and abs(lengths["video"] - mixed.frames / mixed.sample_rate) <= 1 / 25
    assert mixed.frames == round(total * rate) == info["audio"]["samples"]
    assert abs(lengths["audio"] - mixed.frames / rate) <= 1024 / rate  # AAC ends on a whole frame
    assert abs(lengths["audio"] - lengths["video"]) <= 1 / 25 + 1024 / rate


@pytest.mark.parametrize(("durations", "fps"), [((0.37, 0.41, 0.5), 24.0), ((1.01, 0.333), 29.97)])
def test_the_video_lasts_the_timeline_within_one_frame(tmp_path: Path, durations: tuple[float, ...], fps: float) -> None:
    spec = [(c, (d, 0.2 + 0.1 * i), "") for i, (c, d) in enumerate(zip((RED, BLUE, GREEN), durations))]
    story = make_story(spec, size=(16, 16))
    mp4, js = VideoComposer(fps=fps, x264_preset="ultrafast").compose(story, tmp_path)
    total = timeline_of(story).total
    rate = VideoComposer(fps=fps).fps
    assert total == pytest.approx(sum(durations))
    lengths = stream_seconds(mp4)
    frames = len(video_frames(mp4)[0])
    assert frames == round(Fraction(repr(total)) * rate) and abs(lengths["video"] - total) <= 0.5 / float(rate) + 1e-9
    mixed = mixdown(story)
    assert abs(mixed.frames / mixed.sample_rate - lengths["video"]) <= 1 / float(rate)
    assert json.loads(js.read_text())["duration"] == pytest.approx(lengths["video"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fps": 0}, "option fps=0: input should be greater than 0"),
        ({"fps": "24"}, "option fps='24': input should be a valid number"),
        ({"fps": 1000}, r"option fps=1000: input should be less than or equal to 240 \(frames per second"),
        ({"transition": -1}, "option transition=-1: input should be greater than or equal to 0"),
        ({"subtitles": "yes"}, "option subtitles='yes': input should be a valid boolean"),
        ({"burn_captions": 1}, "option burn_captions=1: input should be a valid boolean"),
        ({"captions": "ambience"}, "option captions='ambience': input should be 'caption' or 'narration'"),
        ({"track": "two words"}, "track name 'two words' is not usable as a folder name"),
        ({"track": 3}, "option track=3: input should be a valid string"),
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
        ({"filename": "out/story.mp4"}, r"filename must be a file name ending in .mp4 \(no folders\), got 'out/story.mp4'"),
        ({"filename": "story.avi"}, "option filename='story.avi'"),
        ({"font_size": 0}, "option font_size=0: input should be greater than or equal to 1"),
        ({"preset": "fast"}, "has no option 'preset'. Did you mean 'x264_preset'"),
        ({"crossfade": 0.5}, r"composer 'video': option 'crossfade' is no longer this component's: clips are placed "
                             r"on the story's timeline now .*remove crossfade"),
        ({"still_duration": 2}, r"option 'still_duration' is no longer this component's: a scene's length is the "
                                r"\[timing\] policy's now: Pipeline\(timing=.*\[timing\] seconds = 2 in a story file"),
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
    assert duration == pytest.approx(3.0, abs=1 / 24)  # three 1 s scenes, three 1 s clips at 8 kHz
    _, pixels, size = video_frames(mp4)
    assert size == (48, 32) and len(pixels) == 72
    assert [c[2] for c in subtitles(mp4)] == ["a red fox", "a blue bird", "a green frog"]
    samples, rate = audio_track(mp4)
    assert rate == 8000 and samples.shape[1] >= 24000
    info = json.loads((tmp_path / "video.json").read_text())
    assert info["track"] == "fake-image" and info["audio"]["tracks"] == ["fake-audio"]


# -- narration subtitles: one cue per sentence ----------------------------------------------------
class SentenceVoice(Generator):
    """A test voice: each sentence of its text a tone of ``per_character`` s per character, the
    sentences ``gap`` s apart, recorded in ``metadata["sentences"]`` as a speech generator does."""

    name = "sentence-voice"
    modality = "audio"

    def __init__(self, per_character: float = 0.0137, gap: float = 0.21, rate: int = SR) -> None:
        super().__init__()
        self.per_character, self.gap, self.rate = per_character, gap, rate

    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterator[AudioAsset]:
        for scene in scenes:
            parts, sentences, t = [], [], 0
            for k, text in enumerate(re.split(r"(?<=[.!?])\s+", scene.prompt.strip())):
                if k:
                    parts.append(np.zeros(int(round(self.gap * self.rate)), np.float32))
                    t += parts[-1].size
                parts.append(tone(len(text) * self.per_character, 0.4, self.rate)[0])
                sentences.append({"text": text, "start": t / self.rate, "end": (t + parts[-1].size) / self.rate})
                t += parts[-1].size
            yield AudioAsset(scene.index, np.concatenate(parts)[None], self.rate, made_by=self.name,
                             metadata={"sentences": sentences, "voice": "test"})


def sound_onsets(x: np.ndarray, rate: int, silence: float = 0.1) -> list[float]:
    """Seconds where the sound starts after at least ``silence`` s of zeros (or at the start)."""
    loud = np.nonzero(np.abs(x) > 1e-4)[0]
    starts = [loud[0]] + [b for a, b in zip(loud, loud[1:]) if b - a > silence * rate]
    return [(int(s) - 1) / rate for s in starts]  # a sine from 0: its first sample is silent


SCRIPT = "The fox wakes. It runs to the river!\nA bird sings.\nRain falls. The frog hides. Night comes?"


def test_narration_subtitles_start_with_each_sentence(tmp_path: Path) -> None:
    pipe = Pipeline(
        planner="fake-planner",
        tracks={"frames": {"generator": "fake-image"},
                "ambience": {"generator": "fake-audio"},
                "narration": {"generator": SentenceVoice(), "text": "{narration}", "duck": 10}},
        timing={"mode": "track", "track": "narration", "padding": 0.4},
        composers=[("video", {"captions": "narration"})],
        registry=make_registry(),
    )
    story = pipe.run(StoryRequest(script=SCRIPT, seed=2, width=32, height=32), out_dir=tmp_path)
    sentences = [s for line in SCRIPT.splitlines() for s in re.split(r"(?<=[.!?])\s+", line)]
    cues = subtitles(tmp_path / "story.mp4")
    assert [c[2] for c in cues] == sentences  # one cue per sentence, in order, instead of one per scene

    # where each sentence starts on the timeline: the clip's cue start + the sentence's start in the clip
    saved = json.loads((tmp_path / "timeline.json").read_text())["tracks"]["narration"]
    want = []
    for cue in saved:
        meta = story.track("narration").assets[cue["index"]].metadata["sentences"]
        for k, s in enumerate(meta):
            end = meta[k + 1]["start"] if k + 1 < len(meta) else s["end"]
            want.append((cue["start"] + s["start"], cue["start"] + end))
    for (start, end, _), (w0, w1) in zip(cues, want):
        assert abs(start / 1000 - w0) <= 0.001 and abs(end / 1000 - w1) <= 0.001
    # not rounded to video frames: some sentences start well between two frames at 24 fps
    assert max(abs(w0 * 24 - round(w0 * 24)) / 24 for w0, _ in want) > 0.01
    # and that is where the narration sounds in the story's mix (an independent check of the timing)
    mixed = mixdown(story)
    heard = sound_onsets(mixed.tracks["narration"][0], mixed.sample_rate)
    assert len(heard) == len(cues)
    assert [c[0] / 1000 for c in cues] == pytest.approx(heard, abs=0.001)

    info = json.loads((tmp_path / "video.json").read_text())
    assert info["narration_track"] == "narration" and info["subtitles"] is True
    assert [(c["start_ms"], c["end_ms"], c["text"]) for c in info["cues"]] == cues
    assert [c["sentence"] for c in info["cues"]] == [0, 1, 0, 0, 1, 2]
    assert [c["scene"] for c in info["cues"]] == [0, 0, 1, 2, 2, 2]
    assert [c["start"] for c in info["cues"]] == pytest.approx([w0 for w0, _ in want], abs=1e-6)


def narrated_story(size=(128, 96)) -> Story:
    """Two scenes by hand: scene 0's narration clip has two sentences, scene 1's clip has none."""
    scenes = [Scene(0, "p0", caption="cap 0", texts={"narration": "Hello there. Bye now."}),
              Scene(1, "p1", caption="cap 1", texts={"narration": "The end."})]
    story = Story(StoryPlan(scenes=scenes), mix=PLAIN)
    story.add(ImageAsset(0, Image.new("RGB", size, BLUE)))
    story.add(ImageAsset(1, Image.new("RGB", size, RED)))
    voice = SentenceVoice(per_character=0.05, gap=0.2)
    story.add(next(voice.generate([Scene(0, "Hello there. Bye now.")], None)))  # type: ignore[arg-type]
    story.add(AudioAsset(1, tone(0.5, 0.3), SR))
    return story


def test_burned_narration_follows_the_sentences(tmp_path: Path) -> None:
    story = narrated_story()
    meta = story.audio[0].metadata["sentences"]
    assert [t for s in meta for t in (s["start"], s["end"])] == pytest.approx([0, 0.6, 0.8, 1.2])  # 12, 8 characters
    mp4, js = VideoComposer(captions="narration", burn_captions=True).compose(story, tmp_path)
    # scene 1 has no sentences: its whole narration text over its frames (frame 29 to the end)
    assert subtitles(mp4) == [(0, 800, "Hello there."), (800, 1200, "Bye now."), (ms(29), ms(41), "The end.")]
    _, pixels, _ = video_frames(mp4)
    refs = {(pic, text): np.asarray(draw_caption(Image.new("RGB", (128, 96), pic), text), int)
            for pic in (BLUE, RED) for text in ("Hello there.", "Bye now.", "The end.")}
    shown = [min(refs, key=lambda k: float(np.abs(p.astype(int) - refs[k]).mean())) for p in pixels]
    want = [(BLUE, "Hello there.")] * frame_of(0.8) + [(BLUE, "Bye now.")] * (29 - frame_of(0.8))
    assert shown == want + [(RED, "The end.")] * (41 - 29)
    info = json.loads(js.read_text())
    assert info["narration_track"] == "audio" and [c["sentence"] for c in info["cues"]] == [0, 1, None]


def test_narration_track_option_picks_the_track_and_is_checked(tmp_path: Path) -> None:
    story = narrated_story(size=(32, 32))
    scenes = story.plan.scenes
    story.tracks = {
        "frames": image_track("frames", scenes, {0: BLUE, 1: RED}),
        "ambience": Track("ambience", "audio", [Cue.of_scene(s) for s in scenes],
                          {i: AudioAsset(i, tone(0.6, 0.1), SR) for i in (0, 1)}),
        "voice": Track("voice", "audio", [Cue.of_scene(scenes[0])], {0: story.audio[0]}),
        "other": Track("other", "audio", [Cue.of_scene(scenes[1])], {1: AudioAsset(1, tone(0.6, 0.2), SR, metadata={
            "sentences": [{"text": "One.", "start": 0.1, "end": 0.2}, {"text": "Two.", "start": 0.3, "end": 0.4}]})}),
    }
    t1 = timeline_of(story).scene(1).start  # the scenes last the first audio track's clips: 0.6 s each
    assert t1 == pytest.approx(0.6)
    first, _ = VideoComposer(captions="narration").compose(story, tmp_path / "a")  # the first track with sentences
    # voice's 1.2 s clip runs on into scene 1 (from frame 14): "Bye now." is heard at 0.8 s, after the start of
    # scene 1's cue; each cue ends where the next one starts
    assert subtitles(first) == [(0, ms(14), "Hello there."), (ms(14), 800, "The end."), (800, 1200, "Bye now.")]
    chosen, js = VideoComposer(captions="narration", narration_track="other").compose(story, tmp_path / "b")
    assert subtitles(chosen) == [(0, ms(frame_of(0.6)), "Hello there. Bye now."), (700, 900, "One."), (900, 1000, "Two.")]
    assert json.loads(js.read_text())["narration_track"] == "other"
    plain, js = VideoComposer(captions="narration", narration_track="ambience").compose(story, tmp_path / "c")
    assert [c[2] for c in subtitles(plain)] == ["Hello there. Bye now.", "The end."]  # no sentences: scene cues
    assert json.loads(js.read_text())["narration_track"] is None
    captions, _ = VideoComposer(narration_track="voice").compose(story, tmp_path / "d")  # captions: scene cues
    assert [c[2] for c in subtitles(captions)] == ["cap 0", "cap 1"]
    with pytest.raises(ConfigError, match=r"narration_track = 'voise': the story has no such track; its audio "
                                          r"tracks: ambience, voice, other\. Did you mean 'voice'\?"):
        VideoComposer(captions="narration", narration_track="voise").compose(story, tmp_path / "x")
    with pytest.raises(ConfigError, match="narration_track = 'frames' is an image track; choose an audio track: amb"):
        VideoComposer(captions="narration", narration_track="frames").compose(story, tmp_path / "x")
    story.tracks["other"].assets[1].metadata["sentences"] = [{"text": "One.", "start": 0.3}]
    with pytest.raises(ConfigError, match=r"track 'other', cue 1: malformed metadata\['sentences'\] \(KeyError: 'end'\); "
                                          "give each sentence its text and its start and end in seconds"):
        VideoComposer(captions="narration", narration_track="other").compose(story, tmp_path / "x")
    with pytest.raises(ConfigError, match="option narration_track=3: input should be a valid string"):
        VideoComposer(narration_track=3)
    for name, what in [("frames", "is an image track; audio tracks: voice"), ("nope", "is not one of the pipeline's")]:
        with pytest.raises(ConfigError, match=f"composer 'video': narration_track = '{name}' {what}"):
            Pipeline(planner="fake-planner", tracks={"frames": {"generator": "fake-image"},
                                                     "voice": {"generator": "fake-audio"}},
                     composers=[("video", {"narration_track": name})], registry=make_registry())
