"""The storysdk plugin module (entry point ``storydiffusion`` in the ``storysdk`` group).

Registers the ``storydiffusion`` generator, StoryDiffusion's style templates and menus
(:mod:`.styles`), and the hosted endpoint ``POST /v1/storydiffusion`` of ``storysdk serve``
(:mod:`.routes`). Importing this module imports neither torch nor the web server.
"""

from __future__ import annotations

from storysdk.hookspecs import Register, hookimpl


@hookimpl
def register_generators(register: Register) -> None:
    """Register :class:`~storysdk_storydiffusion.generator.StoryDiffusionGenerator`."""
    from .generator import StoryDiffusionGenerator

    register(StoryDiffusionGenerator)


@hookimpl
def register_styles(register: Register) -> None:
    """Register the app's nine styles and the hosted API's menu (docs/storydiffusion-styles.md)."""
    from .styles import register_styles as register_all

    register_all(register)


@hookimpl
def register_routes(register: Register) -> None:
    """Register the hosted endpoint ``POST /v1/storydiffusion`` (:mod:`.routes`; needs storysdk's ``serve`` extra)."""
    from .routes import PATH, storydiffusion_endpoint

    register(PATH, storydiffusion_endpoint, methods=("POST",))
