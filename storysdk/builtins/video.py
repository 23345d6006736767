"""The ``video`` composer: the story as one MP4 on the story's timeline, with the story's mix.

Timeline. The scenes' spans are the story's timeline, :func:`storysdk.timeline.timeline_of`
(the pipeline's ``timeline.json``; for a story assembled by hand one derived from it, each
scene as long as its clip on the first audio track, else its planned ``Scene.duration``,
else ``Timing.seconds``, 3 s). Every scene of the timeline takes part, in its order, and the
video lasts the timeline's total. How long a scene lasts is the pipeline's ``[timing]``
policy (:class:`storysdk.timeline.Timing`), not this composer's.

* Pictures come from one image track, ``track`` (``None``: the story's first image track).
  Each scene shows its picture on that track (the first, when a track planner gave the scene
  several); a scene without one keeps the previous picture on screen (black before the first
  picture). Its caption is still its own.
* Spans become video frames by rounding: the span starting at ``t`` seconds starts with
  frame ``round(t * fps)``, so each picture change is within half a frame of its scene
  boundary; the video has ``round(total * fps)`` frames (at least one). A span shorter than
  half a frame can round to nothing.
* ``transition`` (seconds) dissolves between consecutive scenes, centred on the scene
  boundary: frame ``n`` near the change at frame ``F`` shows ``(1 - w) * old + w * new`` with
  ``w = (n - F) / (transition * fps) + 1/2`` clipped to [0, 1], so the frame at the change is
  an even mix. A dissolve never takes more than half of either neighbouring span (it is made
  shorter there); the first picture does not fade in and the last does not fade out.

Audio: the story's mix, :func:`storysdk.mixing.mixdown` (every audio track placed on the same
timeline, with its gain and ducking, at the mix's loudness: the samples the ``soundtrack``
composer writes), encoded as AAC. ``sample_rate``/``channels`` (``None``: the mix's, with
48000 Hz when AAC cannot store the mix's rate) mix the story again at that rate or channel
count (``[mix]`` otherwise unchanged). A story without audio is a silent video of its timeline
(``audio="always"`` adds a silent AAC track, which some platforms require).

Captions: with ``subtitles`` (default) the MP4 has a ``mov_text`` subtitle track with one cue
per span whose text is not empty, shown over the span's frames (times in whole ms); the text is
the scene's caption (``captions="caption"``) or the text its narration speaks
(``captions="narration"``: ``Scene.narration``). With ``burn_captions`` that text is also drawn
on the pictures as the comic composer draws it (:func:`storysdk.captions.draw_caption`). No
text at all: no subtitle track.

Narration subtitles. With ``captions="narration"`` and a narration track whose clips carry
``metadata["sentences"]`` (``[{"text", "start", "end"}]``, seconds within the clip, in order:
what a speech generator such as ``piper`` records), a scene whose clip has sentences gets one
cue per sentence instead of one for the scene: it starts at the clip's cue start on the
timeline plus the sentence's ``start`` (in whole ms, not rounded to frames) and lasts until
the next sentence of the clip starts (the last one: until its ``end``). A cue never runs past
the next cue's start or the video's end. Scenes without sentences keep their scene cue. The
track is ``narration_track`` (``None``: the first audio track whose clips carry sentences).
Burned-in captions then follow the same cues: a frame shows the text of the cue it falls in.

Pictures are fitted to the frame size aspect kept, centred on black (letterbox); a picture
at most one pixel larger in each direction (an odd size rounded down to even) is cropped at
the right and bottom instead of being scaled. Encoding is :func:`storysdk.video_encode.write_mp4`.
Besides ``story.mp4`` the composer writes ``video.json``: the timeline it used (each scene's
span, frame range, the picture it shows), the picture track and the audio track.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
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
from ..mixing import Mix, Mixdown, mixdown
from ..model import AudioAsset, ImageAsset, Modality, Story, Track
from ..options import Field, Options, suggest
from ..output import atomic_path
from ..timeline import Timeline, timeline_of
from ..tracks import check_track_name
from ..video_encode import AAC_SAMPLE_RATES, AudioSettings, VideoSettings, X264Preset, require_av, write_mp4
from ..video_encode import Cue as Subtitle
from .fields import check_font_path, font_path_field, font_size_field, pair
from .frames import atomic_write_bytes

__all__ = ["Caption", "Shot", "VideoComposer", "VideoPlan", "fit_picture", "frame_rate", "narration_of", "plan_video"]

_MOVED_CROSSFADE = (
    "clips are placed on the story's timeline now and the video's audio is the story's mix (storysdk.mixing), "
    "where clips that declare crossfade padding (AudioStory's) are joined as AudioStory joins them; remove crossfade"
)
_MOVED_STILL = (
    "a scene's length is the [timing] policy's now: Pipeline(timing={'mode': 'fixed', 'seconds': 2}), or "
    "[timing] seconds = 2 in a story file (a story made by hand: Scene.duration); remove still_duration"
)


@attrs.frozen
class Shot:
    """One scene's span on the timeline: ``[start, end)`` seconds, video frames ``[first_frame, end_frame)``.

    ``picture`` is the scene whose picture is shown (``None``: black), ``text`` the scene's
    caption or narration (the ``captions`` option).
    """

    index: int
    picture: int | None
    text: str
    start: Fraction
    end: Fraction
    first_frame: int
    end_frame: int


@attrs.frozen
class Caption:
    """One subtitle cue: ``text`` shown from ``start`` to ``end`` seconds, video frames
    ``[first_frame, end_frame)``; ``scene`` is its scene, ``sentence`` the sentence's index in
    that scene's narration clip (``None``: the scene's whole text over its span)."""

    scene: int
    text: str
    start: Fraction
    end: Fraction
    first_frame: int
    end_frame: int
    sentence: int | None = None


@attrs.frozen(eq=False)
class VideoPlan:
    """The shots of a video, its frame count and rate, the picture track and the timeline they follow.

    ``pictures`` maps a scene index to the picture shown from that scene on. ``captions`` are the
    subtitle cues in time order; ``narration`` names the audio track whose sentences timed them
    (``None``: one cue per scene).
    """

    shots: tuple[Shot, ...]
    frames: int
    fps: Fraction
    track: str
    pictures: Mapping[int, ImageAsset]
    timeline: Timeline
    captions: tuple[Caption, ...] = ()
    narration: str | None = None

    @property
    def total(self) -> Fraction:
        """The timeline's length in seconds (the video's, within half a frame)."""
        return _exact(self.timeline.total)


def _round_half_up(value: Fraction) -> int:
    return int((value * 2 + 1) // 2)


def _ms(seconds: Fraction) -> int:
    return _round_half_up(seconds * 1000)


def _exact(seconds: float) -> Fraction:
    return Fraction(repr(round(float(seconds), 6)))  # the decimal timeline.json records, exactly


def _sentences(track: Track, cue: int, asset: AudioAsset) -> list[tuple[str, Fraction, Fraction]]:
    """The clip's ``metadata["sentences"]`` as (text, start, end) seconds within the clip; a
    malformed list is a ConfigError naming the track and cue."""
    given = asset.metadata.get("sentences")
    if given is None:
        return []
    out: list[tuple[str, Fraction, Fraction]] = []
    try:
        if isinstance(given, (str, bytes)) or not isinstance(given, Sequence):
            raise TypeError(f"a list of sentences, got {type(given).__name__}")
        for item in given:
            text, start, end = item["text"], item["start"], item["end"]
            if not isinstance(text, str):
                raise TypeError(f"text must be a string, got {type(text).__name__}")
            times = []
            for t in (start, end):
                if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
                    raise ValueError(f"{t!r} is not a number of seconds >= 0")
                times.append(_exact(t))
            if times[1] < times[0] or (out and times[0] < out[-1][1]):
                raise ValueError(f"sentence {len(out)} ({start!r} to {end!r} s) ends before it starts or starts "
                                 "before the previous one ends")
            out.append((text, times[0], times[1]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"track {track.name!r}, cue {cue}: malformed metadata['sentences'] ({type(exc).__name__}: {exc}); "
            "give each sentence its text and its start and end in seconds within the clip, in order "
            "([{'text': ..., 'start': ..., 'end': ...}]), or leave metadata['sentences'] out"
        ) from exc
    return out


def _has_sentences(track: Track) -> bool:
    return any(isinstance(a, AudioAsset) and a.metadata.get("sentences") for a in track.assets.values())


def narration_of(story: Story, name: str | None = None) -> Track | None:
    """The narration track: the audio track ``name`` (a name the story lacks, or an image track,
    is a :class:`ConfigError` listing its audio tracks), else the first audio track whose clips
    carry ``metadata["sentences"]`` (``None`` when there is none)."""
    if name is None:
        return next((t for t in story.audio_tracks() if _has_sentences(t)), None)
    tracks = story.all_tracks()
    audio = ", ".join(t.name for t in story.audio_tracks()) or "(none)"
    if name not in tracks:
        raise ConfigError(f"narration_track = {name!r}: the story has no such track; its audio tracks: {audio}."
                          f"{suggest(name, [t.name for t in story.audio_tracks()])}")
    if tracks[name].modality != "audio":
        raise ConfigError(f"narration_track = {name!r} is an {tracks[name].modality} track; choose an audio track: {audio}")
    return tracks[name]


def _captions(story: Story, shots: Sequence[Shot], timeline: Timeline, fps: Fraction, frames: int,
              narration: Track | None) -> tuple[Caption, ...]:
    """The subtitle cues: each shot's text over its frames, or a narrated scene's sentences."""
    total = Fraction(frames) / fps  # the video's end
    starts = {c.index: c.start for c in timeline.tracks.get(narration.name, [])} if narration is not None else {}
    raw: list[tuple[int, str, Fraction, Fraction, int | None, bool]] = []
    for shot in shots:
        spoken: list[tuple[int, str, Fraction, Fraction, int | None, bool]] = []
        if narration is not None:
            for cue, asset in narration.of_scene(shot.index):
                if not isinstance(asset, AudioAsset):
                    continue
                at = _exact(starts.get(cue.index, cue.start))
                sentences = _sentences(narration, cue.index, asset)
                for k, (text, start, end) in enumerate(sentences):
                    until = sentences[k + 1][1] if k + 1 < len(sentences) else end
                    spoken.append((shot.index, text.strip(), at + start, at + until, k, False))
        if spoken:
            raw += spoken
        else:
            start, end = Fraction(shot.first_frame) / fps, Fraction(shot.end_frame) / fps
            raw.append((shot.index, shot.text.strip(), start, end, None, True))
    raw.sort(key=lambda c: c[2])
    out: list[Caption] = []
    for k, (scene, text, start, end, sentence, framed) in enumerate(raw):
        first, last = (min(frames, _round_half_up(t * fps)) for t in (start, end))
        end = min(end, total, *(c[2] for c in raw[k + 1 : k + 2]))  # never past the next cue nor the video's end
        if not framed:
            last = min(frames, _round_half_up(end * fps))
        if text and (_ms(end) > _ms(start) if not framed else last > first):
            out.append(Caption(scene, text, start, end, first, last, sentence))
    return tuple(out)


def plan_video(
    story: Story,
    fps: Fraction,
    track: str | None = None,
    captions: Literal["caption", "narration"] = "caption",
    narration_track: str | None = None,
) -> VideoPlan | None:
    """The video of ``story`` on its timeline (see the module docstring); ``None`` without pictures.

    ``track`` is the image track shown (``None``: the first one; a name the story does not
    have, or an audio track, is a :class:`ConfigError` listing its image tracks). With
    ``captions="narration"`` the subtitle cues follow the sentences of ``narration_track``
    (:func:`narration_of`).
    """
    images = story.image_track(track)
    if images is None or not any(isinstance(a, ImageAsset) for a in images.assets.values()):
        return None
    timeline = timeline_of(story)
    frames = max(1, _round_half_up(_exact(timeline.total) * fps))
    pictures: dict[int, ImageAsset] = {}
    shots: list[Shot] = []
    picture: int | None = None
    for k, span in enumerate(timeline.scenes):
        own = [a for _, a in images.of_scene(span.index) if isinstance(a, ImageAsset)]
        if own:
            picture = span.index
            pictures[span.index] = own[0]
        scene = story.plan.scene(span.index)
        text = scene.caption if captions == "caption" else scene.narration
        start = _exact(span.start)
        end = _exact(timeline.scenes[k + 1].start) if k + 1 < len(timeline.scenes) else max(_exact(timeline.total), start)
        first, last = (min(frames, _round_half_up(t * fps)) for t in (start, end))
        shots.append(Shot(span.index, picture, text, start, end, first, last))
    if not shots:
        return None
    shots[-1] = attrs.evolve(shots[-1], end_frame=frames)
    narration = narration_of(story, narration_track) if captions == "narration" else None
    cues = _captions(story, shots, timeline, fps, frames, narration)
    timed = narration if any(c.sentence is not None for c in cues) else None
    return VideoPlan(tuple(shots), frames, fps, images.name, pictures, timeline, cues,
                     None if timed is None else timed.name)


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


def _has_audio(story: Story) -> bool:
    return any(isinstance(a, AudioAsset) for t in story.audio_tracks() for a in t.assets.values())


class VideoComposer(Composer):
    """Writes the story as ``story.mp4`` (H.264 + AAC + mov_text subtitles) and ``video.json``.

    Options (declared in :class:`Options`; see the module docstring for the timeline):

    * ``track``: the image track whose pictures are shown (``None``: the first image track).
    * ``fps`` frames per second (default 24; 29.97 is stored as 30000/1001).
    * ``transition`` seconds of picture dissolve centred on each scene boundary (0: cuts).
    * ``subtitles`` (default true): the scenes' texts as a ``mov_text`` track; ``burn_captions``
      (default false): drawn on the pictures, with ``font_size``/``font_path``; ``captions``:
      which text, ``"caption"`` (default) or ``"narration"`` (one cue per sentence where the
      narration track's clips carry ``metadata["sentences"]``); ``narration_track``: that track
      (``None``: the first audio track whose clips carry sentences).
    * ``size`` ``[width, height]``, or ``width`` and/or ``height`` (the other follows the first
      picture's aspect); even numbers. Default: the first picture's size rounded down to even.
    * ``crf`` x264 quality (0-51, lower is better, default 18); ``x264_preset`` (default
      ``"medium"``; not ``preset``, which names model presets in storysdk); ``threads`` x264
      threads (default 4: a fixed count gives the same bytes on every machine; 0: x264 chooses).
    * ``audio``: ``"auto"`` (the story's mix as an AAC track when the story has audio),
      ``"always"`` (a silent track when it has none) or ``"none"`` (never).
    * ``audio_bitrate`` bits/s (default 192000), ``sample_rate`` (``None``: the mix's when AAC
      can store it, else 48000), ``channels`` 1 or 2 (``None``: the mix's).
    * ``filename`` of the video (default ``"story.mp4"``).

    ``crossfade`` and ``still_duration`` are gone: the story's timeline and mix decide both.
    """

    name = "video"
    description = "an MP4 of the story's timeline: each scene's picture, its caption as subtitles, the story's mix"
    requires: ClassVar[tuple[Modality, ...]] = ("image",)
    track_options: ClassVar[dict[str, Modality]] = {"track": "image", "narration_track": "audio"}

    class Options(Options):
        track: str | None = Field(
            None, description="the image track whose pictures are shown; None: the story's first image track"
        )
        narration_track: str | None = Field(
            None,
            description="with captions = narration: the audio track whose clips' sentences time the subtitles "
            "(one cue per sentence); None: the first audio track whose clips carry sentences",
        )
        fps: float = Field(
            24.0, gt=0, le=240, allow_inf_nan=False,
            description="frames per second, e.g. 24 or 29.97 (stored exactly as 30000/1001)",
        )
        transition: float = Field(
            0.0, ge=0, allow_inf_nan=False, description="seconds of dissolve centred on each scene boundary; 0: cuts"
        )
        subtitles: bool = Field(True, description="put the scenes' texts in a mov_text subtitle track")
        burn_captions: bool = Field(False, description="draw the scenes' texts on the pictures, as the comic composer does")
        captions: Literal["caption", "narration"] = Field(
            "caption", description="the text of each scene's subtitle: its caption, or the text its narration speaks"
        )
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
            description="AAC track: auto (the story's mix, when it has audio), always (silent when it has none) or none",
        )
        audio_bitrate: int = Field(192000, ge=8000, le=512000, description="AAC bit rate in bits/s")
        sample_rate: int | None = Field(
            None,
            description="AAC sample rate in Hz (the story is mixed at it); None: the mix's when AAC can store it, "
            "else 48000",
            json_schema_extra={"constraint": "one of " + ", ".join(map(str, AAC_SAMPLE_RATES))},
        )
        channels: int | None = Field(
            None, ge=1, le=2, description="AAC channels, 1 (mono) or 2 (stereo), the story mixed to them; None: the mix's"
        )
        filename: str = Field("story.mp4", description="file name of the video in the output folder, ending in .mp4")

        moved: ClassVar[dict[str, str]] = {"crossfade": _MOVED_CROSSFADE, "still_duration": _MOVED_STILL}

        _pair = pair("size")
        _font = check_font_path()

        @field_validator("track", "narration_track")
        @classmethod
        def _track(cls, value: str | None) -> str | None:
            return None if value is None else check_track_name(value)

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
        opts = self.options
        plan = plan_video(story, self._fps, opts.track, opts.captions, opts.narration_track)
        if plan is None:
            return []
        size = self._size(next(iter(plan.pictures.values())).image)  # the first picture on the timeline

        mixed: Mixdown | None = None
        settings: AudioSettings | None = None
        samples: np.ndarray | None = None
        if opts.audio != "none" and _has_audio(story):
            mixed = self._mix(story)
            samples = mixed.samples
            settings = AudioSettings(mixed.sample_rate, mixed.channels, opts.audio_bitrate)
        elif opts.audio == "always":
            settings = self._silent_settings(story)
            samples = np.zeros((settings.channels, int(round(plan.total * settings.sample_rate))), np.float32)
        cues = self._cues(plan)
        video = VideoSettings(size[0], size[1], self._fps, opts.crf, opts.x264_preset, opts.threads)

        folder = Path(out_dir)
        path = folder / opts.filename
        with atomic_path(path) as tmp:
            write_mp4(tmp, self._frames(plan, size), video, samples, settings, cues)
        info = self._summary(plan, size, settings, samples, mixed, bool(cues))
        text = json.dumps(info, indent=2, ensure_ascii=False) + "\n"
        return [path, atomic_write_bytes(folder / "video.json", text.encode("utf-8"))]

    # -- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _base_mix(story: Story) -> Mix:
        mix = story.mix
        if mix is None:
            return Mix()
        return mix if isinstance(mix, Mix) else Mix(**dict(mix))

    def _mix(self, story: Story) -> Mixdown:
        """The story's mix, mixed again at ``sample_rate``/``channels`` when the AAC track needs them."""
        opts = self.options
        base = self._base_mix(story)
        want = {"sample_rate": opts.sample_rate, "channels": opts.channels}
        if opts.sample_rate is None and base.sample_rate is not None and base.sample_rate not in AAC_SAMPLE_RATES:
            want["sample_rate"] = 48000
        mixed = mixdown(story, self._with(base, want))
        if opts.sample_rate is None and mixed.sample_rate not in AAC_SAMPLE_RATES:
            want["sample_rate"] = 48000
            mixed = mixdown(story, self._with(base, want))
        if mixed.channels > 2:
            raise ConfigError(
                f"the story's mix has {mixed.channels} channels but the video's AAC track is mono or stereo; "
                "pass channels=1 or 2 (the video then mixes the story to that)"
            )
        return mixed

    @staticmethod
    def _with(base: Mix, values: Mapping[str, int | None]) -> Mix:
        given = {k: v for k, v in values.items() if v is not None}
        return Mix(**{**base.model_dump(), **given}) if given else base

    def _silent_settings(self, story: Story) -> AudioSettings:
        base = self._base_mix(story)
        rate = self.options.sample_rate or base.sample_rate
        rate = rate if rate in AAC_SAMPLE_RATES else 48000
        channels = self.options.channels or (base.channels if base.channels in (1, 2) else 2)
        return AudioSettings(int(rate), int(channels), self.options.audio_bitrate)

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

    def _cues(self, plan: VideoPlan) -> list[Subtitle]:
        if not self.options.subtitles:
            return []

        cues = [Subtitle(_ms(c.start), _ms(c.end), c.text) for c in plan.captions]
        return [c for c in cues if c.end_ms > c.start_ms]

    def _frames(self, plan: VideoPlan, size: tuple[int, int]) -> Iterator[np.ndarray]:
        if not (self.options.burn_captions and plan.narration is not None):
            yield from self._pictures(plan, size, self.options.burn_captions)
            return
        # narration sentences: each frame shows the text of the cue it falls in, drawn over the pictures
        texts = [""] * plan.frames
        for c in plan.captions:
            texts[c.first_frame : c.end_frame] = [c.text] * (c.end_frame - c.first_frame)
        last: tuple[np.ndarray, str, np.ndarray] | None = None
        for n, frame in enumerate(self._pictures(plan, size, False)):
            if not texts[n]:
                yield frame
                continue
            if last is None or last[0] is not frame or last[1] != texts[n]:
                image = draw_caption(Image.fromarray(frame), texts[n], self.options.font_size, self.options.font_path)
                last = (frame, texts[n], np.asarray(image, dtype=np.uint8))
            yield last[2]

    def _pictures(self, plan: VideoPlan, size: tuple[int, int], burn: bool) -> Iterator[np.ndarray]:
        cache: dict[tuple[int | None, str], np.ndarray] = {}

        def picture(shot: Shot) -> np.ndarray:
            key = (shot.picture, shot.text if burn else "")
            if key not in cache:
                if len(cache) > 8:  # shots come in order: older pictures are not needed again
                    cache.pop(next(iter(cache)))
                if shot.picture is None:
                    image = Image.new("RGB", size, "black")
                else:
                    image = fit_picture(plan.pictures[shot.picture].image, size)
                if burn:
                    image = draw_caption(image, shot.text, self.options.font_size, self.options.font_path)
                cache[key] = np.asarray(image, dtype=np.uint8)
            return cache[key]

        shots = plan.shots
        span = [s.end_frame - s.first_frame for s in shots]
        width = self.options.transition * float(plan.fps)
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
        plan: VideoPlan,
        size: tuple[int, int],
        settings: AudioSettings | None,
        samples: np.ndarray | None,
        mixed: Mixdown | None,
        subtitles: bool,
    ) -> dict[str, Any]:
        audio: dict[str, Any] | None = None
        if settings is not None and samples is not None:
            audio = {
                "source": "mix" if mixed is not None else "silence",
                "sample_rate": settings.sample_rate,
                "channels": settings.channels,
                "samples": int(samples.shape[1]),
                "duration": samples.shape[1] / settings.sample_rate,
                "bitrate": settings.bitrate,
                "tracks": [] if mixed is None else list(mixed.tracks),
                "master_gain": None if mixed is None else mixed.master_gain,
                "loudness": None if mixed is None else mixed.loudness,
            }
        return {
            "file": self.options.filename,
            "width": size[0],
            "height": size[1],
            "fps": float(plan.fps),
            "fps_fraction": f"{plan.fps.numerator}/{plan.fps.denominator}",
            "frames": plan.frames,
            "duration": float(plan.frames / plan.fps),
            "timeline": {"duration": plan.timeline.total, "timing": dict(plan.timeline.timing)},
            "track": plan.track,
            "transition": self.options.transition,
            "subtitles": subtitles,
            "captions": self.options.captions,
            "narration_track": plan.narration,
            "burn_captions": self.options.burn_captions,
            "cues": [
                {"scene": c.scene, "sentence": c.sentence, "start": float(c.start), "end": float(c.end),
                 "start_ms": _ms(c.start), "end_ms": _ms(c.end), "text": c.text}
                for c in plan.captions
            ],
            "audio": audio,
            "scenes": [
                {
                    "index": s.index,
                    "start": float(s.start),
                    "end": float(s.end),
                    "start_frame": s.first_frame,
                    "end_frame": s.end_frame,
                    "picture": s.picture,
                    "text": s.text,
                }
                for s in plan.shots
            ],
        }
