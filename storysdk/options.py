"""Declared component options: name, type, default, range or choices and meaning, in one place.

A component declares its options as a nested ``Options`` class, a pydantic model; the one
validator (:func:`validate_options`) checks every value before the component exists, and
``storysdk plugins --options NAME`` prints the same declarations::

    from typing import TypeVar, Literal
    from storysdk import Generator, Options, Field

    class Solid(Generator):
        name = "solid"

        class Options(Options):
            size: int = Field(64, ge=8, le=4096, description="width and height of each picture, pixels")
            palette: Literal["warm", "cold"] = Field("warm", description="which colours to draw from")

        def generate(self, scenes, ctx):
            size = self.options.size
            ...

``Solid(size=32)`` and ``Pipeline(generators=[("solid", {"size": 32})])`` validate alike;
``Solid(size=3)`` raises a :class:`~storysdk.errors.ConfigError` naming the option, the bound
and what the option means. Why pydantic: it is the ecosystem's schema library (FastAPI, llm's
model options), gives typed fields with bounds, choices (``Literal``) and descriptions in one
declaration, and exports JSON schema for clients of ``storysdk serve``.

Validation is strict: ``True`` is not a whole number, ``"5"`` is not a number, and NaN and
infinity are no numbers (``guidance = nan`` would silently turn guidance off); a whole number
is accepted where a float is declared. Options that hold objects (an already loaded
pipeline) are declared with the object's type or ``Any``.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal, TypeVar

import attrs
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError

__all__ = [
    "DeviceOptions",
    "Field",
    "OptionInfo",
    "Options",
    "describe_options",
    "option_names",
    "suggest",
    "validate_options",
]


class Options(BaseModel):
    """Base of every component's option declarations (a frozen, strict pydantic model).

    ``renamed`` maps former option names to their current ones; using a former name is an
    error that names the new one (``{"seed": "weights_seed"}``). ``moved`` maps former option
    names that no longer belong to this component to where they went (free text, said in the
    error).
    """

    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, arbitrary_types_allowed=True, allow_inf_nan=False
    )

    renamed: ClassVar[Mapping[str, str]] = {}
    moved: ClassVar[Mapping[str, str]] = {}


class DeviceOptions(Options):
    """The options every model-backed component shares (see :mod:`storysdk.runtime`)."""

    preset: Literal["tiny", "full", "auto"] | None = Field(
        None,
        description="'tiny' (toy weights built in code, offline), 'full' (the real model) or 'auto' "
        "(full when its weights are on this machine, else tiny with a warning); unset means full",
    )
    device: str | None = Field(None, description="torch device: 'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:N'")
    dtype: Literal["auto", "float16", "fp16", "half", "bfloat16", "bf16", "float32", "fp32", "float"] | None = Field(
        None, description="weights' dtype: 'auto' (float16 on CUDA, else float32), 'float16', 'bfloat16' or 'float32'"
    )
    offload: Literal["model", "sequential"] | None = Field(
        None, description="CPU offload on CUDA: 'model' (whole models) or 'sequential' (layer by layer); unset: none"
    )
    weights_seed: int = Field(0, description="seed of the tiny preset's random weights (no effect on real weights)")

    renamed: ClassVar[Mapping[str, str]] = {"seed": "weights_seed"}


def suggest(name: str, names: Iterable[str]) -> str:
    """``" Did you mean 'x'?"`` for the closest of ``names``, or ``""``."""
    close = difflib.get_close_matches(name, sorted(set(names)), n=3, cutoff=0.6)
    return f" Did you mean {', '.join(map(repr, close))}?" if close else ""


def option_names(cls: type[Options]) -> list[str]:
    """The declared option names of ``cls``, in declaration order."""
    return list(cls.model_fields)


def _who(kind: str, name: str) -> str:
    return f"{kind} {name!r}" if kind else repr(name)


#: An :class:`Options` subclass (what :func:`validate_options` returns an instance of).
OptionsT = TypeVar("OptionsT", bound="Options")


def validate_options(cls: type[OptionsT], values: Mapping[str, Any], *, kind: str = "", name: str = "") -> OptionsT:
    """``cls(**values)``, or a :class:`ConfigError` naming the option, the problem and the fix.

    An unknown name gets a "did you mean" suggestion, a former name (``cls.renamed``) the name
    that replaced it.
    """
    who = _who(kind, name)
    fields = cls.model_fields
    for key in values:
        if key in fields:
            continue
        if key in cls.moved:
            raise ConfigError(f"{who}: option {key!r} is no longer this component's: {cls.moved[key]}")
        new = cls.renamed.get(key)
        if new is not None:
            raise ConfigError(
                f"{who}: option {key!r} was renamed to {new!r} ({fields[new].description}); "
                f"write {new} = ... instead"
            )
        raise ConfigError(
            f"{who} has no option {key!r}.{suggest(key, fields)} Its options are: "
            f"{', '.join(fields) or '(none)'} (see 'storysdk plugins --options {name}')"
        )
    try:
        return cls(**values)
    except ValidationError as exc:
        raise ConfigError(_message(who, cls, exc, values)) from None


def _message(who: str, cls: type[Options], exc: ValidationError, values: Mapping[str, Any]) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = err.get("loc") or ()
        key = str(loc[0]) if loc else ""
        field = cls.model_fields.get(key)
        value = err.get("input")
        msg = err.get("msg", "invalid value")
        if err.get("type") == "missing" and len(loc) == 1:
            parts.append(f"option {key!r} is required ({field.description if field else ''})")
            continue
        if err.get("type") == "value_error":
            # a validator's own sentence: pydantic puts "Value error, " in front of it
            ctx_error = (err.get("ctx") or {}).get("error")
            msg = str(ctx_error) if ctx_error is not None else msg.removeprefix("Value error, ")
        elif msg:
            msg = msg[0].lower() + msg[1:]
        if len(loc) > 1 and key:
            where = "[" + "][".join(str(part) for part in loc[1:]) + "]"
            what = f"option {key}={values.get(key)!r} (at {key}{where})"
        else:
            what = f"option {key}={value!r}" if key else "options"
        hint = f" ({field.description})" if field is not None and field.description else ""
        parts.append(f"{what}: {msg}{hint}")
    return f"{who}: " + "; ".join(parts)


@attrs.frozen
class OptionInfo:
    """One declared option, as ``storysdk plugins --options`` shows it."""

    name: str
    type: str
    default: Any
    required: bool
    constraints: tuple[str, ...]
    description: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "default": None if self.required else self.default,
            "required": self.required,
            "constraints": list(self.constraints),
            "description": self.description,
        }


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is typing.Annotated:
        return _type_name(typing.get_args(tp)[0])
    if origin is not None:
        args = typing.get_args(tp)
        base = getattr(origin, "__name__", str(origin))
        return f"{base}[{', '.join(_type_name(a) for a in args)}]" if args else base
    if tp is type(None):
        return "None"
    if tp is Any:
        return "any"
    return getattr(tp, "__name__", str(tp))


_BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("multiple_of", "multiple of"),
           ("min_length", "length >="), ("max_length", "length <="))


def describe_options(cls: type[Options]) -> list[OptionInfo]:
    """The declarations of ``cls`` as :class:`OptionInfo`, in declaration order."""
    out = []
    for key, field in cls.model_fields.items():
        constraints = []
        for meta in field.metadata:
            for attr, word in _BOUNDS:
                value = getattr(meta, attr, None)
                if value is not None:
                    constraints.append(f"{word} {value}")
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if "constraint" in extra:
            constraints.append(str(extra["constraint"]))
        out.append(
            OptionInfo(
                name=key,
                type=_type_name(field.annotation),
                default=None if field.is_required() else field.get_default(call_default_factory=True),
                required=field.is_required(),
                constraints=tuple(constraints),
                description=field.description or "",
            )
        )
    return out
