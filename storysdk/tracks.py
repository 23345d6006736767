"""Tracks: what a pipeline renders for a story, each with its own generator (docs/data-flow.md).

A track is given as a table (Python: a dict; story file: ``[tracks.<name>]``)::

    tracks = {
        "frames":    {"generator": ("storydiffusion", {"steps": 30})},
        "narration": {"generator": "diffusers-audio", "text": "{narration}", "duck": 12},
        "ambience":  {"planner": "audiostory", "tokenizers": ["audiostory-bridge"],
                      "generator": "audiostory", "text": "{ambience}", "gain": -6},
    }

Keys: ``generator`` (required: a component spec, as :class:`~storysdk.pipeline.Pipeline` takes
them), ``planner`` (a *track planner*: a planner whose ``plan_track`` turns the story plan into
this track's cues; without one the track has one cue per scene), ``tokenizers`` (run on this
track's cues), and the settings of :class:`TrackSettings`. A track's name is also its folder
(``tracks/<name>/``): letters, digits, ``-`` and ``_``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError
from .model import Scene
from .options import Field, Options, OptionsT, suggest, validate_options

__all__ = ["TRACK_KEYS", "TrackSettings", "check_track_name", "check_template", "render_text"]

#: The keys of a track table besides its settings.
COMPONENT_KEYS = ("generator", "planner", "tokenizers")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
#: The fields a track's ``text`` template may use besides the keys of ``Scene.texts``.
SCENE_FIELDS = ("prompt", "caption", "narration")


class TrackSettings(Options):
    """A track's settings (the keys of a track table other than its components)."""

    text: str = Field(
        "{prompt}",
        description="what each cue renders: a template of {prompt}, {caption}, {narration} (the scene's narration "
        "text, else its caption) and the keys of the scene's texts ({ambience}, {music}, ...); a scene without a "
        "text the template names gets no cue on this track",
    )
    gain: float = Field(0.0, ge=-60, le=24, allow_inf_nan=False, description="audio: the track's level in the mix, dB")
    duck: float | None = Field(
        None, gt=0, le=60, allow_inf_nan=False,
        description="audio: while one of this track's clips plays, lower every track that does not duck by this many dB",
    )
    attack: float = Field(0.1, ge=0, le=10, allow_inf_nan=False, description="audio, with duck: seconds to duck down")
    release: float = Field(0.3, ge=0, le=10, allow_inf_nan=False, description="audio, with duck: seconds to come back")
    seed: int | None = Field(
        None, ge=0, description="the seed this track's cues derive theirs from (None: the story's seed)"
    )


TRACK_KEYS = (*COMPONENT_KEYS, *TrackSettings.model_fields)


def check_track_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"track name {name!r} is not usable as a folder name; use letters, digits, '-' and '_' "
            "(for example 'frames', 'narration', 'ambience')"
        )
    return name


def check_template(template: str, *, track: str) -> tuple[str, ...]:
    """The field names ``template`` uses; anything but plain ``{name}`` fields is a ConfigError."""
    names = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"track {track!r}: text template {template!r} is malformed ({exc}); write fields as {{caption}}") from None
    for _literal, field, spec, conv in parsed:
        if field is None:
            continue
        if not field.isidentifier() or spec or conv:
            raise ConfigError(
                f"track {track!r}: text template field {{{field}{'!' + conv if conv else ''}{':' + spec if spec else ''}}} "
                f"is not a plain name; use {{prompt}}, {{caption}}, {{narration}} or a key of the scenes' texts"
            )
        names.append(field)
    return tuple(names)


def render_text(template: str, scene: Scene) -> str | None:
    """``template`` filled from ``scene`` (``None`` when the scene lacks a text it names)."""
    values: dict[str, str] = dict(scene.texts)
    values.update(prompt=scene.prompt, caption=scene.caption, narration=scene.narration)
    fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    for field in fields:
        if field not in values or (field not in SCENE_FIELDS and not values[field].strip()):
            return None
    return template.format_map(values)


def split_track_table(name: str, table: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(components, settings) of a track table; unknown keys and a missing generator are errors."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"track {name!r} must be a table with a generator (for example {{'generator': 'diffusers-image'}}), "
                          f"got {type(table).__name__}")
    for key in table:
        if key not in TRACK_KEYS:
            raise ConfigError(
                f"track {name!r}: unknown key {key!r}.{suggest(str(key), TRACK_KEYS)} Track keys: {', '.join(TRACK_KEYS)}"
            )
    if "generator" not in table:
        raise ConfigError(f"track {name!r} has no generator; give it generator = \"<name>\" (see 'storysdk plugins')")
    components = {k: table[k] for k in COMPONENT_KEYS if k in table}
    settings = {k: v for k, v in table.items() if k not in COMPONENT_KEYS}
    return components, settings


def validate_settings(cls: type[OptionsT], data: Any, *, what: str) -> OptionsT:
    """``cls(**data)`` for a table of settings that belongs to no component (``[timing]``,
    ``[mix]``): an unknown key (with a suggestion) or a bad value is a ConfigError that starts
    with ``what`` (``"timing"``, ``"story.toml: [mix]"``)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{what} must be a table of settings ({', '.join(cls.model_fields)}), got {type(data).__name__}")
    fields = cls.model_fields
    for key in data:
        if key not in fields:
            raise ConfigError(f"{what}: unknown key {key!r}.{suggest(str(key), fields)} Keys: {', '.join(fields)}")
    try:
        return validate_options(cls, data, kind="", name=what)
    except ConfigError as exc:
        raise ConfigError(f"{what}: " + str(exc).removeprefix(f"{what!r}: ")) from None
