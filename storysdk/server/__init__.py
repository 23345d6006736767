"""``storysdk serve``: an HTTP service that runs story files as jobs, plus the endpoints plugins add.

Needs the ``serve`` extra (``pip install "storysdk[serve]"``: Starlette, uvicorn,
python-multipart). The core's endpoints (docs/serving.md):

- ``POST /v1/stories``, ``GET /v1/stories[/{id}]``, ``GET /v1/stories/{id}/files/{path}``,
  ``DELETE /v1/stories/{id}``: story files as jobs;
- ``GET /v1/jobs[/{id}]``, ``GET /v1/jobs/{id}/files/{path}``, ``DELETE /v1/jobs/{id}``: every
  job, whichever endpoint queued it;
- ``GET /v1/status``: workers, queue, kept components, endpoints.

Every request is checked before anything is queued (docs/serving.md, "Hostile input"): bodies
by :mod:`.fields` (UTF-8, complete, per-field and body size caps), story files by
:mod:`.stories` and :mod:`.choices` (models and fonts only by the operator's names, the
server's :class:`~storysdk.limits.Limits`); errors reach clients without the server's paths
(:mod:`.redact`), bugs are logged and answered 500 (:mod:`.http`), and slow clients are
dropped (:mod:`.protocol`, the body deadline in :mod:`.http`).

Plugins add endpoints through the ``register_routes`` hook; they reach the server through
the functions of :mod:`storysdk.server.api`, importable from here: :func:`read_fields`, :func:`submit_job`,
:func:`job_result`, :func:`job_accepted`, :func:`describe_job`, :func:`job_root`,
:func:`wants_async`, :func:`server_registry`, :func:`server_config`, :func:`error_response`,
and the :class:`Job` and :class:`WorkerContext` types. Importing this package does not import
Starlette; those names do, on first use.

>>> from storysdk.server import RunningServer, ServerConfig                  # doctest: +SKIP
>>> with RunningServer(ServerConfig(port=0, defaults={"preset": "tiny"})) as srv:
...     print(srv.url)                                                       # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import ServerConfig
from .runner import RunningServer, run_server

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from ..registry import Registry
    from .api import (
        Job,
        WorkerContext,
        describe_job,
        error_response,
        job_accepted,
        job_file,
        job_files,
        job_result,
        job_root,
        read_fields,
        server_config,
        server_registry,
        submit_job,
        wants_async,
    )

__all__ = [
    "Job",
    "RunningServer",
    "ServerConfig",
    "WorkerContext",
    "create_app",
    "describe_job",
    "error_response",
    "job_accepted",
    "job_file",
    "job_files",
    "job_result",
    "job_root",
    "read_fields",
    "run_server",
    "server_config",
    "server_registry",
    "submit_job",
    "wants_async",
]

#: Names served from :mod:`storysdk.server.api` (which imports Starlette).
_API = frozenset(__all__) - {"RunningServer", "ServerConfig", "create_app", "run_server"}


def create_app(config: ServerConfig | None = None, *, registry: Registry | None = None) -> Starlette:
    """The ASGI app (see :func:`storysdk.server.app.create_app`); imports Starlette on call."""
    from ._deps import require_serve_deps

    require_serve_deps()
    from .app import create_app as _create

    return _create(config, registry=registry)


def __getattr__(name: str) -> Any:
    if name in _API:
        from ._deps import require_serve_deps

        require_serve_deps()
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
