"""The ASGI application of ``storysdk serve``."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import StorySDKError
from ..registry import Registry, get_registry
from .config import ServerConfig
from .hosted import storydiffusion_endpoint
from .http import ApiKeyMiddleware, BodyLimitMiddleware, error_response, exception_response
from .jobs import JobQueue, WorkerContext
from .stories import cancel_story, get_story, list_stories, story_file, submit_story

__all__ = ["create_app"]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = str(exc.detail)
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"{request.method} is not allowed on {request.url.path}; use {allowed or 'another method'}"
    elif exc.status_code == 404 and message == "Not Found":
        message = (
            f"no endpoint {request.url.path}; this server has POST /v1/storydiffusion, "
            "POST/GET /v1/stories, GET/DELETE /v1/stories/{id}, GET /v1/stories/{id}/files/{path}, GET /v1/status"
        )
    return error_response(exc.status_code, message, headers=exc.headers)


async def _sdk_error(request: Request, exc: Exception) -> Response:
    return exception_response(exc)


async def _status(request: Request) -> Response:
    from .. import __version__

    queue: JobQueue = request.app.state.queue
    return JSONResponse(
        {"storysdk": __version__, "uptime": time.time() - request.app.state.started, **queue.stats()}
    )


def create_app(config: ServerConfig | None = None, *, registry: Registry | None = None) -> Starlette:
    """The server's ASGI app: routes, the API key and body size checks, and the job queue.

    The queue's worker threads start with the app (ASGI lifespan) and stop with it. Run it
    with any ASGI server, e.g. ``uvicorn.run(create_app(cfg), host=..., port=...)``, or use
    :func:`storysdk.server.run_server`.
    """
    cfg = config if config is not None else ServerConfig()
    reg = registry if registry is not None else get_registry()

    def make_context(index: int) -> WorkerContext:
        return WorkerContext(index, defaults=cfg.worker_defaults(index))

    queue = JobQueue(workers=cfg.workers, max_queued=cfg.max_queue, make_context=make_context, max_kept=cfg.max_jobs_kept)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        queue.start()
        try:
            yield
        finally:
            queue.stop()

    routes = [
        Route("/v1/storydiffusion", storydiffusion_endpoint, methods=["POST"]),
        Route("/v1/stories", submit_story, methods=["POST"]),
        Route("/v1/stories", list_stories, methods=["GET"]),
        Route("/v1/stories/{job_id}", get_story, methods=["GET"], name="get_story"),
        Route("/v1/stories/{job_id}", cancel_story, methods=["DELETE"]),
        Route("/v1/stories/{job_id}/files/{path:path}", story_file, methods=["GET"]),
        Route("/v1/status", _status, methods=["GET"]),
    ]
    # Exception: a bug answers a JSON 500 too (and is logged by the ASGI server)
    handlers: dict[Any, Any] = {HTTPException: _http_error, StorySDKError: _sdk_error, Exception: _sdk_error}
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(ApiKeyMiddleware, api_key=cfg.api_key),
            Middleware(BodyLimitMiddleware, limit=cfg.max_body_bytes),
        ],
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    app.state.config = cfg
    app.state.registry = reg
    app.state.queue = queue
    app.state.started = time.time()
    return app
