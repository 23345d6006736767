"""uvicorn's HTTP/1.1 protocol with a deadline for a request's headers (slow clients are dropped).

uvicorn closes an *idle* keep-alive connection after ``timeout_keep_alive`` seconds, but a
client that sends its headers a byte at a time, or connects and sends nothing, keeps the
connection (and a file descriptor) forever. :func:`protocol_class` returns the h11 protocol
with ``header_timeout``: a connection whose request headers are not all in that many seconds
after it opened (or after the first byte of its next request) is answered ``408`` and closed.
The body's deadline is the app's (:class:`~storysdk.server.http.BodyLimitMiddleware`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["protocol_class"]

_TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s"
)


class HeaderTimeoutProtocol(H11Protocol):
    """:class:`H11Protocol` closing connections whose request headers are late (see the module)."""

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            self._disarm()
        elif self.conn.their_state is h11.IDLE:  # a request's headers have started, not finished
            self._arm()
        else:
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # the keep-alive timer now watches the idle connection
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.cycle is None or self.cycle.response_complete:
            body = (
                b'{"error": "the request headers did not arrive within %g s; send them at once", "status": 408}'
                % self.header_timeout
            )
            try:
                self.transport.write(_TIMEOUT_ANSWER % (len(body), body))
            except (OSError, RuntimeError):
                pass
        self.transport.close()


def protocol_class(header_timeout: float) -> type[H11Protocol]:
    """The h11 protocol class with this ``header_timeout`` (seconds), for ``uvicorn.Config(http=...)``."""
    return type("StorySDKHTTPProtocol", (HeaderTimeoutProtocol,), {"header_timeout": float(header_timeout)})
