"""The storydiffusion generator says which weights it uses; ``preset='auto'`` is decided once, offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from storysdk import ConfigError
from storysdk.runtime import weights_of
from storysdk_storydiffusion.generator import StoryDiffusionGenerator


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    return cache


def _cache_file(cache: Path, repo: str, filename: str) -> None:
    folder = cache / ("models--" + repo.replace("/", "--"))
    rev = "2" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(rev)
    (folder / "snapshots" / rev).mkdir(parents=True)
    (folder / "snapshots" / rev / filename).write_text("{}")


def test_auto_without_the_model_in_the_cache_is_the_tiny_fallback(hub_cache: Path) -> None:
    gen = StoryDiffusionGenerator(preset="auto")  # the default base model: Unstable, a hub folder
    with pytest.warns(UserWarning, match="generator 'storydiffusion': preset='auto'"):
        used = gen.weights
    assert used == ("tiny (fallback: 'stablediffusionapi/sdxl-unstable-diffusers-y' is neither a local folder "
                    "nor in the local Hugging Face cache)")
    assert gen.weights == used and weights_of(gen) == used  # decided once: no second warning, same answer
    assert StoryDiffusionGenerator(preset="tiny").weights == "tiny"


def test_auto_takes_a_cached_single_file_of_a_hub_repo(hub_cache: Path) -> None:
    gen = StoryDiffusionGenerator(preset="auto", model="Juggernaut")  # one .safetensors file of a hub repo
    with pytest.warns(UserWarning, match="'Juggernaut-XL_v9_RunDiffusionPhoto_v2.safetensors' of the hub repo"):
        assert gen.weights.startswith("tiny (fallback:")
    _cache_file(hub_cache, "RunDiffusion/Juggernaut-XL-v9", "Juggernaut-XL_v9_RunDiffusionPhoto_v2.safetensors")
    assert StoryDiffusionGenerator(preset="auto", model="Juggernaut").weights == "Juggernaut"


def test_auto_with_a_mistyped_path_is_an_error_before_loading(tmp_path: Path) -> None:
    gen = StoryDiffusionGenerator(preset="auto", model=str(tmp_path / "sdxl-typo"))
    with pytest.raises(ConfigError, match="generator 'storydiffusion': preset='auto': the model path .* does not exist"):
        weights_of(gen)
    assert gen._pipe is None
    assert StoryDiffusionGenerator(preset="auto", model=str(tmp_path)).weights == str(tmp_path)
