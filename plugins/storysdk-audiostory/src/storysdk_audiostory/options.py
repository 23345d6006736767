"""Option declarations shared by the AudioStory components (``storysdk plugins --options NAME``).

Each component declares its own ``Options`` class (see :mod:`.planner`, :mod:`.bridge_tokenizer`,
:mod:`.generators`) on top of :class:`AudioStoryDeviceOptions`: storysdk's
:class:`~storysdk.options.DeviceOptions` (``preset``, ``device``, ``dtype``, ``weights_seed``),
with ``offload`` refused, since these components move each model whole to ``device``.
Importing this module does not import torch.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import field_validator
from storysdk.options import DeviceOptions, Field

__all__ = ["AudioStoryDeviceOptions", "folder_path"]


def folder_path(value: Any) -> Any:
    """A ``pathlib.Path`` (any ``os.PathLike``) given for a folder option, as its string."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value


class AudioStoryDeviceOptions(DeviceOptions):
    """``DeviceOptions`` without CPU offload (the models move whole to ``device``)."""

    offload: None = Field(
        None,
        description="not supported: the models move whole to the device; lower a generator's "
        "dit_batch / vae_batch to save GPU memory",
    )

    @field_validator("offload", mode="before")
    @classmethod
    def _no_offload(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("AudioStory components do not CPU-offload; leave offload unset")
        return value
