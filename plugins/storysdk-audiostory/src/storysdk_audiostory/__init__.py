"""storysdk-audiostory: AudioStory and TangoFlux as storysdk components.

Importing this package does not import torch; model code is imported when a component
first loads its models. The components are registered by :mod:`storysdk_audiostory.plugin`.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
