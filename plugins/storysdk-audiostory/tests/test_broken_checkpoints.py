"""A corpus of broken AudioStory / TangoFlux releases (docs/audiostory.md §4): one CheckpointError naming the file.

Tiny models are saved under the released key names and folder layout (the AudioStory release
folder with ``config.yaml`` + ``pytorch_model.bin``, the base LLM, the VAE and Flan-T5 folders,
and TangoFlux's own release), then broken as downloads break them: truncated, emptied, a YAML or
JSON file that is not one, a field of the wrong type, LoRA halves that do not multiply, a tensor
of another shape, a pickle whose ``__reduce__`` would run code. Every message must name the file
and the fix, and never suggest ``weights_only=False``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from storysdk.errors import CheckpointError
from storysdk.testing.faults import assert_clear, truncate, UnsafePickle as Evil
from storysdk_audiostory import constants as C
from storysdk_audiostory.lora import lora_deltas_and_plain
from storysdk_audiostory.presets import TINY, build_bridge, build_dit, build_llm, build_t5, build_vae
from storysdk_audiostory.release import (
    load_release_audio,
    load_release_bridge,
    load_release_planner,
    read_release_config,
    release_clip_seconds,
)

CPU = torch.device("cpu")
F32 = torch.float32
PRE = "seedx.llm.base_model.model."


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """The AudioStory release layout at tiny size (as tests/test_release.py builds it, LoRA r = 4)."""
    from storysdk.tiny import t5_tokenizer
    from storysdk_audiostory.qwen_tokenizer import tiny_qwen_tokenizer

    root = tmp_path_factory.mktemp("release")
    base_dir, ckpt, vae_dir, t5_dir = root / "Qwen2.5-3B-Instruct", root / "audiostory-3B", root / "vae", root / "flan-t5"
    base_tok = tiny_qwen_tokenizer(audiostory_tokens=False)
    base_tok.save_pretrained(base_dir)
    vocab = len(base_tok) + 612
    build_llm(TINY["llm"], len(base_tok), seed=5).save_pretrained(base_dir)
    trained = build_llm(TINY["llm"], vocab, seed=6)
    g = torch.Generator().manual_seed(0)
    sd = {}
    for name, p in trained.state_dict().items():
        mod = name.rsplit(".", 1)[0]
        if any(mod.endswith(t) for t in C.LORA_TARGETS) and name.endswith(".weight"):
            sd[PRE + mod + ".lora_A.default.weight"] = torch.randn(4, p.shape[1], generator=g) * 0.1
            sd[PRE + mod + ".lora_B.default.weight"] = torch.randn(p.shape[0], 4, generator=g) * 0.1
        sd[PRE + name] = p.clone()
    del sd[PRE + "model.layers.1.mlp.down_proj.weight"]  # read from the base folder's shards
    bridge = build_bridge(TINY["llm"]["hidden_size"], TINY["bridge_dim"], seed=7)
    for k, v in bridge.state_dict().items():
        sd[("" if k.startswith("multihead") else "seedx.") + k] = v.clone()
    dit = build_dit(TINY["dit"], seed=8)
    sd.update({"tangoflux." + k: v.clone() for k, v in dit.state_dict().items()})
    ckpt.mkdir()
    torch.save(sd, ckpt / "pytorch_model.bin")
    (ckpt / "config.yaml").write_text(yaml.safe_dump({
        "llm_model": {"model": {"pretrained_model_name_or_path": str(base_dir)},
                      "peft_config": {"r": 4, "lora_alpha": 8.0}, "vocab_size": vocab},
        "agent_model": {"t5_feature_scale": 10.0},
        "train_dataset": {"datapipes": [{"num_t5_out_tokens": 64, "num_aud_out_tokens": 8}]},
    }))
    vae_dir.mkdir()
    conf = {k: v for k, v in TINY["dit"].items() if k != "text_dim"}
    conf["axes_dims_rope"] = list(conf["axes_dims_rope"])
    conf["vae_config"] = TINY["vae"]
    (vae_dir / "config.json").write_text(json.dumps(conf))
    vae = build_vae(TINY["vae"], seed=9)
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(vae_dir / "model.safetensors"))
    ttok = t5_tokenizer(TINY["t5_vocab"], 512)
    ttok.save_pretrained(t5_dir)
    t5 = build_t5(TINY["t5"], len(ttok), seed=10)
    t5.save_pretrained(t5_dir)
    tangoflux = root / "TangoFlux"
    tangoflux.mkdir()
    save_file({k: v.contiguous() for k, v in dit.state_dict().items()}, str(tangoflux / "tangoflux.safetensors"))
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(tangoflux / "vae.safetensors"))
    (tangoflux / "config.json").write_text(json.dumps(conf))
    return root


def _copy(release: Path, tmp_path: Path) -> Path:
    out = tmp_path / "r"
    shutil.copytree(release, out)
    raw = yaml.safe_load((out / YAML).read_text())
    raw["llm_model"]["model"]["pretrained_model_name_or_path"] = str(out / BASE)  # the copy's own base LLM
    (out / YAML).write_text(yaml.safe_dump(raw))
    return out


def _planner(root: Path):
    return load_release_planner(str(root / "audiostory-3B"), base_llm=None, device=CPU, dtype=F32)


def _bridge(root: Path):
    return load_release_bridge(str(root / "audiostory-3B"), device=CPU, dtype=F32)


def _audio(root: Path):
    return load_release_audio(str(root / "audiostory-3B"), vae=str(root / "vae"), text_encoder=str(root / "flan-t5"),
                              device=CPU, dtype=F32)


def _tangoflux(root: Path):
    return load_release_audio(str(root / "TangoFlux"), vae=None, text_encoder=str(root / "flan-t5"), device=CPU, dtype=F32)


BIN = "audiostory-3B/pytorch_model.bin"
YAML = "audiostory-3B/config.yaml"


def _rewrite_bin(change):
    def go(root: Path) -> None:
        sd = torch.load(root / BIN, weights_only=True)
        change(sd, root)
        torch.save(sd, root / BIN)

    return go


def _yaml(change):
    def go(root: Path) -> None:
        raw = yaml.safe_load((root / YAML).read_text())
        change(raw)
        (root / YAML).write_text(yaml.safe_dump(raw))

    return go


def _json(rel: str, change):
    def go(root: Path) -> None:
        conf = json.loads((root / rel).read_text())
        change(conf)
        (root / rel).write_text(json.dumps(conf))

    return go


def _tensors(rel: str, change):
    def go(root: Path) -> None:
        s = load_file(str(root / rel))
        change(s)
        save_file(s, str(root / rel))

    return go


def _lora_rank(sd, _root):
    key = next(k for k in sd if k.endswith("q_proj.lora_A.default.weight"))
    sd[key] = torch.zeros(3, sd[key].shape[1])  # rank 3 against B's rank 4


def _lora_size(sd, _root):
    a = next(k for k in sd if k.endswith("q_proj.lora_A.default.weight"))
    b = a.replace("lora_A", "lora_B")
    sd[b] = torch.zeros(sd[b].shape[0] + 2, 4)  # B @ A multiplies, but not to the weight's shape


def _set(raw, path, value):
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


BASE = "Qwen2.5-3B-Instruct"
CASES = {
    # name: (how the release is broken, which loader, what the message names, what it says)
    "bin-truncated": (lambda r: truncate(r / BIN), _bridge, BIN, "truncated or damaged"),
    "bin-empty": (lambda r: (r / BIN).write_bytes(b""), _planner, BIN, "is empty"),
    "bin-unsafe-pickle": (_rewrite_bin(lambda sd, r: sd.__setitem__("seedx.x", Evil(r / "code-ran"))), _bridge, BIN,
                          "refused as unsafe"),
    "bin-a-list": (lambda r: torch.save([torch.zeros(1)], r / BIN), _bridge, BIN, "not a state dict"),
    "bin-non-tensor": (_rewrite_bin(lambda sd, r: sd.__setitem__("epoch", 3)), _bridge, BIN, "not tensors"),
    "bin-unknown-tensor": (_rewrite_bin(lambda sd, r: sd.__setitem__("seedx.mystery", torch.zeros(1))), _bridge, BIN,
                           "seedx.mystery"),
    "yaml-broken": (lambda r: (r / YAML).write_text("llm_model: [unclosed\n  r: 4"), _bridge, YAML, "not valid YAML"),
    "yaml-a-list": (lambda r: (r / YAML).write_text("- 1\n- 2\n"), _bridge, YAML, "not the mapping"),
    "yaml-not-utf8": (lambda r: (r / YAML).write_bytes(b"llm_model: \xff\xfe"), _bridge, YAML, "not UTF-8"),
    "yaml-rank-a-string": (_yaml(lambda raw: _set(raw, ["llm_model", "peft_config", "r"], "four")), _planner, YAML,
                           "r is 'four'"),
    "yaml-negative-vocab": (_yaml(lambda raw: _set(raw, ["llm_model", "vocab_size"], -1)), _planner, YAML, "positive"),
    "yaml-scale-nan": (_yaml(lambda raw: _set(raw, ["agent_model", "t5_feature_scale"], float("nan"))), _bridge, YAML,
                       "positive"),
    "yaml-base-a-number": (_yaml(lambda raw: _set(raw, ["llm_model", "model", "pretrained_model_name_or_path"], 5)),
                           _planner, YAML, "not a folder name"),
    "lora-ranks-differ": (_rewrite_bin(_lora_rank), _planner, "q_proj", "do not multiply"),
    "lora-wrong-size": (_rewrite_bin(_lora_size), _planner, "q_proj", "do not fit"),
    "bridge-projector-1d": (_rewrite_bin(lambda sd, r: sd.__setitem__("seedx.projector.0.weight", torch.zeros(8))),
                            _bridge, BIN, "seedx.projector.0.weight has shape (8,)"),
    "bridge-projector-heads": (_rewrite_bin(lambda sd, r: sd.__setitem__(
        "seedx.projector.0.weight", torch.zeros(TINY["bridge_dim"] + 3, TINY["llm"]["hidden_size"]))), _bridge, BIN,
        "multiple of the fuser's 8 heads"),
    "bridge-wrong-shape": (_rewrite_bin(lambda sd, r: sd.__setitem__(
        "multihead_attention.out_proj.bias", torch.zeros(TINY["bridge_dim"] + 1))), _bridge, BIN,
        "multihead_attention.out_proj.bias"),
    "base-config-not-json": (lambda r: (r / BASE / "config.json").write_text("{"), _planner, f"{BASE}/config.json",
                             "not valid JSON"),
    "base-shard-truncated": (lambda r: truncate(r / BASE / "model.safetensors"), _planner, f"{BASE}/model.safetensors",
                             "truncated or damaged"),
    "base-tokenizer-not-json": (lambda r: (r / BASE / "tokenizer.json").write_text("{oops"), _planner,
                                f"{BASE}/tokenizer.json", "not valid JSON"),
    "vae-config-not-json": (lambda r: (r / "vae/config.json").write_text("{"), _audio, "vae/config.json",
                            "not valid JSON"),
    "vae-weights-truncated": (lambda r: truncate(r / "vae/model.safetensors"), _audio, "vae/model.safetensors",
                              "not a readable safetensors"),
    "vae-missing-tensor": (_tensors("vae/model.safetensors", lambda s: s.pop(sorted(s)[0])), _audio,
                           "vae/model.safetensors", "missing keys"),
    "vae-config-nonsense": (_json("vae/config.json", lambda c: c["vae_config"].__setitem__("nonsense_option", 1)),
                            _audio, "vae/model.safetensors", "describes no Oobleck VAE"),
    "dit-layers-a-string": (_json("vae/config.json", lambda c: c.__setitem__("num_layers", "six")), _audio,
                            "vae/config.json", "num_layers is 'six'"),
    "dit-rope-broken": (_json("vae/config.json", lambda c: c.__setitem__("axes_dims_rope", "16,56")), _audio,
                        "vae/config.json", "axes_dims_rope"),
    "dit-config-other-model": (_json("vae/config.json", lambda c: c.__setitem__("num_layers", c["num_layers"] + 1)),
                               _audio, BIN, "missing keys"),
    "t5-config-not-json": (lambda r: (r / "flan-t5/config.json").write_text("{"), _audio, "flan-t5/config.json",
                           "not valid JSON"),
    "t5-weights-empty": (lambda r: (r / "flan-t5/model.safetensors").write_bytes(b""), _audio,
                         "flan-t5/model.safetensors", "is empty"),
    "t5-missing-tensor": (_tensors("flan-t5/model.safetensors", lambda s: s.pop("encoder.final_layer_norm.weight")),
                          _audio, "flan-t5", "encoder.final_layer_norm.weight"),
    "t5-tokenizer-not-json": (lambda r: (r / "flan-t5/tokenizer.json").write_text("[["), _audio, "flan-t5/tokenizer.json",
                              "not valid JSON"),
    "tangoflux-truncated": (lambda r: truncate(r / "TangoFlux/tangoflux.safetensors"), _tangoflux,
                            "TangoFlux/tangoflux.safetensors", "not a readable safetensors"),
    "tangoflux-config-not-json": (lambda r: (r / "TangoFlux/config.json").write_text("{"), _tangoflux,
                                  "TangoFlux/config.json", "not valid JSON"),
    "tangoflux-vae-empty": (lambda r: (r / "TangoFlux/vae.safetensors").write_bytes(b""), _tangoflux,
                            "TangoFlux/vae.safetensors", "header too small"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_broken_release_names_the_file(release, tmp_path, case):
    change, load, names, says = CASES[case]
    root = _copy(release, tmp_path)
    change(root)
    with pytest.raises(CheckpointError) as err:
        load(root)
    msg = str(err.value)
    assert says in msg, msg
    assert (str(root / names) in msg) or (names in msg and "/" not in names), msg
    assert_clear(err.value)
    assert not (root / "code-ran").exists()


def test_the_intact_release_still_loads(release):
    assert _planner(release).special.num_t5 == 64
    assert _bridge(release).scale == 10.0
    assert _audio(release).clip_seconds == _tangoflux(release).clip_seconds


def test_release_config_fields_are_checked(tmp_path):
    (tmp_path / "config.yaml").write_text("llm_model:\n  peft_config:\n    r: 2.5\n")
    with pytest.raises(CheckpointError, match="r is 2.5, not a int") as err:
        read_release_config(tmp_path)
    assert_clear(err.value, tmp_path / "config.yaml")
    (tmp_path / "config.yaml").write_text("llm_model:\n  peft_config:\n    r: true\n")
    with pytest.raises(CheckpointError, match="r is True"):
        read_release_config(tmp_path)
    (tmp_path / "config.yaml").write_text("")  # empty: the spec defaults (docs/audiostory.md §4)
    cfg = read_release_config(tmp_path)
    assert (cfg["lora_r"], cfg["lora_alpha"], cfg["vocab_size"]) == (C.LORA_R, C.LORA_ALPHA, C.RELEASED_VOCAB)


def test_the_clip_window_refuses_a_broken_config_before_rendering(tmp_path):
    folder = tmp_path / "TangoFlux"
    folder.mkdir()
    (folder / "tangoflux.safetensors").write_bytes(b"")  # not read: only config.json is
    for text, says in (("{", "not valid JSON"), ('{"audio_seq_len": "645"}', "audio_seq_len is '645'"),
                       ('{"audio_seq_len": 0}', "audio_seq_len is 0"), ('{"vae_config": [1]}', r"vae_config is \[1\]")):
        (folder / "config.json").write_text(text)
        with pytest.raises(CheckpointError, match=says) as err:
            release_clip_seconds(folder, None)
        assert_clear(err.value, folder / "config.json")
    (folder / "config.json").unlink()
    assert release_clip_seconds(folder, None) is None  # absent: loading says what is missing


def test_lora_shapes_are_checked_before_multiplying():
    sd = {"base_model.model.a.lora_A.default.weight": torch.zeros(4, 6),
          "base_model.model.a.lora_B.default.weight": torch.zeros(5, 3)}
    with pytest.raises(CheckpointError, match=r"a.weight: lora_A \(4, 6\), lora_B \(5, 3\)"):
        lora_deltas_and_plain(sd, 1.0)
    sd["base_model.model.a.lora_B.default.weight"] = torch.ones(5, 4)
    sd["base_model.model.a.lora_A.default.weight"] = torch.ones(4, 6)
    _, deltas, _ = lora_deltas_and_plain(sd, 0.5)
    assert torch.equal(deltas["a.weight"], torch.full((5, 6), 2.0))  # 0.5 * (B @ A) = 0.5 * 4
