"""The settings of ``storysdk serve``."""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from ..errors import ConfigError
from ..limits import Limits

__all__ = ["ServerConfig"]

MiB = 1024 * 1024


_CHOICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


def _positive(name: str, value: object, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be a whole number >= {low}, got {value!r}")


def _seconds(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a number of seconds > 0, got {value!r}")


def looks_like_path(value: str) -> bool:
    """Whether ``value`` names a local file or folder rather than a hub id (``org/name``)."""
    return (
        value.startswith(("/", "./", "../", "~", "\\"))
        or value in (".", "..")
        or bool(re.match(r"^[A-Za-z]:[\\/]", value))
        or (os.sep != "/" and os.sep in value)
    )


def _choices(what: str, flag: str, value: object, *, files: bool) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{what} must be a table of name -> path, got {type(value).__name__}")
    out: dict[str, str] = {}
    for name, target in value.items():
        if not isinstance(name, str) or not _CHOICE.match(name):
            raise ConfigError(
                f"{what}: the name {name!r} must be 1-64 letters, digits, '_', '.', '+' or '-' "
                f"(clients send it; {flag} NAME=PATH)"
            )
        if not isinstance(target, (str, os.PathLike)) or not str(target).strip():
            raise ConfigError(f"{what}: {name!r} must name a path{'' if files else ' or a hub id'}, got {target!r}")
        text = str(target)
        local = files or looks_like_path(text)
        if local and not os.path.exists(os.path.expanduser(text)):
            raise ConfigError(f"{what}: {name!r} names {text!r}, which does not exist; fix the path ({flag} NAME=PATH)")
        if files and not os.path.isfile(os.path.expanduser(text)):
            raise ConfigError(f"{what}: {name!r} names {text!r}, which is not a file; give a .ttf/.otf font file")
        out[name] = text
    return out


@attrs.define
class ServerConfig:
    """How the server listens, who may call it and how much work it takes on.

    - ``host``/``port``: 127.0.0.1 by default, so nothing outside this machine reaches it;
    - ``api_key``: when set, every ``/v1`` request needs it in the ``x-api-key`` header (401
      otherwise), as hosted image APIs do;
    - ``workers``: jobs that run at once (one per GPU; each keeps its own models loaded);
      ``devices``: the device of each worker (worker ``i`` uses ``devices[i % len]``);
    - ``max_queue``: requests that may wait for a worker; one more is answered 429;
    - ``limits``: the :class:`~storysdk.limits.Limits` every job is checked against before it is
      queued (pixels per frame, scenes, steps, text lengths, page size, audio seconds, body size;
      ``storysdk serve --limit NAME=VALUE``), answered 422 naming the limit;
    - ``max_body_bytes``: a larger request body is answered 413 (default: ``limits.body``; given,
      it replaces that limit); ``max_field_bytes``: so is a larger field (of any content type;
      uploaded files excepted);
    - ``header_timeout``: seconds a client has to send a request's headers (from its first byte,
      or from connecting) before the connection is closed; ``body_timeout``: seconds it has to
      send the body once the headers are in (408, then closed); ``keep_alive_timeout``: seconds
      an idle keep-alive connection stays open; ``max_connections``: connections (and requests
      in progress) beyond which new requests are answered 503 (``None``: no bound);
    - ``models``, ``fonts``: what story jobs may choose, by name: ``{"sdxl": "/models/sdxl"}``.
      A story file's model option (``model``, ``checkpoint``, ...) or ``font_path`` must be one
      of these names, which the server replaces with the path; a path, a hub id or an unknown
      name is answered 422 (docs/serving.md, "What a story job may name");
    - ``out_dir``: where jobs write their folders (story jobs: ``<out_dir>/stories/<job id>``;
      a plugin endpoint's jobs: ``<out_dir>/<its name>/...``);
    - ``defaults``: options given to every component that takes them (``preset``, ``dtype``, ...);
    - ``max_jobs_kept``: finished jobs remembered for polling (their files stay on disk);
    - ``max_cached_components``: built components (and so loaded models) each worker keeps,
      the least recently used dropped first (``None``: all).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    workers: int = 1
    devices: tuple[str, ...] = ()
    max_queue: int = 8
    max_body_bytes: int | None = None
    max_field_bytes: int = 1 * MiB
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    keep_alive_timeout: float = 5.0
    max_connections: int | None = 128
    models: dict[str, str] = attrs.field(factory=dict)
    fonts: dict[str, str] = attrs.field(factory=dict)
    out_dir: Path = attrs.field(default=Path("out/serve"), converter=Path)
    defaults: dict[str, Any] = attrs.field(factory=dict)
    max_jobs_kept: int = 256
    max_cached_components: int | None = None
    limits: Limits = attrs.field(factory=Limits)

    def __attrs_post_init__(self) -> None:
        _positive("port", self.port, 0)
        if self.port > 65535:
            raise ConfigError(f"port must be at most 65535, got {self.port}")
        _positive("workers", self.workers)
        _positive("max_queue", self.max_queue, 0)
        if not isinstance(self.limits, Limits):
            raise ConfigError(f"limits must be a storysdk.Limits, got {type(self.limits).__name__}")
        if self.max_body_bytes is None:
            if self.limits.body is None:
                raise ConfigError("a server needs a body size limit: give limits.body (--limit body=16MiB) or max_body_bytes")
            self.max_body_bytes = int(self.limits.body)
        _positive("max_body_bytes", self.max_body_bytes, 1024)
        if self.limits.body != self.max_body_bytes:
            self.limits = attrs.evolve(self.limits, body=self.max_body_bytes)
        _positive("max_field_bytes", self.max_field_bytes, 1)
        for name in ("header_timeout", "body_timeout", "keep_alive_timeout"):
            _seconds(name, getattr(self, name))
        if self.max_connections is not None:
            _positive("max_connections", self.max_connections)
        self.models = _choices("models", "--model", self.models, files=False)
        self.fonts = _choices("fonts", "--font", self.fonts, files=True)
        _positive("max_jobs_kept", self.max_jobs_kept)
        if self.max_cached_components is not None:
            _positive("max_cached_components", self.max_cached_components)
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("api_key is empty; give a non-empty key or leave it unset (no authentication)")
        self.devices = tuple(str(d) for d in self.devices)

    @property
    def loopback(self) -> bool:
        """Whether the server is reachable from this machine only."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def worker_defaults(self, index: int) -> dict[str, Any]:
        """``defaults`` for worker ``index``, with its device when ``devices`` are given."""
        out = dict(self.defaults)
        if self.devices:
            out["device"] = self.devices[index % len(self.devices)]
        return out
