"""The ``video`` composer: the story as one MP4, each picture on screen while its audio plays.

Timeline (every time is on the joined soundtrack, see :func:`~storysdk.builtins.soundtrack.join_clips`):

* The scenes that have a picture or a clip take part, in plan order (scenes with neither
  are left out). Scene *k*'s span starts where its clip starts on the joined track, and ends
  where the next scene's span starts; the last one ends with the audio. ``crossfade`` has
  the ``soundtrack`` composer's meaning (``None``: the clips' declared padding, else hard
  cuts), so with a crossfade a picture changes when the next clip starts fading in.
* A scene without audio lasts ``still_duration`` seconds (``None``: its planned
  ``Scene.duration``, else 3 s), with that much silence in the audio track, joined by hard
  cuts, so the scenes after it stay aligned. A story without any audio is a silent video of
  such stills (``audio="always"`` adds a silent AAC track, which some platforms require).
* A scene with audio but no picture keeps the previous picture on screen (black before the
  first picture). Its caption is still its own.
* Spans become video frames by rounding: the span starting at ``t`` seconds starts with
  frame ``round(t * fps)``, so each picture change is within half a frame of its audio
  boundary; the video has ``round(duration * fps)`` frames. A span shorter than half a frame
  can round to nothing: a clip that starts before the previous one (a crossfade longer than
  a short clip) gets an empty span.
* ``transition`` (seconds) dissolves between consecutive pictures, centred on the picture
  change: frame ``n`` near the change at frame ``F`` shows ``(1 - w) * old + w * new`` with
  ``w = (n - F) / (transition * fps) + 1/2`` clipped to [0, 1], so the frame at the change is
  an even mix. A dissolve never takes more than half of either neighbouring span (it is made
  shorter there); the first picture does not fade in and the last does not fade out.

Captions: with ``subtitles`` (default) the MP4 has a ``mov_text`` subtitle track with one cue
per span whose caption is not empty, shown over the span's frames (times in whole ms);
with ``burn_captions`` the caption is also drawn on the pictures as the comic composer draws
it (:func:`storysdk.captions.draw_caption`). No caption at all: no subtitle track.

Pictures are fitted to the frame size aspect kept, centred on black (letterbox); a picture
at most one pixel larger in each direction (an odd size rounded down to even) is cropped at
the right and bottom instead of being scaled. Encoding is :func:`storysdk.video_encode.write_mp4`.
Besides ``story.mp4`` the composer writes ``video.json``, the timeline it used.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar, Literal

import attrs
import numpy as np
from PIL import Image, ImageOps
from pydantic import ValidationInfo, field_validator, model_validator

from ..captions import draw_caption
from ..errors import ConfigError
from ..interfaces import Composer
from ..model import AudioAsset, Modality, Scene, Story
from ..options import Field, Options
from ..output import atomic_path
from ..video_encode import (
    AAC_SAMPLE_RATES,
    AudioSettings,
    Cue,
    VideoSettings,
    X264Preset,
    require_av,
    write_mp4,
)
from .fields import check_font_path, font_path_field, font_size_field, pair
from .frames import atomic_write_bytes
from .soundtrack import JoinedTrack, Silence, join_clips

__all__ = [
    "DEFAULT_STILL_DURATION",
    "Shot",
    "Timeline",
    "VideoComposer",
    "fit_picture",
    "frame_rate",
    "plan_timeline",
]

DEFAULT_STILL_DURATION = 3.0  # seconds a scene without audio (and without a planned duration) lasts
_AUDIO_MODES = ("auto", "always", "none")


@attrs.frozen
class Shot:
    """One scene's span: ``[start, end)`` seconds and video frames ``[first_frame, end_frame)``.

    ``picture`` is the scene whose image is shown (``None``: black), ``audio`` whether the
    scene had its own clip.
    """

    index: int
    picture: int | None
    caption: str
    audio: bool
    start: Fraction
    end: Fraction
    first_frame: int
    end_frame: int


@attrs.frozen(eq=False)
class Timeline:
    """The shots of a video, its frame count and rate, and its audio track (if any)."""

    shots: tuple[Shot, ...]
    frames: int
    fps: Fraction
    track: JoinedTrack | None


def _round_half_up(value: Fraction) -> int:
    return int((value * 2 + 1) // 2)


def _still(scene: Scene, still_duration: float | None) -> Fraction:
    seconds = still_duration if still_duration is not None else (scene.duration or DEFAULT_STILL_DURATION)
    return Fraction(repr(float(seconds)))  # the decimal the user wrote, exactly


def plan_timeline(
    story: Story,
    fps: Fraction,
    still_duration: float | None = None,
    crossfade: float | None = None,
    sample_rate: int | None = None,
    channels: int | None = None,
) -> Timeline | None:
    """The video timeline of ``story`` (see the module docstring); ``None`` without pictures.

    With audio, the track is :func:`join_clips` of the clips with a :class:`Silence` for
    each scene without one, at ``sample_rate``/``channels`` (``None``: the clips' highest).
    """
    if not story.images:
        return None
    scenes = [s for s in story.plan.scenes if s.index in story.images or s.index in story.audio]
    track: JoinedTrack | None = None
    if any(s.index in story.audio for s in scenes):
        items: list[AudioAsset | Silence] = [
            story.audio[s.index] if s.index in story.audio else Silence(float(_still(s, still_duration)))
            for s in scenes
        ]
        track = join_clips(items, crossfade, sample_rate, channels)
        starts = [Fraction(v, track.sample_rate) for v in track.starts]
        total = Fraction(track.frames, track.sample_rate)
    else:
        starts, total = [], Fraction(0)
        for s in scenes:
            starts.append(total)
            total += _still(s, still_duration)
    for k in range(1, len(starts)):  # a clip that starts before the previous one: an empty span
        starts[k] = max(starts[k], starts[k - 1])
    ends = starts[1:] + [max(total, starts[-1])]
    frames = max(1, _round_half_up(total * fps))
    shots: list[Shot] = []
    picture: int | None = None
    for s, start, end in zip(scenes, starts, ends):
        if s.index in story.images:
            picture = s.index
        first, last = (min(frames, _round_half_up(t * fps)) for t in (start, end))
        shots.append(Shot(s.index, picture, s.caption, s.index in story.audio, start, end, first, last))
    shots[-1] = attrs.evolve(shots[-1], end_frame=frames)
    return Timeline(tuple(shots), frames, fps, track)


def fit_picture(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``image`` as RGB of exactly ``size``: cropped at the right/bottom when at most 1 px
    larger each way, else scaled to fit (aspect kept, Lanczos) and centred on black."""
    image = image.convert("RGB") if image.mode != "RGB" else image
    width, height = size
    if image.size == size:
        return image
    if 0 <= image.width - width <= 1 and 0 <= image.height - height <= 1:
        return image.crop((0, 0, width, height))
    fitted = ImageOps.contain(image, size, Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", size, "black")
    canvas.paste(fitted, ((width - fitted.width) // 2, (height - fitted.height) // 2))
    return canvas


def _number(name: str, value: object, fix: str, low: float, high: float = math.inf, *, open_low: bool = False) -> float:
    """``value`` as a float in [low, high] (``open_low``: (low, high]), else a ConfigError saying ``fix``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (low < value if open_low else low <= value) or value > high:  # type: ignore[operator]
        raise ConfigError(f"{name} must be {fix}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def _even(name: str, value: int) -> int:
    if value % 2:
        raise ValueError(f"{name} must be even (H.264 in yuv420p needs even sizes), got {value}; use {value - 1}")
    return value


def frame_rate(fps: float) -> Fraction:
    """``fps`` as an exact rate: NTSC's 23.976/29.97/59.94 become 24000/1001, 30000/1001 and
    60000/1001; others the nearest fraction with a denominator up to 1001 (12.5 -> 25/2)."""
    rate = _number("fps", fps, "a number of frames per second above 0 and at most 240, e.g. 24", 0, 240, open_low=True)
    ntsc = round(rate * 1001 / 1000)
    if ntsc * 1000 % 1001 and abs(rate - ntsc * 1000 / 1001) < 5e-3:
        return Fraction(ntsc * 1000, 1001)
    return Fraction(repr(rate)).limit_denominator(1001)


class VideoComposer(Composer):
    """Writes the story as ``story.mp4`` (H.264 + AAC + mov_text subtitles) and ``video.json``.

    Options (declared in :class:`Options`; see the module docstring for the timeline):

    * ``fps`` frames per second (default 24; 29.97 is stored as 30000/1001).
    * ``still_duration`` seconds for scenes without audio (``None``: the scene's planned
      ``duration``, else 3).
    * ``transition`` seconds of picture dissolve centred on each change (0: cuts).
    * ``subtitles`` (default true): captions as a ``mov_text`` track; ``burn_captions``
      (default false): captions drawn on the pictures, with ``font_size``/``font_path``.
    * ``size`` ``[width, height]``, or ``width`` and/or ``height`` (the other follows the first
      picture's aspect); even numbers. Default: the first picture's size rounded down to even.
    * ``crf`` x264 quality (0-51, lower is better, default 18); ``x264_preset`` (default
      ``"medium"``; not ``preset``, which names model presets in storysdk); ``threads`` x264
      threads (default 4: a fixed count gives the same bytes on every machine; 0: x264 chooses).
    * ``audio``: ``"auto"`` (an AAC track when the story has audio), ``"always"`` (a silent
      track when it has none) or ``"none"`` (never; the timeline still follows the clips).
    * ``audio_bitrate`` bits/s (default 192000), ``sample_rate`` (``None``: the clips' highest
      when AAC supports it, else 48000), ``channels`` 1 or 2 (``None``: the clips' most),
      ``crossfade`` as the ``soundtrack`` composer's.
    * ``filename`` of the video (default ``"story.mp4"``).
    """

    name = "video"
    description = "an MP4: each picture for its clip's duration, captions as subtitles, the soundtrack"
    requires: ClassVar[tuple[Modality, ...]] = ("image",)

    class Options(Options):
        fps: float = Field(
            24.0, gt=0, le=240, allow_inf_nan=False,
            description="frames per second, e.g. 24 or 29.97 (stored exactly as 30000/1001)",
        )
        still_duration: float | None = Field(
            None, gt=0, allow_inf_nan=False,
            description="seconds on screen for a scene without audio; None: its planned duration, else 3",
        )
        transition: float = Field(
            0.0, ge=0, allow_inf_nan=False, description="seconds of dissolve centred on each picture change; 0: cuts"
        )
        subtitles: bool = Field(True, description="put the captions in a mov_text subtitle track")
        burn_captions: bool = Field(False, description="draw the captions on the pictures, as the comic composer does")
        font_size: int | None = font_size_field()
        font_path: str | None = font_path_field()
        size: tuple[int, int] | None = Field(
            None,
            description="[width, height] of the video in pixels, even numbers; None: width/height, else the "
            "first picture's size rounded down to even",
            json_schema_extra={"constraint": "two even whole numbers from 2 to 8192"},
        )
        width: int | None = Field(
            None, ge=2, le=8192,
            description="video width in pixels, even; the height follows the first picture's aspect unless given",
        )
        height: int | None = Field(
            None, ge=2, le=8192,
            description="video height in pixels, even; the width follows the first picture's aspect unless given",
        )
        crf: float = Field(18.0, ge=0, le=51, description="x264 quality: lower is better, 18 looks lossless")
        x264_preset: X264Preset = Field(
            "medium", description="x264 speed/size preset (named x264_preset: 'preset' names model presets)"
        )
        threads: int = Field(
            4, ge=0, le=64,
            description="x264 threads; a fixed count gives the same bytes on every machine; 0: x264 chooses",
        )
        audio: Literal["auto", "always", "none"] = Field(
            "auto",
            description="AAC track: auto (when the story has audio), always (silent when it has none) or none",
        )
        audio_bitrate: int = Field(192000, ge=8000, le=512000, description="AAC bit rate in bits/s")
        sample_rate: int | None = Field(
            None,
            description="AAC sample rate in Hz; None: the clips' highest when AAC can store it, else 48000",
            json_schema_extra={"constraint": "one of " + ", ".join(map(str, AAC_SAMPLE_RATES))},
        )
        channels: int | None = Field(
            None, ge=1, le=2, description="AAC channels, 1 (mono) or 2 (stereo); None: the clips' most"
        )
        crossfade: float | None = Field(
            None, ge=0, allow_inf_nan=False,
            description="seconds of crossfade between clips, as the soundtrack composer's; None: the clips' "
            "declared padding, else hard cuts",
        )
        filename: str = Field("story.mp4", description="file name of the video in the output folder, ending in .mp4")

        _pair = pair("size")
        _font = check_font_path()

        @field_validator("size")
        @classmethod
        def _size(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
            if value is not None:
                for label, v in zip(("width", "height"), value):
                    if not 2 <= v <= 8192:
                        raise ValueError(f"size: the {label} must be from 2 to 8192 pixels, got {v}")
                    _even(f"size: the {label}", v)
            return value

        @field_validator("width", "height")
        @classmethod
        def _even_side(cls, value: int | None, info: ValidationInfo) -> int | None:
            return None if value is None else _even(str(info.field_name), value)

        @field_validator("sample_rate")
        @classmethod
        def _aac_rate(cls, value: int | None) -> int | None:
            if value is not None and value not in AAC_SAMPLE_RATES:
                rates = ", ".join(map(str, AAC_SAMPLE_RATES))
                raise ValueError(f"AAC cannot store sample_rate {value}; use one of {rates}, or None")
            return value

        @field_validator("filename")
        @classmethod
        def _filename(cls, value: str) -> str:
            if Path(value).name != value or Path(value).suffix != ".mp4":
                raise ValueError(f"filename must be a file name ending in .mp4 (no folders), got {value!r}")
            return value

        @model_validator(mode="after")
        def _one_size(self) -> VideoComposer.Options:
            if self.size is not None and (self.width is not None or self.height is not None):
                raise ValueError("give either size = [width, height] or width/height, not both")
            return self

    options: Options

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        opts = self.options
        self._fps = frame_rate(opts.fps)
        self._width, self._height = opts.size if opts.size is not None else (opts.width, opts.height)

    @property
    def fps(self) -> Fraction:
        """The exact frame rate: ``options.fps`` as :func:`frame_rate` stores it (29.97 -> 30000/1001)."""
        return self._fps

    def compose(self, story: Story, out_dir: Path) -> list[Path]:
        require_av()
        images = story.ordered_images()
        if not images:
            return []
        clips = [a for _, a in story.ordered_audio()]
        rate = self.options.sample_rate
        if rate is None and clips:
            top = max(a.sample_rate for a in clips)
            rate = top if top in AAC_SAMPLE_RATES else 48000
        channels = self.options.channels
        if channels is None and clips:
            channels = max(a.channels for a in clips)
            if channels > 2:
                raise ConfigError(
                    f"the clips have {channels} channels but the video's AAC track is mono or stereo; "
                    "pass channels=1 or 2"
                )
        timeline = plan_timeline(story, self._fps, self.options.still_duration, self.options.crossfade, rate, channels)
        assert timeline is not None  # there are images
        size = self._size(images[0][1].image)

        samples: np.ndarray | None = None
        settings: AudioSettings | None = None
        if self.options.audio != "none" and timeline.track is not None:
            samples = timeline.track.samples
            settings = AudioSettings(timeline.track.sample_rate, timeline.track.channels, self.options.audio_bitrate)
        elif self.options.audio == "always":
            settings = AudioSettings(rate or 48000, channels or 2, self.options.audio_bitrate)
            length = int(timeline.frames * settings.sample_rate / self._fps)
            samples = np.zeros((settings.channels, length), np.float32)
        cues = self._cues(timeline)
        video = VideoSettings(size[0], size[1], self._fps, self.options.crf, self.options.x264_preset, self.options.threads)

        folder = Path(out_dir)
        path = folder / self.options.filename
        with atomic_path(path) as tmp:
            write_mp4(tmp, self._frames(story, timeline, size), video, samples, settings, cues)
        info = self._summary(timeline, size, settings, samples, bool(cues))
        text = json.dumps(info, indent=2, ensure_ascii=False) + "\n"
        return [path, atomic_write_bytes(folder / "video.json", text.encode("utf-8"))]

    # -- helpers -----------------------------------------------------------------------------
    def _size(self, first: Image.Image) -> tuple[int, int]:
        w, h = first.size
        if self._width is not None and self._height is not None:
            return self._width, self._height
        if self._width is not None:
            return self._width, max(2, round(self._width * h / w / 2) * 2)
        if self._height is not None:
            return max(2, round(self._height * w / h / 2) * 2), self._height
        if w < 2 or h < 2:
            raise ConfigError(f"the first picture is {w}x{h} px; a video needs 2x2 or more: pass size = [w, h]")
        return w - w % 2, h - h % 2

    def _cues(self, timeline: Timeline) -> list[Cue]:
        if not self.options.subtitles:
            return []

        def ms(frame: int) -> int:
            return _round_half_up(Fraction(frame) / timeline.fps * 1000)

        return [
            Cue(ms(s.first_frame), ms(s.end_frame), s.caption.strip())
            for s in timeline.shots
            if s.caption.strip() and s.end_frame > s.first_frame
        ]

    def _frames(self, story: Story, timeline: Timeline, size: tuple[int, int]) -> Iterator[np.ndarray]:
        cache: dict[tuple[int | None, str], np.ndarray] = {}

        def picture(shot: Shot) -> np.ndarray:
            key = (shot.picture, shot.caption if self.options.burn_captions else "")
            if key not in cache:
                if len(cache) > 8:  # shots come in order: older pictures are not needed again
                    cache.pop(next(iter(cache)))
                if shot.picture is None:
                    image = Image.new("RGB", size, "black")
                else:
                    image = fit_picture(story.images[shot.picture].image, size)
                if self.options.burn_captions:
                    image = draw_caption(image, shot.caption, self.options.font_size, self.options.font_path)
                cache[key] = np.asarray(image, dtype=np.uint8)
            return cache[key]

        shots = timeline.shots
        span = [s.end_frame - s.first_frame for s in shots]
        width = self.options.transition * float(timeline.fps)
        # half-width (frames) of the dissolve into shot k; at most half of either neighbour
        half = [0.0] + [min(width, span[k - 1], span[k]) / 2 for k in range(1, len(shots))]

        def mix(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
            out = a.astype(np.float32) * (1 - w) + b.astype(np.float32) * w
            return np.round(out).astype(np.uint8)

        for k, shot in enumerate(shots):
            here = picture(shot)
            for n in range(shot.first_frame, shot.end_frame):
                if k > 0 and n - shot.first_frame < half[k]:
                    yield mix(picture(shots[k - 1]), here, (n - shot.first_frame) / (2 * half[k]) + 0.5)
                elif k + 1 < len(shots) and shots[k + 1].first_frame - n < half[k + 1]:
                    nxt = shots[k + 1]
                    yield mix(here, picture(nxt), (n - nxt.first_frame) / (2 * half[k + 1]) + 0.5)
                else:
                    yield here

    def _summary(
        self,
        timeline: Timeline,
        size: tuple[int, int],
        settings: AudioSettings | None,
        samples: np.ndarray | None,
        subtitles: bool,
    ) -> dict[str, Any]:
        track = timeline.track
        return {
            "file": self.options.filename,
            "width": size[0],
            "height": size[1],
            "fps": float(timeline.fps),
            "fps_fraction": f"{timeline.fps.numerator}/{timeline.fps.denominator}",
            "frames": timeline.frames,
            "duration": float(timeline.frames / timeline.fps),
            "transition": self.options.transition,
            "subtitles": subtitles,
            "burn_captions": self.options.burn_captions,
            "audio": None
            if settings is None or samples is None
            else {
                "sample_rate": settings.sample_rate,
                "channels": settings.channels,
                "samples": int(samples.shape[1]),
                "duration": samples.shape[1] / settings.sample_rate,
                "crossfade": 0.0 if track is None else track.fade / track.sample_rate,
                "bitrate": settings.bitrate,
            },
            "scenes": [
                {
                    "index": s.index,
                    "start": float(s.start),
                    "end": float(s.end),
                    "start_frame": s.first_frame,
                    "end_frame": s.end_frame,
                    "audio": s.audio,
                    "picture": s.picture,
                    "caption": s.caption,
                }
                for s in timeline.shots
            ],
        }
