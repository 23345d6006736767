"""The check that the ``serve`` extra is installed."""

from __future__ import annotations

import importlib.util

from ..errors import ConfigError

__all__ = ["require_serve_deps"]

#: module -> distribution of the ``serve`` extra
DEPS = {"starlette": "starlette", "uvicorn": "uvicorn", "multipart": "python-multipart"}


def require_serve_deps() -> None:
    """Raise :class:`ConfigError` naming the missing packages and the install command."""
    missing = [dist for mod, dist in DEPS.items() if importlib.util.find_spec(mod) is None]
    if missing:
        raise ConfigError(
            f"storysdk serve needs {', '.join(missing)}; install them with: pip install \"storysdk[serve]\""
        )
