"""storysdk: long multimodal stories (text, consistent images, narrative sound) from pluggable parts.

``import storysdk`` is light: it never imports torch. Model-backed components import it when
they first load a model.
"""


from .cache import ComponentCache
from .errors import (
    CheckpointError,
    ComponentError,
    ConfigError,
    OutputFolderError,
    PluginError,
    ScriptError,
    StorySDKError,
    UnknownComponentError,
)
from .hookspecs import hookimpl
from .interfaces import (
    Composer,
    Generator,
    Planner,
    ProgressEvent,
    RenderContext,
    StepContext,
    Tokenizer,
    derive_seed,
)
from .model import (
    AudioAsset,
    Character,
    ImageAsset,
    Scene,
    Story,
    StoryPlan,
    StoryRequest,
    Tokens,
)
from .pipeline import Pipeline
from .registry import ComponentInfo, FailedPlugin, PluginInfo, Registry, get_registry
from .storyfile import StoryFile, load_story_file

__version__ = "0.1.0"

__all__ = [
    "AudioAsset",
    "Character",
    "CheckpointError",
    "ComponentCache",
    "ComponentError",
    "ComponentInfo",
    "Composer",
    "ConfigError",
    "FailedPlugin",
    "Generator",
    "ImageAsset",
    "OutputFolderError",
    "Pipeline",
    "Planner",
    "PluginError",
    "PluginInfo",
    "ProgressEvent",
    "Registry",
    "RenderContext",
    "Scene",
    "ScriptError",
    "StepContext",
    "Story",
    "StoryFile",
    "StoryPlan",
    "StoryRequest",
    "StorySDKError",
    "Tokenizer",
    "Tokens",
    "UnknownComponentError",
    "__version__",
    "derive_seed",
    "get_registry",
    "hookimpl",
    "load_story_file",
]
