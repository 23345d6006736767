"""``preset = "auto"`` is loud and honest: a missing path is an error, a fallback is recorded and announced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

import storysdk.registry
from storysdk import ConfigError, Field, Generator, ImageAsset, OutputFolderError, Pipeline, StoryRequest
from storysdk.builtins.clip_text import ClipTextTokenizer
from storysdk.builtins.diffusers_audio import DiffusersAudioGenerator
from storysdk.builtins.diffusers_image import DEFAULT_SDXL, DiffusersImageGenerator
from storysdk.cli import main
from storysdk.options import DeviceOptions
from storysdk.runtime import Weights, _looks_like_path, resolve, resolve_weights, weights_of
from storysdk.testing import make_registry

NOT_CACHED = f"tiny (fallback: {DEFAULT_SDXL!r} is neither a local folder nor in the local Hugging Face cache)"


@pytest.fixture(autouse=True)
def empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache: no hub model is 'already downloaded' in these tests."""
    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(storysdk.registry, "_default", make_registry())
    return cache


def _cache_repo(cache: Path, repo: str, filename: str = "model_index.json") -> None:
    """The hub cache layout, by hand: models--org--name/refs/main and snapshots/<rev>/<filename>."""
    folder = cache / ("models--" + repo.replace("/", "--"))
    rev = "1" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(rev)
    snap = folder / "snapshots" / rev
    snap.mkdir(parents=True)
    (snap / filename).write_text("{}")


# -- what looks like a path -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "is_path"),
    [
        ("/models/sdxl-typo", True), ("./sdxl", True), ("../models/sdxl", True), ("~/models/sdxl", True),
        ("models/sdxl/unet", True), ("sdxl.safetensors", True), ("weights.ckpt", True), ("C:\\models\\sdxl", True),
        ("models\\sdxl", True), ("org/name with space", True), (".", True),
        ("stabilityai/stable-diffusion-xl-base-1.0", False), ("gpt2", False), ("org/name_1.5-x", False),
        ("pretrained", False),
    ],
)
def test_what_looks_like_a_path(model: str, is_path: bool) -> None:
    assert _looks_like_path(model) is is_path


# -- resolve_weights -----------------------------------------------------------------------
@pytest.mark.parametrize("model", ["/models/sdxl-typo", "./no-such-folder", "~/no-such-folder-xyz", "a/b/c",
                                   "missing.safetensors"])
def test_a_missing_path_is_an_error_not_no_weights(model: str) -> None:
    with pytest.raises(ConfigError) as exc:
        resolve_weights("auto", model, who="generator 'g'", option="checkpoint")
    text = str(exc.value)
    assert text.startswith("generator 'g': preset='auto': the checkpoint path")
    assert repr(model) in text and "does not exist" in text and "preset='tiny'" in text


def test_a_hub_id_not_in_the_cache_falls_back_with_its_reason() -> None:
    with pytest.warns(UserWarning, match="generator 'g': preset='auto': 'nobody/no-such-model' is neither"):
        w = resolve_weights("auto", "nobody/no-such-model", who="generator 'g'")
    assert w == Weights("tiny", "nobody/no-such-model",
                        "'nobody/no-such-model' is neither a local folder nor in the local Hugging Face cache")
    assert str(w).startswith("tiny (fallback: 'nobody/no-such-model' is neither")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warn=False: quiet
        assert str(resolve_weights("auto", None, warn=False)) == "tiny (fallback: no model given)"


def test_a_local_path_or_a_cached_hub_id_is_used(tmp_path: Path, empty_hub_cache: Path) -> None:
    _cache_repo(empty_hub_cache, "org/cached-model")
    _cache_repo(empty_hub_cache, "org/single", "model.safetensors")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_weights("auto", str(tmp_path)) == Weights("full", str(tmp_path))
        assert str(resolve_weights("auto", "org/cached-model")) == "org/cached-model"
        assert resolve_weights("auto", "org/single", filename="model.safetensors").preset == "full"
    with pytest.warns(UserWarning):
        w = resolve_weights("auto", "org/single", filename="other.safetensors")
    assert w.fallback == "'other.safetensors' of the hub repo 'org/single' is not in the local Hugging Face cache"


def test_tiny_and_full_need_no_lookup() -> None:
    assert str(resolve_weights("tiny", "/does/not/matter")) == "tiny"
    assert str(resolve_weights(None, "/models/x")) == "/models/x" and resolve_weights("full", "y").preset == "full"
    assert str(resolve_weights("full", None)) == "full (the component's default model)"
    with pytest.raises(ConfigError, match="preset 'huge' is unknown"):
        resolve_weights("huge", None)


def test_resolve_carries_the_weights() -> None:
    with pytest.warns(UserWarning):
        r = resolve("generator 'g'", preset="auto", model="nobody/absent", device="cpu", dtype=None)
    assert r.preset == "tiny" and r.weights is not None and r.weights.fallback is not None
    with pytest.raises(ConfigError, match="generator 'g': preset='auto': the model path '/nope/x' does not exist"):
        resolve("generator 'g'", preset="auto", model="/nope/x", device="cpu", dtype=None)


# -- the built-ins: decided (offline) when built, before any model loads -------------------
@pytest.mark.parametrize("cls", [DiffusersImageGenerator, ClipTextTokenizer, DiffusersAudioGenerator])
def test_builtins_refuse_a_mistyped_model_path_when_built(cls: type) -> None:
    with pytest.raises(ConfigError) as exc:
        cls(preset="auto", model="/models/sdxl-typo")
    assert str(exc.value).startswith(f"{cls.kind} {cls.name!r}: preset='auto': the model path '/models/sdxl-typo'")


def test_builtins_say_which_weights_they_use(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="generator 'diffusers-image': preset='auto'"):
        gen = DiffusersImageGenerator(preset="auto")
    assert gen.weights == NOT_CACHED and gen.model_name == "tiny-sdxl"
    assert DiffusersImageGenerator(preset="tiny").weights == "tiny"
    assert DiffusersImageGenerator(preset="auto", model=str(tmp_path)).weights == str(tmp_path)
    assert weights_of(gen) == NOT_CACHED


class _Backed(Generator):
    """A third-party component with the shared device options and a checkpoint, but no ``weights``."""

    name = "backed"
    modality = "image"

    class Options(DeviceOptions):
        checkpoint: str | None = Field(None, description="a checkpoint folder")

    def generate(self, scenes: Any, ctx: Any) -> Any:
        from PIL import Image

        for s in scenes:
            yield ImageAsset(s.index, Image.new("RGB", (8, 8)), made_by=self.name)


def test_weights_of_a_component_without_a_weights_attribute() -> None:
    assert weights_of(_Backed(preset="tiny")) == "tiny"
    assert weights_of(_Backed(preset="auto")) == "tiny (fallback: no model given)"
    with pytest.raises(ConfigError, match="generator 'backed': preset='auto': the checkpoint path '/x/y'"):
        weights_of(_Backed(preset="auto", checkpoint="/x/y"))
    from storysdk.testing import FakeImageGenerator

    assert weights_of(FakeImageGenerator()) is None  # loads no weights


# -- the pipeline: run.json and the fingerprint -------------------------------------------
def _pipe(**gen: Any) -> Pipeline:
    return Pipeline(planner="script", tokenizers=["clip-text"],
                    generators=[("diffusers-image", {"steps": 1, **gen})], defaults={"preset": "auto"})


def test_the_weights_used_are_recorded_in_run_json(tmp_path: Path) -> None:
    with pytest.warns(UserWarning):
        pipe = _pipe()
    expected = {"tokenizer clip-text": NOT_CACHED, "generator diffusers-image": NOT_CACHED}
    assert pipe.weights() == expected
    out = tmp_path / "out"
    pipe.run(StoryRequest(script="a cat", width=32, height=32, seed=1), out_dir=out)
    assert json.loads((out / "run.json").read_text())["weights"] == expected
    assert Pipeline(planner="script", generators=["fake-image"]).weights() == {}


def test_a_folder_made_with_other_weights_is_another_story(tmp_path: Path, empty_hub_cache: Path) -> None:
    out = tmp_path / "out"
    request = StoryRequest(script="a cat", width=32, height=32, seed=1)
    with pytest.warns(UserWarning):
        _pipe().run(request, out_dir=out)  # rendered with the tiny fallback
    _cache_repo(empty_hub_cache, DEFAULT_SDXL)  # now 'auto' would take the real model: not a resume
    pipe = _pipe()
    assert pipe.weights()["generator diffusers-image"] == DEFAULT_SDXL
    with pytest.raises(OutputFolderError, match="holds the output of a different story or pipeline"):
        pipe.run(request, out_dir=out)


def test_a_mistyped_path_fails_before_the_folder_is_claimed(tmp_path: Path) -> None:
    pipe = Pipeline(planner="script", generators=[("backed", {"preset": "auto", "checkpoint": "/models/typo"})],
                    registry=_registry_with_backed())
    with pytest.raises(ConfigError, match="the checkpoint path '/models/typo' does not exist"):
        pipe.run(StoryRequest(script="a cat"), out_dir=tmp_path / "out")
    assert not (tmp_path / "out" / "run.json").exists()


def _registry_with_backed() -> Any:
    from storysdk import hookimpl

    class Plugin:
        @hookimpl
        def register_generators(self, register: Any) -> None:
            register(_Backed)

    reg = make_registry()
    reg.register_plugin(Plugin(), name="backed-plugin")
    return reg


# -- the command line: one line in the run summary; a typo exits 2 -------------------------
STORY = """
[story]
seed = 1
width = 32
height = 32
script = "a cat"

[defaults]
preset = "auto"

[planner]
name = "script"

[[tokenizers]]
name = "clip-text"

[[generators]]
name = "diffusers-image"
steps = 1
"""


def test_the_run_summary_announces_a_fallback_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    story = tmp_path / "tale.toml"
    story.write_text(STORY)
    with pytest.warns(UserWarning):
        assert main(["run", str(story), "--out", str(tmp_path / "a"), "--quiet"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "weights" in ln]
    assert lines == [
        "  weights: RANDOM TOY WEIGHTS, preset=auto fell back to the tiny preset for 2 of 2 components; "
        f"tokenizer clip-text, generator diffusers-image: {NOT_CACHED}"
    ]
    assert main(["run", str(story), "--out", str(tmp_path / "b"), "--quiet", "--preset", "tiny"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "weights" in ln]
    assert lines == ["  weights: tokenizer clip-text, generator diffusers-image: tiny"]


def test_a_mistyped_model_path_exits_2_without_a_traceback(tmp_path: Path) -> None:
    story = tmp_path / "typo.toml"
    story.write_text(STORY.replace("steps = 1", 'steps = 1\nmodel = "/models/sdxl-typo"'))
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub-cache"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "storysdk", "run", str(story), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert ("storysdk: error: generator 'diffusers-image': preset='auto': the model path '/models/sdxl-typo' "
            "does not exist") in proc.stderr
    assert not (tmp_path / "o").exists()


def test_the_story_says_which_weights_were_used(tmp_path) -> None:
    import warnings

    from storysdk import Pipeline, StoryRequest
    from storysdk.testing import make_registry

    pipe = Pipeline(planner="fake-planner", generators=[("diffusers-image", {"preset": "tiny", "steps": 1})],
                    registry=make_registry())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        story = pipe.run(StoryRequest(script="a fox", width=64, height=64, seed=1))
    assert story.weights == pipe.weights() and list(story.weights) == ["generator diffusers-image"]
    assert story.weights["generator diffusers-image"].startswith("tiny")
