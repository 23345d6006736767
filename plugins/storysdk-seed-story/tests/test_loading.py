"""Loading the released layout of §1.6: tiny models saved under the released key names and read back."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from storysdk import CheckpointError, StoryRequest
from storysdk.model import Scene, StoryPlan, Tokens
from storysdk.interfaces import RenderContext
from storysdk_seed_story.configs import TINY
from storysdk_seed_story.constants import LORA_TARGETS
from storysdk_seed_story.detokenizer import SeedStoryDetokenizer
from storysdk_seed_story.loading import LAYOUT, load_mllm, load_vit, tiny_perceiver
from storysdk_seed_story.mllm import build_llama
from storysdk_seed_story.planner import IMAGE_EMBEDS, SeedStoryPlanner
from storysdk_seed_story.preprocess import preprocess
from storysdk_seed_story.text import tiny_llama_tokenizer

P = "llm.base_model.model."


def _path(root, key):
    p = root / LAYOUT[key]
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def test_vit_from_extracted_file_and_from_qwen_vl_folder(tmp_path, vit, start_image):
    pixels = preprocess([start_image])
    with torch.no_grad():
        want = vit(pixels)
    state = vit.state_dict()
    path = _path(tmp_path, "vit")
    torch.save({k: v for k, v in state.items() if k != "attn_pool.pos_embed"}, path)  # frozen table may be absent
    with torch.no_grad():
        torch.testing.assert_close(load_vit(path, TINY.vit)(pixels), want)
    # Qwen-VL-Chat: two safetensors shards, the visual tensors under transformer.visual., LLM tensors beside them
    folder = tmp_path / "Qwen-VL-Chat"
    folder.mkdir()
    items = sorted(state.items())
    half = len(items) // 2
    shard_a = {"transformer.visual." + k: v.contiguous() for k, v in items[:half]} | {"transformer.wte.weight": torch.zeros(3, 2)}
    shard_b = {"transformer.visual." + k: v.contiguous() for k, v in items[half:]} | {"lm_head.weight": torch.zeros(3, 2)}
    save_file(shard_a, str(folder / "model-00001-of-00002.safetensors"))
    save_file(shard_b, str(folder / "model-00002-of-00002.safetensors"))
    weight_map = {k: "model-00001-of-00002.safetensors" for k in shard_a} | {k: "model-00002-of-00002.safetensors" for k in shard_b}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with torch.no_grad():
        torch.testing.assert_close(load_vit(folder, TINY.vit)(pixels), want)
    # loud failures: a missing block tensor, a stray tensor, the wrong architecture
    broken = dict(state)
    del broken["transformer.resblocks.1.mlp.c_fc.weight"]
    broken["transformer.resblocks.2.ln_1.weight"] = torch.ones(32)
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError) as err:
        load_vit(tmp_path / "broken.pt", TINY.vit)
    assert err.value.missing == ["transformer.resblocks.1.mlp.c_fc.weight"]
    assert err.value.unexpected == ["transformer.resblocks.2.ln_1.weight"]
    with pytest.raises(CheckpointError, match="shapes"):
        load_vit(path, TINY.vit.__class__(width=48, layers=2, heads=4, output_dim=64, pool_heads=4))


def _released_mllm(root, lm, seed=0):
    """Save a tiny 'Llama-2-7b-hf' (base vocabulary), the tokenizer folder and a george_sft file."""
    base_cfg = TINY.llm.__class__(vocab_size=256)
    base = build_llama(base_cfg, seed=7)
    base.save_pretrained(str(root / LAYOUT["llama"]))
    tiny_llama_tokenizer().save_pretrained(str(root / LAYOUT["tokenizer"]))
    g = torch.Generator().manual_seed(seed)
    state = {}
    H, r = base_cfg.hidden_size, 16
    for i in range(base_cfg.num_hidden_layers):
        for t in LORA_TARGETS:
            where = "self_attn" if t.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else "mlp"
            w = base.state_dict()[f"model.layers.{i}.{where}.{t}.weight"]
            state[f"{P}model.layers.{i}.{where}.{t}.lora_A.default.weight"] = torch.randn(r, w.shape[1], generator=g) * 0.1
            state[f"{P}model.layers.{i}.{where}.{t}.lora_B.default.weight"] = torch.randn(w.shape[0], r, generator=g) * 0.1
            state[f"{P}model.layers.{i}.{where}.{t}.weight"] = w.clone()  # frozen base, as zero_to_fp32 may keep it
        for n in ("input_layernorm", "post_attention_layernorm"):
            state[f"{P}model.layers.{i}.{n}.modules_to_save.default.weight"] = torch.rand(H, generator=g) + 0.5
            state[f"{P}model.layers.{i}.{n}.original_module.weight"] = torch.ones(H)
    state[f"{P}model.norm.modules_to_save.default.weight"] = torch.rand(H, generator=g) + 0.5
    state[f"{P}model.embed_tokens.weight"] = torch.randn(322, H, generator=g) * 0.02
    state[f"{P}lm_head.weight"] = torch.randn(322, H, generator=g) * 0.02
    for name, mod in (("input_resampler.", lm.input_resampler), ("output_resampler.", lm.output_resampler)):
        state.update({name + k: v.clone() for k, v in mod.state_dict().items()})
    path = _path(root, "sft")
    torch.save(state, path)
    return base, state


def test_mllm_released_layout_merges_lora_and_fails_loudly(tmp_path, lm, vit, start_image):
    base, state = _released_mllm(tmp_path, lm)
    loaded = load_mllm(tmp_path, TINY)
    sd = loaded.llm.state_dict()
    A = state[f"{P}model.layers.1.mlp.down_proj.lora_A.default.weight"]
    B = state[f"{P}model.layers.1.mlp.down_proj.lora_B.default.weight"]
    want = base.state_dict()["model.layers.1.mlp.down_proj.weight"] + 2.0 * B @ A  # alpha/r = 32/16 (§1.3)
    torch.testing.assert_close(sd["model.layers.1.mlp.down_proj.weight"], want)
    torch.testing.assert_close(sd["model.layers.0.input_layernorm.weight"],
                               state[f"{P}model.layers.0.input_layernorm.modules_to_save.default.weight"])
    torch.testing.assert_close(sd["model.norm.weight"], state[f"{P}model.norm.modules_to_save.default.weight"])
    torch.testing.assert_close(sd["lm_head.weight"], state[f"{P}lm_head.weight"])
    assert loaded.llm.config.vocab_size == 322 and loaded.ids.boi == 256 and loaded.ids.img[-1] == 321
    torch.testing.assert_close(loaded.output_resampler.query, lm.output_resampler.query)
    # the planner runs on the released layout (tiny sizes), the ViT found at visual_tokenizer/
    torch.save(vit.state_dict(), _path(tmp_path, "vit"))
    planner = SeedStoryPlanner(preset="full", pretrained=str(tmp_path), architecture="tiny", device="cpu",
                               max_text_tokens=3)
    from storysdk import Pipeline

    story = Pipeline(planner=planner).run(StoryRequest(start_image=start_image, start_caption="A fox.", num_scenes=2))
    assert len(story.plan.scenes) == 2
    assert story.plan.scenes[1].tokens[IMAGE_EMBEDS]["features"].shape == (256, 64)
    # loud failures
    del state[f"{P}model.layers.0.self_attn.v_proj.lora_B.default.weight"]
    state["llm.some.extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / LAYOUT["sft"])
    with pytest.raises(CheckpointError) as err:
        load_mllm(tmp_path, TINY)
    assert err.value.missing == [f"{P}model.layers.0.self_attn.v_proj.lora_B.default.weight"]
    assert err.value.unexpected == ["llm.some.extra.weight"]


def test_detokenizer_released_layout(tmp_path, vit):
    from storysdk.tiny import tiny_sdxl_components

    parts = tiny_sdxl_components(seed=3)
    sdxl = tmp_path / LAYOUT["sdxl"]
    for name in ("unet", "vae", "scheduler"):
        parts[name].save_pretrained(str(sdxl / name))
    torch.save(vit.state_dict(), _path(tmp_path, "vit"))
    perceiver = tiny_perceiver(TINY.perceiver, seed=9)
    unet_sd = parts["unet"].state_dict()
    adapted = {k: v + 0.5 for k, v in unet_sd.items() if k.endswith(("to_k.weight", "to_v.weight"))}
    ckpt = {"resampler." + k: v for k, v in perceiver.state_dict().items()} | {"unet." + k: v for k, v in adapted.items()}
    torch.save(ckpt, _path(tmp_path, "detokenizer"))
    det = SeedStoryDetokenizer(pretrained=str(tmp_path), architecture="tiny", device="cpu", steps=2, preset="full")
    loaded = det.load()
    key = next(iter(adapted))
    torch.testing.assert_close(loaded.pipe.unet.state_dict()[key], adapted[key])
    torch.testing.assert_close(loaded.perceiver.latents, perceiver.latents)
    scene = Scene(index=1, prompt="x", tokens={IMAGE_EMBEDS: Tokens(IMAGE_EMBEDS, "t", {"features": torch.randn(256, 64)})})
    img = next(iter(det.generate([scene], RenderContext(plan=StoryPlan(scenes=[scene]))))).image
    assert img.size == (64, 64)
    # an adapted to_v missing, a key of another architecture
    del ckpt["unet." + [k for k in adapted if k.endswith("to_v.weight")][0]]
    ckpt["unet.conv_in.lora.weight"] = torch.zeros(1)
    torch.save(ckpt, tmp_path / LAYOUT["detokenizer"])
    with pytest.raises(CheckpointError) as err:
        SeedStoryDetokenizer(pretrained=str(tmp_path), architecture="tiny", device="cpu", preset="full").load()
    assert len(err.value.missing) == 1 and err.value.missing[0].endswith("to_v.weight")
    assert err.value.unexpected == ["unet.conv_in.lora.weight"]
