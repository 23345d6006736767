"""Registers the speech generators through storysdk's hooks (entry point ``speech``).

The modules are imported inside the hook: piper.py needs no torch; transformers_tts.py imports torch and
transformers only when a model loads. A missing or broken transformers_tts module does not keep ``piper``
from registering.
"""

from __future__ import annotations

import warnings

from storysdk.hookspecs import Register, hookimpl


@hookimpl
def register_generators(register: Register) -> None:
    from .piper import PiperGenerator

    register(PiperGenerator)
    try:
        from .transformers_tts import TransformersTTSGenerator
    except ImportError as exc:  # the module or one of its dependencies is missing
        warnings.warn(
            f"storysdk-speech: the transformers-tts generator is not available ({exc}); "
            "install storysdk[torch] to use it",
            stacklevel=2,
        )
        return
    register(TransformersTTSGenerator)
