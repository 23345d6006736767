"""``storysdk serve``: an HTTP service for stories, compatible with the hosted StoryDiffusion API.

Needs the ``serve`` extra (``pip install "storysdk[serve]"``: Starlette, uvicorn,
python-multipart). Endpoints (docs/serving.md):

- ``POST /v1/storydiffusion``: the hosted StoryDiffusion request, answered with the image;
- ``POST /v1/stories``, ``GET /v1/stories[/{id}]``, ``GET /v1/stories/{id}/files/{path}``,
  ``DELETE /v1/stories/{id}``: story files as jobs;
- ``GET /v1/status``: workers, queue, loaded models.

>>> from storysdk.server import RunningServer, ServerConfig                  # doctest: +SKIP
>>> with RunningServer(ServerConfig(port=0, defaults={"preset": "tiny"})) as srv:
...     print(srv.url)                                                       # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import ServerConfig
from .runner import RunningServer, run_server

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from ..registry import Registry

__all__ = ["RunningServer", "ServerConfig", "create_app", "run_server"]


def create_app(config: ServerConfig | None = None, *, registry: Registry | None = None) -> Starlette:
    """The ASGI app (see :func:`storysdk.server.app.create_app`); imports Starlette on call."""
    from ._deps import require_serve_deps

    require_serve_deps()
    from .app import create_app as _create

    return _create(config, registry=registry)
