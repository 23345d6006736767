"""A corpus of broken checkpoints: every loader of the core ends in one CheckpointError naming the file.

Tiny models are saved here in the layouts the loaders read (a diffusers folder for SDXL and for
Stable Audio, single files, torch pickles), then broken the ways downloads and disks break them:
truncated, emptied, a config that is not JSON, a tensor of another shape, a tensor missing or
extra, a pickle whose ``__reduce__`` would run code. Each case must raise a
:class:`~storysdk.errors.CheckpointError` (a :class:`~storysdk.errors.ConfigError` where the
user's option is at fault) whose message names the file (or the folder, for key lists) and the
fix, and never suggests ``weights_only=False``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from storysdk import runtime
from storysdk.builtins.clip_text import ClipTextTokenizer
from storysdk.builtins.diffusers_audio import DiffusersAudioGenerator
from storysdk.builtins.diffusers_image import DiffusersImageGenerator
from storysdk.errors import CheckpointError, ConfigError
from storysdk.tiny import tiny_sdxl_pipeline, tiny_stable_audio_pipeline
from storysdk.testing.faults import assert_clear, truncate, UnsafePickle as Evil

UNET = "unet/diffusion_pytorch_model.safetensors"
TE = "text_encoder/model.safetensors"
TE2 = "text_encoder_2/model.safetensors"


def edit_tensors(path: Path, change: Callable[[dict[str, torch.Tensor]], None]) -> None:
    state = load_file(str(path))
    change(state)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))


def grow(key: str) -> Callable[[dict[str, torch.Tensor]], None]:
    def change(state: dict[str, torch.Tensor]) -> None:
        old = state[key]
        state[key] = torch.zeros(old.shape[0] + 1, *old.shape[1:])

    return change


@pytest.fixture(scope="module")
def sdxl_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sdxl") / "tiny-sdxl"
    tiny_sdxl_pipeline(0).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("audio") / "tiny-audio"
    tiny_stable_audio_pipeline(0).save_pretrained(folder)
    return folder


def copy_of(folder: Path, tmp_path: Path) -> Path:
    out = tmp_path / folder.name
    shutil.copytree(folder, out)
    return out


# -- the runtime readers ----------------------------------------------------------------------


@pytest.fixture()
def state() -> dict[str, torch.Tensor]:
    return {"layer.weight": torch.arange(12.0).reshape(3, 4), "layer.bias": torch.ones(3)}


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda p, s: (torch.save(s, p), truncate(p)), "truncated or damaged"),
        (lambda p, s: (torch.save(s, p), truncate(p, 0.98)), "truncated or damaged"),
        (lambda p, s: (torch.save(s, p, _use_new_zipfile_serialization=False), truncate(p)), "truncated or damaged"),
        (lambda p, s: p.write_bytes(b""), r"is empty \(0 bytes\)"),
        (lambda p, s: p.write_text("hello, this is not a checkpoint"), "truncated or damaged"),
        (lambda p, s: None, "does not exist"),
        (lambda p, s: p.mkdir(), "is a folder"),
    ],
    ids=["truncated-zip", "truncated-zip-tail", "truncated-legacy", "empty", "text", "missing", "folder"],
)
def test_load_torch_file_names_every_broken_file(tmp_path, state, make, says):
    path = tmp_path / "weights.bin"
    make(path, state)
    with pytest.raises(CheckpointError, match=says) as err:
        runtime.load_torch_file(path, what="test weights")
    assert_clear(err.value, path, "test weights")


def test_load_torch_file_reads_zip_and_legacy_pickles(tmp_path, state):
    for legacy in (False, True):
        path = tmp_path / f"w{legacy}.pt"
        torch.save(state, path, _use_new_zipfile_serialization=not legacy)
        got = runtime.load_torch_file(path)
        assert set(got) == set(state) and all(torch.equal(got[k], state[k]) for k in state)
    assert runtime.load_torch_file(path, map_location="meta")["layer.weight"].device.type == "meta"


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_malicious_pickle_is_refused_as_unsafe_and_never_runs(tmp_path, state, legacy):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.ckpt"
    torch.save({**state, "payload": Evil(marker)}, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointError, match="refused as unsafe") as err:
        runtime.load_torch_file(path, what="weights")
    msg = assert_clear(err.value, path)
    assert "open" in msg  # the refused global is named
    assert "download complete" not in msg and "truncated" not in msg
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused as unsafe"):
        runtime.check_weights_file(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "text, says",
    [
        ("{not json", "not valid JSON .*line 1, column 2"),
        ('{"a": 1,\n "b": }', "not valid JSON .*line 2, column 7"),
        ("", "is empty"),
        ("  \n", "is empty"),
        ("[1, 2]", "holds a JSON list"),
        ('"oops"', "holds a JSON str"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
    ids=["bad", "bad-line-2", "empty", "blank", "list", "string", "deep"],
)
def test_read_json_config_names_the_file_line_and_column(tmp_path, text, says):
    path = tmp_path / "config.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CheckpointError, match=says) as err:
        runtime.read_json_config(path, what="unet config")
    assert_clear(err.value, path, "unet config")


def test_read_json_config_not_utf8_and_missing(tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes(b'{"name": "caf\xe9"}')
    with pytest.raises(CheckpointError, match="not UTF-8") as err:
        runtime.read_json_config(path)
    assert_clear(err.value, path)
    with pytest.raises(CheckpointError, match="does not exist") as err:
        runtime.read_json_config(tmp_path / "nope.json")
    assert_clear(err.value, tmp_path / "nope.json")
    path.write_text('{"a": [1, 2], "b": {"c": null}}', encoding="utf-8")
    assert runtime.read_json_config(path) == {"a": [1, 2], "b": {"c": None}}


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda p: truncate(p), "truncated or damaged"),
        (lambda p: truncate(p, 0.999), "truncated or damaged"),
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: p.write_bytes(p.read_bytes()[:20]), "truncated or damaged"),
        (lambda p: p.write_bytes((10**9).to_bytes(8, "little") + b"{}"), "truncated or damaged"),
        (lambda p: p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header!!}"), "truncated or damaged"),
    ],
    ids=["half", "last-byte", "empty", "header-cut", "huge-header", "bad-header"],
)
def test_safetensors_readers_name_a_broken_file(tmp_path, state, make, says):
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    make(path)
    for read in (
        lambda: runtime.safetensors_keys(path, what="shard"),
        lambda: runtime.load_safetensors_subset(path, lambda k: True, what="shard"),
        lambda: runtime.check_weights_file(path, what="shard"),
    ):
        with pytest.raises(CheckpointError, match=says) as err:
            read()
        assert_clear(err.value, path, "shard")


def test_safetensors_readers_read_what_is_asked(tmp_path, state):
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    assert sorted(runtime.safetensors_keys(path)) == ["layer.bias", "layer.weight"]
    part = runtime.load_safetensors_subset(path, lambda k: k.endswith("bias"))
    assert list(part) == ["layer.bias"] and torch.equal(part["layer.bias"], state["layer.bias"])
    runtime.check_weights_file(path)


def test_find_broken_file_names_the_first_broken_file(sdxl_dir, tmp_path):
    folder = copy_of(sdxl_dir, tmp_path)
    assert runtime.find_broken_file(folder) is None
    assert runtime.find_broken_file(tmp_path / "absent") is None
    truncate(folder / "vae/diffusion_pytorch_model.safetensors")
    (folder / "unet/config.json").write_text("{oops")
    err = runtime.find_broken_file(folder, what="SDXL")
    assert isinstance(err, CheckpointError)
    assert_clear(err, folder / "unet/config.json", "not valid JSON")  # unet/ sorts before vae/
    (folder / "unet/config.json").write_text("{}")
    assert_clear(runtime.find_broken_file(folder), folder / "vae/diffusion_pytorch_model.safetensors", "truncated")


def test_load_pretrained_accounts_for_every_key(sdxl_dir, tmp_path):
    """diffusers and transformers warn and initialise at random; load_pretrained refuses, with the lists."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    unet = runtime.load_pretrained(UNet2DConditionModel, sdxl_dir, subfolder="unet")
    assert torch.equal(unet.conv_in.weight, tiny_sdxl_pipeline(0).unet.conv_in.weight)
    cases = [
        (UNet2DConditionModel, "unet", UNET, lambda s: s.pop("conv_in.weight"), dict(missing=["conv_in.weight"])),
        (UNet2DConditionModel, "unet", UNET, lambda s: s.__setitem__("extra.weight", torch.zeros(2)),
         dict(unexpected=["extra.weight"])),
        (CLIPTextModel, "text_encoder", TE, lambda s: s.pop("final_layer_norm.weight"),
         dict(missing=["final_layer_norm.weight"])),
        (CLIPTextModel, "text_encoder", TE, lambda s: s.__setitem__("extra.weight", torch.zeros(2)),
         dict(unexpected=["extra.weight"])),
    ]
    for i, (cls, sub, file, change, lists) in enumerate(cases):
        folder = copy_of(sdxl_dir, tmp_path / str(i))
        edit_tensors(folder / file, change)
        with pytest.raises(CheckpointError, match=f"does not match {cls.__name__}") as err:
            runtime.load_pretrained(cls, folder, subfolder=sub, what=f"SDXL {sub}")
        assert_clear(err.value, folder / sub, f"SDXL {sub}")
        assert err.value.missing == lists.get("missing", []) and err.value.unexpected == lists.get("unexpected", [])


@pytest.mark.parametrize(
    "cls_name, sub, file, key",
    [("UNet2DConditionModel", "unet", UNET, "conv_in.bias"), ("CLIPTextModel", "text_encoder", TE, "final_layer_norm.weight")],
)
def test_load_pretrained_names_a_wrongly_shaped_tensor(sdxl_dir, tmp_path, cls_name, sub, file, key):
    import diffusers
    import transformers

    cls = getattr(diffusers, cls_name, None) or getattr(transformers, cls_name)
    folder = copy_of(sdxl_dir, tmp_path)
    edit_tensors(folder / file, grow(key))
    with pytest.raises(CheckpointError) as err:
        runtime.load_pretrained(cls, folder, subfolder=sub, what=f"SDXL {sub}")
    msg = assert_clear(err.value, folder / sub, key, "shape")
    assert "config" in msg


# -- the built-in loaders: diffusers-image, clip-text, diffusers-audio ------------------------


def _write(rel: str, text: str) -> Callable[[Path], None]:
    return lambda d: (d / rel).write_text(text)


def _to_bin(kind: str) -> Callable[[Path], None]:
    def change(d: Path) -> None:
        src = d / UNET
        state = load_file(str(src))
        src.unlink()
        dst = src.with_suffix(".bin")
        if kind == "evil":
            state["payload"] = Evil(d / "code-ran")
        torch.save(state, dst)
        if kind == "truncated":
            truncate(dst)

    return change


def _drop(d: Path) -> None:
    shutil.rmtree(d / "unet")


def _index_list(d: Path) -> None:
    (d / "model_index.json").write_text("[1, 2]")


def _arch(d: Path) -> None:
    conf = json.loads((d / "unet/config.json").read_text())
    conf["block_out_channels"] = [8, 16]  # three down blocks, two widths: no UNet
    (d / "unet/config.json").write_text(json.dumps(conf))


SDXL_FOLDER_CASES: dict[str, tuple[Callable[[Path], None], str, str]] = {
    # name: (how the folder is broken, what the message names (relative to the folder), what it says)
    "unet-truncated": (lambda d: truncate(d / UNET), UNET, "truncated or damaged"),
    "unet-empty": (lambda d: (d / UNET).write_bytes(b""), UNET, "is empty"),
    "text-encoder-truncated": (lambda d: truncate(d / TE), TE, "truncated or damaged"),
    "text-encoder-2-empty": (lambda d: (d / TE2).write_bytes(b""), TE2, "is empty"),
    "unet-config-not-json": (_write("unet/config.json", "{not json"), "unet/config.json", "not valid JSON"),
    "text-encoder-config-not-json": (_write("text_encoder/config.json", "{\n"), "text_encoder/config.json", "not valid JSON"),
    "model-index-not-json": (_write("model_index.json", "{not json"), "model_index.json", "not valid JSON"),
    "model-index-a-list": (_index_list, "model_index.json", "holds a JSON list"),
    "scheduler-config-not-json": (
        _write("scheduler/scheduler_config.json", "{oops"), "scheduler/scheduler_config.json", "not valid JSON"
    ),
    "tokenizer-not-json": (_write("tokenizer/tokenizer.json", "{oops"), "tokenizer/tokenizer.json", "not valid JSON"),
    "unet-wrong-shape": (lambda d: edit_tensors(d / UNET, grow("conv_in.bias")), "unet", "conv_in.bias"),
    "text-encoder-wrong-shape": (lambda d: edit_tensors(d / TE, grow("final_layer_norm.weight")), "text_encoder", "shape"),
    "unet-missing-tensor": (lambda d: edit_tensors(d / UNET, lambda s: s.pop("conv_in.weight")), "unet", "conv_in.weight"),
    "unet-extra-tensor": (
        lambda d: edit_tensors(d / UNET, lambda s: s.__setitem__("mystery.weight", torch.zeros(2))), "unet", "mystery.weight"
    ),
    "text-encoder-missing-tensor": (
        lambda d: edit_tensors(d / TE, lambda s: s.pop("final_layer_norm.bias")), "text_encoder", "final_layer_norm.bias"
    ),
    "unet-bin-truncated": (_to_bin("truncated"), "unet/diffusion_pytorch_model.bin", "truncated or damaged"),
    "unet-bin-unsafe-pickle": (_to_bin("evil"), "unet/diffusion_pytorch_model.bin", "refused as unsafe"),
    "unet-config-no-unet": (_arch, "unet", "block_out_channels"),
    "unet-folder-missing": (_drop, "unet", "does not exist"),
}


@pytest.mark.parametrize("case", sorted(SDXL_FOLDER_CASES))
def test_diffusers_image_names_the_broken_file(sdxl_dir, tmp_path, case):
    change, names, says = SDXL_FOLDER_CASES[case]
    folder = copy_of(sdxl_dir, tmp_path)
    change(folder)
    gen = DiffusersImageGenerator(model=str(folder))
    with pytest.raises(CheckpointError) as err:
        gen.load()
    msg = assert_clear(err.value, folder / names)
    assert says in msg
    assert gen._pipe is None
    assert not (folder / "code-ran").exists()


@pytest.mark.parametrize(
    "case", ["text-encoder-truncated", "text-encoder-2-empty", "model-index-not-json", "text-encoder-wrong-shape",
             "text-encoder-missing-tensor", "tokenizer-not-json"]
)
def test_clip_text_names_the_broken_file(sdxl_dir, tmp_path, case):
    change, names, says = SDXL_FOLDER_CASES[case]
    folder = copy_of(sdxl_dir, tmp_path)
    change(folder)
    tok = ClipTextTokenizer(model=str(folder))
    with pytest.raises(CheckpointError) as err:
        tok.load()
    assert says in assert_clear(err.value, folder / names)


def test_clip_text_ignores_a_broken_unet_it_does_not_load(sdxl_dir, tmp_path):
    folder = copy_of(sdxl_dir, tmp_path)
    truncate(folder / UNET)
    assert ClipTextTokenizer(model=str(folder)).load().unet is None


AUDIO = {
    "transformer-truncated": (
        lambda d: truncate(d / "transformer/diffusion_pytorch_model.safetensors"),
        "transformer/diffusion_pytorch_model.safetensors", "truncated or damaged",
    ),
    "projection-config-not-json": (
        _write("projection_model/config.json", "]"), "projection_model/config.json", "not valid JSON"
    ),
    "vae-missing-tensor": (
        lambda d: edit_tensors(d / "vae/diffusion_pytorch_model.safetensors",
                               lambda s: s.pop(sorted(s)[0])), "vae", "missing keys",
    ),
    "t5-wrong-shape": (
        lambda d: edit_tensors(d / "text_encoder/model.safetensors", grow("shared.weight")), "text_encoder", "shared.weight",
    ),
    "t5-empty": (lambda d: (d / "text_encoder/model.safetensors").write_bytes(b""), "text_encoder/model.safetensors",
                 "is empty"),
}


@pytest.mark.parametrize("case", sorted(AUDIO))
def test_diffusers_audio_names_the_broken_file(audio_dir, tmp_path, case):
    change, names, says = AUDIO[case]
    folder = copy_of(audio_dir, tmp_path)
    change(folder)
    with pytest.raises(CheckpointError) as err:
        DiffusersAudioGenerator(model=str(folder)).load()
    assert says in assert_clear(err.value, folder / names)


def test_intact_folders_still_load_exactly(sdxl_dir, audio_dir):
    """The strict loaders change nothing for a complete folder: the same weights as the tiny preset."""
    pipe = DiffusersImageGenerator(model=str(sdxl_dir)).load()
    ref = tiny_sdxl_pipeline(0)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        mine, theirs = getattr(pipe, name).state_dict(), getattr(ref, name).state_dict()
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine), name
    audio = DiffusersAudioGenerator(model=str(audio_dir)).load()
    assert type(audio).__name__ == "StableAudioPipeline"


# -- single-file checkpoints ------------------------------------------------------------------


def _sdxl_key_file(path: Path) -> None:
    save_file({"conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight": torch.zeros(3, 2),
               "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(2, 2)}, str(path))


@pytest.mark.parametrize(
    "name, make, says",
    [
        ("model.safetensors", lambda p: (_sdxl_key_file(p), truncate(p)), "truncated or damaged"),
        ("model.safetensors", lambda p: p.write_bytes(b""), "is empty"),
        ("model.safetensors", lambda p: p.write_bytes(b"PK\x03\x04 not safetensors at all"), "truncated or damaged"),
        ("model.ckpt", lambda p: (torch.save({"state_dict": {"a": torch.zeros(2)}}, p), truncate(p)), "truncated or damaged"),
        ("model.ckpt", lambda p: p.write_bytes(b""), "is empty"),
        ("model.ckpt", lambda p: torch.save({"state_dict": {"payload": Evil(p.parent / "code-ran")}}, p), "refused as unsafe"),
        ("model.ckpt", lambda p: torch.save([torch.zeros(2)], p), "not a state dict"),
    ],
    ids=["truncated", "empty", "garbage", "ckpt-truncated", "ckpt-empty", "ckpt-unsafe", "ckpt-list"],
)
def test_single_file_checkpoints_name_the_file(sdxl_dir, tmp_path, name, make, says):
    path = tmp_path / name
    make(path)
    gen = DiffusersImageGenerator(model=str(path), config=str(sdxl_dir))
    with pytest.raises(CheckpointError, match=says) as err:
        gen.load()
    assert_clear(err.value, path)
    assert not (tmp_path / "code-ran").exists()


def test_a_single_file_of_another_model_is_named(sdxl_dir, tmp_path):
    """Complete and safe, but not an SDXL/SD 1.5 checkpoint: diffusers' conversion error, with the file and the fix."""
    path = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down.alpha": torch.ones(1)}, str(path))
    with pytest.raises(CheckpointError, match="does not load as StableDiffusionPipeline") as err:
        DiffusersImageGenerator(model=str(path), config=str(sdxl_dir)).load()
    assert_clear(err.value, path)


def test_a_hub_id_that_is_not_reachable_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ConfigError, match="could not fetch model 'nobody/no-such-model'.*preset='tiny'") as err:
        runtime.load_pretrained_pipeline(__import__("diffusers").DiffusionPipeline, "nobody/no-such-model")
    assert "weights_only" not in str(err.value)
