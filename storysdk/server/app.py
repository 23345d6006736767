"""The ASGI application of ``storysdk serve``: the core's endpoints plus those that plugins register."""

from __future__ import annotations

import contextlib
import inspect
import re
import time
import warnings
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import PluginError, StorySDKError
from ..registry import Registration, Registry, get_registry
from .config import ServerConfig
from .http import ApiKeyMiddleware, BodyLimitMiddleware, CatchAllMiddleware, error_response, exception_response, public_message
from .jobroutes import cancel_job, get_job, get_job_file, list_jobs
from .jobs import JobQueue, WorkerCache, WorkerContext
from .stories import cancel_story, get_story, list_stories, story_file, submit_story

__all__ = ["ROUTE_HOOK", "PluginRoute", "create_app", "plugin_routes"]

ROUTE_HOOK = "register_routes"


class _Message(StorySDKError):
    """A job error's message, redacted as the server redacts any error's."""
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = str(exc.detail)
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"{request.method} is not allowed on {request.url.path}; use {allowed or 'another method'}"
    elif exc.status_code == 404 and message == "Not Found":
        message = f"no endpoint {request.url.path}; this server has {', '.join(request.app.state.endpoints)}"
    return error_response(exc.status_code, message, headers=exc.headers)


async def _sdk_error(request: Request, exc: Exception) -> Response:
    return exception_response(exc, request.app.state.config)


async def _disconnected(request: Request, exc: Exception) -> Response:
    # the client went away while sending its body: nobody reads this answer, and nothing is logged
    return error_response(400, "the client disconnected before the request body was complete")


async def _status(request: Request) -> Response:
    from .. import __version__

    queue: JobQueue = request.app.state.queue
    cfg: ServerConfig = request.app.state.config
    return JSONResponse(
        {
            "storysdk": __version__,
            "uptime": time.time() - request.app.state.started,
            "endpoints": request.app.state.endpoints,
            "route_errors": request.app.state.route_errors,
            "limits": cfg.limits.to_dict(),
            "models": sorted(cfg.models),  # the names story jobs may give, never the paths
            "fonts": sorted(cfg.fonts),
            **queue.stats(),
        }
    )


CORE_ROUTES: tuple[Route, ...] = (
    Route("/v1/stories", submit_story, methods=["POST"]),
    Route("/v1/stories", list_stories, methods=["GET"]),
    Route("/v1/stories/{job_id}", get_story, methods=["GET"], name="get_story"),
    Route("/v1/stories/{job_id}", cancel_story, methods=["DELETE"]),
    Route("/v1/stories/{job_id}/files/{path:path}", story_file, methods=["GET"]),
    Route("/v1/jobs", list_jobs, methods=["GET"]),
    Route("/v1/jobs/{job_id}", get_job, methods=["GET"], name="get_job"),
    Route("/v1/jobs/{job_id}", cancel_job, methods=["DELETE"]),
    Route("/v1/jobs/{job_id}/files/{path:path}", get_job_file, methods=["GET"]),
    Route("/v1/status", _status, methods=["GET"]),
)


@attrs.frozen
class PluginRoute:
    """An endpoint a plugin registered: ``register(path, endpoint, methods=("POST",), name=None)``."""

    plugin: str
    path: str
    endpoint: Callable[[Request], Any]
    methods: tuple[str, ...]
    name: str | None = None

    def route(self) -> Route:
        return Route(self.path, self.endpoint, methods=list(self.methods), name=self.name)


def _plugin_route(reg: Registration) -> PluginRoute:
    def bad(why: str) -> PluginError:
        return PluginError(
            f"plugin {reg.plugin!r} registered a route it cannot have: {why}; call "
            "register('/v1/<path>', async_endpoint, methods=('POST',)) in its register_routes hook"
        )

    args, kwargs = tuple(reg.args), dict(reg.kwargs)
    unknown = sorted(set(kwargs) - {"path", "endpoint", "methods", "name"})
    if unknown:
        raise bad(f"unknown argument(s) {', '.join(unknown)}")
    names = ("path", "endpoint", "methods", "name")
    if len(args) > len(names):
        raise bad(f"{len(args)} positional arguments")
    values: dict[str, Any] = {"methods": ("POST",), "name": None, **dict(zip(names, args)), **kwargs}
    if "path" not in values or "endpoint" not in values:
        raise bad("a path and an endpoint are needed")
    path, endpoint, methods, name = (values[n] for n in names)
    if not isinstance(path, str) or not path.startswith("/v1/"):
        raise bad(f"path {path!r} is not under /v1/ (where the API key applies)")
    if not callable(endpoint) or not inspect.iscoroutinefunction(endpoint):
        raise bad(f"endpoint {endpoint!r} of {path} is not an async function (async def endpoint(request))")
    if isinstance(methods, str):
        methods = (methods,)
    methods = tuple(str(m).upper() for m in methods)
    if not methods or any(m not in HTTP_METHODS for m in methods):
        raise bad(f"methods {methods!r} of {path}; use some of {', '.join(HTTP_METHODS)}")
    if name is not None and not isinstance(name, str):
        raise bad(f"name {name!r} of {path} is not a string")
    return PluginRoute(reg.plugin, path, endpoint, methods, name)


def _claims(path: str, methods: tuple[str, ...]) -> set[tuple[str, str]]:
    return {(path, m) for m in methods}


def plugin_routes(registry: Registry) -> tuple[list[PluginRoute], dict[str, str]]:
    """The routes plugins register, and the plugins whose routes were refused (plugin -> why).

    A route is refused, with the rest of its plugin's routes, when it is malformed or claims a
    path and method that the core or an earlier plugin already serves. A plugin whose
    ``register_routes`` hook raised is listed too.
    """
    taken: dict[tuple[str, str], str] = {}
    for r in CORE_ROUTES:
        for m in r.methods or ():
            if m != "HEAD":
                taken[(r.path, m)] = "storysdk"
    by_plugin: dict[str, list[Registration]] = {}
    for reg in registry.collect(ROUTE_HOOK):
        by_plugin.setdefault(reg.plugin, []).append(reg)
    routes: list[PluginRoute] = []
    errors: dict[str, str] = {}
    for plugin, regs in by_plugin.items():
        try:
            mine = [_plugin_route(reg) for reg in regs]
            claimed: dict[tuple[str, str], str] = {}
            for r in mine:
                for key in _claims(r.path, r.methods):
                    owner = taken.get(key) or (plugin if key in claimed else None)
                    if owner is not None:
                        raise PluginError(
                            f"plugin {plugin!r} registered {key[1]} {key[0]}, which {owner!r} already serves; "
                            "one of them must use another path"
                        )
                    claimed[key] = plugin
        except PluginError as exc:
            errors[plugin] = str(exc)
            continue
        taken.update(claimed)
        routes.extend(mine)
    for f in registry.failed:
        if f.error.startswith(ROUTE_HOOK + ":"):
            errors.setdefault(f.name, f.error)
    return routes, errors


_CONVERTER = re.compile(r"\{(\w+):\w+\}")


def _endpoint_list(routes: list[Route]) -> list[str]:
    by_path: dict[str, list[str]] = {}
    for r in routes:
        methods = by_path.setdefault(_CONVERTER.sub(r"{\1}", r.path), [])
        methods.extend(m for m in sorted(r.methods or ()) if m != "HEAD" and m not in methods)
    return [f"{'/'.join(methods)} {path}" for path, methods in by_path.items()]


def create_app(config: ServerConfig | None = None, *, registry: Registry | None = None) -> Starlette:
    """The server's ASGI app: its routes and those of the plugins, the API key and body size checks, the job queue.

    Plugins' routes come from the ``register_routes`` hook of ``registry`` (default: the
    installed plugins). A plugin whose routes are malformed or taken is left out with a
    warning (and listed under ``route_errors`` in ``GET /v1/status``); the others are served.
    The queue's worker threads start with the app (ASGI lifespan) and stop with it. Run it
    with any ASGI server, e.g. ``uvicorn.run(create_app(cfg), host=..., port=...)``, or use
    :func:`storysdk.server.run_server`.
    """
    cfg = config if config is not None else ServerConfig()
    reg = registry if registry is not None else get_registry()

    def make_context(index: int) -> WorkerContext:
        return WorkerContext(index, defaults=cfg.worker_defaults(index), cache=WorkerCache(cfg.max_cached_components))

    def public(message: str) -> str:
        return public_message(_Message(message), cfg)

    queue = JobQueue(
        workers=cfg.workers, max_queued=cfg.max_queue, make_context=make_context, max_kept=cfg.max_jobs_kept,
        public=public,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        queue.start()
        try:
            yield
        finally:
            queue.stop()

    extra, route_errors = plugin_routes(reg)
    for plugin, why in route_errors.items():
        warnings.warn(f"storysdk serve: the routes of plugin {plugin!r} are not served: {why}", UserWarning, stacklevel=2)
    routes = [*CORE_ROUTES, *(r.route() for r in extra)]
    # a bug (any other exception) is answered by CatchAllMiddleware: a JSON 500, logged, the connection kept
    handlers: dict[Any, Any] = {HTTPException: _http_error, StorySDKError: _sdk_error, ClientDisconnect: _disconnected}
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(CatchAllMiddleware),
            Middleware(ApiKeyMiddleware, api_key=cfg.api_key),
            Middleware(BodyLimitMiddleware, limit=cfg.max_body_bytes, timeout=cfg.body_timeout),
        ],
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    app.state.config = cfg
    app.state.registry = reg
    app.state.queue = queue
    app.state.started = time.time()
    app.state.endpoints = _endpoint_list(routes)
    app.state.route_errors = route_errors
    return app
