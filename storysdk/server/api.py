"""The server's API for endpoints, its own and those that plugins add (docs/serving.md, "Endpoints from plugins").

A plugin adds an endpoint to ``storysdk serve`` through the ``register_routes`` hook::

    @hookimpl
    def register_routes(register):
        register("/v1/echo", echo, methods=("POST",))

``echo`` is an async Starlette endpoint (``async def echo(request) -> Response``). It reaches
the server through the functions here, all importable from :mod:`storysdk.server`:

- :func:`read_fields`: the body's fields (JSON object, multipart or url-encoded form), within
  the server's body size limit (413 past it);
- raising :class:`~storysdk.errors.ConfigError` answers 422 (``"field 'x' ..."`` in the
  message also gives ``"field": "x"``), :class:`~storysdk.errors.BusyError` 429, any other
  error a JSON 500;
- :func:`submit_job` puts work on the server's bounded job queue (429 when full); the work
  runs on a worker thread with the worker's :class:`~storysdk.server.jobs.WorkerContext`
  (its :class:`~storysdk.cache.ComponentCache` and runtime options); :func:`job_root` is the
  folder for a kind of job's output folders; :func:`job_result` awaits a job;
  :func:`job_accepted` answers 202 with the job, which ``GET /v1/jobs/{id}`` then reports
  (status, progress, files) and ``DELETE /v1/jobs/{id}`` cancels;
- :func:`server_registry` and :func:`server_config`: the server's plugin registry and settings.
"""

from __future__ import annotations

import asyncio
import mimetypes
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from ..errors import ConfigError
from .fields import read_fields
from .http import error_response
from .jobs import Job, JobQueue, WorkerContext

if TYPE_CHECKING:
    from ..registry import Registry
    from .config import ServerConfig

__all__ = [
    "Job",
    "WorkerContext",
    "describe_job",
    "error_response",
    "job_accepted",
    "job_file",
    "job_files",
    "job_result",
    "job_root",
    "read_fields",
    "server_config",
    "server_registry",
    "submit_job",
    "wants_async",
]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def server_config(request: Request) -> ServerConfig:
    """The settings of the server answering ``request``."""
    return request.app.state.config  # type: ignore[no-any-return]


def server_registry(request: Request) -> Registry:
    """The plugin registry of the server answering ``request`` (build pipelines with it)."""
    return request.app.state.registry  # type: ignore[no-any-return]


def _queue(request: Request) -> JobQueue:
    return request.app.state.queue  # type: ignore[no-any-return]


def job_root(request: Request, name: str) -> Path:
    """``<--out>/<name>``: the folder that holds one kind of job's output folders (story jobs: ``stories``)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"a job folder name must be lower-case letters, digits, '-' or '_', got {name!r}")
    return server_config(request).out_dir / name


def submit_job(request: Request, job: Job) -> Job:
    """Queue ``job`` on the server's workers and return it (or the queued or running job with its kind and key).

    A full queue raises :class:`~storysdk.errors.BusyError`, answered 429 with ``Retry-After``.
    """
    return _queue(request).submit(job)


async def job_result(job: Job) -> Any:
    """Wait for ``job`` without blocking the server; its result, or the error it failed with."""
    return await asyncio.wrap_future(job.future)


def wants_async(request: Request) -> bool:
    """Whether the client asked for a job instead of the answer (``Prefer: respond-async``, RFC 7240)."""
    prefer = request.headers.get("prefer", "")
    return any(part.strip().lower() == "respond-async" for part in prefer.split(","))


def job_files(job: Job) -> list[str]:
    """The files in the job's folder so far (relative POSIX paths; hidden files left out)."""
    if job.folder is None or not job.folder.is_dir():
        return []
    out = []
    for p in sorted(job.folder.rglob("*")):
        rel = p.relative_to(job.folder)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts):
            out.append(rel.as_posix())
    return out


def describe_job(request: Request, job: Job, *, route: str = "get_job") -> dict[str, Any]:
    """The job as JSON data: status, progress, queue position, files, URLs, and its result when done.

    ``url`` is the job's URL on the route named ``route`` (``GET /v1/jobs/{id}`` by default),
    ``files_url`` that URL plus ``/files/``.
    """
    data = job.to_dict()
    base = str(request.url_for(route, job_id=job.id))
    data["url"] = base
    data["files_url"] = base + "/files/"
    data["queue_position"] = _queue(request).position(job)
    data["files"] = job_files(job)
    if job.status == "done" and isinstance(job.result, dict):
        data["result"] = job.result
    return data


def job_accepted(request: Request, job: Job, *, route: str = "get_job") -> JSONResponse:
    """202 with :func:`describe_job` and a ``Location`` header: what an endpoint answers once it queued a job."""
    data = describe_job(request, job, route=route)
    return JSONResponse(data, status_code=202, headers={"Location": data["url"]})


#: Files of an output folder that record the run's settings, which can name the operator's model folders.
RECORDS = ("run.json",)


def job_file(job: Job, rel: str, *, listing: str, config: ServerConfig | None = None) -> Response:
    """One file of the job's folder; 404 for anything outside it or hidden (``listing`` names where files are listed).

    With the server's ``config``, the run's record (``run.json``, which names the weights used)
    is served without the server's paths (a configured model's folder shows as ``<model NAME>``).
    """
    if job.folder is None:
        raise HTTPException(404, "this job has no files")
    root = job.folder.resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root) or not path.is_file() or any(p.startswith(".") for p in path.relative_to(root).parts):
        raise HTTPException(404, f"job {job.id} has no file {rel!r}; {listing} lists its files")
    media, _ = mimetypes.guess_type(path.name)
    if config is not None and path.relative_to(root).as_posix() in RECORDS:
        from .redact import redact

        text = redact(path.read_text(encoding="utf-8"), out_dir=config.out_dir,
                      named={"model": config.models, "font": config.fonts})
        return Response(text.encode("utf-8"), media_type=media or "application/json")
    return FileResponse(path, media_type=media or "application/octet-stream")
