"""A corpus of broken SDXL checkpoints for StoryDiffusion: each ends in one clear error naming the file.

The tiny SDXL is saved as a diffusers folder and as single files, then broken as downloads
break them: truncated, emptied, a config that is not JSON, a tensor of another shape, a tensor
missing or extra, a ``.bin`` pickle whose ``__reduce__`` would run code. Loading through the
generator (``model=``) and through ``loading.load_pipeline`` must raise a
:class:`~storysdk.errors.CheckpointError` whose message names the file (or the component's
folder, for key lists) and the fix, and never suggests ``weights_only=False``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from storysdk.errors import CheckpointError, ConfigError
from storysdk.testing.faults import assert_clear, truncate, UnsafePickle as Evil
from storysdk_storydiffusion.generator import StoryDiffusionGenerator
from storysdk_storydiffusion.loading import load_pipeline

UNET = "unet/diffusion_pytorch_model.safetensors"
TE2 = "text_encoder_2/model.safetensors"
CPU = torch.device("cpu")


def tensors(rel: str, change: Any) -> Any:
    def go(d: Path) -> None:
        state = load_file(str(d / rel))
        change(state)
        save_file({k: v.contiguous() for k, v in state.items()}, str(d / rel))

    return go


def unet_as_bin(kind: str) -> Any:
    def go(d: Path) -> None:
        state = load_file(str(d / UNET))
        (d / UNET).unlink()
        path = d / "unet/diffusion_pytorch_model.bin"
        if kind == "evil":
            state["payload"] = Evil(d / "code-ran")
        torch.save(state, path)
        if kind == "truncated":
            truncate(path)

    return go


@pytest.fixture(scope="module")
def folder(tiny_pipe: Any, tmp_path_factory: Any) -> Path:
    out = tmp_path_factory.mktemp("sdxl") / "tiny-sdxl"
    tiny_pipe.save_pretrained(out)
    return out


CASES = {
    # name: (how the folder is broken, what the message names (relative to it), what it says)
    "unet-truncated": (lambda d: truncate(d / UNET), UNET, "truncated or damaged"),
    "text-encoder-2-empty": (lambda d: (d / TE2).write_bytes(b""), TE2, "is empty"),
    "vae-config-not-json": (lambda d: (d / "vae/config.json").write_text("{"), "vae/config.json", "not valid JSON"),
    "model-index-not-json": (lambda d: (d / "model_index.json").write_text("nope"), "model_index.json", "not valid JSON"),
    "unet-wrong-shape": (
        tensors(UNET, lambda s: s.__setitem__("conv_in.bias", torch.zeros(s["conv_in.bias"].shape[0] + 1))),
        "unet", "conv_in.bias",
    ),
    "unet-missing-tensor": (tensors(UNET, lambda s: s.pop("conv_out.weight")), "unet", "conv_out.weight"),
    "text-encoder-2-extra-tensor": (
        tensors(TE2, lambda s: s.__setitem__("mystery", torch.zeros(1))), "text_encoder_2", "mystery"
    ),
    "unet-bin-truncated": (unet_as_bin("truncated"), "unet/diffusion_pytorch_model.bin", "truncated or damaged"),
    "unet-bin-unsafe-pickle": (unet_as_bin("evil"), "unet/diffusion_pytorch_model.bin", "refused as unsafe"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_broken_sdxl_folder_is_named(folder: Path, tmp_path: Path, case: str) -> None:
    change, names, says = CASES[case]
    broken = tmp_path / "sdxl"
    shutil.copytree(folder, broken)
    change(broken)
    with pytest.raises(CheckpointError) as err:
        load_pipeline(str(broken), preset=None, device=CPU, dtype=torch.float32)
    assert says in assert_clear(err.value, broken / names)
    assert not (broken / "code-ran").exists()


def test_the_generator_reports_a_broken_folder_before_rendering(folder: Path, tmp_path: Path) -> None:
    broken = tmp_path / "sdxl"
    shutil.copytree(folder, broken)
    truncate(broken / UNET)
    gen = StoryDiffusionGenerator(model=str(broken), device="cpu")
    with pytest.raises(CheckpointError, match="truncated or damaged") as err:
        gen.load()
    assert_clear(err.value, broken / UNET)
    assert gen._pipe is None


def test_the_intact_folder_loads_the_same_weights(folder: Path, tiny_pipe: Any) -> None:
    pipe = load_pipeline(str(folder), preset=None, device=CPU, dtype=torch.float32)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        mine, ref = getattr(pipe, name).state_dict(), getattr(tiny_pipe, name).state_dict()
        assert mine.keys() == ref.keys() and all(torch.equal(mine[k], ref[k]) for k in mine), name


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda p: (save_file({"a": torch.zeros(64)}, str(p)), truncate(p)), "truncated or damaged"),
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: p.write_bytes(b"\x00" * 64), "truncated or damaged"),
    ],
    ids=["truncated", "empty", "zeros"],
)
def test_a_broken_single_file_is_named(folder: Path, tmp_path: Path, make: Any, says: str) -> None:
    path = tmp_path / "sdxl.safetensors"
    make(path)
    with pytest.raises(CheckpointError, match=says) as err:
        load_pipeline(str(path), preset=None, device=CPU, dtype=torch.float32, config=str(folder))
    assert_clear(err.value, path)


def test_a_single_file_of_another_model_is_named(folder: Path, tmp_path: Path) -> None:
    path = tmp_path / "not-sdxl.safetensors"
    save_file({"lora_unet_down.alpha": torch.ones(1)}, str(path))
    with pytest.raises(CheckpointError, match="does not load as SDXL") as err:
        load_pipeline(str(path), preset=None, device=CPU, dtype=torch.float32, config=str(folder))
    assert_clear(err.value, path, "config=")


def test_a_pickled_ckpt_is_never_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"x": Evil(tmp_path / "code-ran")}}, path)
    with pytest.raises(ConfigError, match="never unpickles"):
        load_pipeline(str(path), preset=None, device=CPU, dtype=torch.float32)
    assert not (tmp_path / "code-ran").exists()


def test_a_folder_without_a_component_is_named(folder: Path, tmp_path: Path) -> None:
    broken = tmp_path / "sdxl"
    shutil.copytree(folder, broken)
    shutil.rmtree(broken / "text_encoder_2")
    index = json.loads((broken / "model_index.json").read_text())
    assert index["text_encoder_2"][1] == "CLIPTextModelWithProjection"
    with pytest.raises(CheckpointError, match="names the component 'text_encoder_2'") as err:
        load_pipeline(str(broken), preset=None, device=CPU, dtype=torch.float32)
    assert_clear(err.value, broken / "text_encoder_2")
