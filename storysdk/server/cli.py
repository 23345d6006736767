"""The ``storysdk serve`` subcommand."""

from __future__ import annotations

import argparse
import os
from typing import Any

__all__ = ["add_parser"]


def _pairs(flag: str, items: list[str] | None) -> dict[str, str]:
    from ..errors import ConfigError

    out: dict[str, str] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigError(f"{flag} {item!r}: write NAME=PATH, e.g. {flag} sdxl=/models/sdxl-base")
        if name.strip() in out:
            raise ConfigError(f"{flag}: the name {name.strip()!r} is given twice; give each name once")
        out[name.strip()] = value.strip()
    return out


def _cmd_serve(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..limits import Limits
    from ._deps import require_serve_deps
    from .config import MiB, ServerConfig
    from .runner import run_server

    require_serve_deps()
    limits = Limits.parse(args.limit or [])
    if args.max_body_mb is not None and any(item.strip().lower().startswith("body=") for item in args.limit or []):
        raise ConfigError("--max-body-mb and --limit body=... both set the body limit; give one of them")
    defaults: dict[str, Any] = {}
    for key in ("preset", "dtype", "offload"):
        value = getattr(args, key)
        if value is not None:
            defaults[key] = value
    devices: tuple[str, ...] = ()
    if args.device:
        devices = tuple(d.strip() for d in args.device.split(",") if d.strip())
    cfg = ServerConfig(
        host=args.host,
        port=args.port,
        api_key=args.api_key if args.api_key is not None else os.environ.get("STORYSDK_API_KEY") or None,
        workers=args.workers if args.workers is not None else max(len(devices), 1),
        devices=devices,
        max_queue=args.max_queue,
        max_body_bytes=None if args.max_body_mb is None else int(args.max_body_mb * MiB),
        max_field_bytes=int(args.max_field_kb * 1024),
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        max_connections=args.max_connections or None,
        models=_pairs("--model", args.model),
        fonts=_pairs("--font", args.font),
        limits=limits,
        out_dir=args.out,
        defaults=defaults,
        max_cached_components=args.max_cached,
    )
    print(f"storysdk serve: http://{cfg.host}:{cfg.port} ({cfg.workers} worker(s), queue {cfg.max_queue}, "
          f"API key {'on' if cfg.api_key else 'off'}, files under {cfg.out_dir})", flush=True)
    try:
        run_server(cfg, log_level=args.log_level)
    except KeyboardInterrupt:  # uvicorn shuts down on Ctrl-C, then passes the signal on
        pass
    print("storysdk serve: stopped", flush=True)
    return 0


def add_parser(sub: Any) -> None:
    """Add ``serve`` to the ``storysdk`` command's subparsers."""
    p = sub.add_parser("serve", help="serve story files as jobs over HTTP, plus the endpoints of installed plugins")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--api-key", help="require this key in the x-api-key header (default: $STORYSDK_API_KEY, else none)")
    p.add_argument("--workers", type=int, help="jobs run at once (default: one per --device, else 1)")
    p.add_argument("--max-queue", type=int, default=8, help="requests that may wait; one more gets 429 (default 8)")
    p.add_argument("--max-body-mb", type=float, help="largest request body in MiB (default 16: the body limit)")
    p.add_argument("--max-field-kb", type=float, default=1024.0,
                   help="largest field of a body (JSON or form; files excepted) in KiB (default 1024)")
    p.add_argument("--limit", action="append", metavar="NAME=VALUE",
                   help="a limit on the work one job may ask for, e.g. --limit pixels=2048x2048 --limit steps=100 "
                        "(repeatable; NAME=none switches one off; 'storysdk limits' lists them)")
    p.add_argument("--model", action="append", metavar="NAME=PATH",
                   help="a model story jobs may choose by NAME (a folder, a file or a hub id; repeatable)")
    p.add_argument("--font", action="append", metavar="NAME=PATH",
                   help="a font story jobs may choose by NAME for font_path (a .ttf/.otf file; repeatable)")
    p.add_argument("--header-timeout", type=float, default=10.0,
                   help="seconds a client has to send a request's headers before it is dropped (default 10)")
    p.add_argument("--body-timeout", type=float, default=60.0,
                   help="seconds a client has to send a request's body once its headers are in (default 60; 408)")
    p.add_argument("--max-connections", type=int, default=128,
                   help="open connections beyond which requests are answered 503 (default 128; 0: no bound)")
    p.add_argument("--out", default="out/serve", help="folder for the jobs' files (default out/serve)")
    p.add_argument("--max-cached", type=int, help="components (with their loaded models) each worker keeps (default: all)")
    p.add_argument("--preset", help="preset for model-backed components: tiny, auto or full")
    p.add_argument("--device", help="device, or a comma-separated list (one worker each): cuda:0,cuda:1")
    p.add_argument("--dtype", help="float32, float16, bfloat16, auto")
    p.add_argument("--offload", choices=("model", "sequential"), help="CPU offload of model-backed components that take it")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(func=_cmd_serve)
