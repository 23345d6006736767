"""Reading a request body's fields: a JSON object, a multipart form or a url-encoded form.

Every content type is read the same strict way (docs/serving.md, "Hostile input"):

- the body must be UTF-8 text (an uploaded file excepted) and complete: a multipart body that
  stops before its closing boundary is refused (400), never read as the fields that arrived;
- each field is at most ``max_field_bytes`` (413 naming the field), files excepted, whose only
  bound is the body size limit; at most :data:`MAX_FIELDS` fields; a field given twice is
  refused (422: which value was meant?);
- JSON: an object of strings, numbers, booleans or nulls; ``NaN``, ``Infinity`` and numbers
  too large for a float are refused, and so is nesting (a field holds one value).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException
from starlette.requests import Request

from ..errors import ConfigError
from .http import FieldTooLarge

__all__ = ["FORM_TYPES", "JSON_TYPES", "MAX_FIELDS", "parse_fields", "read_fields"]

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
JSON_TYPES = ("application/json",)
#: The most fields one body may have (Starlette's own default).
MAX_FIELDS = 1000
#: The most characters of a value that an error message repeats.
SHOWN = 40


def _shown(text: str) -> str:
    return repr(text) if len(text) <= SHOWN else repr(text[:SHOWN]) + f"... ({len(text)} characters)"


def content_type(request: Request) -> tuple[str, dict[str, str]]:
    """The request's media type (lower case) and its parameters (``boundary``, ``charset``)."""
    from python_multipart.multipart import parse_options_header

    raw = request.headers.get("content-type", "")
    media, params = parse_options_header(raw)
    decoded = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in params.items()}
    return media.decode("latin-1").strip().lower(), decoded


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HTTPException(400, f"{what} is not UTF-8 text (byte {exc.start}); send UTF-8") from None


class _Collector:
    """Fields as they are parsed: duplicates, the field count and the per-field size are checked."""

    def __init__(self, max_field_bytes: int, files: tuple[str, ...]) -> None:
        self.max_field_bytes = max_field_bytes
        self.files = files
        self.out: dict[str, Any] = {}

    def add(self, name: str, value: Any, *, is_file: bool = False) -> None:
        if not name:
            raise HTTPException(400, "a field of the body has no name; name every field")
        if name in self.out:
            raise ConfigError(f"field '{name}' is given twice; send each field once")
        if len(self.out) >= MAX_FIELDS:
            raise HTTPException(413, f"the body has more than {MAX_FIELDS} fields; send fewer")
        if is_file and name not in self.files:
            raise ConfigError(f"field '{name}' is a file upload; only {', '.join(self.files) or 'no fields'} may be")
        self.check_size(name, value, is_file=is_file)
        self.out[name] = value

    def check_size(self, name: str, value: Any, *, is_file: bool = False) -> None:
        size = len(value) if isinstance(value, (bytes, bytearray)) else len(str(value).encode("utf-8"))
        if not is_file and size > self.max_field_bytes:
            raise FieldTooLarge(
                f"field '{name}' is {size} bytes, more than this server's limit of {self.max_field_bytes} "
                "bytes per field; send less (or start the server with a larger --max-field-kb)"
            )


# -- JSON ------------------------------------------------------------------------------------
def _refuse_constant(name: str) -> Any:
    raise ConfigError(f"the JSON body has {name}, which is not a number JSON allows; send a finite number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ConfigError(f"the JSON number {_shown(text)} is too large for a float; send a smaller number")
    return value


def _parse_json(body: bytes, fields: _Collector) -> dict[str, Any]:
    text = _utf8(body, "the JSON body")

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise ConfigError(f"field '{key}' is given twice in the JSON object; send each field once")
            out[key] = value
        return out

    try:
        data = json.loads(text or "null", parse_constant=_refuse_constant, parse_float=_finite_float, object_pairs_hook=pairs)
    except RecursionError:
        raise HTTPException(400, "the JSON body is nested too deeply; send a flat JSON object of fields") from None
    except json.JSONDecodeError as exc:
        raise HTTPException(400, f"the body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                                 "send a JSON object of fields") from None
    except ConfigError:
        raise
    except ValueError:  # an integer with more digits than Python converts (4300)
        raise HTTPException(400, "the JSON body has a number with thousands of digits, which no field takes; "
                                 "send shorter numbers") from None
    if not isinstance(data, dict):
        raise HTTPException(400, "the JSON body must be an object of fields, e.g. {\"seed\": 42}")
    for key, value in data.items():
        if isinstance(value, (dict, list)):
            raise ConfigError(f"field '{key}' must be a string or a number, got a JSON {type(value).__name__}")
        out = None if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        fields.add(key, out)
    return fields.out


# -- url-encoded forms ---------------------------------------------------------------------------
def _parse_urlencoded(body: bytes, fields: _Collector) -> dict[str, Any]:
    text = _utf8(body, "the form")
    try:
        items = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict", max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError:
        raise HTTPException(400, "a field of the form is not UTF-8 text once percent-decoded; send UTF-8") from None
    except ValueError as exc:
        raise HTTPException(413 if "Max number" in str(exc) else 400, f"the form cannot be read ({exc}); "
                            f"send at most {MAX_FIELDS} name=value fields") from None
    for name, value in items:
        fields.add(name, value)
    return fields.out


# -- multipart forms ------------------------------------------------------------------------------
class _Part:
    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.field = b""
        self.value = b""
        self.data = bytearray()
        self.options: dict[bytes, bytes] = {}

    @property
    def name(self) -> str:
        return self.options.get(b"name", b"?").decode("utf-8", "replace")

    @property
    def is_file(self) -> bool:
        return b"filename" in self.options


def _parse_multipart(body: bytes, params: dict[str, str], fields: _Collector) -> dict[str, Any]:
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

    boundary = params.get("boundary")
    if not boundary:
        raise HTTPException(400, "the multipart content type has no boundary; let your HTTP client set the header")
    charset = params.get("charset", "utf-8").lower()
    if charset.replace("-", "").replace("_", "") != "utf8":
        raise HTTPException(400, f"charset {charset!r}: this server reads forms in UTF-8; send UTF-8")
    parts: list[_Part] = []
    current: list[_Part] = []

    def begin() -> None:
        current[:] = [_Part()]

    def header_field(data: bytes, start: int, end: int) -> None:
        current[0].field += data[start:end]

    def header_value(data: bytes, start: int, end: int) -> None:
        current[0].value += data[start:end]

    def header_end() -> None:
        part = current[0]
        part.headers[part.field.lower()] = part.value
        part.field, part.value = b"", b""

    def headers_finished() -> None:
        part = current[0]
        disposition = part.headers.get(b"content-disposition")
        if disposition is None:
            raise HTTPException(400, "a part of the multipart body has no Content-Disposition header")
        _, part.options = parse_options_header(disposition)
        if b"name" not in part.options:
            raise HTTPException(400, "a part of the multipart body has no field name")

    def data(chunk: bytes, start: int, end: int) -> None:
        part = current[0]
        part.data += chunk[start:end]
        if not part.is_file:  # refused as soon as it is too long, not once it is all in
            fields.check_size(part.name, part.data)

    def end() -> None:
        parts.append(current[0])

    callbacks: dict[str, Callable[..., None]] = {
        "on_part_begin": begin,
        "on_header_field": header_field,
        "on_header_value": header_value,
        "on_header_end": header_end,
        "on_headers_finished": headers_finished,
        "on_part_data": data,
        "on_part_end": end,
    }
    parser = MultipartParser(boundary.encode("latin-1"), callbacks)  # type: ignore[arg-type]
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise HTTPException(400, f"the multipart body is malformed ({exc}); let your HTTP client encode the form") from None
    if parser.state != MultipartState.END:
        raise HTTPException(
            400, "the multipart body is cut off before its closing boundary (an incomplete upload?); send the whole form"
        )
    for part in parts:
        name = _utf8(part.options[b"name"], "a field name of the form")
        if part.is_file:
            fields.add(name, bytes(part.data), is_file=True)
        else:
            fields.add(name, _utf8(bytes(part.data), f"field '{name}'"))
    return fields.out


def parse_fields(
    media: str, params: dict[str, str], body: bytes, *, max_field_bytes: int, files: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The fields of ``body`` sent as ``media`` (see the module's rules); 415 for another content type."""
    fields = _Collector(max_field_bytes, files)
    if media in JSON_TYPES or media.endswith("+json"):
        return _parse_json(body, fields)
    if media == "multipart/form-data":
        return _parse_multipart(body, params, fields)
    if media == "application/x-www-form-urlencoded":
        return _parse_urlencoded(body, fields)
    raise HTTPException(
        415, f"unsupported content type {media or '(none)'!r}; send application/json, multipart/form-data "
        "or application/x-www-form-urlencoded"
    )


async def read_fields(request: Request, *, files: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields of a JSON object, multipart form or url-encoded form body (docs/serving.md).

    Form values and JSON values are strings (JSON ``true``/``false`` become ``"true"``/``"false"``,
    numbers their text, ``null`` ``None``); an uploaded file is returned as bytes when its name
    is in ``files`` (otherwise it is refused). The body size limit (413), the per-field limit
    (413 naming the field), UTF-8 (400) and completeness (400) are checked for every content type.
    """
    media, params = content_type(request)
    if not (media in FORM_TYPES or media in JSON_TYPES or media.endswith("+json")):
        parse_fields(media, params, b"", max_field_bytes=1)  # 415 before the body is read
    body = await request.body()
    config = request.app.state.config
    return parse_fields(media, params, body, max_field_bytes=config.max_field_bytes, files=files)
