"""Running the app on uvicorn: in the foreground (the CLI) or on a background thread (tests, notebooks)."""

from __future__ import annotations

import socket
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, StorySDKError
from .config import ServerConfig

if TYPE_CHECKING:
    from ..registry import Registry

__all__ = ["RunningServer", "run_server"]


def _uvicorn_config(app: Any, cfg: ServerConfig, log_level: str) -> Any:
    """uvicorn's settings: the h11 protocol with the header deadline, the keep-alive and connection bounds."""
    import uvicorn

    from .protocol import protocol_class

    return uvicorn.Config(
        app,
        host=cfg.host,
        port=cfg.port,
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=30,
        http=protocol_class(cfg.header_timeout),
        timeout_keep_alive=cfg.keep_alive_timeout,  # type: ignore[arg-type]  # used as seconds (float)
        limit_concurrency=cfg.max_connections,
    )


def _warn_if_exposed(cfg: ServerConfig) -> None:
    if not cfg.loopback and cfg.api_key is None:
        warnings.warn(
            f"storysdk serve is listening on {cfg.host}, reachable from other machines, without an API key; "
            "set --api-key (or STORYSDK_API_KEY) so that only your clients can start jobs",
            UserWarning,
            stacklevel=3,
        )


def run_server(config: ServerConfig | None = None, *, registry: Registry | None = None, log_level: str = "info") -> None:
    """Serve in the foreground until interrupted (Ctrl-C stops the workers and the server)."""
    from . import create_app

    cfg = config if config is not None else ServerConfig()
    _warn_if_exposed(cfg)
    import uvicorn

    uvicorn.Server(_uvicorn_config(create_app(cfg, registry=registry), cfg, log_level)).run()


class RunningServer:
    """The server on a background thread, for tests and notebooks.

    ``port=0`` picks a free port; :attr:`url` tells which. Use it as a context manager, or
    call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, config: ServerConfig | None = None, *, registry: Registry | None = None, log_level: str = "warning") -> None:
        from . import create_app

        self.config = config if config is not None else ServerConfig(port=0)
        self.app = create_app(self.config, registry=registry)
        self.log_level = log_level
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def port(self) -> int:
        if self._socket is None:
            raise StorySDKError("the server is not running; call start() first")
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 30.0) -> RunningServer:
        import uvicorn

        _warn_if_exposed(self.config)
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.config.host, self.config.port))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"cannot listen on {self.config.host}:{self.config.port} ({exc}); pick another port") from exc
        self._socket = sock
        self._server = uvicorn.Server(_uvicorn_config(self.app, self.config, self.log_level))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, name="storysdk-serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise StorySDKError("the server did not start; see the log above")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Stop accepting requests, stop the workers and wait for the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> RunningServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
