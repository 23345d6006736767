"""The built-in plugin: registers the core's own components through the public hooks.

Component modules are imported here, but none of them imports torch at module level.
"""

from __future__ import annotations

from ..hookspecs import Register, hookimpl


@hookimpl
def register_planners(register: Register) -> None:
    from .script import ScriptPlanner

    register(ScriptPlanner)


@hookimpl
def register_tokenizers(register: Register) -> None:
    from .clip_text import ClipTextTokenizer

    register(ClipTextTokenizer)


@hookimpl
def register_generators(register: Register) -> None:
    from .diffusers_audio import DiffusersAudioGenerator
    from .diffusers_image import DiffusersImageGenerator

    register(DiffusersImageGenerator)
    register(DiffusersAudioGenerator)


@hookimpl
def register_composers(register: Register) -> None:
    from .comic import ComicComposer
    from .frames import FramesComposer
    from .soundtrack import SoundtrackComposer
    from .storybook import StorybookComposer
    from .video import VideoComposer

    register(ComicComposer)
    register(FramesComposer)
    register(SoundtrackComposer)
    register(StorybookComposer)
    register(VideoComposer)
