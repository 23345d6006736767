"""What a story job may name: models and fonts by the operator's names, never a path of the server.

A story file sent to the server is a client's text, and component options can name files:
a model folder or checkpoint, a font. :func:`check_story_options` goes through every
component table and ``[defaults]`` of the file (:func:`check_story_tracks` also through every
track's generator, planner and tokenizers) and, by the kind of each option
(:func:`option_kind`):

- **model** options (``model``, ``checkpoint``, ``config``, ``vae``, ``text_encoder`` ... and
  every option whose declared type is a path) must be a name in ``ServerConfig.models``; the
  server puts the operator's path or hub id in its place;
- **font** options (``font_path``) must be a name in ``ServerConfig.fonts``, likewise;
- **device** options (``device``, ``*_device``) are the server's: refused (``--device``);
- the server's **runtime** settings (``preset``, ``dtype``, ``offload``): a component table may
  repeat the server's value, not change it (``[defaults]`` are overridden by the server, as
  documented for story files);
- **free-form** options (declared as ``Any`` or a dict of anything: objects or keyword
  arguments handed to model code) are refused.

Anything else is checked by the component's own declared options, as in a local run. Each
refusal is a :class:`~storysdk.errors.ConfigError` naming the table, the option and the names
that are allowed (answered 422).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..registry import ComponentInfo, Registry
    from .config import ServerConfig

__all__ = ["MODEL_OPTIONS", "OptionKind", "check_story_options", "check_story_tracks", "option_kind"]

OptionKind = Literal["model", "font", "device", "runtime", "free", "plain"]

#: Option names that choose weights (a folder, a file or a hub id), whatever their declared type.
MODEL_OPTIONS = frozenset(
    {"model", "checkpoint", "config", "vae", "text_encoder", "base_llm", "pretrained", "vit", "sdxl",
     "resamplers", "weights", "lora", "adapter", "tokenizer", "unet", "controlnet", "ip_adapter"}
)
RUNTIME_OPTIONS = ("preset", "dtype", "offload")
_PATH_SUFFIXES = ("_path", "_dir", "_file", "_folder", "_checkpoint", "_model", "_weights")


def option_kind(name: str, type_name: str = "any", declared: bool = True) -> OptionKind:
    """The kind of option ``name`` of declared type ``type_name`` (as ``storysdk plugins --options`` shows it)."""
    if name == "device" or name.endswith("_device"):
        return "device"
    if name in RUNTIME_OPTIONS:
        return "runtime"
    if "font" in name and name not in ("font_size",) and not name.endswith(("_size", "_scale")):
        return "font"
    if name in MODEL_OPTIONS or name.endswith(_PATH_SUFFIXES) or "Path" in type_name:
        return "model"
    if declared and (type_name == "any" or "any]" in type_name or type_name.startswith("any |")):
        return "free"
    return "plain"


def _kinds(info: ComponentInfo) -> dict[str, OptionKind]:
    declared = info.declared()
    return {o.name: option_kind(o.name, o.type, declared) for o in info.option_info()}


def _allowed(table: Mapping[str, str], flag: str, what: str) -> str:
    if not table:
        return f"this server offers no {what} by name (its operator adds them with storysdk serve {flag} NAME=PATH)"
    return f"this server's {what}: {', '.join(sorted(table))}"


def _named(where: str, key: str, value: Any, table: Mapping[str, str], flag: str, what: str) -> str:
    if isinstance(value, str) and value in table:
        return table[value]
    from .config import looks_like_path

    if isinstance(value, str) and (looks_like_path(value) or "/" in value or "\\" in value):
        shown = "a path or a hub id"
    else:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise ConfigError(
        f"{where} option {key!r} is {shown}: a story sent to the server names {what} by name, "
        f"never by path or hub id; {_allowed(table, flag, what)}"
    )


def _check(
    where: str, key: str, value: Any, kind: OptionKind, cfg: ServerConfig, *, in_defaults: bool
) -> tuple[bool, Any]:
    """``(keep, value)`` for one option of a story file (the value the server uses)."""
    if kind == "model":
        return True, _named(where, key, value, cfg.models, "--model", "models")
    if kind == "font":
        return True, _named(where, key, value, cfg.fonts, "--font", "fonts")
    if kind == "device":
        raise ConfigError(
            f"{where} option {key!r}: the server chooses the devices its workers use (storysdk serve --device); "
            "leave it out of the story file"
        )
    if kind == "runtime":
        server = cfg.defaults.get(key)
        if server is None:
            return True, value
        if in_defaults or value == server:
            return False, value  # the server's value applies
        raise ConfigError(
            f"{where} option {key}={value!r}: this server runs with {key}={server!r} "
            f"(storysdk serve --{key}); leave it out of the story file"
        )
    if kind == "free":
        raise ConfigError(
            f"{where} option {key!r} hands free-form values to the model code, which a story sent to the "
            "server cannot set; leave it out (or run the story with storysdk run)"
        )
    return True, value


def _check_track_planner(track: str, name: str, registry: Registry) -> None:
    """A track's planner must be a track planner (``plans_tracks``), not a story planner."""
    if registry.get("planner", name).capabilities().get("plans_tracks"):
        return
    able = sorted(i.name for i in registry.components("planner") if i.capabilities().get("plans_tracks"))
    raise ConfigError(
        f"[tracks.{track}] planner {name!r} plans whole stories, not a track's cues; this server's track "
        f"planners: {', '.join(able) or '(none)'}; or leave the track's planner out for one cue per scene"
    )


def check_story_options(
    tables: Mapping[str, list[dict[str, Any]]], defaults: Mapping[str, Any], cfg: ServerConfig, registry: Registry
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """The story file's component tables and ``[defaults]`` as the server runs them (see the module).

    ``tables`` maps a kind (``planner``, ``tokenizer``, ``generator``, ``composer``) to its
    component tables (``{"name": ..., **options}``). Returns new tables and defaults, with
    model and font names replaced by the operator's paths; raises :class:`ConfigError`.
    A story with ``[tracks.<name>]`` tables: :func:`check_story_tracks`.
    """
    out, _tracks, new_defaults = check_story_tracks(tables, None, defaults, cfg, registry)
    return out, new_defaults


def check_story_tracks(
    tables: Mapping[str, list[dict[str, Any]]],
    tracks: Mapping[str, Mapping[str, Any]] | None,
    defaults: Mapping[str, Any],
    cfg: ServerConfig,
    registry: Registry,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, Any]] | None, dict[str, Any]]:
    """:func:`check_story_options` for a story file with tracks: also every track's components
    (its ``generator``, ``planner`` and ``tokenizers``), named in errors as ``[tracks.<name>]``.

    ``tracks`` maps a track name to its table as :func:`~storysdk.storyfile.parse_story_file`
    reads it (components as ``{"name": ..., **options}`` tables; the track's settings, such as
    ``text`` or ``gain``, are kept as they are). Returns (tables, tracks, defaults).
    """
    out: dict[str, list[dict[str, Any]]] = {}
    taken: dict[str, OptionKind] = {}

    def component(kind: str, spec: Mapping[str, Any], where: str) -> dict[str, Any]:
        name = spec["name"]
        info = registry.get(kind, name)  # an unknown name: UnknownComponentError, answered 422
        kinds = _kinds(info)
        taken.update(kinds)
        new: dict[str, Any] = {"name": name}
        for key, value in spec.items():
            if key == "name":
                continue
            keep, used = _check(where, key, value, kinds.get(key, option_kind(key, declared=False)), cfg,
                                in_defaults=False)
            if keep:
                new[key] = used
        return new

    for kind, specs in tables.items():
        out[kind] = []
        for i, spec in enumerate(specs):
            where = f"[{kind}] {spec['name']!r}" if kind == "planner" else f"[[{kind}s]] #{i + 1} ({spec['name']!r})"
            out[kind].append(component(kind, spec, where))
    new_tracks: dict[str, dict[str, Any]] | None = None
    if tracks is not None:
        new_tracks = {}
        for track, table in tracks.items():
            new_table = dict(table)
            for key, kind in (("generator", "generator"), ("planner", "planner")):
                spec = table.get(key)
                if isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
                    new_table[key] = component(kind, spec, f"[tracks.{track}] {key} ({spec['name']!r})")
                    if kind == "planner":
                        _check_track_planner(track, spec["name"], registry)
            toks = table.get("tokenizers")
            if isinstance(toks, list):
                new_table["tokenizers"] = [
                    component("tokenizer", t, f"[tracks.{track}] tokenizers #{i + 1} ({t['name']!r})")
                    if isinstance(t, Mapping) and isinstance(t.get("name"), str) else t
                    for i, t in enumerate(toks)
                ]
            new_tracks[track] = new_table
    new_defaults: dict[str, Any] = {}
    for key, value in defaults.items():
        keep, used = _check("[defaults]", key, value, taken.get(key, option_kind(key, declared=False)), cfg,
                            in_defaults=True)
        if keep:
            new_defaults[key] = used
    return out, new_tracks, new_defaults
