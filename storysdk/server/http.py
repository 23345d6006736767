"""HTTP plumbing of the server: JSON errors, the API key check, the body size limit and read deadline, the catch-all.

Nothing a client sends ends in an unhandled exception: :class:`CatchAllMiddleware` answers
a JSON 500 for a bug (logged with its traceback on the ``storysdk.server`` logger, never
sent), so the ASGI server keeps the connection. Error messages go through
:func:`~storysdk.server.redact.redact`: no server path reaches a client.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import BusyError, ConfigError, JobCancelled, StorySDKError, UnknownComponentError
from .redact import redact

__all__ = [
    "ApiKeyMiddleware",
    "BodyLimitMiddleware",
    "BodyTimeout",
    "BodyTooLarge",
    "CatchAllMiddleware",
    "FieldTooLarge",
    "error_response",
    "exception_response",
    "status_of",
]

log = logging.getLogger("storysdk.server")
_FIELD = re.compile(r"field '([A-Za-z0-9_]+)'")


def error_response(status: int, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any) -> JSONResponse:
    """``{"error": message, "status": status, ...}`` with that status code."""
    return JSONResponse({"error": message, "status": status, **extra}, status_code=status, headers=dict(headers or {}))


class BodyTooLarge(StorySDKError):
    """A request body past the server's limit (answered 413)."""


class FieldTooLarge(BodyTooLarge):
    """One field of a request body past the server's per-field limit (answered 413, naming the field)."""


class BodyTimeout(StorySDKError):
    """A request body that did not arrive in time (answered 408, and the connection is closed)."""


def status_of(exc: BaseException) -> int:
    """The HTTP status of an error a request or job raised."""
    if isinstance(exc, BusyError):
        return 429
    if isinstance(exc, BodyTooLarge):
        return 413
    if isinstance(exc, BodyTimeout):
        return 408
    if isinstance(exc, (ConfigError, UnknownComponentError)):
        return 422
    if isinstance(exc, JobCancelled):
        return 409
    return 500


def job_of(exc: BaseException) -> str | None:
    """The id of the job that failed with ``exc`` (set by the job queue), else ``None``."""
    job = getattr(exc, "storysdk_job", None)
    return job if isinstance(job, str) else None


def public_message(exc: BaseException, config: Any = None) -> str:
    """What a client is told of ``exc``: its message without server paths; for a bug, its type too.

    ``config`` (the :class:`~storysdk.server.ServerConfig`) names the folders to hide.
    """
    if isinstance(exc, StorySDKError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    if config is None:
        return redact(text)
    return redact(text, out_dir=config.out_dir, named={"model": config.models, "font": config.fonts})


def exception_response(exc: BaseException, config: Any = None) -> JSONResponse:
    """The JSON error for ``exc``: the field it names (``"field 'x' ..."``) is given as ``field``.

    A bug (not a :class:`StorySDKError`) raised while answering a request is logged and
    answered with an error id only; one a job failed with is answered with its type and its
    message (without server paths), as ``GET /v1/jobs/{id}`` shows it.
    """
    status = status_of(exc)
    extra: dict[str, Any] = {}
    job = job_of(exc)
    if isinstance(exc, StorySDKError) or job is not None:
        message = public_message(exc, config)
        if job is not None and status == 500:
            message = f"job {job} failed: {message}"
            extra["job"] = job
    else:
        ref = secrets.token_hex(4)
        log.error("storysdk serve: internal error %s while answering a request", ref, exc_info=exc)
        message = f"internal error {ref}: the server's log has the details; please report it"
    found = _FIELD.search(message)
    if found:
        extra["field"] = found.group(1)
    headers = {"Retry-After": "5"} if status == 429 else {"Connection": "close"} if status == 408 else None
    return error_response(status, message, headers=headers, **extra)


class CatchAllMiddleware:
    """Answers a JSON 500 for any exception an endpoint lets through, instead of letting it reach the
    ASGI server (which would log it as unhandled and drop the keep-alive connection)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:  # noqa: BLE001 - answered, and logged by exception_response
            config = getattr(scope.get("app"), "state", None)
            response = exception_response(exc, getattr(config, "config", None))
            if started:  # too late to answer: the client gets a cut-off response
                log.error("storysdk serve: error after the response started", exc_info=exc)
                return
            await response(scope, receive, send)


class BodyLimitMiddleware:
    """Answers 413 to a body larger than ``limit`` bytes (at once from ``Content-Length``, else while it
    streams in: the endpoint reading it gets :class:`BodyTooLarge`) and 408 to a body that is not all
    in ``timeout`` seconds after the request's headers (:class:`BodyTimeout`, the connection closed)."""

    def __init__(self, app: ASGIApp, limit: int, timeout: float | None = None) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
                if length < 0 or length > self.limit:
                    response = error_response(413 if length > self.limit else 400, self._message(length))
                    await response(scope, receive, send)
                    return
        seen = 0
        done = False
        deadline = None if self.timeout is None else time.monotonic() + self.timeout

        async def limited() -> Message:
            nonlocal seen, done
            if done or deadline is None:
                message = await receive()
            else:
                try:
                    message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.0))
                except asyncio.TimeoutError:
                    raise BodyTimeout(
                        f"the request body did not arrive within {self.timeout:g} s; send it faster "
                        "(or start the server with a larger --body-timeout)"
                    ) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self._message(seen))
                done = not message.get("more_body", False)
            else:
                done = True
            return message

        await self.app(scope, limited, send)

    def _message(self, length: int) -> str:
        if length < 0:
            return "the Content-Length header is not a number of bytes"
        return (
            f"the request body is larger than this server's limit of {self.limit} bytes; send less "
            "(or start the server with a larger --limit body=... or --max-body-mb)"
        )


class ApiKeyMiddleware:
    """When a key is configured, ``/v1`` requests without the right ``x-api-key`` header get 401."""

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self.key = api_key.encode("utf-8") if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.key is None or scope["type"] != "http" or not scope["path"].startswith("/v1"):
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope.get("headers", []) if k == b"x-api-key"), None)
        if given is None or not hmac.compare_digest(given, self.key):
            what = "missing" if given is None else "wrong"
            response = error_response(401, f"authentication failed: the x-api-key header is {what}; send the server's API key")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
