"""The plugin hooks of storysdk (pluggy project ``storysdk``).

Each hook receives a ``register`` callback; a plugin calls it once per thing it provides:
a component class (``register(MyGenerator)``), a style template or an HTTP route. Built-in
components use the same hooks; everything specific to one backend arrives through them.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

hookspec = pluggy.HookspecMarker("storysdk")
hookimpl = pluggy.HookimplMarker("storysdk")

Register = Callable[..., Any]


@hookspec
def register_planners(register: Register) -> None:
    """Register Planner classes: ``register(PlannerClass)``."""


@hookspec
def register_tokenizers(register: Register) -> None:
    """Register Tokenizer classes: ``register(TokenizerClass)``."""


@hookspec
def register_generators(register: Register) -> None:
    """Register Generator classes: ``register(GeneratorClass)``."""


@hookspec
def register_composers(register: Register) -> None:
    """Register Composer classes: ``register(ComposerClass)``."""


@hookspec
def register_styles(register: Register) -> None:
    """Register prompt style templates: ``register(Style(name, positive, negative))``.

    ``register(style, menus=("hosted",))`` also lists the style in named menus (a hosted
    API's choice list, for example). :func:`storysdk.styles.get_style` finds a style by name
    and :func:`storysdk.styles.menu` a menu's names, in any registry.
    """


@hookspec
def register_routes(register: Register) -> None:
    """Register HTTP endpoints of ``storysdk serve``: ``register(path, endpoint, methods=("POST",), name=None)``.

    ``path`` starts with ``/v1/``; ``endpoint`` is an async Starlette endpoint; ``methods``
    defaults to ``("POST",)``. The endpoint reaches the server (its bounded job queue, its
    workers' component caches, an output folder per job) through :mod:`storysdk.server`'s
    public API (docs/serving.md, "Endpoints from plugins").
    """
