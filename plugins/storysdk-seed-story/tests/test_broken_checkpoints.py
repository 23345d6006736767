"""A corpus of broken SEED-Story checkpoints (§1.6 layout): each ends in one CheckpointError naming the file.

Tiny modules are saved under the released names and layout, then broken as downloads break
them: truncated, emptied, a JSON file that is not JSON, a tensor of another shape, a missing
tensor, a pickle whose ``__reduce__`` would run code. Every message must name the file (or the
folder, for key lists) and the fix, and never suggest ``weights_only=False`` or call a refused
pickle an incomplete download.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from storysdk.errors import CheckpointError
from storysdk.testing.faults import assert_clear, truncate, UnsafePickle as Evil
from storysdk_seed_story.checkpoints import read_prefixed, read_state_dict
from storysdk_seed_story.configs import TINY
from storysdk_seed_story.constants import LORA_TARGETS
from storysdk_seed_story.loading import LAYOUT, load_detokenizer_weights, load_mllm, load_sdxl_parts, load_vit, tiny_perceiver
from storysdk_seed_story.mllm import build_llama
from storysdk_seed_story.text import tiny_llama_tokenizer

P = "llm.base_model.model."


# -- read_state_dict / read_prefixed ---------------------------------------------------------


@pytest.fixture()
def state(vit) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in vit.state_dict().items()}


@pytest.mark.parametrize(
    "name, make, says",
    [
        ("qwen_vit_G.pt", lambda p, s: (torch.save(s, p), truncate(p)), "truncated or damaged"),
        ("qwen_vit_G.pt", lambda p, s: (torch.save(s, p, _use_new_zipfile_serialization=False), truncate(p)),
         "truncated or damaged"),
        ("qwen_vit_G.pt", lambda p, s: p.write_bytes(b""), "is empty"),
        ("qwen_vit_G.pt", lambda p, s: torch.save({**s, "x": Evil(p.parent / "code-ran")}, p), "refused as unsafe"),
        ("qwen_vit_G.pt", lambda p, s: torch.save(list(s.values()), p), "not a state_dict of tensors"),
        ("qwen_vit_G.pt", lambda p, s: torch.save({**s, "epoch": 3}, p), "not a state_dict of tensors"),
        ("qwen_vit_G.safetensors", lambda p, s: (save_file(s, str(p)), truncate(p)), "not a readable safetensors"),
        ("qwen_vit_G.pt", lambda p, s: None, "does not exist"),
    ],
    ids=["truncated-zip", "truncated-legacy", "empty", "unsafe-pickle", "a-list", "non-tensor", "safetensors-truncated",
         "missing"],
)
def test_read_state_dict_and_load_vit_name_the_file(tmp_path, state, name, make, says):
    path = tmp_path / name
    make(path, state)
    with pytest.raises(CheckpointError, match=says) as err:
        read_state_dict(path, what="ViT checkpoint")
    msg = assert_clear(err.value, path)
    assert "download complete?" not in msg
    with pytest.raises(CheckpointError, match=says):
        load_vit(path, TINY.vit)
    assert not (tmp_path / "code-ran").exists()


def test_a_vit_tensor_of_another_shape_is_named(tmp_path, state):
    key = "transformer.resblocks.0.mlp.c_fc.weight"
    state[key] = torch.zeros(state[key].shape[0] + 1, state[key].shape[1])
    torch.save(state, tmp_path / "vit.pt")
    with pytest.raises(CheckpointError, match="other shapes") as err:
        load_vit(tmp_path / "vit.pt", TINY.vit)
    assert key in str(err.value) and str(tmp_path / "vit.pt") in str(err.value)


def _qwen_vl(folder: Path, state: dict[str, torch.Tensor]) -> None:
    folder.mkdir()
    shard = {"transformer.visual." + k: v.contiguous() for k, v in state.items()}
    save_file(shard, str(folder / "model-00001-of-00001.safetensors"))
    index = {"weight_map": dict.fromkeys(shard, "model-00001-of-00001.safetensors")}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))


INDEX = "model.safetensors.index.json"
SHARD = "model-00001-of-00001.safetensors"


@pytest.mark.parametrize(
    "change, file, says",
    [
        (lambda d: (d / INDEX).write_text("{oops"), INDEX, "not valid JSON"),
        (lambda d: (d / INDEX).write_text("[]"), INDEX, "holds a JSON list"),
        (lambda d: (d / INDEX).write_text('{"metadata": {}}'), INDEX, "no weight_map"),
        (lambda d: (d / INDEX).write_text('{"weight_map": {"a": "../../etc/passwd"}}'), INDEX, "no weight_map"),
        (lambda d: truncate(d / SHARD), SHARD, "truncated or damaged"),
        (lambda d: (d / SHARD).unlink(), INDEX, "not there"),
    ],
    ids=["index-not-json", "index-list", "no-weight-map", "shard-outside", "shard-truncated", "shard-missing"],
)
def test_a_broken_qwen_vl_folder_names_the_file(tmp_path, state, change, file, says):
    folder = tmp_path / "Qwen-VL-Chat"
    _qwen_vl(folder, state)
    assert set(read_prefixed(folder, "transformer.visual.")) == set(state)
    change(folder)
    with pytest.raises(CheckpointError, match=says) as err:
        load_vit(folder, TINY.vit)
    assert_clear(err.value, folder / file)


# -- load_mllm: Llama folder, tokenizer, george_sft ------------------------------------------


def _released(root: Path, lm) -> dict[str, torch.Tensor]:
    base_cfg = TINY.llm.__class__(vocab_size=256)
    base = build_llama(base_cfg, seed=7)
    base.save_pretrained(str(root / LAYOUT["llama"]))
    tiny_llama_tokenizer().save_pretrained(str(root / LAYOUT["tokenizer"]))
    g = torch.Generator().manual_seed(0)
    sft, H = {}, base_cfg.hidden_size
    for i in range(base_cfg.num_hidden_layers):
        for t in LORA_TARGETS:
            where = "self_attn" if t in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
            w = base.state_dict()[f"model.layers.{i}.{where}.{t}.weight"]
            sft[f"{P}model.layers.{i}.{where}.{t}.lora_A.default.weight"] = torch.randn(16, w.shape[1], generator=g)
            sft[f"{P}model.layers.{i}.{where}.{t}.lora_B.default.weight"] = torch.randn(w.shape[0], 16, generator=g)
        for n in ("input_layernorm", "post_attention_layernorm"):
            sft[f"{P}model.layers.{i}.{n}.modules_to_save.default.weight"] = torch.ones(H)
    sft[f"{P}model.norm.modules_to_save.default.weight"] = torch.ones(H)
    sft[f"{P}model.embed_tokens.weight"] = torch.randn(322, H, generator=g)
    sft[f"{P}lm_head.weight"] = torch.randn(322, H, generator=g)
    for name, mod in (("input_resampler.", lm.input_resampler), ("output_resampler.", lm.output_resampler)):
        sft.update({name + k: v.clone() for k, v in mod.state_dict().items()})
    (root / LAYOUT["sft"]).parent.mkdir(parents=True)
    torch.save(sft, root / LAYOUT["sft"])
    return sft


@pytest.fixture(scope="module")
def released(tmp_path_factory, lm):
    root = tmp_path_factory.mktemp("pretrained")
    sft = _released(root, lm)
    return root, sft


def _copy(released, tmp_path: Path) -> Path:
    root = tmp_path / "pretrained"
    shutil.copytree(released[0], root)
    return root


LLAMA = LAYOUT["llama"]


def _llama_tensors(root: Path, change) -> None:
    path = root / LLAMA / "model.safetensors"
    s = load_file(str(path))
    change(s)
    save_file(s, str(path), metadata={"format": "pt"})


def _sft(change):
    def go(root: Path) -> None:
        s = torch.load(root / LAYOUT["sft"], weights_only=True)
        change(s, root)
        torch.save(s, root / LAYOUT["sft"])

    return go


MLLM_CASES = {
    "llama-missing-tensor": (lambda r: _llama_tensors(r, lambda s: s.pop("model.norm.weight")), LLAMA, "model.norm.weight"),
    "llama-extra-tensor": (lambda r: _llama_tensors(r, lambda s: s.__setitem__("model.extra", torch.zeros(1))), LLAMA,
                           "model.extra"),
    "llama-truncated": (lambda r: truncate(r / LLAMA / "model.safetensors"), f"{LLAMA}/model.safetensors", "truncated"),
    "llama-config-not-json": (lambda r: (r / LLAMA / "config.json").write_text("{"), f"{LLAMA}/config.json",
                              "not valid JSON"),
    "tokenizer-not-json": (lambda r: (r / LAYOUT["tokenizer"] / "tokenizer.json").write_text("{oops"),
                           f"{LAYOUT['tokenizer']}/tokenizer.json", "not valid JSON"),
    "sft-truncated": (lambda r: truncate(r / LAYOUT["sft"]), LAYOUT["sft"], "truncated or damaged"),
    "sft-empty": (lambda r: (r / LAYOUT["sft"]).write_bytes(b""), LAYOUT["sft"], "is empty"),
    "sft-unsafe-pickle": (_sft(lambda s, r: s.__setitem__("llm.x", Evil(r / "code-ran"))), LAYOUT["sft"],
                          "refused as unsafe"),
    "sft-lora-1d": (_sft(lambda s, r: s.__setitem__(f"{P}model.layers.0.mlp.up_proj.lora_A.default.weight",
                                                    torch.zeros(16))), "model.layers.0.mlp.up_proj.weight", "LoRA"),
    "sft-lora-rank": (_sft(lambda s, r: s.__setitem__(f"{P}model.layers.1.self_attn.q_proj.lora_A.default.weight",
                                                      torch.zeros(8, 32))), "model.layers.1.self_attn.q_proj", "LoRA"),
}


@pytest.mark.parametrize("case", sorted(MLLM_CASES))
def test_load_mllm_names_the_broken_file(released, tmp_path, case):
    change, names, says = MLLM_CASES[case]
    root = _copy(released, tmp_path)
    change(root)
    with pytest.raises(CheckpointError) as err:
        load_mllm(root, TINY)
    msg = str(err.value)
    assert says in msg, msg
    assert names in msg or str(root / names) in msg, msg
    assert_clear(err.value)
    assert not (root / "code-ran").exists()


def test_the_intact_released_layout_still_loads(released):
    loaded = load_mllm(released[0], TINY)
    assert loaded.llm.config.vocab_size == 322


# -- the de-tokenizer: SDXL folder and adapted checkpoint ------------------------------------


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    from storysdk.tiny import tiny_sdxl_components

    parts = tiny_sdxl_components(seed=3)
    folder = tmp_path_factory.mktemp("sdxl") / "stable-diffusion-xl-base-1.0"
    for name in ("unet", "vae", "scheduler"):
        parts[name].save_pretrained(str(folder / name))
    return folder, parts


UNET = "unet/diffusion_pytorch_model.safetensors"
VAE = "vae/diffusion_pytorch_model.safetensors"


def _tensors(rel: str, change):
    def go(d: Path) -> None:
        s = load_file(str(d / rel))
        change(s)
        save_file(s, str(d / rel))

    return go


SDXL_CASES = {
    "unet-truncated": (lambda d: truncate(d / UNET), UNET, "truncated"),
    "vae-empty": (lambda d: (d / VAE).write_bytes(b""), VAE, "is empty"),
    "unet-config-not-json": (lambda d: (d / "unet/config.json").write_text("{"), "unet/config.json", "not valid JSON"),
    "scheduler-not-json": (lambda d: (d / "scheduler/scheduler_config.json").write_text("]"),
                           "scheduler/scheduler_config.json", "not valid JSON"),
    "vae-missing-tensor": (_tensors(VAE, lambda s: s.pop(sorted(s)[0])), "vae", "missing keys"),
    "unet-wrong-shape": (_tensors(UNET, lambda s: s.__setitem__("conv_in.bias", torch.zeros(s["conv_in.bias"].shape[0] + 1))),
                         "unet", "conv_in.bias"),
    "no-scheduler": (lambda d: shutil.rmtree(d / "scheduler"), "", "no scheduler/ subfolder"),
}


@pytest.mark.parametrize("case", sorted(SDXL_CASES))
def test_load_sdxl_parts_names_the_broken_file(sdxl, tmp_path, case):
    change, names, says = SDXL_CASES[case]
    folder = tmp_path / "sdxl"
    shutil.copytree(sdxl[0], folder)
    change(folder)
    with pytest.raises(CheckpointError) as err:
        load_sdxl_parts(folder)
    assert says in assert_clear(err.value, folder / names if names else folder)


def test_load_sdxl_parts_loads_the_intact_folder(sdxl):
    unet, vae, scheduler = load_sdxl_parts(sdxl[0])
    assert torch.equal(unet.conv_in.weight, sdxl[1]["unet"].conv_in.weight)
    assert type(scheduler).__name__ == "EulerDiscreteScheduler"  # §1.5
    assert scheduler.config.num_train_timesteps == sdxl[1]["scheduler"].config.num_train_timesteps


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda p, c: (torch.save(c, p), truncate(p)), "truncated or damaged"),
        (lambda p, c: torch.save({**c, "resampler.x": Evil(p.parent / "code-ran")}, p), "refused as unsafe"),
        (lambda p, c: p.write_bytes(b""), "is empty"),
    ],
    ids=["truncated", "unsafe-pickle", "empty"],
)
def test_a_broken_detokenizer_checkpoint_is_named(sdxl, tmp_path, make, says):
    unet = sdxl[1]["unet"]
    from storysdk_seed_story.detokenizer import _perceiver_config

    perceiver = tiny_perceiver(_perceiver_config(TINY.perceiver, unet), seed=1)
    ckpt = {"resampler." + k: v for k, v in perceiver.state_dict().items()}
    path = tmp_path / "pytorch_model.bin"
    make(path, ckpt)
    with pytest.raises(CheckpointError, match=says) as err:
        load_detokenizer_weights(unet, perceiver, path)
    assert_clear(err.value, path)
    assert not (tmp_path / "code-ran").exists()
