"""The data model: what flows between planners, tokenizers, generators and composers.

All classes are attrs classes. A :class:`StoryPlan` (with its characters and scenes)
round-trips through JSON, so a user can save a plan, edit captions and render it again;
:class:`Tokens` and assets are runtime objects and are stored by the output folder
(safetensors, PNG, WAV), not in the plan's JSON.
"""

from __future__ import annotations

import base64
import io
import json
import math
import reprlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, Union

import attrs
import numpy as np
from PIL import Image

from .errors import ConfigError

__all__ = [
    "MAX_SEED",
    "PLAN_FORMAT_VERSION",
    "Asset",
    "AudioAsset",
    "Character",
    "Cue",
    "ImageAsset",
    "ImageLike",
    "Modality",
    "Scene",
    "Story",
    "StoryPlan",
    "StoryRequest",
    "Tokens",
    "Track",
    "load_image",
]

Modality = Literal["image", "audio"]
MODALITIES: tuple[Modality, ...] = ("image", "audio")
PLAN_FORMAT_VERSION = 1
#: The largest seed (torch's ``Generator.manual_seed`` takes 64-bit unsigned seeds).
MAX_SEED = 2**64 - 1

#: An image given by the user: a path, or a PIL image already in memory.
ImageLike = Union[str, Path, Image.Image]


def load_image(value: ImageLike, *, what: str = "image") -> Image.Image:
    """Open an :data:`ImageLike` as an RGB PIL image, with a clear error when it cannot be read."""
    if isinstance(value, Image.Image):
        return value.convert("RGB") if value.mode != "RGB" else value
    if isinstance(value, str) and value.startswith("data:image/"):
        return Image.open(io.BytesIO(_decode_data_uri(value))).convert("RGB")
    path = Path(value)
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r} does not exist; give the path of an image file")
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except OSError as exc:
        raise ConfigError(
            f"{what} {str(path)!r} is not an image Pillow can read ({exc}); use PNG, JPEG or WebP"
        ) from exc


def _decode_data_uri(uri: str) -> bytes:
    try:
        _, payload = uri.split(",", 1)
        return base64.b64decode(payload)
    except ValueError as exc:
        raise ConfigError("malformed data: URI for an image; expected data:image/png;base64,...") from exc


def _image_to_json(value: ImageLike | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, Image.Image):
        buf = io.BytesIO()
        value.save(buf, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return str(value)


# -- checking values read from files (story files, plan files, JSON bodies) -----------------
def _shown(value: Any) -> str:
    """A value as an error message shows it: short, with its kind (``the string '12'``)."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):  # not a huge one in full (str() even refuses ints over 4300 digits)
        return str(value) if abs(value) < 10**30 else f"a number with more than 30 digits{' (negative)' if value < 0 else ''}"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return f"the string {value[:60]!r}" + ("..." if len(value) > 60 else "")
    if isinstance(value, Mapping):
        return "a table " + _short(value)
    if isinstance(value, (list, tuple)):
        return "an array " + _short(value)
    return f"a {type(value).__name__} ({_short(value)})"


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 40, 40


def _short(value: Any) -> str:
    """A bounded repr: deep, long or huge values are cut (``[[[...]]]``, ``'aaa...aaa'``)."""
    text = _REPR.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _text(name: str, value: Any, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        fix = "; write it in quotes" if _is_number(value) or isinstance(value, bool) else ""
        raise ConfigError(f"{name} must be text (a string){' or unset' if optional else ''}, got {_shown(value)}{fix}")


def _whole(name: str, value: Any, *, minimum: int, maximum: int | None = None, what: str = "whole number",
           optional: bool = False) -> None:
    if value is None and optional:
        return
    if not _is_int(value) or value < minimum or (maximum is not None and value > maximum):
        limit = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
        fix = "; write it without quotes" if _looks_numeric(value) else ""
        raise ConfigError(f"{name} must be a {what} {limit}, got {_shown(value)}{fix}")


def _looks_numeric(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def _seconds(name: str, value: Any) -> None:
    if value is None:
        return
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        fix = "; write the number without quotes" if _looks_numeric(value) else ""
        raise ConfigError(f"{name} must be a positive number of seconds, got {_shown(value)}{fix}")


def _table(name: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be a table of free data (key = value pairs), got {_shown(value)}")
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{name} keys must be strings, got {_shown(bad[0])}")


def _image_like(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, (str, Path, Image.Image)):
        raise ConfigError(
            f"{name} must be the path of an image file (a string), a data:image URI or a PIL image, got {_shown(value)}"
        )


def _known_keys(what: str, data: Mapping[str, Any], known: Iterable[str], *, where: str = "") -> None:
    from .options import suggest

    names = list(known)
    unknown = sorted(str(k)[:40] for k in set(data) - set(names))
    if unknown:
        hint = suggest(unknown[0], names)
        shown = ", ".join(unknown[:5]) + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else "")
        raise ConfigError(f"{where}unknown {what} field(s) {shown}.{hint} Known fields: {', '.join(sorted(names))}")


def _check_size(name: str, value: Any) -> None:
    if value is not None and (not _is_int(value) or value <= 0):
        fix = "; write it without quotes" if _looks_numeric(value) else ""
        raise ConfigError(f"{name} must be a positive whole number of pixels, got {_shown(value)}{fix}")


def _read_text_file(path: Path, *, what: str) -> str:
    """The UTF-8 text of a file the user gave (a byte-order mark is dropped), or a
    :class:`ConfigError` naming the file: unreadable, or not UTF-8 (with the byte's position)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}; check the path and its permissions") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{what} {str(path)!r} is not UTF-8 text (byte 0x{data[exc.start]:02x} at line {line}, "
            f"byte offset {exc.start}); save it as UTF-8"
        ) from None


@attrs.define(eq=False)
class Character:
    """A named character: ``name`` as used in ``[Name]`` tags, ``description`` the text it stands for."""

    name: str
    description: str
    reference_image: ImageLike | None = None

    def __attrs_post_init__(self) -> None:
        _text("character name", self.name)
        _text(f"character {self.name!r}: description", self.description)
        _image_like(f"character {self.name!r}: reference_image", self.reference_image)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "reference_image": _image_to_json(self.reference_image),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "character") -> Character:
        """A character from a table/object with ``name``, ``description`` and ``reference_image``
        (``where`` names it in errors, e.g. ``"characters[2]"``)."""
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"{where} must be a table with a name and a description "
                f"({{name = \"Mia\", description = \"a girl with a red scarf\"}}), got {_shown(data)}"
            )
        _known_keys("character", data, ("name", "description", "reference_image"), where=f"{where}: ")
        if "name" not in data:
            raise ConfigError(f"{where} has no name; give it a name (the name its [Name] tags use)")
        name = data["name"]
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{where}: name must be a non-empty string (the name its [Name] tags use), got {_shown(name)}")
        description = data.get("description", "")
        _text(f"{where}: description", description)
        reference = data.get("reference_image")
        if reference is not None and not isinstance(reference, str):
            raise ConfigError(
                f"{where}: reference_image must be the path of an image file (a string), got {_shown(reference)}"
            )
        return cls(name=name, description=description, reference_image=reference)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Character) and self.to_dict() == other.to_dict()


def _check_characters(value: Any) -> None:
    if isinstance(value, list):
        for i, c in enumerate(value):
            if not isinstance(c, Character):
                raise ConfigError(
                    f"characters[{i}] must be a storysdk.Character (in a story file: a [[story.characters]] "
                    f"table with name and description), got {_shown(c)}"
                )
    elif not isinstance(value, str):
        raise ConfigError(
            "characters must be the character text of a script ('[Name] description' lines) or an array "
            f"of characters with name and description, got {_shown(value)}"
        )


def _check_script(value: Any) -> None:
    if value is not None and not isinstance(value, str):
        from .errors import ScriptError

        hint = "; join the frame lines with newlines" if isinstance(value, (list, tuple)) else ""
        raise ScriptError(f"must be text (one frame per line), got {_shown(value)}{hint}")


_REQUEST_CHECKS: dict[str, Any] = {
    "prompt": lambda v: _text("prompt", v),
    "script": _check_script,
    "characters": _check_characters,
    "start_image": lambda v: _image_like("start_image", v),
    "start_caption": lambda v: _text("start_caption", v, optional=True),
    "style": lambda v: _text("style", v, optional=True),
    "negative_prompt": lambda v: _text("negative_prompt", v),
    "seed": lambda v: _whole("seed", v, minimum=0, maximum=MAX_SEED),
    "width": lambda v: _check_size("width", v),
    "height": lambda v: _check_size("height", v),
    "num_scenes": lambda v: _whole("num_scenes", v, minimum=1, optional=True),
    "duration": lambda v: _seconds("duration", v),
    "metadata": lambda v: _table("metadata", v),
}


def _check_request_field(name: str, value: Any) -> None:
    _REQUEST_CHECKS[name](value)


def _on_set_request(instance: Any, attribute: Any, value: Any) -> Any:
    _check_request_field(attribute.name, value)
    return value


def _on_set_plan(instance: Any, attribute: Any, value: Any) -> Any:
    if attribute.name == "seed":
        _whole("seed", value, minimum=0, maximum=MAX_SEED)
    elif attribute.name in ("width", "height"):
        _check_size(attribute.name, value)
    return value


@attrs.define(eq=False, on_setattr=_on_set_request)
class StoryRequest:
    """What the user asks for.

    ``prompt`` is free text for LLM planners; ``script`` is a frame script (one frame per
    line, see the ``script`` planner); ``characters`` is either a list of
    :class:`Character` or the character text of a script (``[Name] description`` lines).
    ``width``/``height`` are frame sizes in pixels, ``duration`` a total audio length in
    seconds, ``num_scenes`` an upper bound for planners that write scenes.

    Every field is checked when the request is made and when a field is set later
    (``request.seed = -1`` raises :class:`ConfigError` too).
    """

    prompt: str = ""
    script: str | None = None
    characters: list[Character] | str = attrs.field(factory=list)
    start_image: ImageLike | None = None
    start_caption: str | None = None
    style: str | None = None
    negative_prompt: str = ""
    seed: int = 0
    width: int | None = None
    height: int | None = None
    num_scenes: int | None = None
    duration: float | None = None
    metadata: dict[str, Any] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        for field in attrs.fields(type(self)):
            _check_request_field(field.name, getattr(self, field.name))

    def to_dict(self) -> dict[str, Any]:
        chars: Any = self.characters
        if not isinstance(chars, str):
            chars = [c.to_dict() for c in chars]
        return {
            "prompt": self.prompt,
            "script": self.script,
            "characters": chars,
            "start_image": _image_to_json(self.start_image),
            "start_caption": self.start_caption,
            "style": self.style,
            "negative_prompt": self.negative_prompt,
            "seed": self.seed,
            "width": self.width,
            "height": self.height,
            "num_scenes": self.num_scenes,
            "duration": self.duration,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoryRequest:
        """A request from a story file's ``[story]`` table or a JSON object; every field is checked
        (an unknown one is a :class:`ConfigError` with a suggestion)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a story request must be a table of story fields (seed, script, ...), got {_shown(data)}")
        _known_keys("story", data, (f.name for f in attrs.fields(cls)))
        kwargs = dict(data)
        chars = kwargs.get("characters")
        if isinstance(chars, list):
            kwargs["characters"] = [
                c if isinstance(c, Character) else Character.from_dict(c, where=f"characters[{i}]")
                for i, c in enumerate(chars)
            ]
        return cls(**kwargs)


@attrs.define(eq=False)
class Tokens:
    """Conditioning for one scene: named tensors plus the name of the component that made them.

    ``kind`` says what the tensors mean (for example ``"sdxl-text"``); generators look tokens
    up by kind in :attr:`Scene.tokens`. Tensors are torch tensors or numpy arrays.
    """

    kind: str
    made_by: str
    tensors: dict[str, Any] = attrs.field(factory=dict)
    metadata: dict[str, Any] = attrs.field(factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.tensors[key]


SCENE_KEYS = ("index", "prompt", "caption", "characters", "duration", "texts", "metadata")
#: The keys of a cue (a :class:`Scene` placed on a track): the scene's, plus its place on the clock.
CUE_KEYS = (*SCENE_KEYS, "start", "scene")
PLAN_KEYS = ("format", "title", "planner", "seed", "style", "negative_prompt", "width", "height",
             "characters", "scenes", "metadata")


def _names(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ConfigError(f"scene characters must be a list of names, got the string {value!r}")
    return tuple(str(v) for v in value)


@attrs.define(eq=False)
class Scene:
    """One scene of a story: a picture and/or an audio clip.

    ``prompt`` is what image generators render, ``caption`` what composers print,
    ``characters`` the names present (empty for a no-character ``[NC]`` frame), ``duration``
    the scene's length on the story's clock in seconds (``None``: the pipeline's timing
    decides, see :class:`storysdk.timeline.Timing`). ``texts`` holds the scene's other texts
    by role, for the tracks that render them: ``{"narration": "...", "ambience": "rain on a
    tin roof", "music": "calm piano"}`` (a track's ``text`` template picks one, see
    docs/data-flow.md). ``tokens`` maps a token kind to the :class:`Tokens` made for this
    scene; it is not part of the plan's JSON.
    """

    index: int
    prompt: str
    caption: str = ""
    characters: tuple[str, ...] = attrs.field(default=(), converter=_names)
    duration: float | None = None
    metadata: dict[str, Any] = attrs.field(factory=dict)
    tokens: dict[str, Tokens] = attrs.field(factory=dict, repr=False)
    texts: dict[str, str] = attrs.field(factory=dict)

    @property
    def narration(self) -> str:
        """The text a narration track speaks: ``texts["narration"]``, else the caption."""
        return self.texts.get("narration") or self.caption

    def __attrs_post_init__(self) -> None:
        if self.index < 0:
            raise ConfigError(f"scene index must be >= 0, got {self.index}")
        if self.duration is not None and not self.duration > 0:
            raise ConfigError(
                f"scene {self.index}: duration must be a positive number of seconds, got {self.duration}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "prompt": self.prompt,
            "caption": self.caption,
            "characters": list(self.characters),
            "duration": self.duration,
            "texts": dict(self.texts),
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "scene") -> Scene:
        """A scene from :meth:`to_dict` data, every field checked (``where`` names it in errors)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be an object with at least an \"index\", got {_shown(data)}")
        _known_keys("scene", data, CUE_KEYS if cls is Cue else SCENE_KEYS, where=f"{where}: ")
        if "index" not in data:
            raise ConfigError(f"{where} has no \"index\"; give every scene its own index (0, 1, 2, ...)")
        _whole(f"{where}: index", data["index"], minimum=0)
        for key in ("prompt", "caption"):
            _text(f"{where}: {key}", data.get(key, ""))
        names = data.get("characters")
        if names is None:
            names = []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"{where}: characters must be an array of character names (strings), got {_shown(names)}")
        _seconds(f"{where}: duration", data.get("duration"))
        metadata = data.get("metadata")
        metadata = {} if metadata is None else metadata
        _table(f"{where}: metadata", metadata)
        texts = data.get("texts")
        texts = {} if texts is None else texts
        if not isinstance(texts, Mapping):
            raise ConfigError(f"{where}: texts must be a table of role = text strings (narration, ambience, "
                              f"music, ...), got {_shown(texts)}")
        _table(f"{where}: texts", texts)
        for key, value in texts.items():
            _text(f"{where}: texts.{key}", value)
        extra: dict[str, Any] = {}
        if cls is Cue:
            start = data.get("start", 0.0)
            if isinstance(start, bool) or not isinstance(start, (int, float)) or not math.isfinite(start) or start < 0:
                raise ConfigError(f"{where}: start must be a number of seconds >= 0, got {_shown(start)}")
            _whole(f"{where}: scene", data.get("scene", 0), minimum=0)
            extra = {"start": float(start), "scene": data.get("scene", 0)}
        return cls(
            index=data["index"],
            prompt=data.get("prompt", ""),
            caption=data.get("caption", ""),
            characters=tuple(names),
            duration=data.get("duration"),
            metadata=dict(metadata),
            texts=dict(texts),
            **extra,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Scene) and type(other) is type(self) and self.to_dict() == other.to_dict()


@attrs.define(eq=False)
class Cue(Scene):
    """One item of a track: a :class:`Scene` (what to render) placed on the story's clock.

    ``start`` is in seconds from the start of the story, ``scene`` the index of the story scene
    the cue belongs to, ``duration`` its length (``None`` until the timeline is known: a track
    that sets the scenes' timing renders its cues at their own length). A track without a track
    planner has one cue per scene, with the scene's index; a track planner (AudioStory's events)
    makes any number per scene. Generators get cues as scenes and render them unchanged.
    """

    start: float = 0.0
    scene: int = 0

    @property
    def end(self) -> float | None:
        return None if self.duration is None else self.start + self.duration

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "start": self.start, "scene": self.scene}

    @classmethod
    def of_scene(cls, scene: Scene, *, start: float = 0.0, duration: float | None = None, prompt: str | None = None) -> Cue:
        """The cue of a track without a track planner for ``scene``: a copy (own token dict) at ``start``."""
        return cls(
            index=scene.index,
            prompt=scene.prompt if prompt is None else prompt,
            caption=scene.caption,
            characters=scene.characters,
            duration=scene.duration if duration is None else duration,
            metadata=dict(scene.metadata),
            tokens=dict(scene.tokens),
            texts=dict(scene.texts),
            start=start,
            scene=scene.index,
        )


@attrs.define(eq=False, on_setattr=_on_set_plan)
class StoryPlan:
    """The whole story before rendering: characters, scenes, style and sizes.

    ``to_json``/``from_json`` round-trip everything but the scenes' tokens.
    """

    scenes: list[Scene] = attrs.field(factory=list)
    characters: list[Character] = attrs.field(factory=list)
    title: str = ""
    style: str | None = None
    negative_prompt: str = ""
    width: int | None = None
    height: int | None = None
    seed: int = 0
    planner: str = ""
    metadata: dict[str, Any] = attrs.field(factory=dict)

    def character(self, name: str) -> Character:
        for c in self.characters:
            if c.name == name:
                return c
        raise KeyError(name)

    def scene(self, index: int) -> Scene:
        for s in self.scenes:
            if s.index == index:
                return s
        raise KeyError(index)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT_VERSION,
            "title": self.title,
            "planner": self.planner,
            "seed": self.seed,
            "style": self.style,
            "negative_prompt": self.negative_prompt,
            "width": self.width,
            "height": self.height,
            "characters": [c.to_dict() for c in self.characters],
            "scenes": [s.to_dict() for s in self.scenes],
            "metadata": dict(self.metadata),
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, sort_keys=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "plan") -> StoryPlan:
        """A plan from :meth:`to_dict` data. Every key is checked (type, range, unknown names), so
        an edited plan file fails with a :class:`ConfigError` naming ``source`` and the field."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: a plan must be an object with a \"scenes\" array, got {_shown(data)}")
        fmt = data.get("format", PLAN_FORMAT_VERSION)
        if fmt != PLAN_FORMAT_VERSION or isinstance(fmt, bool):
            raise ConfigError(
                f"{source}: plan format {_shown(fmt)} is not supported (this storysdk reads format "
                f"{PLAN_FORMAT_VERSION}); re-plan the story with this version"
            )
        try:
            return cls._from_checked(data)
        except ConfigError as exc:
            raise ConfigError(f"{source}: malformed plan: {exc}") from None

    @classmethod
    def _from_checked(cls, data: Mapping[str, Any]) -> StoryPlan:
        _known_keys("plan", data, PLAN_KEYS)
        scenes_data = data.get("scenes", [])
        if not isinstance(scenes_data, list):
            raise ConfigError(f"scenes must be an array of scene objects, got {_shown(scenes_data)}")
        chars_data = data.get("characters", [])
        if not isinstance(chars_data, list):
            raise ConfigError(f"characters must be an array of character objects, got {_shown(chars_data)}")
        scenes = [Scene.from_dict(s, where=f"scenes[{i}]") for i, s in enumerate(scenes_data)]
        chars = [Character.from_dict(c, where=f"characters[{i}]") for i, c in enumerate(chars_data)]
        indices = [s.index for s in scenes]
        if len(set(indices)) != len(indices):
            raise ConfigError(f"scene indices repeat ({indices}); give each scene its own index")
        names = [c.name for c in chars]
        if len(set(names)) != len(names):
            raise ConfigError(f"character names repeat ({names}); give each character its own name")
        for key in ("title", "negative_prompt", "planner"):
            _text(key, data.get(key, ""))
        _text("style", data.get("style"), optional=True)
        _check_size("width", data.get("width"))
        _check_size("height", data.get("height"))
        _whole("seed", data.get("seed", 0), minimum=0, maximum=MAX_SEED)
        metadata = data.get("metadata")
        metadata = {} if metadata is None else metadata
        _table("metadata", metadata)
        return cls(
            scenes=scenes,
            characters=chars,
            title=data.get("title", ""),
            style=data.get("style"),
            negative_prompt=data.get("negative_prompt", ""),
            width=data.get("width"),
            height=data.get("height"),
            seed=data.get("seed", 0),
            planner=data.get("planner", ""),
            metadata=dict(metadata),
        )

    @classmethod
    def from_json(cls, text: str, *, source: str = "plan") -> StoryPlan:
        """A plan from JSON text (``source`` names it in errors: the file's path)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            hint = " (it is empty)" if not text.strip() else ""
            raise ConfigError(f"{source} is not valid JSON{hint} ({exc}); fix the file or plan again") from exc
        except ValueError as exc:  # an integer with more digits than Python converts
            raise ConfigError(f"{source} holds a number too long to read ({exc.args[0].split(':')[0]}); "
                              "fix the file or plan again") from exc
        except RecursionError:
            raise ConfigError(f"{source} is nested too deeply to be a plan; fix the file or plan again") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: plan JSON must be an object with a \"scenes\" array, got {_shown(data)}")
        return cls.from_dict(data, source=source)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> StoryPlan:
        """Read a plan file; every problem (missing, unreadable, not UTF-8, not a plan) is a
        :class:`ConfigError` naming the file."""
        path = Path(path)
        if path.is_dir():
            raise ConfigError(f"plan file {str(path)!r} is a folder; give the path of a plan JSON file "
                              "(an output folder's plan.json, or one written by 'storysdk plan')")
        if not path.is_file():
            raise ConfigError(f"plan file {str(path)!r} does not exist; write one with 'storysdk plan'")
        return cls.from_json(_read_text_file(path, what="plan file"), source=f"plan file {str(path)!r}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoryPlan) and self.to_dict() == other.to_dict()


@attrs.define(eq=False)
class ImageAsset:
    """A picture made for scene ``scene_index`` by generator ``made_by``."""

    scene_index: int
    image: Image.Image
    made_by: str = ""
    metadata: dict[str, Any] = attrs.field(factory=dict)

    modality: Modality = attrs.field(default="image", init=False)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.image, Image.Image):
            raise ConfigError(
                f"ImageAsset for scene {self.scene_index} needs a PIL image, got {type(self.image).__name__}"
            )

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


def _as_samples(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().float().cpu().numpy()
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ConfigError(
            f"audio samples must be shaped (channels, frames) or (frames,), got shape {arr.shape}"
        )
    if arr.shape[0] > 64 and arr.shape[1] <= 64:
        raise ConfigError(
            f"audio samples look transposed (shape {arr.shape}); pass (channels, frames)"
        )
    return np.ascontiguousarray(arr)


@attrs.define(eq=False)
class AudioAsset:
    """An audio clip for scene ``scene_index``: ``samples`` is float32 shaped (channels, frames)."""

    scene_index: int
    samples: np.ndarray = attrs.field(converter=_as_samples)
    sample_rate: int = 44100
    made_by: str = ""
    metadata: dict[str, Any] = attrs.field(factory=dict)

    modality: Modality = attrs.field(default="audio", init=False)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.sample_rate, int) or self.sample_rate <= 0:
            raise ConfigError(f"sample_rate must be a positive whole number, got {self.sample_rate!r}")

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def frames(self) -> int:
        return int(self.samples.shape[1])

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


Asset = Union[ImageAsset, AudioAsset]


@attrs.define(eq=False)
class Track:
    """One track of a story: its cues (on the story's clock) and the assets made for them.

    ``name`` is the track's name (``frames``, ``narration``, ``ambience``...), ``modality`` its
    generator's, ``generator`` the generator's name and ``planner`` its track planner's (``""``
    when its cues are the story's scenes). ``assets`` maps a cue index to its asset. The mixing
    settings of an audio track: ``gain`` in dB, and ``duck``: by how many dB this track lowers
    every audio track that does not duck while one of its clips plays (``None``: it ducks
    nothing), fading down over ``attack`` seconds before the clip and back up over ``release``
    seconds after it (docs/data-flow.md, "Mixing").
    """

    name: str
    modality: Modality
    cues: list[Cue] = attrs.field(factory=list)
    assets: dict[int, Asset] = attrs.field(factory=dict)
    generator: str = ""
    planner: str = ""
    gain: float = 0.0
    duck: float | None = None
    attack: float = 0.1
    release: float = 0.3

    def cue(self, index: int) -> Cue:
        for c in self.cues:
            if c.index == index:
                return c
        raise KeyError(index)

    def ordered(self) -> list[tuple[Cue, Asset]]:
        """(cue, asset) pairs in cue order (by start, then index), for cues that have an asset."""
        cues = sorted(self.cues, key=lambda c: (c.start, c.index))
        return [(c, self.assets[c.index]) for c in cues if c.index in self.assets]

    def of_scene(self, scene_index: int) -> list[tuple[Cue, Asset]]:
        """The (cue, asset) pairs that belong to story scene ``scene_index``, in order."""
        return [(c, a) for c, a in self.ordered() if c.scene == scene_index]


@attrs.define(eq=False)
class Story:
    """A plan with the tracks rendered for it, its timeline, and the files composers wrote.

    ``tracks`` maps a track name to its :class:`Track` (in the pipeline's order); ``timeline``
    is the :class:`storysdk.timeline.Timeline` every composer lays the story out on (``None``
    for a story assembled by hand: :func:`storysdk.timeline.timeline_of` derives one).
    ``images`` and ``audio`` are the first image and the first audio track whose cues are the
    scenes, by scene index (what a one-track story had; a story assembled by hand may give only
    these, and composers then read them as tracks named ``images`` and ``audio``).
    ``mix`` holds the master mix settings (:class:`storysdk.mixing.Mix`; ``None``: defaults).
    ``weights`` says which weights each model-backed component used (``{"generator
    diffusers-image": "tiny (fallback: ...)"}``, see :meth:`storysdk.Pipeline.weights`).
    """

    plan: StoryPlan
    images: dict[int, ImageAsset] = attrs.field(factory=dict)
    audio: dict[int, AudioAsset] = attrs.field(factory=dict)
    files: dict[str, list[Path]] = attrs.field(factory=dict)
    out_dir: Path | None = None
    weights: dict[str, str] = attrs.field(factory=dict)
    tracks: dict[str, Track] = attrs.field(factory=dict)
    timeline: Any = None
    mix: Any = None

    def add(self, asset: Asset, track: str | None = None) -> None:
        """Add ``asset``: to track ``track`` (keyed by its cue index), or without a track to
        :attr:`images` / :attr:`audio` (keyed by scene index).

        A story assembled by hand without :attr:`tracks` takes ``track="images"`` and
        ``track="audio"`` (its tracks of those names); a track of another modality than the
        asset's, or one the story does not have, is a :class:`ConfigError`.
        """
        if not isinstance(asset, (ImageAsset, AudioAsset)):  # pragma: no cover - guarded by the pipeline
            raise ConfigError(f"not an asset: {asset!r}")
        if track is not None:
            compat = "images" if isinstance(asset, ImageAsset) else "audio"
            if not self.tracks and track == compat:
                track = None  # the hand-made story's own track: its images/audio
            else:
                target = self.tracks.get(track) if self.tracks else None
                if target is None:
                    self.track(track)  # the story has no such track: its error lists the tracks
                    raise ConfigError(f"track {track!r} is an {('audio' if compat == 'images' else 'image')} track; "
                                      f"add the {asset.modality} asset to an {asset.modality} track")
                if target.modality != asset.modality:
                    raise ConfigError(f"track {track!r} is an {target.modality} track; add the {asset.modality} "
                                      f"asset to an {asset.modality} track")
                target.assets[asset.scene_index] = asset
                return
        if isinstance(asset, ImageAsset):
            self.images[asset.scene_index] = asset
        else:
            self.audio[asset.scene_index] = asset

    def assets(self, modality: Modality) -> dict[int, Asset]:
        return dict(self.images) if modality == "image" else dict(self.audio)

    def track(self, name: str) -> Track:
        """The track called ``name`` (a story assembled by hand has ``images`` and ``audio``)."""
        tracks = self.all_tracks()
        if name not in tracks:
            known = ", ".join(tracks) or "(none)"
            raise ConfigError(f"the story has no track {name!r}; its tracks: {known}")
        return tracks[name]

    def all_tracks(self) -> dict[str, Track]:
        """Every track; for a story assembled by hand without tracks, ``images``/``audio`` as tracks."""
        if self.tracks:
            return dict(self.tracks)
        out: dict[str, Track] = {}
        for name, modality, assets in (("images", "image", self.images), ("audio", "audio", self.audio)):
            if assets:
                scenes = [s for s in self.plan.scenes if s.index in assets]
                cues = [Cue.of_scene(s) for s in scenes]
                made_by = next(iter(assets.values())).made_by
                out[name] = Track(name, modality, cues, dict(assets), generator=made_by)  # type: ignore[arg-type]
        return out

    def image_tracks(self) -> list[Track]:
        return [t for t in self.all_tracks().values() if t.modality == "image"]

    def audio_tracks(self) -> list[Track]:
        return [t for t in self.all_tracks().values() if t.modality == "audio"]

    def image_track(self, name: str | None = None) -> Track | None:
        """The image track ``name`` (``None``: the first image track, or ``None`` when there is none)."""
        if name is None:
            tracks = self.image_tracks()
            return tracks[0] if tracks else None
        track = self.track(name)
        if track.modality != "image":
            names = ", ".join(t.name for t in self.image_tracks()) or "(none)"
            raise ConfigError(f"track {name!r} is an {track.modality} track; choose an image track: {names}")
        return track

    def ordered_images(self) -> list[tuple[Scene, ImageAsset]]:
        """(scene, image) pairs in scene order, for scenes that have a picture."""
        return [(s, self.images[s.index]) for s in self.plan.scenes if s.index in self.images]

    def ordered_audio(self) -> list[tuple[Scene, AudioAsset]]:
        """(scene, clip) pairs in scene order, for scenes that have audio."""
        return [(s, self.audio[s.index]) for s in self.plan.scenes if s.index in self.audio]
