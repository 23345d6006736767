"""MP4 writing through PyAV (whose wheels carry FFmpeg): H.264 pictures, AAC audio and
``mov_text`` subtitles, interleaved in time order, with exact timestamps.

Used by the ``video`` composer; PyAV is imported inside the functions, so importing this
module is cheap and a missing PyAV is a :class:`~storysdk.errors.ConfigError` naming the
extra to install.

Choices, each made for reproducible files:

* Pictures are converted from RGB to yuv420p with the BT.709 matrix at limited ("tv")
  range, and the stream is tagged so (primaries, transfer and matrix BT.709), so players do
  not guess between BT.601 and BT.709.
* x264 runs with a fixed thread count: its output is identical for identical input and
  the same thread count, but differs between thread counts, so ``threads=0`` (x264 picks
  from the CPU count) gives files that depend on the machine.
* Audio frames carry their first sample's index as ``pts`` (time base ``1 / rate``); the
  AAC encoder's priming delay is recorded by FFmpeg's MP4 muxer in an edit list, so
  decoders drop it and the first decoded sample is sample 0 of the track.
* A ``mov_text`` sample is a 16-bit big-endian byte length followed by the UTF-8 text
  (3GPP TS 26.245 §5.17); cues are muxed as such packets with ``pts``/``duration`` in
  milliseconds. The stream's sample description (its extradata) comes from FFmpeg's
  ``mov_text`` encoder, opened with a minimal ASS header.
* ``movflags=+faststart`` moves the index to the front, so a browser can start playing
  before the whole file has arrived.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, get_args

import attrs
import numpy as np

from .errors import ConfigError

__all__ = [
    "AAC_SAMPLE_RATES",
    "X264_PRESETS",
    "X264Preset",
    "AudioSettings",
    "Cue",
    "VideoSettings",
    "mov_text_payload",
    "require_av",
    "write_mp4",
]

#: Sample rates FFmpeg's AAC encoder accepts (the MPEG-4 sampling frequency table).
AAC_SAMPLE_RATES: tuple[int, ...] = (
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
)  # fmt: skip
#: x264's speed/size presets, fastest first (as a type, for declared options).
X264Preset = Literal[
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo",
]  # fmt: skip
#: x264's speed/size presets, fastest first.
X264_PRESETS: tuple[str, ...] = get_args(X264Preset)

_AAC_FRAME = 1024  # samples per AAC frame
_BT709 = 1  # AVCOL_PRI_BT709 == AVCOL_TRC_BT709 == AVCOL_SPC_BT709
_TV_RANGE = 1  # AVCOL_RANGE_MPEG
_MOV_TEXT_MAX = 0xFFFF  # a mov_text sample's text length is a 16-bit field
_LAYOUTS = {1: "mono", 2: "stereo"}


def require_av() -> ModuleType:
    """Import PyAV, or raise a :class:`ConfigError` saying how to install it."""
    try:
        import av
    except ImportError as exc:  # pragma: no cover - exercised only without PyAV
        raise ConfigError(
            'the video composer needs PyAV (FFmpeg for Python); install it with pip install "storysdk[video]"'
        ) from exc
    return av


@attrs.frozen
class VideoSettings:
    """H.264 settings: frame size (even numbers), frame rate, x264 ``crf``/``preset``/threads."""

    width: int
    height: int
    fps: Fraction
    crf: float = 18.0
    preset: str = "medium"
    threads: int = 4


@attrs.frozen
class AudioSettings:
    """AAC settings: the track's rate and channel count (1 or 2), and bitrate in bits/s."""

    sample_rate: int
    channels: int
    bitrate: int = 192000


@attrs.frozen
class Cue:
    """One subtitle: ``text`` shown from ``start_ms`` to ``end_ms`` (milliseconds)."""

    start_ms: int
    end_ms: int
    text: str


def mov_text_payload(text: str) -> bytes:
    """A ``mov_text`` sample: 16-bit big-endian byte length, then the UTF-8 text.

    Text longer than the 65,535 bytes the length field holds is cut at the last whole
    character that fits.
    """
    data = text.encode("utf-8")
    if len(data) > _MOV_TEXT_MAX:
        data = data[:_MOV_TEXT_MAX].decode("utf-8", errors="ignore").encode("utf-8")
    return len(data).to_bytes(2, "big") + data


def _ass_header(width: int, height: int) -> bytes:
    """A minimal ASS header; FFmpeg's mov_text encoder turns its default style into the
    track's sample description (white text, bottom centre)."""
    size = max(12, height // 18)
    return (
        "[Script Info]\nScriptType: v4.00+\n"
        f"PlayResX: {width}\nPlayResY: {height}\n\n"
        "[V4+ Styles]\n"
        "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, "
        "Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, "
        "Alignment, MarginL, MarginR, MarginV, Encoding\n"
        f"Style: Default,Sans,{size},&H00FFFFFF,&H00FFFFFF,&H00000000,&H00000000,"
        "0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,0\n\n"
        "[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
    ).encode("utf-8")


class _Muxer:
    """Per-file state of :func:`write_mp4`: the container, its streams and the next audio/cue."""

    def __init__(
        self,
        av: ModuleType,
        container: Any,
        video: VideoSettings,
        audio: np.ndarray | None,
        audio_settings: AudioSettings | None,
        cues: Sequence[Cue],
    ) -> None:
        self.av = av
        self.container = container
        self.video = video
        vs = container.add_stream("libx264", rate=video.fps)
        vs.width, vs.height, vs.pix_fmt = video.width, video.height, "yuv420p"
        vs.time_base = 1 / video.fps
        cc = vs.codec_context
        cc.options = {"crf": f"{video.crf:g}", "preset": video.preset}
        cc.thread_count = video.threads
        cc.color_primaries = cc.color_trc = cc.colorspace = _BT709
        cc.color_range = _TV_RANGE
        self.vstream = vs

        self.audio = audio
        self.astream: Any = None
        self.audio_pos = 0
        self.rate = 1
        self.layout = "mono"
        if audio is not None and audio_settings is not None:
            st = container.add_stream("aac", rate=audio_settings.sample_rate)
            st.layout = _LAYOUTS[audio_settings.channels]
            st.bit_rate = audio_settings.bitrate
            st.time_base = Fraction(1, audio_settings.sample_rate)
            self.astream = st
            self.rate = audio_settings.sample_rate
            self.layout = _LAYOUTS[audio_settings.channels]

        self.cues = list(cues)
        self.next_cue = 0
        self.sstream: Any = None
        if self.cues:
            ss = container.add_stream("mov_text")
            ss.codec_context.subtitle_header = _ass_header(video.width, video.height)
            ss.time_base = Fraction(1, 1000)
            self.sstream = ss

    def video_frame(self, rgb: np.ndarray, index: int) -> Any:
        frame = self.av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
            format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG"
        )
        frame.pts = index
        return frame

    def encode_video(self, frame: Any | None) -> None:
        for packet in self.vstream.encode(frame):
            self.container.mux(packet)

    def audio_until(self, seconds: Fraction | None) -> None:
        """Encode audio frames that start before ``seconds`` (``None``: all that are left)."""
        if self.astream is None or self.audio is None:
            return
        total = self.audio.shape[1]
        stop = total if seconds is None else min(total, int(seconds * self.rate))
        while self.audio_pos < stop:
            chunk = np.ascontiguousarray(self.audio[:, self.audio_pos : self.audio_pos + _AAC_FRAME])
            frame = self.av.AudioFrame.from_ndarray(chunk, format="fltp", layout=self.layout)
            frame.sample_rate = self.rate
            frame.pts = self.audio_pos
            frame.time_base = Fraction(1, self.rate)
            for packet in self.astream.encode(frame):
                self.container.mux(packet)
            self.audio_pos += chunk.shape[1]
        if seconds is None:
            for packet in self.astream.encode(None):
                self.container.mux(packet)

    def cues_until(self, seconds: Fraction | None) -> None:
        """Mux the subtitle cues that start before ``seconds`` (``None``: all that are left)."""
        while self.next_cue < len(self.cues) and (
            seconds is None or Fraction(self.cues[self.next_cue].start_ms, 1000) < seconds
        ):
            cue = self.cues[self.next_cue]
            packet = self.av.Packet(mov_text_payload(cue.text))
            packet.stream = self.sstream
            packet.time_base = Fraction(1, 1000)
            packet.pts = packet.dts = cue.start_ms
            packet.duration = cue.end_ms - cue.start_ms
            self.container.mux(packet)
            self.next_cue += 1


def write_mp4(
    path: Path,
    frames: Iterable[np.ndarray],
    video: VideoSettings,
    audio: np.ndarray | None = None,
    audio_settings: AudioSettings | None = None,
    cues: Sequence[Cue] = (),
) -> int:
    """Write an MP4 to ``path``; returns the number of video frames written.

    ``frames`` yields RGB uint8 arrays shaped (height, width, 3), one per video frame (frame
    ``n`` is shown from ``n / fps``); yielding the *same array object* again reuses its
    converted picture. ``audio`` is float32 (channels, samples) at
    ``audio_settings.sample_rate``, ``cues`` the subtitles in time order (no subtitle
    stream when empty). Packets of the three streams are muxed in time order.
    """
    av = require_av()
    if audio is not None and audio_settings is None:
        raise ConfigError("write_mp4 got audio without audio_settings; pass AudioSettings(sample_rate, channels)")
    if audio_settings is not None and audio_settings.channels not in _LAYOUTS:
        raise ConfigError(f"AAC audio here is mono or stereo, got {audio_settings.channels} channels")
    count = 0
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        mux = _Muxer(av, container, video, audio, audio_settings, cues)
        last_rgb: np.ndarray | None = None
        last_frame: Any = None
        for rgb in frames:
            if rgb is not last_rgb:
                last_rgb, last_frame = rgb, mux.video_frame(rgb, count)
            last_frame.pts = count  # the encoder keeps its own reference to each frame it gets
            horizon = Fraction(count + 1) / video.fps
            mux.audio_until(horizon)
            mux.cues_until(horizon)
            mux.encode_video(last_frame)
            count += 1
        if count == 0:
            raise ConfigError("write_mp4 got no video frames; a video needs at least one picture")
        mux.encode_video(None)
        mux.audio_until(None)
        mux.cues_until(None)
    return count
