"""Building the models: tiny (seeded random, in code) or from the released layout of docs/seed-story.md §1.6.

Released layout under one ``pretrained`` folder::

    Llama-2-7b-hf/  stable-diffusion-xl-base-1.0/{scheduler,unet,vae}/  Qwen-VL-Chat/
    visual_tokenizer/qwen_vit_G.pt  cvlm_llama2_tokenizer/  seed_story/george_sft/pytorch_model.bin
    detokenizer/detokenizer_george_adapted/checkpoint-4000/pytorch_model.bin
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from storysdk.errors import CheckpointError, ConfigError
from storysdk.runtime import load_state_dict, seeded

from .checkpoints import read_prefixed, read_state_dict, split_prefix
from .constants import LORA_SCALE, LORA_TARGETS, NORMS_TO_SAVE
from .configs import PerceiverConfig, Sizes, ViTConfig
from .mllm import MLLM, build_llama
from .perceiver import PerceiverResampler
from .resampler import Resampler
from .text import load_tokenizer, resolve_special_ids, tiny_llama_tokenizer
from .vit import VisionTransformer

__all__ = [
    "LAYOUT",
    "layout_path",
    "load_detokenizer_weights",
    "load_mllm",
    "load_resamplers",
    "load_sdxl_parts",
    "load_vit",
    "merge_sft",
    "resamplers",
    "tiny_mllm",
    "tiny_perceiver",
    "tiny_resamplers",
    "tiny_vit",
]

#: §1.6 paths, relative to the ``pretrained`` folder.
LAYOUT = {
    "llama": "Llama-2-7b-hf",
    "sdxl": "stable-diffusion-xl-base-1.0",
    "qwen_vl": "Qwen-VL-Chat",
    "vit": "visual_tokenizer/qwen_vit_G.pt",
    "tokenizer": "cvlm_llama2_tokenizer",
    "sft": "seed_story/george_sft/pytorch_model.bin",
    "detokenizer": "detokenizer/detokenizer_george_adapted/checkpoint-4000/pytorch_model.bin",
}
PEFT = "base_model.model."  # PEFT 0.4.0 wrapping inside ``llm.`` (§1.3)

# Seed offsets so that each tiny module has its own stream: module k of weights seed s is
# built right after torch.manual_seed(10 * s + k), inside storysdk.runtime.seeded (the
# caller's global RNG is left as it was).
_SEED_VIT, _SEED_RES, _SEED_LLM, _SEED_PERC = 0, 1, 2, 3


def layout_path(pretrained: str | Path, key: str) -> Path:
    return Path(pretrained).expanduser() / LAYOUT[key]


def _stream(seed: int, offset: int) -> int:
    return int(seed) * 10 + offset


# -- tiny -------------------------------------------------------------------------------------
def tiny_vit(sizes: Sizes, seed: int = 0) -> VisionTransformer:
    """The ViT of ``sizes`` with seeded random weights (weights seed ``seed``)."""
    with seeded(_stream(seed, _SEED_VIT)):
        return VisionTransformer(sizes.vit).eval()


def resamplers(sizes: Sizes, dim: int) -> tuple[Resampler, Resampler]:
    """The MLLM's (input, output) resamplers at width ``dim``, with the global RNG's weights."""
    # §1.2: input grid 8 (64 queries), output grid 16 (256 queries), kv_dim == embed_dim, eps 1e-5
    return (Resampler(8, dim, sizes.resampler_heads, kv_dim=dim, eps=1e-5).eval(),
            Resampler(16, dim, sizes.resampler_heads, kv_dim=dim, eps=1e-5).eval())


def tiny_resamplers(sizes: Sizes, seed: int = 0) -> tuple[Resampler, Resampler]:
    """The tiny MLLM's resamplers (the same weights as :func:`tiny_mllm`'s with the same seed)."""
    with seeded(_stream(seed, _SEED_RES)):
        return resamplers(sizes, sizes.llm.hidden_size)


def tiny_mllm(sizes: Sizes, seed: int = 0) -> MLLM:
    """The MLLM of ``sizes`` with seeded random weights and the offline tiny tokenizer (§1.4 tokens)."""
    tok = tiny_llama_tokenizer()
    ids = resolve_special_ids(tok)
    inp, out = tiny_resamplers(sizes, seed)
    llm = build_llama(sizes.llm, _stream(seed, _SEED_LLM))
    if llm.config.vocab_size != len(tok):
        raise ConfigError(f"tiny LLM vocabulary {llm.config.vocab_size} != tokenizer size {len(tok)}")
    return MLLM(llm, inp, out, tok, ids)


def tiny_perceiver(cfg: PerceiverConfig, seed: int = 0) -> PerceiverResampler:
    """The de-tokenizer's perceiver of ``cfg`` with seeded random weights."""
    with seeded(_stream(seed, _SEED_PERC)):
        return PerceiverResampler(cfg).eval()


# -- released ---------------------------------------------------------------------------------
def load_vit(source: str | Path, cfg: ViTConfig | None = None) -> VisionTransformer:
    """The ViT from ``qwen_vit_G.pt`` (keys without prefix) or from a Qwen-VL-Chat folder
    (the ``transformer.visual.`` tensors of its shards, §1.1; no trust_remote_code)."""
    path = Path(source).expanduser()
    if path.is_dir():
        state, where = read_prefixed(path, "transformer.visual."), "transformer.visual."
    else:
        state, where = read_state_dict(path, what="ViT checkpoint"), ""
    vit = VisionTransformer(cfg or ViTConfig())
    source = f"ViT {str(path)!r}" + (f" (its tensors under {where!r})" if where else "")
    load_state_dict(vit, state, source=source, ignore_missing=("attn_pool.pos_embed",))  # recomputed (§9)
    return vit.eval()


def _target_path(name: str) -> str:
    return f"self_attn.{name}" if name in ("q_proj", "k_proj", "v_proj", "o_proj") else f"mlp.{name}"


def merge_sft(llm: Any, state: dict[str, torch.Tensor], scale: float = LORA_SCALE) -> None:
    """Overlay ``george_sft``'s ``llm.*`` tensors on a resized Llama and merge the LoRA (§1.3).

    Required: LoRA A/B of the 7 target modules of every layer, the ``modules_to_save`` norms,
    ``embed_tokens`` and ``lm_head``. Accepted if present: the frozen base weights and the
    norms' ``original_module`` copies (the file came from zero_to_fp32, §1.3). W += scale * B @ A.
    """
    n_layers = llm.config.num_hidden_layers
    own = llm.state_dict()
    required: dict[str, str] = {f"{PEFT}model.embed_tokens.weight": "model.embed_tokens.weight",
                                f"{PEFT}lm_head.weight": "lm_head.weight",
                                f"{PEFT}model.norm.modules_to_save.default.weight": "model.norm.weight"}
    optional: dict[str, str | None] = {f"{PEFT}model.norm.original_module.weight": None}
    lora: list[tuple[str, str, str]] = []
    for i in range(n_layers):
        for norm in NORMS_TO_SAVE[:2]:
            base = f"model.layers.{i}.{norm}"
            required[f"{PEFT}{base}.modules_to_save.default.weight"] = f"{base}.weight"
            optional[f"{PEFT}{base}.original_module.weight"] = None
        for t in LORA_TARGETS:
            base = f"model.layers.{i}.{_target_path(t)}"
            a, b = f"{PEFT}{base}.lora_A.default.weight", f"{PEFT}{base}.lora_B.default.weight"
            required[a] = required[b] = ""
            lora.append((f"{base}.weight", a, b))
            optional[f"{PEFT}{base}.weight"] = f"{base}.weight"
        optional[f"{PEFT}model.layers.{i}.self_attn.rotary_emb.inv_freq"] = None
    missing = sorted("llm." + k for k in required if k not in state)
    unexpected = sorted("llm." + k for k in state if k not in required and k not in optional)
    if missing or unexpected:
        raise CheckpointError(
            "george_sft: the LLM part does not match Llama-2 + LoRA r=16 (§1.3); check the file and the Llama folder",
            missing=missing, unexpected=unexpected)
    updates: dict[str, torch.Tensor] = {}
    for key, target in list(required.items()) + list(optional.items()):
        if target and key in state:
            if state[key].shape != own[target].shape:
                raise CheckpointError(
                    f"george_sft: llm.{key} has shape {tuple(state[key].shape)}, the model {tuple(own[target].shape)}; "
                    "the Llama folder or the vocabulary (32066, §1.4) does not match")
            updates[target] = state[key]
    for target, a, b in lora:
        w = updates.get(target, own[target]).float()
        A, B = state[a].float(), state[b].float()
        if A.dim() != 2 or B.dim() != 2 or A.shape[1] != w.shape[1] or B.shape[0] != w.shape[0] or A.shape[0] != B.shape[1]:
            raise CheckpointError(
                f"george_sft: the LoRA of {target} (A {tuple(A.shape)}, B {tuple(B.shape)}) does not fit its weight "
                f"{tuple(w.shape)}: B (out x r) @ A (r x in) must match it (§1.3); the file is damaged or of "
                "another model: download seed_story/george_sft/pytorch_model.bin again (§1.6)")
        updates[target] = w + scale * (B @ A)
    own.update({k: v.to(own[k].dtype) for k, v in updates.items()})
    llm.load_state_dict(own, strict=True)


def load_mllm(pretrained: str | Path, sizes: Sizes, dtype: torch.dtype = torch.float32) -> MLLM:
    """Llama-2-7b-hf + resize to the tokenizer + george_sft (LoRA merged, §1.3) + resamplers (§1.2)."""
    from transformers import LlamaForCausalLM

    from storysdk.errors import StorySDKError
    from storysdk.runtime import find_broken_file, load_pretrained

    tok_dir = layout_path(pretrained, "tokenizer")
    try:
        tok = load_tokenizer(tok_dir)
    except StorySDKError as exc:  # a broken tokenizer file is named, not only its folder
        broken = find_broken_file(tok_dir, what="tokenizer")
        if broken is None:
            raise
        raise broken from exc
    except Exception as exc:  # noqa: BLE001 - the tokenizers library raises its own error types
        raise find_broken_file(tok_dir, what="tokenizer") or CheckpointError(
            f"could not read the tokenizer in {str(tok_dir)!r} ({type(exc).__name__}: {exc}); download "
            "cvlm_llama2_tokenizer there again (§1.6)"
        ) from exc
    ids = resolve_special_ids(tok)
    llama_dir = layout_path(pretrained, "llama")
    if not llama_dir.is_dir():
        raise CheckpointError(f"Llama folder {str(llama_dir)!r} does not exist; download meta-llama/Llama-2-7b-hf there")
    # every key accounted for (a missing tensor is an error, not a random weight); broken files named
    llm = load_pretrained(LlamaForCausalLM, llama_dir, what="Llama-2-7b-hf", dtype=torch.float32,
                          attn_implementation="sdpa")
    llm.resize_token_embeddings(len(tok))  # §1.3 step 2 (32066)
    state = read_state_dict(layout_path(pretrained, "sft"), what="george_sft checkpoint")
    known = ("llm.", "input_resampler.", "output_resampler.")
    stray = sorted(k for k in state if not k.startswith(known))
    if stray:
        raise CheckpointError("george_sft holds tensors that are not SEED-Story's MLLM", unexpected=stray)
    merge_sft(llm, split_prefix(state, "llm."))
    inp, out = load_resamplers(state, sizes, llm.config.hidden_size, source=str(layout_path(pretrained, "sft")))
    llm.to(dtype).eval()
    return MLLM(llm, inp.to(dtype), out.to(dtype), tok, ids)


def load_resamplers(state: dict[str, torch.Tensor], sizes: Sizes, dim: int, *, source: str) -> tuple[Resampler, Resampler]:
    """The input and output resamplers (§1.2) from george_sft's ``input_resampler.*``/``output_resampler.*``
    tensors; every key accounted for but the recomputed sin-cos ``pos_embed`` (§9)."""
    inp, out = resamplers(sizes, dim)
    for prefix, module in (("input_resampler.", inp), ("output_resampler.", out)):
        load_state_dict(module, split_prefix(state, prefix), ignore_missing=("pos_embed",),
                        source=f"{source} (its {prefix}* tensors; SEED-X-17B's resamplers do not fit, §1.0)")
    return inp, out


def load_sdxl_parts(folder: str | Path) -> tuple[Any, Any, Any]:
    """The de-tokenizer's SDXL ``unet``, ``vae`` and Euler ``scheduler`` from a diffusers folder (§1.5).

    The UNet and VAE load with every key accounted for (:func:`storysdk.runtime.load_pretrained`);
    a file that is truncated, empty, not JSON or an unsafe pickle is a :class:`CheckpointError`
    naming it, and so is a folder without one of the three subfolders.
    """
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from storysdk.runtime import load_pretrained, read_json_config

    root = Path(folder).expanduser()
    for sub in ("unet", "vae", "scheduler"):
        if not (root / sub).is_dir():
            raise CheckpointError(
                f"SDXL folder {str(root)!r} has no {sub}/ subfolder; download stabilityai/stable-diffusion-xl-base-1.0 "
                "there (§1.6 layout), or pass sdxl=<its local folder>"
            )
    unet = load_pretrained(UNet2DConditionModel, root, subfolder="unet", what="SDXL unet")
    vae = load_pretrained(AutoencoderKL, root, subfolder="vae", what="SDXL vae")
    config = read_json_config(root / "scheduler" / "scheduler_config.json", what="SDXL scheduler config")
    try:
        scheduler = EulerDiscreteScheduler.from_config(config)  # §1.5
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{str(root / 'scheduler' / 'scheduler_config.json')!r} does not configure an Euler scheduler "
            f"({type(exc).__name__}: {exc}); download SDXL's scheduler folder again"
        ) from exc
    return unet, vae, scheduler


def load_detokenizer_weights(unet: Any, perceiver: PerceiverResampler, path: str | Path) -> None:
    """The adapted de-tokenizer checkpoint (§1.5): every ``resampler.*`` tensor, and ``unet.*``
    overlays of which every attention ``to_k``/``to_v`` (trained in stage 3) must be present."""
    state = read_state_dict(path, what="de-tokenizer checkpoint")
    stray = sorted(k for k in state if not k.startswith(("unet.", "resampler.")))
    if stray:
        raise CheckpointError(f"de-tokenizer {str(path)!r}: keys outside unet./resampler.", unexpected=stray)
    load_state_dict(perceiver, split_prefix(state, "resampler."), source=f"de-tokenizer {str(path)!r} (its resampler.* tensors)")
    unet_state = split_prefix(state, "unet.")
    own = unet.state_dict()
    trained = [k for k in own if k.endswith(("to_k.weight", "to_v.weight"))]
    missing = sorted("unet." + k for k in trained if k not in unet_state)
    unexpected = sorted("unet." + k for k in unet_state if k not in own)
    if missing or unexpected:
        raise CheckpointError(
            f"de-tokenizer {str(path)!r} does not fit this SDXL UNet (stage-3 to_k/to_v must all be present, §1.5)",
            missing=missing, unexpected=unexpected)
    wrong = [k for k, v in unet_state.items() if v.shape != own[k].shape]
    if wrong:
        raise CheckpointError(f"de-tokenizer {str(path)!r}: UNet tensor shapes differ: {', '.join(wrong[:10])}")
    own.update(unet_state)
    unet.load_state_dict(own, strict=True)
