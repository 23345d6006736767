"""The settings of ``storysdk serve``."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import attrs

from ..errors import ConfigError

__all__ = ["ServerConfig"]

MiB = 1024 * 1024


def _positive(name: str, value: object, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be a whole number >= {low}, got {value!r}")


@attrs.define
class ServerConfig:
    """How the server listens, who may call it and how much work it takes on.

    - ``host``/``port``: 127.0.0.1 by default, so nothing outside this machine reaches it;
    - ``api_key``: when set, every ``/v1`` request needs it in the ``x-api-key`` header (401
      otherwise), as hosted image APIs do;
    - ``workers``: jobs that run at once (one per GPU; each keeps its own models loaded);
      ``devices``: the device of each worker (worker ``i`` uses ``devices[i % len]``);
    - ``max_queue``: requests that may wait for a worker; one more is answered 429;
    - ``max_body_bytes``: a larger request body is answered 413;
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
    max_body_bytes: int = 16 * MiB
    out_dir: Path = attrs.field(default=Path("out/serve"), converter=Path)
    defaults: dict[str, Any] = attrs.field(factory=dict)
    max_jobs_kept: int = 256
    max_cached_components: int | None = None

    def __attrs_post_init__(self) -> None:
        _positive("port", self.port, 0)
        if self.port > 65535:
            raise ConfigError(f"port must be at most 65535, got {self.port}")
        _positive("workers", self.workers)
        _positive("max_queue", self.max_queue, 0)
        _positive("max_body_bytes", self.max_body_bytes, 1024)
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
