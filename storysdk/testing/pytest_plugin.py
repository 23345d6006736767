"""pytest plugin of storysdk (entry point ``pytest11``): the ``storysdk_registry`` fixture."""

from __future__ import annotations

import pytest

from ..registry import Registry
from . import make_registry


@pytest.fixture
def storysdk_registry() -> Registry:
    """A fresh registry with the built-ins and the fake components, and no installed plugins."""
    return make_registry()
