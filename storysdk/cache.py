"""Keep built components, and so their loaded models, between runs.

A :class:`Pipeline` builds its components from names and options; given a
:class:`ComponentCache`, it takes an already built component with the same kind, name and
options from the cache instead. Model-backed components load their weights on first use and
keep them, so a server or a batch that renders many stories loads each model once.

Components keep per-run state in per-run objects (docs/data-flow.md), so one instance can render
story after story; it is not meant to render two stories at the same time. Give every worker
thread its own cache.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from .interfaces import Component
    from .registry import ComponentInfo

__all__ = ["ComponentCache"]


def _key(kind: str, info: ComponentInfo, options: Mapping[str, Any]) -> tuple[str, str, str, str] | None:
    try:
        text = json.dumps(dict(options), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return None  # options that are objects (a loaded pipeline, ...) are not shared
    return (kind, info.plugin, info.name, text)


class ComponentCache:
    """Built components by ``(kind, plugin, name, options)``, least recently used dropped first.

    ``max_entries`` bounds how many are kept (``None``: no bound). A component whose options
    are not plain JSON data is built anew every time and not kept.
    """

    def __init__(self, max_entries: int | None = None) -> None:
        if max_entries is not None and (isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1):
            raise ConfigError(f"max_entries must be a whole number >= 1 or None, got {max_entries!r}")
        self.max_entries = max_entries
        self._items: OrderedDict[tuple[str, str, str, str], Component] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, kind: str, info: ComponentInfo, options: Mapping[str, Any]) -> Component:
        """The cached component for these options, built with ``info.create(**options)`` if absent."""
        key = _key(kind, info, options)
        if key is None:
            self.misses += 1
            return info.create(**options)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return found
        component = info.create(**options)
        with self._lock:
            self.misses += 1
            self._items[key] = component
            self._items.move_to_end(key)
            while self.max_entries is not None and len(self._items) > self.max_entries:
                self._items.popitem(last=False)
        return component

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        """Drop every kept component (their models are freed once nothing else holds them)."""
        with self._lock:
            self._items.clear()
