"""storysdk-plugin-template: a complete, minimal storysdk plugin.

The whole plugin surface is the two hook functions below. storysdk imports this module
through the ``storysdk`` entry point declared in ``pyproject.toml``; pluggy then calls each
``register_*`` hook once with a ``register`` callback, and the plugin calls ``register`` once
per component class it provides. Hooks a plugin does not need (here ``register_planners``
and ``register_tokenizers``) are simply left out.

Keep this module light: ``import storysdk`` must never import torch, and the registry imports
every installed plugin. A model-backed plugin imports torch inside its methods.
"""

from __future__ import annotations

import storysdk
from storysdk.hookspecs import Register

from .contact_sheet import ContactSheetComposer
from .shapes import ShapesGenerator

__all__ = ["ContactSheetComposer", "ShapesGenerator", "register_composers", "register_generators"]
__version__ = "0.1.0"


@storysdk.hookimpl
def register_generators(register: Register) -> None:
    """Give storysdk the ``template-shapes`` image generator."""
    register(ShapesGenerator)


@storysdk.hookimpl
def register_composers(register: Register) -> None:
    """Give storysdk the ``template-contact-sheet`` composer."""
    register(ContactSheetComposer)
