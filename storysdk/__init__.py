"""storysdk: long multimodal stories (text, consistent images, narrative sound) from pluggable parts.

``import storysdk`` is light: it never imports torch. Model-backed components import it when
they first load a model.
"""


from .cache import ComponentCache
from .errors import (
    BusyError,
    CheckpointError,
    ComponentError,
    ConfigError,
    JobCancelled,
    OutputFolderError,
    PluginError,
    ScriptError,
    StorySDKError,
    UnknownComponentError,
)
from .hookspecs import Register, hookimpl
from .interfaces import (
    Component,
    Composer,
    Generator,
    PlanContext,
    Planner,
    ProgressEvent,
    RenderContext,
    StepContext,
    Tokenizer,
    TrackContext,
    derive_seed,
)
from .limits import LimitError, Limits
from .mixing import Mix
from .model import (
    AudioAsset,
    Character,
    Cue,
    ImageAsset,
    Scene,
    Story,
    StoryPlan,
    StoryRequest,
    Tokens,
    Track,
)
from .options import DeviceOptions, Field, OptionInfo, Options
from .pipeline import Pipeline
from .registry import ComponentInfo, FailedPlugin, PluginInfo, Registration, Registry, get_registry
from .storyfile import StoryFile, load_story_file
from .timeline import Timeline, Timing

__version__ = "0.1.0"

__all__ = [
    "AudioAsset",
    "BusyError",
    "Character",
    "CheckpointError",
    "Component",
    "ComponentCache",
    "ComponentError",
    "ComponentInfo",
    "Composer",
    "ConfigError",
    "Cue",
    "DeviceOptions",
    "FailedPlugin",
    "Field",
    "Generator",
    "ImageAsset",
    "JobCancelled",
    "LimitError",
    "Limits",
    "Mix",
    "OptionInfo",
    "Options",
    "OutputFolderError",
    "Pipeline",
    "PlanContext",
    "Planner",
    "PluginError",
    "PluginInfo",
    "ProgressEvent",
    "Register",
    "Registration",
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
    "Timeline",
    "Timing",
    "Tokenizer",
    "Tokens",
    "Track",
    "TrackContext",
    "UnknownComponentError",
    "__version__",
    "derive_seed",
    "get_registry",
    "hookimpl",
    "load_story_file",
]
