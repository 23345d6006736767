"""Loader round trips: tiny models saved under the released key names (docs/audiostory.md §4, §9) and
loaded back, LoRA merged by an independent computation here; loud failures on bad checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import save_file
from storysdk.errors import CheckpointError
from storysdk_audiostory import constants as C
from storysdk_audiostory.presets import TINY, build_bridge, build_dit, build_llm, build_t5, build_vae
from storysdk_audiostory.release import load_release_audio, load_release_bridge, load_release_planner

R, ALPHA = 4, 8.0
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    from storysdk.tiny import t5_tokenizer
    from storysdk_audiostory.qwen_tokenizer import tiny_qwen_tokenizer

    root = tmp_path_factory.mktemp("release")
    base_dir, ckpt, vae_dir, t5_dir = root / "Qwen2.5-3B-Instruct", root / "audiostory-3B", root / "vae", root / "flan-t5"
    base_tok = tiny_qwen_tokenizer(audiostory_tokens=False)
    base_tok.save_pretrained(base_dir)
    vocab = len(base_tok) + 612
    base = build_llm(TINY["llm"], len(base_tok), seed=5)
    base.save_pretrained(base_dir)
    trained = build_llm(TINY["llm"], vocab, seed=6)
    g = torch.Generator().manual_seed(0)
    sd, lora, norms = {}, {}, {}
    pre = "seedx.llm.base_model.model."
    for name, p in trained.state_dict().items():
        mod = name.rsplit(".", 1)[0]
        if any(mod.endswith(t) for t in C.LORA_TARGETS) and name.endswith(".weight"):
            a = torch.randn(R, p.shape[1], generator=g) * 0.1
            b = torch.randn(p.shape[0], R, generator=g) * 0.1
            sd[pre + mod + ".lora_A.default.weight"], sd[pre + mod + ".lora_B.default.weight"] = a, b
            lora[name] = (a, b)
        if "norm" in mod.rsplit(".", 1)[-1]:
            sd[pre + mod + ".original_module.weight"] = torch.zeros_like(p)
            sd[pre + mod + ".modules_to_save.default.weight"] = p.clone()
            norms[name] = p.clone()
        else:
            sd[pre + name] = p.clone()
    dropped = "model.layers.1.mlp.down_proj.weight"  # comes from the base folder instead
    del sd[pre + dropped]
    bridge = build_bridge(TINY["llm"]["hidden_size"], TINY["bridge_dim"], seed=7)
    for k, v in bridge.state_dict().items():
        sd[("" if k.startswith("multihead") else "seedx.") + k] = v.clone()
    dit = build_dit(TINY["dit"], seed=8)
    sd.update({"tangoflux." + k: v.clone() for k, v in dit.state_dict().items()})
    sd["seedx.whisper_resampler_llava.proj.weight"] = torch.zeros(2, 2)  # unused input path: accepted
    ckpt.mkdir()
    torch.save(sd, ckpt / "pytorch_model.bin")
    (ckpt / "config.yaml").write_text(yaml.safe_dump({
        "tokenizer": {"_target_": "init_tokenizer"},
        "llm_model": {"model": {"pretrained_model_name_or_path": str(base_dir)},
                      "peft_config": {"r": R, "lora_alpha": ALPHA}, "vocab_size": vocab},
        "agent_model": {"t5_feature_scale": 10.0, "model_dims": 32},
        "train_dataset": {"datapipes": [{"num_t5_out_tokens": 64, "num_aud_out_tokens": 8}]},
    }))
    vae = build_vae(TINY["vae"], seed=9)
    vae_dir.mkdir()
    conf = {k: v for k, v in TINY["dit"].items() if k != "text_dim"}
    conf["axes_dims_rope"] = list(conf["axes_dims_rope"])
    conf["vae_config"] = TINY["vae"]
    (vae_dir / "config.json").write_text(json.dumps(conf))
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(vae_dir / "model.safetensors"))
    ttok = t5_tokenizer(TINY["t5_vocab"], 512)
    t5 = build_t5(TINY["t5"], len(ttok), seed=10)
    ttok.save_pretrained(t5_dir)
    t5.save_pretrained(t5_dir)
    return dict(root=root, ckpt=ckpt, base=base, trained=trained, lora=lora, norms=norms, dropped=dropped,
                bridge=bridge, dit=dit, vae=vae, vae_dir=vae_dir, t5=t5, t5_dir=t5_dir, sd=sd, conf=conf)


def test_planner_round_trip_merges_lora(release):
    rt = load_release_planner(str(release["ckpt"]), base_llm=None, device=CPU, dtype=torch.float32)
    got = rt.llm.state_dict()
    trained, base = release["trained"].state_dict(), release["base"].state_dict()
    for name, (a, b) in release["lora"].items():
        w0 = base[name] if name == release["dropped"] else trained[name]
        assert torch.allclose(got[name], w0 + (ALPHA / R) * (b @ a), atol=1e-6), name
    for name, w in release["norms"].items():
        assert torch.equal(got[name], w)  # the modules_to_save copy, not original_module
    assert torch.equal(got["model.embed_tokens.weight"], trained["model.embed_tokens.weight"])
    assert len(rt.tokenizer) == trained["model.embed_tokens.weight"].shape[0]
    assert rt.special.num_t5 == 64 and rt.special.num_aud == 8


def test_bridge_and_audio_round_trip(release):
    br = load_release_bridge(str(release["ckpt"]), device=CPU, dtype=torch.float32)
    assert br.scale == 10.0
    assert all(torch.equal(v, release["bridge"].state_dict()[k]) for k, v in br.heads.state_dict().items())
    rt = load_release_audio(str(release["ckpt"]), vae=str(release["vae_dir"]), text_encoder=str(release["t5_dir"]),
                            device=CPU, dtype=torch.float32)
    assert all(torch.equal(v, release["dit"].state_dict()[k]) for k, v in rt.dit.state_dict().items())
    assert all(torch.equal(v, release["vae"].state_dict()[k]) for k, v in rt.vae.state_dict().items())
    assert rt.clip_seconds == 30.0


def test_tangoflux_release_round_trip(release, tmp_path):
    folder = tmp_path / "TangoFlux"
    folder.mkdir()
    sd = {k: v.contiguous() for k, v in release["dit"].state_dict().items()}
    t5 = {("text_encoder." + k): v.clone().contiguous() for k, v in release["t5"].state_dict().items()
          if k != "encoder.embed_tokens.weight"}  # tied, absent from the release file (§4)
    save_file({**sd, **t5}, str(folder / "tangoflux.safetensors"))
    save_file({k: v.contiguous() for k, v in release["vae"].state_dict().items()}, str(folder / "vae.safetensors"))
    (folder / "config.json").write_text(json.dumps(release["conf"]))
    rt = load_release_audio(str(folder), vae=None, text_encoder=str(release["t5_dir"]), device=CPU, dtype=torch.float32)
    assert torch.equal(rt.t5.state_dict()["encoder.embed_tokens.weight"], release["t5"].state_dict()["shared.weight"])
    assert all(torch.equal(v, release["dit"].state_dict()[k]) for k, v in rt.dit.state_dict().items())


def _rewrite(release, tmp_path, change):
    import shutil

    ckpt = tmp_path / "bad"
    shutil.copytree(release["ckpt"], ckpt)
    sd = dict(release["sd"])
    change(sd)
    torch.save(sd, ckpt / "pytorch_model.bin")
    return str(ckpt)


def test_unexpected_key_fails_with_list(release, tmp_path):
    ckpt = _rewrite(release, tmp_path, lambda sd: sd.__setitem__("seedx.mystery.weight", torch.zeros(1)))
    with pytest.raises(CheckpointError, match="seedx.mystery.weight") as err:
        load_release_bridge(ckpt, device=CPU, dtype=torch.float32)
    assert err.value.unexpected == ["seedx.mystery.weight"]


def test_missing_keys_fail_with_list(release, tmp_path):
    ckpt = _rewrite(release, tmp_path, lambda sd: sd.pop("tangoflux.fc.0.bias"))
    with pytest.raises(CheckpointError) as err:
        load_release_audio(ckpt, vae=str(release["vae_dir"]), text_encoder=str(release["t5_dir"]), device=CPU,
                           dtype=torch.float32)
    assert err.value.missing == ["fc.0.bias"]
    ckpt = _rewrite(release, tmp_path / "b", lambda sd: sd.pop("seedx.llm.base_model.model.model.embed_tokens.weight"))
    with pytest.raises(CheckpointError) as err:
        load_release_planner(ckpt, base_llm=None, device=CPU, dtype=torch.float32)
    assert "model.embed_tokens.weight" in err.value.missing  # resized rows never come from the base folder
