"""Limits on the work one request may ask for, checked before any model is loaded.

A story request, its plan and the options of the pipeline's components are checked against a
:class:`Limits` before anything is rendered: a frame of a million pixels a side, a million
denoising steps, a 3000-frame story or a 30 000-word caption are refused up front with a
:class:`LimitError` that names the limit, the value and how to raise it, instead of keeping a
GPU (or the only worker of ``storysdk serve``) busy for hours.

::

    from storysdk import Limits, Pipeline

    limits = Limits(steps=100, scenes=32, tracks=4)   # the others keep their defaults
    pipe = Pipeline(planner="script", tracks={"frames": {"generator": ("diffusers-image", {"preset": "tiny"})}},
                    limits=limits)

    Limits.parse(["pixels=2048x2048", "steps=none"])   # what `storysdk run --limit ...` builds

Every limit can be raised, or switched off with ``None`` (``--limit NAME=none``). Where they are
set: ``Pipeline(limits=Limits(...))`` in Python (or the ``Pipeline.limits`` attribute),
``storysdk run --limit NAME=VALUE`` (and ``plan``), and ``storysdk serve --limit NAME=VALUE`` /
``ServerConfig.limits`` for a server. ``storysdk limits`` prints the table with the values.

The defaults fit one GPU and one person's story (see :data:`LIMITS` for each one's reason):
SDXL's native frame is 1024 x 1024 (1 Mpx), so ``pixels`` = 2048 x 2048 (4 Mpx) leaves room for
large frames; the published systems denoise in 25-50 steps, ``steps`` = 200 is four times that;
StoryDiffusion comics and SEED-Story stories run to tens of frames (SEED-Story's default is 25),
``scenes`` = 256 is ten times that; ``tracks`` = 8 holds a picture track, narration, ambience,
music and effects with room to spare, and ``cues`` = 1024 (per track planner) four timed events
a scene at the scenes limit, so a story renders at most ``tracks`` x ``scenes`` assets of
scene-cued tracks (``tracks`` x ``cues`` with track planners); AudioStory's TangoFlux DiT renders at most 30 s per clip
(plugins/storysdk-audiostory/docs/audiostory.md §2: a duration of 1 to 30 s), ``scene_seconds``
= 120 s; ``story_seconds`` = 1 hour; a printed A3 page at 300 dpi is 17.4 Mpx, ``page`` = 40 Mpx.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from .errors import ConfigError

if TYPE_CHECKING:
    from .model import StoryPlan, StoryRequest

__all__ = ["LIMITS", "LimitError", "LimitInfo", "Limits"]


class LimitError(ConfigError):
    """A request, plan or component option asks for more work than a :class:`Limits` allows.

    ``limit`` is the limit's name (as in ``--limit NAME=VALUE``), ``value`` what was asked,
    ``maximum`` the limit's value and ``where`` the field or option that asked for it.
    """

    def __init__(self, *, limit: str, value: float, maximum: float, where: str, what: str) -> None:
        self.limit = limit
        self.value = value
        self.maximum = maximum
        self.where = where
        how = "storysdk serve" if limit == "body" else "storysdk run, plan or serve"
        owner = "ServerConfig.limits" if limit == "body" else "Pipeline(limits=...), ServerConfig.limits"
        super().__init__(
            f"{where} = {_shown(value)} is over the limit {limit} = {_shown(maximum)} ({what}); use a smaller "
            f"value, or raise the limit with --limit {limit}={_raise_to(value)} ({how}) or "
            f"Limits({limit}={_raise_to(value)}) ({owner})"
        )
        self._what = what

    def __reduce__(self) -> tuple[Any, ...]:  # keyword-only __init__: pickle by keywords (worker processes)
        return (_rebuild, (self.limit, self.value, self.maximum, self.where, self._what))


def _rebuild(limit: str, value: float, maximum: float, where: str, what: str) -> LimitError:
    return LimitError(limit=limit, value=value, maximum=maximum, where=where, what=what)


def _shown(value: float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _raise_to(value: float) -> str:
    if isinstance(value, float) and not value.is_integer():
        return str(math.ceil(value))
    return _shown(value)


@attrs.frozen
class LimitInfo:
    """One limit: its ``name``, ``unit``, what it bounds (``what``) and why the default is what it is."""

    name: str
    unit: str
    what: str
    why: str


#: Every limit with its unit, what it bounds and the reason for its default (``storysdk limits``).
LIMITS: dict[str, LimitInfo] = {
    info.name: info
    for info in (
        LimitInfo("pixels", "pixels", "width x height of one generated frame",
                  "2048 x 2048: four times the pixels of SDXL's native 1024 x 1024 frame"),
        LimitInfo("side", "pixels", "the longer side of a generated frame or a composed page",
                  "8192: a panorama of 8192 x 512 is still under the pixel limit"),
        LimitInfo("scenes", "scenes", "frames (scenes) per story, planned or asked for",
                  "256: ten times SEED-Story's 25 scenes; StoryDiffusion comics run to tens of frames"),
        LimitInfo("tracks", "tracks", "tracks per story, each rendering an asset per scene or per cue",
                  "8: a picture track, narration, ambience, music and effects, with room to spare"),
        LimitInfo("cues", "cues", "cues a track planner plans for its track (AudioStory's timed sound events)",
                  "1024: four cues a scene at the scenes limit; AudioStory splits a scene's sound into a few events"),
        LimitInfo("steps", "steps", "denoising steps of a generator",
                  "200: four times the published systems' 50"),
        LimitInfo("tokens", "tokens", "new tokens one LLM decoding call may write (max_new_tokens)",
                  "8192: five times AudioStory's 1600, sixteen times SEED-Story's 500"),
        LimitInfo("prompt", "characters", "one prompt: the request's prompt, a scene's prompt, "
                  "a character description, a negative prompt or a style",
                  "10000: text encoders read 77 tokens (CLIP) to a few thousand (LLMs)"),
        LimitInfo("caption", "characters", "one caption or scene text (a scene's caption or one of its texts, "
                  "e.g. its narration; the start caption, the title)",
                  "10000: about 1700 words, several book pages under one picture or some 11 minutes read aloud"),
        LimitInfo("script", "characters", "the whole text of a request: its frame script or character text",
                  "200000: 256 frames of about 800 characters each"),
        LimitInfo("page", "pixels", "width x height of a composed page or video frame (comic page_size, video size)",
                  "40000000: a printed A3 page at 300 dpi is 17.4 Mpx, a 4K video frame 8.3 Mpx"),
        LimitInfo("font", "pixels", "a font size of the captions a composer draws",
                  "512: a caption letter half as tall as SDXL's frame"),
        LimitInfo("fps", "frames per second", "frames per second of a video",
                  "120: twice the usual 60"),
        LimitInfo("sample_rate", "Hz", "an audio sample rate a composer or generator writes",
                  "192000: the highest common studio rate"),
        LimitInfo("scene_seconds", "seconds", "audio of one scene (a generator's duration, a scene's duration)",
                  "120: four times the 30 s AudioStory's DiT renders in one clip"),
        LimitInfo("story_seconds", "seconds", "audio of a whole story (the request's duration, a planner's "
                  "duration, the scenes' durations together)",
                  "3600: one hour"),
        LimitInfo("body", "bytes", "the body of one HTTP request to storysdk serve, whatever its content type",
                  "16 MiB: a story file with a start image as a data URI"),
    )
}

_ALIASES = {"frames": "scenes", "track": "tracks", "cue": "cues", "events": "cues", "max_pixels": "pixels",
            "seconds": "scene_seconds", "duration": "story_seconds"}
_BYTE_SUFFIXES = {"k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
                  "g": 1000**3, "gb": 1000**3, "gib": 1024**3}
_FLOAT_LIMITS = frozenset({"fps", "scene_seconds", "story_seconds"})
_PIXEL_LIMITS = frozenset({"pixels", "page"})


def _positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:  # type: ignore[type-arg]
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(
            f"limit {attribute.name} must be a positive number (or None for no limit), got {value!r}"
        )
    if attribute.name not in _FLOAT_LIMITS and not float(value).is_integer():
        raise ConfigError(f"limit {attribute.name} must be a whole number (or None for no limit), got {value!r}")


def _field(default: float) -> Any:
    return attrs.field(default=default, validator=_positive, kw_only=True)


@attrs.frozen
class Limits:
    """How much work one request may ask for; ``None`` switches a limit off.

    See :data:`LIMITS` (or ``storysdk limits``) for what each bounds and why its default is
    what it is. Check with :meth:`check_request` and :meth:`check_tracks` (before planning),
    :meth:`check_plan` and :meth:`check_options` (before rendering; :class:`~storysdk.Pipeline`
    does these), :meth:`check_cues` (a track planner's cues, once planned and before the
    track's generator loads) and :meth:`check_body` (a server, before reading a request's body).

    The work of a story is bounded before any model loads: at most ``tracks`` tracks, each with
    one cue per scene (at most ``scenes``) or, with a track planner, at most ``cues`` cues.
    """

    pixels: int | None = _field(2048 * 2048)
    side: int | None = _field(8192)
    scenes: int | None = _field(256)
    tracks: int | None = _field(8)
    cues: int | None = _field(1024)
    steps: int | None = _field(200)
    tokens: int | None = _field(8192)
    prompt: int | None = _field(10_000)
    caption: int | None = _field(10_000)
    script: int | None = _field(200_000)
    page: int | None = _field(40_000_000)
    font: int | None = _field(512)
    fps: float | None = _field(120.0)
    sample_rate: int | None = _field(192_000)
    scene_seconds: float | None = _field(120.0)
    story_seconds: float | None = _field(3600.0)
    body: int | None = _field(16 * 1024 * 1024)

    # -- building -------------------------------------------------------------------------
    @classmethod
    def none(cls) -> Limits:
        """No limits at all (for trusted, local work)."""
        return cls(**{name: None for name in LIMITS})

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, base: Limits | None = None) -> Limits:
        """``base`` (default: the defaults) with the limits in ``data`` replaced (a ``[limits]`` table).

        Values are numbers, ``None``/``"none"``, or strings as :meth:`parse` reads them. An unknown
        name is a :class:`~storysdk.errors.ConfigError` listing the known ones.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"limits must be a table of NAME = VALUE, got {type(data).__name__}")
        changes: dict[str, Any] = {}
        for key, value in data.items():
            name = _name(str(key))
            changes[name] = _value(name, value)
        return attrs.evolve(base if base is not None else cls(), **changes)

    @classmethod
    def parse(cls, items: Iterable[str], *, base: Limits | None = None) -> Limits:
        """Limits from ``NAME=VALUE`` strings (``--limit`` flags): ``pixels=2048x2048``, ``steps=100``,
        ``body=32MiB``, ``scene_seconds=30.5``, ``steps=none`` (no limit)."""
        data: dict[str, Any] = {}
        for item in items:
            key, sep, value = str(item).partition("=")
            if not sep or not key.strip() or not value.strip():
                raise ConfigError(
                    f"--limit {item!r}: write NAME=VALUE, e.g. --limit steps=100 or --limit pixels=2048x2048; "
                    f"names: {', '.join(LIMITS)}"
                )
            data[key.strip()] = value.strip()
        return cls.from_mapping(data, base=base)

    def to_dict(self) -> dict[str, float | None]:
        """The limits as ``{name: value}`` (``None``: no limit)."""
        return {name: getattr(self, name) for name in LIMITS}

    # -- checks ---------------------------------------------------------------------------
    def check_request(self, request: StoryRequest) -> None:
        """Refuse a request that asks for more than these limits (before it is planned)."""
        self._frame("request", request.width, request.height)
        self._at_most("scenes", request.num_scenes, "request num_scenes")
        self._at_most("story_seconds", request.duration, "request duration")
        self._text("prompt", request.prompt, "request prompt")
        self._text("prompt", request.negative_prompt, "request negative_prompt")
        self._text("prompt", request.style, "request style")
        self._text("caption", request.start_caption, "request start_caption")
        self._text("script", request.script, "request script")
        chars = request.characters
        if isinstance(chars, str):
            self._text("script", chars, "request characters")
        else:
            self._at_most("scenes", len(chars), "number of request characters")
            for c in chars:
                self._text("prompt", getattr(c, "description", None), f"character {getattr(c, 'name', '?')!r} description")

    def check_plan(self, plan: StoryPlan) -> None:
        """Refuse a plan that asks for more than these limits (before it is rendered)."""
        self._at_most("scenes", len(plan.scenes), "number of scenes in the plan")
        self._frame("plan", plan.width, plan.height)
        self._text("caption", plan.title, "plan title")
        self._text("prompt", plan.negative_prompt, "plan negative_prompt")
        self._text("prompt", plan.style, "plan style")
        self._at_most("scenes", len(plan.characters), "number of plan characters")
        for c in plan.characters:
            self._text("prompt", c.description, f"character {c.name!r} description")
        total = 0.0
        for s in plan.scenes:
            self._text("prompt", s.prompt, f"scene {s.index} prompt")
            self._text("caption", s.caption, f"scene {s.index} caption")
            for role, text in s.texts.items():  # what a track's text template renders: a narration is read aloud
                self._text("caption", text, f"scene {s.index} {role} text")
            if s.duration is not None:
                self._at_most("scene_seconds", s.duration, f"scene {s.index} duration")
                total += float(s.duration)
        self._at_most("story_seconds", total, "the scenes' durations together")

    def check_options(self, kind: str, name: str, options: Any) -> None:
        """Refuse component options that ask for more than these limits.

        ``options`` is a component's :class:`~storysdk.options.Options` or a mapping of option
        names to values. Options are recognised by name, across the built-ins and plugins:
        ``steps``; ``width``/``height``/``size`` (a generator's frame; a composer's page or video
        frame); ``page_size``; ``max_new_tokens``/``max_text_tokens``; ``num_scenes``/``max_frames``;
        ``duration`` (a planner's: the story; otherwise one scene), ``still_duration``;
        ``font_size``/``label_size``; ``fps``; ``sample_rate``/``target_sr``;
        ``margin``/``gutter``/``row_height``/``padding``/``thumb``; ``negative_prompt``/``style``;
        and the same keys inside an ``extra`` table of pipeline-call arguments
        (``num_inference_steps``, ``width``, ``height``, ``audio_length_in_s``, ``max_new_tokens``).
        Values of another type are left to the option validation.
        """
        values = _option_values(options)
        who = f"{kind} {name!r} option"
        self._option_values(kind, who, values)
        extra = values.get("extra")
        if isinstance(extra, Mapping):
            renamed = {"num_inference_steps": "steps", "audio_length_in_s": "duration"}
            inner = {renamed.get(str(k), str(k)): v for k, v in extra.items()}
            self._option_values(kind, f"{kind} {name!r} option extra", inner, keys=dict(
                (renamed.get(str(k), str(k)), str(k)) for k in extra))

    def check_tracks(self, tracks: int | Collection[Any]) -> None:
        """Refuse a pipeline with more tracks (a count, or the tracks themselves) than the
        ``tracks`` limit allows (before anything is planned or loaded)."""
        count = tracks if isinstance(tracks, int) else len(tracks)
        self._at_most("tracks", count, "number of tracks")

    def check_cues(self, track: str, cues: int | Collection[Any], planner: str = "") -> None:
        """Refuse the cues a track planner planned for ``track`` (a count, or the cues) when they
        are more than the ``cues`` limit allows (after planning, before the track renders)."""
        count = cues if isinstance(cues, int) else len(cues)
        by = f" by planner {planner!r}" if planner else ""
        self._at_most("cues", count, f"number of cues planned{by} for track {track!r}")

    def check_body(self, size: int, *, what: str = "request body") -> None:
        """Refuse a body of ``size`` bytes over the ``body`` limit (a server, before reading it)."""
        self._at_most("body", size, f"{what} size in bytes")

    # -- helpers --------------------------------------------------------------------------
    def _option_values(self, kind: str, who: str, values: Mapping[str, Any], keys: Mapping[str, str] | None = None) -> None:
        def label(key: str) -> str:
            return f"{who} {keys.get(key, key) if keys else key}"

        for key in ("steps",):
            self._at_most("steps", values.get(key), label(key))
        for key in ("max_new_tokens", "max_text_tokens"):
            self._at_most("tokens", values.get(key), label(key))
        for key in ("num_scenes", "max_frames"):
            self._at_most("scenes", values.get(key), label(key))
        for key in ("font_size", "label_size"):
            self._at_most("font", values.get(key), label(key))
        self._at_most("fps", values.get("fps"), label("fps"))
        for key in ("sample_rate", "target_sr"):
            self._at_most("sample_rate", values.get(key), label(key))
        for key in ("margin", "gutter", "row_height", "padding", "thumb"):
            self._at_most("side", values.get(key), label(key))
        duration = "story_seconds" if kind == "planner" else "scene_seconds"
        self._at_most(duration, values.get("duration"), label("duration"))
        self._at_most("scene_seconds", values.get("still_duration"), label("still_duration"))
        for key in ("negative_prompt", "style"):
            value = values.get(key)
            if isinstance(value, str):
                self._text("prompt", value, label(key))
        area = "page" if kind == "composer" else "pixels"
        for key in ("size", "page_size"):
            pair = values.get(key)
            if isinstance(pair, (tuple, list)) and len(pair) == 2:
                self._area(area, pair[0], pair[1], f"{label(key)}[0]", f"{label(key)}[1]", label(key))
        self._area(area, values.get("width"), values.get("height"), label("width"), label("height"),
                   f"{who} width x height")

    def _frame(self, where: str, width: Any, height: Any) -> None:
        self._area("pixels", width, height, f"{where} width", f"{where} height", f"{where} width x height")

    def _area(self, limit: str, width: Any, height: Any, wlabel: str, hlabel: str, label: str) -> None:
        w, h = _number(width), _number(height)
        self._at_most("side", w, wlabel)
        self._at_most("side", h, hlabel)
        if w is not None and h is not None:
            self._at_most(limit, w * h, f"{label} ({_shown(w)} x {_shown(h)})")

    def _text(self, limit: str, text: Any, where: str) -> None:
        if isinstance(text, str):
            self._at_most(limit, len(text), f"length of {where} in characters")

    def _at_most(self, limit: str, value: Any, where: str) -> None:
        maximum = getattr(self, limit)
        number = _number(value)
        if maximum is None or number is None:
            return
        if number > maximum:
            raise LimitError(limit=limit, value=number, maximum=maximum, where=where, what=LIMITS[limit].what)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _option_values(options: Any) -> dict[str, Any]:
    if options is None:
        return {}
    if isinstance(options, Mapping):
        return dict(options)
    fields = getattr(type(options), "model_fields", None)
    if fields is not None:
        return {key: getattr(options, key, None) for key in fields}
    raise ConfigError(f"check_options takes a component's Options or a mapping, got {type(options).__name__}")


def _name(key: str) -> str:
    name = key.strip().lower().replace("-", "_")
    name = _ALIASES.get(name, name)
    if name not in LIMITS:
        from .options import suggest

        raise ConfigError(f"unknown limit {key!r}.{suggest(name, LIMITS)} Limits: {', '.join(LIMITS)}")
    return name


_PAIR = re.compile(r"^\s*(\d+)\s*[x×*]\s*(\d+)\s*$", re.IGNORECASE)
_SIZED = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]+)\s*$", re.IGNORECASE)


def _value(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("none", "off", "unlimited", "inf"):
            return None
        pair = _PAIR.match(text)
        if pair and name in _PIXEL_LIMITS:
            return int(pair.group(1)) * int(pair.group(2))
        sized = _SIZED.match(text)
        if sized and name == "body" and sized.group(2) in _BYTE_SUFFIXES:
            return int(float(sized.group(1)) * _BYTE_SUFFIXES[sized.group(2)])
        try:
            number = float(text.replace("_", ""))
        except ValueError:
            hint = " (or WIDTHxHEIGHT)" if name in _PIXEL_LIMITS else " (or a size like 32MiB)" if name == "body" else ""
            raise ConfigError(
                f"limit {name} = {value!r} is not a number{hint}; write e.g. --limit {name}=100, or {name}=none for no limit"
            ) from None
        value = number
    if isinstance(value, float) and math.isinf(value) and value > 0:
        return None  # TOML's inf: no limit
    if isinstance(value, float) and name not in _FLOAT_LIMITS and value.is_integer():
        value = int(value)
    return value  # the field validator checks it is a positive number
