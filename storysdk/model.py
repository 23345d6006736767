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
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, Union

import attrs
import numpy as np
from PIL import Image

from .errors import ConfigError

__all__ = [
    "PLAN_FORMAT_VERSION",
    "Asset",
    "AudioAsset",
    "Character",
    "ImageAsset",
    "ImageLike",
    "Modality",
    "Scene",
    "Story",
    "StoryPlan",
    "StoryRequest",
    "Tokens",
    "load_image",
]

Modality = Literal["image", "audio"]
MODALITIES: tuple[Modality, ...] = ("image", "audio")
PLAN_FORMAT_VERSION = 1

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


def _check_size(name: str, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or value <= 0):
        raise ConfigError(f"{name} must be a positive whole number of pixels, got {value!r}")


@attrs.define(eq=False)
class Character:
    """A named character: ``name`` as used in ``[Name]`` tags, ``description`` the text it stands for."""

    name: str
    description: str
    reference_image: ImageLike | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "reference_image": _image_to_json(self.reference_image),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Character:
        return cls(
            name=str(data["name"]),
            description=str(data.get("description", "")),
            reference_image=data.get("reference_image"),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Character) and self.to_dict() == other.to_dict()


@attrs.define(eq=False)
class StoryRequest:
    """What the user asks for.

    ``prompt`` is free text for LLM planners; ``script`` is a frame script (one frame per
    line, see the ``script`` planner); ``characters`` is either a list of
    :class:`Character` or the character text of a script (``[Name] description`` lines).
    ``width``/``height`` are frame sizes in pixels, ``duration`` a total audio length in
    seconds, ``num_scenes`` an upper bound for planners that write scenes.
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
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"seed must be a whole number, got {self.seed!r}")
        _check_size("width", self.width)
        _check_size("height", self.height)
        if self.num_scenes is not None and self.num_scenes <= 0:
            raise ConfigError(f"num_scenes must be at least 1, got {self.num_scenes}")
        if self.duration is not None and not self.duration > 0:
            raise ConfigError(f"duration must be a positive number of seconds, got {self.duration}")

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
        known = {f.name for f in attrs.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown story field(s) {', '.join(unknown)}; known fields: {', '.join(sorted(known))}"
            )
        kwargs = dict(data)
        chars = kwargs.get("characters")
        if isinstance(chars, list):
            kwargs["characters"] = [
                c if isinstance(c, Character) else Character.from_dict(c) for c in chars
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


def _names(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ConfigError(f"scene characters must be a list of names, got the string {value!r}")
    return tuple(str(v) for v in value)


@attrs.define(eq=False)
class Scene:
    """One scene of a story: a picture and/or an audio clip.

    ``prompt`` is what generators render, ``caption`` what composers print, ``characters``
    the names present (empty for a no-character ``[NC]`` frame), ``duration`` the length
    of the scene's audio in seconds (``None``: the audio generator's default).
    ``tokens`` maps a token kind to the :class:`Tokens` made for this scene; it is not part
    of the plan's JSON.
    """

    index: int
    prompt: str
    caption: str = ""
    characters: tuple[str, ...] = attrs.field(default=(), converter=_names)
    duration: float | None = None
    metadata: dict[str, Any] = attrs.field(factory=dict)
    tokens: dict[str, Tokens] = attrs.field(factory=dict, repr=False)

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
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scene:
        return cls(
            index=int(data["index"]),
            prompt=str(data.get("prompt", "")),
            caption=str(data.get("caption", "")),
            characters=tuple(data.get("characters") or ()),
            duration=data.get("duration"),
            metadata=dict(data.get("metadata") or {}),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Scene) and self.to_dict() == other.to_dict()


@attrs.define(eq=False)
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
    def from_dict(cls, data: Mapping[str, Any]) -> StoryPlan:
        fmt = data.get("format", PLAN_FORMAT_VERSION)
        if fmt != PLAN_FORMAT_VERSION:
            raise ConfigError(
                f"plan format {fmt!r} is not supported (this storysdk reads format {PLAN_FORMAT_VERSION}); "
                "re-plan the story with this version"
            )
        try:
            scenes = [Scene.from_dict(s) for s in data.get("scenes", [])]
            chars = [Character.from_dict(c) for c in data.get("characters", [])]
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed plan: {exc!r}; a plan needs scenes with at least an index") from exc
        indices = [s.index for s in scenes]
        if len(set(indices)) != len(indices):
            raise ConfigError(f"malformed plan: scene indices repeat ({indices}); give each scene its own index")
        return cls(
            scenes=scenes,
            characters=chars,
            title=str(data.get("title", "")),
            style=data.get("style"),
            negative_prompt=str(data.get("negative_prompt", "")),
            width=data.get("width"),
            height=data.get("height"),
            seed=int(data.get("seed", 0)),
            planner=str(data.get("planner", "")),
            metadata=dict(data.get("metadata") or {}),
        )

    @classmethod
    def from_json(cls, text: str) -> StoryPlan:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"plan is not valid JSON ({exc}); fix the file or plan again") from exc
        if not isinstance(data, dict):
            raise ConfigError("plan JSON must be an object with a 'scenes' list")
        return cls.from_dict(data)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> StoryPlan:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"plan file {str(path)!r} does not exist; write one with 'storysdk plan'")
        return cls.from_json(path.read_text(encoding="utf-8"))

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
class Story:
    """A plan with the assets made for it, and the files composers wrote."""

    plan: StoryPlan
    images: dict[int, ImageAsset] = attrs.field(factory=dict)
    audio: dict[int, AudioAsset] = attrs.field(factory=dict)
    files: dict[str, list[Path]] = attrs.field(factory=dict)
    out_dir: Path | None = None

    def add(self, asset: Asset) -> None:
        if isinstance(asset, ImageAsset):
            self.images[asset.scene_index] = asset
        elif isinstance(asset, AudioAsset):
            self.audio[asset.scene_index] = asset
        else:  # pragma: no cover - guarded by the pipeline
            raise ConfigError(f"not an asset: {asset!r}")

    def assets(self, modality: Modality) -> dict[int, Asset]:
        return dict(self.images) if modality == "image" else dict(self.audio)

    def ordered_images(self) -> list[tuple[Scene, ImageAsset]]:
        """(scene, image) pairs in scene order, for scenes that have a picture."""
        return [(s, self.images[s.index]) for s in self.plan.scenes if s.index in self.images]

    def ordered_audio(self) -> list[tuple[Scene, AudioAsset]]:
        """(scene, clip) pairs in scene order, for scenes that have audio."""
        return [(s, self.audio[s.index]) for s in self.plan.scenes if s.index in self.audio]
