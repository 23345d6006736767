"""The public namespace is exactly what __all__ says (httpx's exported-members test)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import storysdk


#: The public names, written out: a name added or dropped must show up in review.
EXPORTED = {
    "storysdk": [
        "AudioAsset", "BusyError", "Character", "CheckpointError", "Component", "ComponentCache",
        "ComponentError", "ComponentInfo", "Composer", "ConfigError", "Cue", "DeviceOptions", "FailedPlugin",
        "Field", "Generator", "ImageAsset", "JobCancelled", "LimitError", "Limits", "Mix", "OptionInfo", "Options",
        "OutputFolderError", "Pipeline", "PlanContext", "Planner", "PluginError", "PluginInfo", "ProgressEvent",
        "Register", "Registration", "Registry", "RenderContext", "Scene", "ScriptError", "StepContext", "Story",
        "StoryFile", "StoryPlan", "StoryRequest", "StorySDKError", "Timeline", "Timing", "Tokenizer", "Tokens",
        "Track", "TrackContext", "UnknownComponentError", "__version__", "derive_seed", "get_registry", "hookimpl",
        "load_story_file",
    ],
    "storysdk.limits": ["LIMITS", "LimitError", "LimitInfo", "Limits"],
    "storysdk.model": [
        "MAX_SEED", "PLAN_FORMAT_VERSION", "Asset", "AudioAsset", "Character", "Cue", "ImageAsset", "ImageLike",
        "Modality", "Scene", "Story", "StoryPlan", "StoryRequest", "Tokens", "Track", "load_image",
    ],
    "storysdk.interfaces": [
        "Component", "Composer", "Generator", "PlanContext", "Planner", "ProgressCallback", "ProgressEvent",
        "RenderContext", "StepContext", "Tokenizer", "TrackContext", "derive_seed",
    ],
    "storysdk.timeline": ["TIMELINE_FORMAT", "CueSpan", "Span", "Timeline", "Timing", "crossfade_padding",
                          "scene_durations", "sounding_seconds", "timeline_of"],
    "storysdk.mixing": ["Mix", "Mixdown", "duck_envelope", "measure_loudness", "mixdown", "place_track"],
    "storysdk.tracks": ["TRACK_KEYS", "TrackSettings", "check_track_name", "check_template", "render_text"],
    "storysdk.runtime": [
        "OFFLOAD_MODES", "PRESETS", "Resolved", "Weights", "apply_offload", "check_weights_file",
        "cpu_generator", "dtype_kwargs", "find_broken_file", "load_pretrained", "load_pretrained_pipeline",
        "load_safetensors", "load_safetensors_subset", "load_state_dict", "load_torch_file",
        "read_json_config", "require_torch", "resolve", "resolve_device", "resolve_dtype",
        "resolve_preset", "resolve_weights", "safetensors_keys", "seeded", "weights_of",
    ],
    "storysdk.tiny": [
        "STORY_CORPUS", "TINY_SDXL", "TINY_STABLE_AUDIO", "clip_tokenizer", "corpus_words",
        "learn_bpe_merges", "t5_tokenizer", "tiny_sdxl_components", "tiny_sdxl_pipeline",
        "tiny_sdxl_text_components", "tiny_stable_audio_components", "tiny_stable_audio_pipeline",
    ],
    "storysdk.options": [
        "DeviceOptions", "Field", "OptionInfo", "Options", "describe_options", "option_names", "suggest",
        "validate_options",
    ],
    "storysdk.testing": [
        "FakeAudioGenerator", "FakeComposer", "FakeEventPlanner", "FakeImageGenerator", "FakeInterleavedPlanner",
        "FakePlanner", "FakeTokenizer", "FakesPlugin", "make_registry",
    ],
    "storysdk.testing.faults": [
        "FIXES", "StopRun", "UnsafePickle", "assert_clear", "forward_calls", "stop_at", "truncate",
    ],
    "storysdk.testing.contract": [
        "ComponentContract", "ComposerContract", "GeneratorContract", "PlannerContract", "TokenizerContract",
        "TrackPlannerContract", "folder_bytes",
    ],
}


@pytest.mark.parametrize("module", sorted(EXPORTED))
def test_exported_names(module: str) -> None:
    mod = importlib.import_module(module)
    assert mod.__all__ == EXPORTED[module]
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name} is listed but missing"


def test_all_is_sorted_and_complete() -> None:
    public = {n for n in dir(storysdk) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(storysdk, n)).__name__ == "module"}
    assert storysdk.__all__ == sorted(set(storysdk.__all__))
    assert set(storysdk.__all__) - {"__version__"} == public - modules


def test_every_error_is_a_storysdk_error() -> None:
    from storysdk import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), storysdk.StorySDKError)


def test_import_does_not_import_torch() -> None:
    code = (
        "import sys, storysdk, storysdk.cli, storysdk.testing, storysdk.builtins.plugin, storysdk.runtime, storysdk.tiny,"
        " storysdk.timeline, storysdk.tracks, storysdk.mixing;"
        "from storysdk.testing import make_registry; make_registry().components();"
        "bad = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_py_typed_is_shipped() -> None:
    from importlib.resources import files

    assert files("storysdk").joinpath("py.typed").is_file()
