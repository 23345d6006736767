"""Loading the released weights from local folders (docs/audiostory.md §4), failing loudly.

AudioStory release (``checkpoint``): ``config.yaml`` (Hydra; read for N, M, the scale, LoRA r and
alpha, the vocabulary size and the base LLM folder) and ``pytorch_model.bin`` (the whole
``AudioStory_unified`` state dict, unpickled with ``weights_only=True``). Its keys are split by
prefix -- ``seedx.llm.`` (PEFT LLM), ``seedx.projector.``/``seedx.audio_projector.`` and
``multihead_attention.`` (bridge), ``tangoflux.transformer.``/``.fc.``/``.duration_emebdder.``
(DiT), ``tangoflux.text_encoder.`` (Flan-T5, optional) -- and every part is loaded strictly:
a parameter left unset or a tensor we do not know raises :class:`CheckpointError` with the lists.
The only keys accepted without use are the resamplers of the unreleased audio/video input paths
(``seedx.input_resampler.``, ``seedx.output_resampler.``, ``seedx.whisper_resampler_llava.``).
Other folders: the base LLM (``Qwen2.5-3B-Instruct``), the VAE folder (``config.json``, the
TangoFlux config, + ``model.safetensors``, the Oobleck weights) and ``flan-t5-large``.

TangoFlux release: ``config.json``, ``tangoflux.safetensors`` (``transformer.``, ``fc.``,
``duration_emebdder.``, ``text_encoder.``; the tied ``text_encoder.encoder.embed_tokens.weight``
may be absent) and ``vae.safetensors``; the Flan-T5 tokenizer and config come from ``text_encoder``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storysdk.errors import CheckpointError

from . import constants as C

if TYPE_CHECKING:
    import torch

    from .runtime import AudioRuntime, BridgeRuntime, PlannerRuntime

__all__ = ["ReleaseConfig", "load_release_audio", "load_release_bridge", "load_release_planner",
           "load_state_file", "load_strict", "read_release_config", "release_clip_seconds", "split_release"]

GROUPS: dict[str, tuple[str, ...]] = {
    "llm": ("seedx.llm.",),
    "bridge": ("seedx.projector.", "seedx.audio_projector.", "multihead_attention."),
    "dit": ("tangoflux.transformer.", "tangoflux.fc.", "tangoflux.duration_emebdder."),
    "t5": ("tangoflux.text_encoder.",),
}
UNUSED = ("seedx.input_resampler.", "seedx.output_resampler.", "seedx.whisper_resampler_llava.")
T5_TIED = "encoder.embed_tokens.weight"


def _find(obj: Any, key: str) -> Any:
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        for v in obj.values():
            found = _find(v, key)
            if found is not None:
                return found
    elif isinstance(obj, list):
        for v in obj:
            found = _find(v, key)
            if found is not None:
                return found
    return None


class ReleaseConfig(dict):  # type: ignore[type-arg]
    """The fields of ``config.yaml`` this plugin uses (spec defaults where the file has none)."""


def read_release_config(folder: str | os.PathLike[str]) -> ReleaseConfig:
    """Parse ``config.yaml``: N, M, t5_feature_scale, LoRA r/alpha, vocab size, base LLM path."""
    import yaml

    path = Path(folder) / "config.yaml"
    if not path.is_file():
        raise CheckpointError(f"{str(path)!r} not found: checkpoint= must be the AudioStory release folder (config.yaml + pytorch_model.bin)")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    llm = raw.get("llm_model") or {}
    return ReleaseConfig(
        num_t5=int(_find(raw.get("train_dataset"), "num_t5_out_tokens") or C.NUM_T5_TOKENS),
        num_aud=int(_find(raw.get("train_dataset"), "num_aud_out_tokens") or C.NUM_AUD_TOKENS),
        scale=float(_find(raw.get("agent_model"), "t5_feature_scale") or C.T5_FEATURE_SCALE),
        lora_r=int(_find(llm, "r") or C.LORA_R),
        lora_alpha=float(_find(llm, "lora_alpha") or C.LORA_ALPHA),
        vocab_size=int(_find(llm, "vocab_size") or C.RELEASED_VOCAB),
        base_llm=_find(llm, "pretrained_model_name_or_path"),
    )


def load_state_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A safetensors file, or a torch pickle with ``weights_only=True`` (never arbitrary unpickling)."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"weights file {str(p)!r} not found")
    if p.suffix == ".safetensors":
        from storysdk.runtime import load_safetensors

        return load_safetensors(p, what="weights")
    try:
        sd = torch.load(str(p), map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:
        sd = torch.load(str(p), map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise CheckpointError(f"{str(p)!r} does not hold a state dict")
    return sd


def split_release(sd: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Keys by part, prefixes stripped (``seedx.`` kept off the bridge heads); unknown keys raise."""
    parts: dict[str, dict[str, Any]] = {k: {} for k in GROUPS}
    unexpected = []
    for key, value in sd.items():
        if key.startswith(UNUSED):
            continue
        for part, prefixes in GROUPS.items():
            hit = next((p for p in prefixes if key.startswith(p)), None)
            if hit is not None:
                if part == "bridge":
                    name = key[len("seedx."):] if key.startswith("seedx.") else key
                elif part == "llm":
                    name = key[len(hit):]
                else:
                    name = key[len("tangoflux."):]
                    if part == "t5":
                        name = name[len("text_encoder."):]
                parts[part][name] = value
                break
        else:
            unexpected.append(key)
    if unexpected:
        raise CheckpointError("the checkpoint holds tensors this plugin does not know", unexpected=sorted(unexpected))
    return parts


def load_strict(module: Any, sd: dict[str, Any], what: str, *, tied: dict[str, str] | None = None) -> None:
    """Every key accounted for (:func:`storysdk.runtime.load_state_dict`): missing, unexpected and
    wrongly shaped tensors raise a :class:`CheckpointError` with the lists.

    ``tied`` maps a key that may be absent to the key whose tensor it shares.
    """
    from storysdk.runtime import load_state_dict

    sd = dict(sd)
    for key, source in (tied or {}).items():
        if key not in sd and source in sd:
            sd[key] = sd[source]
    load_state_dict(module, sd, source=what)


def release_clip_seconds(checkpoint: str | os.PathLike[str] | None, vae: str | os.PathLike[str] | None) -> float | None:
    """Seconds the DiT window of these folders decodes to, from ``config.json`` alone (no weights).

    The same config the loaders build from: TangoFlux's release folder, or for the AudioStory
    release the ``vae`` folder; the VAE defaults are ``AutoencoderOobleck()``'s (§3). ``None``
    when the config is not there (loading will say what is missing).
    """
    from .presets import FULL, vae_clip_seconds

    if not checkpoint:
        return None
    folder = Path(checkpoint)
    if (folder / "tangoflux.safetensors").is_file():
        path = folder / "config.json"
    elif vae:
        path = Path(vae) / "config.json"
    else:
        return None
    if not path.is_file():
        return None
    try:
        conf = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    vae_conf = {**FULL["vae"], **(conf.get("vae_config") or {})}
    return vae_clip_seconds(vae_conf, int(conf.get("audio_seq_len", C.AUDIO_SEQ_LEN)))


def _folder(path: str | os.PathLike[str] | None, what: str, option: str) -> Path:
    if path is None or not Path(path).is_dir():
        raise CheckpointError(f"{what} folder {str(path)!r} not found; pass {option}=<local folder>")
    return Path(path)


def _resolve(rel: str | None, checkpoint: Path, given: str | None, what: str, option: str) -> Path:
    if given is not None:
        return _folder(given, what, option)
    for cand in ([Path(rel), checkpoint.parent / Path(rel).name, checkpoint / Path(rel).name] if rel else []):
        if cand.is_dir():
            return cand
    raise CheckpointError(f"{what} folder {rel!r} (from config.yaml) not found; pass {option}=<local folder>")


def _release(checkpoint: str | os.PathLike[str]) -> tuple[Path, ReleaseConfig, dict[str, dict[str, Any]]]:
    folder = _folder(checkpoint, "AudioStory checkpoint", "checkpoint")
    cfg = read_release_config(folder)
    sd = load_state_file(folder / "pytorch_model.bin")
    return folder, cfg, split_release(sd)


def load_release_planner(checkpoint: str, *, base_llm: str | None, device: torch.device, dtype: torch.dtype) -> PlannerRuntime:
    """Tokenizer + Qwen2.5 LLM with the checkpoint's weights and LoRA merged (scale alpha / r)."""
    import torch
    from transformers import AutoConfig, Qwen2ForCausalLM

    from .grammar import SpecialIds
    from .lora import lora_deltas_and_plain
    from .qwen_tokenizer import load_qwen_tokenizer
    from .runtime import PlannerRuntime

    folder, cfg, parts = _release(checkpoint)
    base = _resolve(cfg["base_llm"], folder, base_llm, "base LLM", "base_llm")
    tok = load_qwen_tokenizer(base, expected_vocab=cfg["vocab_size"])
    plain, deltas, _ = lora_deltas_and_plain(parts["llm"], cfg["lora_alpha"] / cfg["lora_r"])
    config = AutoConfig.from_pretrained(str(base))
    config.vocab_size = cfg["vocab_size"]
    with torch.device("meta"):
        llm = Qwen2ForCausalLM(config)
    expected = set(llm.state_dict())
    if getattr(config, "tie_word_embeddings", False):
        expected.discard("lm_head.weight")
        if "lm_head.weight" in plain and "model.embed_tokens.weight" in plain and not torch.equal(
            plain["lm_head.weight"], plain["model.embed_tokens.weight"]
        ):
            raise CheckpointError("tied embeddings differ between lm_head and embed_tokens in the checkpoint")
        plain.pop("lm_head.weight", None)
    # weights the checkpoint lacks come from the base folder (never the resized embeddings)
    need = sorted(expected - set(plain))
    if need:
        base_sd = _base_weights(base, need)
        plain.update(base_sd)
    unknown_delta = sorted(set(deltas) - set(plain))
    missing, unexpected = sorted(expected - set(plain)), sorted(set(plain) - expected)
    if missing or unexpected or unknown_delta:
        raise CheckpointError("LLM: the checkpoint and the base folder do not cover the model",
                              missing=missing + unknown_delta, unexpected=unexpected)
    for k, d in deltas.items():
        plain[k] = (plain[k].float() + d).to(plain[k].dtype)
    llm = Qwen2ForCausalLM(config)
    load_strict(llm, plain, "LLM", tied={"lm_head.weight": "model.embed_tokens.weight"})
    llm = llm.to(device, dtype).eval()
    special = SpecialIds.from_tokenizer(tok, cfg["num_t5"], cfg["num_aud"])
    return PlannerRuntime(tok, llm, special, C.AUDIO_SEQ_LEN * 2048 / C.VAE_SAMPLE_RATE)


def _base_weights(base: Path, keys: list[str]) -> dict[str, Any]:
    """The listed tensors from the base LLM folder's safetensors shards (resized rows are never taken)."""
    from safetensors import safe_open

    files = sorted(base.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"no *.safetensors in the base LLM folder {str(base)!r}", missing=keys)
    out: dict[str, Any] = {}
    wanted = set(keys) - {"model.embed_tokens.weight", "lm_head.weight"}
    for f in files:
        with safe_open(str(f), framework="pt") as fh:
            for k in fh.keys():
                if k in wanted:
                    out[k] = fh.get_tensor(k)
    return out


def load_release_bridge(checkpoint: str, *, device: torch.device, dtype: torch.dtype) -> BridgeRuntime:
    """Projection heads + fuser from ``pytorch_model.bin`` (widths read from the tensors)."""
    from .bridge import BridgeHeads
    from .runtime import BridgeRuntime

    _, cfg, parts = _release(checkpoint)
    sd = parts["bridge"]
    if "projector.0.weight" not in sd:
        raise CheckpointError("the checkpoint has no bridge heads", missing=["seedx.projector.0.weight"])
    dim, llm_dim = sd["projector.0.weight"].shape
    heads = BridgeHeads(int(llm_dim), int(dim), C.FUSER_HEADS)
    load_strict(heads, sd, "bridge (projectors + fuser)")
    return BridgeRuntime(heads.to(device, dtype).eval(), cfg["scale"], device, dtype)


def _dit_from_config(conf: dict[str, Any], text_dim: int) -> Any:
    from .dit import TangoFluxDiT

    return TangoFluxDiT(
        in_channels=int(conf.get("in_channels", 64)), num_layers=int(conf.get("num_layers", 6)),
        num_single_layers=int(conf.get("num_single_layers", 18)),
        attention_head_dim=int(conf.get("attention_head_dim", 128)),
        num_attention_heads=int(conf.get("num_attention_heads", 8)),
        joint_attention_dim=int(conf.get("joint_attention_dim", 1024)), text_dim=text_dim,
        audio_seq_len=int(conf.get("audio_seq_len", C.AUDIO_SEQ_LEN)),
        max_duration=float(conf.get("max_duration", C.MAX_DURATION)),
        axes_dims_rope=tuple(conf.get("axes_dims_rope", (16, 56, 56))),
    )


def _t5(text_encoder: str | None, t5_sd: dict[str, Any] | None) -> tuple[Any, Any]:
    from transformers import AutoTokenizer, T5Config, T5EncoderModel

    folder = _folder(text_encoder, "Flan-T5", "text_encoder")
    tok = AutoTokenizer.from_pretrained(str(folder))
    if t5_sd:  # the checkpoint's own T5 wins over the folder's (upstream load order)
        model = T5EncoderModel(T5Config.from_pretrained(str(folder)))
        load_strict(model, t5_sd, "Flan-T5 encoder", tied={T5_TIED: "shared.weight"})
    else:
        model = T5EncoderModel.from_pretrained(str(folder))
    return tok, model.eval()


def _vae(conf: dict[str, Any], weights: Path) -> Any:
    import warnings

    from diffusers import AutoencoderOobleck

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*weight_norm.*", category=FutureWarning)
        vae = AutoencoderOobleck(**conf.get("vae_config", {}))  # the release: AutoencoderOobleck() (§3)
    load_strict(vae, load_state_file(weights), "Oobleck VAE")
    return vae.eval()


def load_release_audio(
    checkpoint: str, *, vae: str | None, text_encoder: str | None, device: torch.device, dtype: torch.dtype
) -> AudioRuntime:
    """DiT + VAE + Flan-T5 from the AudioStory release, or from TangoFlux's own release folder."""
    import torch

    from .runtime import AudioRuntime

    folder = _folder(checkpoint, "checkpoint", "checkpoint")
    if (folder / "tangoflux.safetensors").is_file():  # TangoFlux's release
        conf = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        sd = load_state_file(folder / "tangoflux.safetensors")
        t5_sd = {k[len("text_encoder."):]: v for k, v in sd.items() if k.startswith("text_encoder.")}
        dit_sd = {k: v for k, v in sd.items() if not k.startswith("text_encoder.")}
        vae_conf, vae_file = conf, folder / "vae.safetensors"
    else:
        _, _, parts = _release(folder)
        vae_folder = _folder(vae, "VAE (TangoFlux detokenizer)", "vae")
        conf = json.loads((vae_folder / "config.json").read_text(encoding="utf-8"))
        dit_sd, t5_sd = parts["dit"], parts["t5"]
        vae_conf, vae_file = conf, vae_folder / "model.safetensors"
    tok, t5 = _t5(text_encoder, t5_sd)
    dit = _dit_from_config(conf, int(t5.config.d_model))
    load_strict(dit, dit_sd, "TangoFlux DiT")
    return AudioRuntime(dit=dit.to(device, dtype).eval(), vae=_vae(vae_conf, vae_file).to(device, torch.float32),
                        t5_tokenizer=tok, t5=t5.to(device, dtype), device=device, dtype=dtype)
