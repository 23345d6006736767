"""HTTP plumbing of the server: JSON errors, the API key check, the body size limit, body parsing."""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Mapping
from typing import Any

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import BusyError, ConfigError, JobCancelled, StorySDKError, UnknownComponentError

__all__ = [
    "ApiKeyMiddleware",
    "BodyLimitMiddleware",
    "BodyTooLarge",
    "error_response",
    "read_fields",
    "status_of",
]

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
_FIELD = re.compile(r"field '([A-Za-z0-9_]+)'")


def error_response(status: int, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any) -> JSONResponse:
    """``{"error": message, "status": status, ...}`` with that status code."""
    return JSONResponse({"error": message, "status": status, **extra}, status_code=status, headers=dict(headers or {}))


def status_of(exc: BaseException) -> int:
    """The HTTP status of an error a request or job raised."""
    if isinstance(exc, BusyError):
        return 429
    if isinstance(exc, BodyTooLarge):
        return 413
    if isinstance(exc, (ConfigError, UnknownComponentError)):
        return 422
    if isinstance(exc, JobCancelled):
        return 409
    return 500


def exception_response(exc: BaseException) -> JSONResponse:
    """The JSON error for ``exc``: the field it names (``"field 'x' ..."``) is given as ``field``."""
    status = status_of(exc)
    message = str(exc) if isinstance(exc, StorySDKError) else f"internal error: {type(exc).__name__}: {exc}"
    extra: dict[str, Any] = {}
    found = _FIELD.search(message)
    if found:
        extra["field"] = found.group(1)
    headers = {"Retry-After": "5"} if status == 429 else None
    return error_response(status, message, headers=headers, **extra)


class BodyTooLarge(StorySDKError):
    """A request body past the server's limit (answered 413)."""


class BodyLimitMiddleware:
    """Answers 413 to a body larger than ``limit`` bytes: at once from ``Content-Length``, else
    while it streams in (the endpoint reading it gets :class:`BodyTooLarge`)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

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

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self._message(seen))
            return message

        await self.app(scope, limited, send)

    def _message(self, length: int) -> str:
        if length < 0:
            return "the Content-Length header is not a number of bytes"
        return (
            f"the request body is larger than this server's limit of {self.limit} bytes; send less "
            "(or start the server with a larger --max-body-mb)"
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


async def read_fields(request: Request, *, files: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields of a JSON object, multipart form or url-encoded form body.

    Form values are strings; an uploaded file is returned as bytes when its name is in
    ``files`` (otherwise it is refused). JSON values must be strings, numbers or null.
    """
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json" or ctype.endswith("+json"):
        body = await request.body()
        try:
            data = json.loads(body or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HTTPException(400, f"the body is not valid JSON ({exc}); send a JSON object of fields") from None
        if not isinstance(data, dict):
            raise HTTPException(400, "the JSON body must be an object of fields, e.g. {\"seed\": 42}")
        out: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, (dict, list)):
                raise ConfigError(f"field '{key}' must be a string or a number, got a JSON {type(value).__name__}")
            out[key] = None if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        return out
    if ctype in FORM_TYPES:
        out = {}
        async with request.form() as form:
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    if key not in files:
                        raise ConfigError(f"field '{key}' is a file upload; only {', '.join(files) or 'no fields'} may be")
                    out[key] = await value.read()
                else:
                    out[key] = value
        return out
    raise HTTPException(
        415, f"unsupported content type {ctype or '(none)'!r}; send application/json, multipart/form-data "
        "or application/x-www-form-urlencoded"
    )
