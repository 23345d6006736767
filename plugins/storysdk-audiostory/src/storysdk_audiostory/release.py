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

import math
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
    """Parse ``config.yaml``: N, M, t5_feature_scale, LoRA r/alpha, vocab size, base LLM path.

    A file that is not UTF-8 YAML holding a mapping, or a field of the wrong type or range
    (``r: "x"``, ``vocab_size: -1``), is a :class:`CheckpointError` naming the file and the field.
    """
    import yaml

    path = Path(folder) / "config.yaml"
    if not path.is_file():
        raise CheckpointError(f"{str(path)!r} not found: checkpoint= must be the AudioStory release folder (config.yaml + pytorch_model.bin)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{str(path)!r} is not UTF-8 text; download the release's config.yaml again") from exc
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        raise CheckpointError(
            f"{str(path)!r} is not valid YAML{at} ({getattr(exc, 'problem', None) or type(exc).__name__}); "
            "download the release's config.yaml again"
        ) from exc
    if not isinstance(raw, dict):
        raise CheckpointError(
            f"{str(path)!r} holds a YAML {type(raw).__name__}, not the mapping of the release's Hydra config; "
            "download the release's config.yaml again"
        )
    llm = raw.get("llm_model") or {}

    def field(value: Any, name: str, kind: type, default: Any) -> Any:
        if value is None or value == "":
            return default
        try:
            if isinstance(value, bool) or (kind is int and isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            out = kind(value)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{str(path)!r}: {name} is {value!r}, not a {kind.__name__}; restore the release's config.yaml"
            ) from exc
        if not (out > 0 and math.isfinite(out)):
            raise CheckpointError(f"{str(path)!r}: {name} is {value!r}; it must be a positive number (restore the release's config.yaml)")
        return out

    base_llm = _find(llm, "pretrained_model_name_or_path")
    if base_llm is not None and not isinstance(base_llm, str):
        raise CheckpointError(
            f"{str(path)!r}: pretrained_model_name_or_path is {base_llm!r}, not a folder name; "
            "restore the release's config.yaml or pass base_llm=<local Qwen2.5-3B-Instruct folder>"
        )
    return ReleaseConfig(
        num_t5=field(_find(raw.get("train_dataset"), "num_t5_out_tokens"), "num_t5_out_tokens", int, C.NUM_T5_TOKENS),
        num_aud=field(_find(raw.get("train_dataset"), "num_aud_out_tokens"), "num_aud_out_tokens", int, C.NUM_AUD_TOKENS),
        scale=field(_find(raw.get("agent_model"), "t5_feature_scale"), "t5_feature_scale", float, C.T5_FEATURE_SCALE),
        lora_r=field(_find(llm, "r"), "r", int, C.LORA_R),
        lora_alpha=field(_find(llm, "lora_alpha"), "lora_alpha", float, C.LORA_ALPHA),
        vocab_size=field(_find(llm, "vocab_size"), "vocab_size", int, C.RELEASED_VOCAB),
        base_llm=base_llm,
    )


def load_state_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A safetensors file, or a torch pickle with ``weights_only=True`` (never arbitrary unpickling).

    Read with :func:`storysdk.runtime.load_safetensors` / :func:`storysdk.runtime.load_torch_file`:
    a missing, empty, truncated or damaged file, a pickle refused as unsafe and a file that
    holds anything but a state dict of tensors are a :class:`CheckpointError` naming the file.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"weights file {str(p)!r} not found; download the release to that folder (docs/audiostory.md §4)")
    if p.suffix == ".safetensors":
        from storysdk.runtime import load_safetensors

        return load_safetensors(p, what="weights")
    from storysdk.runtime import load_torch_file

    sd = load_torch_file(p, what="weights")
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise CheckpointError(f"{str(p)!r} holds a {type(sd).__name__}, not a state dict; give the release's weights file itself")
    odd = sorted(str(k) for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor))
    if odd:
        raise CheckpointError(
            f"{str(p)!r} is not a state dict of tensors ({len(odd)} entries are not tensors: {', '.join(odd[:5])}); "
            "give the release's weights file itself"
        )
    return sd


def split_release(sd: dict[str, Any], source: str = "the checkpoint") -> dict[str, dict[str, Any]]:
    """Keys by part, prefixes stripped (``seedx.`` kept off the bridge heads); unknown keys raise
    (``source`` names the file in the message)."""
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
        raise CheckpointError(
            f"{source} holds tensors this plugin does not know: it is not the AudioStory release's "
            "pytorch_model.bin (docs/audiostory.md §4); download the release again",
            unexpected=sorted(unexpected),
        )
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
    try:
        load_state_dict(module, sd, source=what)
    except CheckpointError as exc:  # the same lists, with the fix
        first = str(exc).split("\n", 1)[0]
        raise CheckpointError(
            f"{first}; download the release again (docs/audiostory.md §4 lists its files)",
            missing=exc.missing, unexpected=exc.unexpected,
        ) from exc


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
    from storysdk.runtime import read_json_config

    conf = read_json_config(path, what="TangoFlux config")  # a broken file is named here, before rendering
    extra = conf.get("vae_config") or {}
    if not isinstance(extra, dict):
        raise CheckpointError(f"{str(path)!r}: vae_config is {extra!r}, not an object; restore the release's config.json")
    vae_conf = {**FULL["vae"], **extra}
    try:
        seconds = vae_clip_seconds(vae_conf, _positive_int(conf.get("audio_seq_len", C.AUDIO_SEQ_LEN), "audio_seq_len", path))
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        raise CheckpointError(
            f"{str(path)!r}: its vae_config does not describe an Oobleck VAE ({type(exc).__name__}: {exc}); "
            "restore the release's config.json"
        ) from exc
    return seconds


def _positive_int(value: Any, name: str, path: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value <= 0:
        raise CheckpointError(f"{str(path)!r}: {name} is {value!r}, not a positive whole number; restore the release's config.json")
    return int(value)


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
    weights = folder / "pytorch_model.bin"
    sd = load_state_file(weights)
    return folder, cfg, split_release(sd, repr(str(weights)))


def load_release_planner(checkpoint: str, *, base_llm: str | None, device: torch.device, dtype: torch.dtype) -> PlannerRuntime:
    """Tokenizer + Qwen2.5 LLM with the checkpoint's weights and LoRA merged (scale alpha / r)."""
    import torch
    from transformers import AutoConfig, Qwen2ForCausalLM

    from .grammar import SpecialIds
    from .lora import lora_deltas_and_plain
    from .qwen_tokenizer import load_qwen_tokenizer
    from .runtime import PlannerRuntime

    from storysdk.runtime import find_broken_file, read_json_config

    folder, cfg, parts = _release(checkpoint)
    base = _resolve(cfg["base_llm"], folder, base_llm, "base LLM", "base_llm")
    read_json_config(base / "config.json", what="base LLM config")
    try:
        tok = load_qwen_tokenizer(base, expected_vocab=cfg["vocab_size"])
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - tokenizer files: JSON, merges, ...
        raise find_broken_file(base, what="base LLM") or CheckpointError(
            f"the tokenizer of the base LLM folder {str(base)!r} cannot be read ({type(exc).__name__}: {exc}); "
            "download Qwen2.5-3B-Instruct there again"
        ) from exc
    plain, deltas, _ = lora_deltas_and_plain(parts["llm"], cfg["lora_alpha"] / cfg["lora_r"])
    try:
        config = AutoConfig.from_pretrained(str(base))
        config.vocab_size = cfg["vocab_size"]
        with torch.device("meta"):
            llm = Qwen2ForCausalLM(config)
    except Exception as exc:  # noqa: BLE001 - a config of another model: KeyError, ValueError, ...
        raise CheckpointError(
            f"{str(base / 'config.json')!r} does not describe a Qwen2 LLM ({type(exc).__name__}: {exc}); "
            "pass base_llm=<local Qwen2.5-3B-Instruct folder>"
        ) from exc
    expected = set(llm.state_dict())
    if getattr(config, "tie_word_embeddings", False):
        expected.discard("lm_head.weight")
        if "lm_head.weight" in plain and "model.embed_tokens.weight" in plain and not torch.equal(
            plain["lm_head.weight"], plain["model.embed_tokens.weight"]
        ):
            raise CheckpointError(f"{str(folder / 'pytorch_model.bin')!r}: lm_head and embed_tokens differ, but the base "
                                  "LLM's config ties them; pass the base_llm folder the checkpoint was trained from")
        plain.pop("lm_head.weight", None)
    # weights the checkpoint lacks come from the base folder (never the resized embeddings)
    need = sorted(expected - set(plain))
    if need:
        base_sd = _base_weights(base, need)
        plain.update(base_sd)
    unknown_delta = sorted(set(deltas) - set(plain))
    missing, unexpected = sorted(expected - set(plain)), sorted(set(plain) - expected)
    if missing or unexpected or unknown_delta:
        raise CheckpointError(f"LLM: {str(folder / 'pytorch_model.bin')!r} and the base folder {str(base)!r} "
                              "do not cover the model",
                              missing=missing + unknown_delta, unexpected=unexpected)
    wrong = [f"{k}: weight {tuple(plain[k].shape)} vs LoRA B@A {tuple(d.shape)}" for k, d in deltas.items()
             if tuple(plain[k].shape) != tuple(d.shape)]
    if wrong:
        raise CheckpointError(
            f"LLM: {len(wrong)} LoRA update(s) in {str(folder / 'pytorch_model.bin')!r} do not fit their weights "
            "(a LoRA of another model size?): " + "; ".join(sorted(wrong)[:10])
            + "; pass the base_llm folder the checkpoint was trained from, or download the release again"
        )
    for k, d in deltas.items():
        plain[k] = (plain[k].float() + d).to(plain[k].dtype)
    llm = Qwen2ForCausalLM(config)
    load_strict(llm, plain, f"LLM ({str(folder / 'pytorch_model.bin')!r} + {str(base)!r})",
                tied={"lm_head.weight": "model.embed_tokens.weight"})
    llm = llm.to(device, dtype).eval()
    special = SpecialIds.from_tokenizer(tok, cfg["num_t5"], cfg["num_aud"])
    return PlannerRuntime(tok, llm, special, C.AUDIO_SEQ_LEN * 2048 / C.VAE_SAMPLE_RATE)


def _base_weights(base: Path, keys: list[str]) -> dict[str, Any]:
    """The listed tensors from the base LLM folder's safetensors shards (resized rows are never taken);
    a truncated or damaged shard is a :class:`CheckpointError` naming it."""
    from storysdk.runtime import load_safetensors_subset

    files = sorted(base.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"no *.safetensors in the base LLM folder {str(base)!r}", missing=keys)
    out: dict[str, Any] = {}
    wanted = set(keys) - {"model.embed_tokens.weight", "lm_head.weight"}
    for f in files:
        out.update(load_safetensors_subset(f, wanted.__contains__, what="base LLM shard"))
    return out


def load_release_bridge(checkpoint: str, *, device: torch.device, dtype: torch.dtype) -> BridgeRuntime:
    """Projection heads + fuser from ``pytorch_model.bin`` (widths read from the tensors)."""
    from .bridge import BridgeHeads
    from .runtime import BridgeRuntime

    folder, cfg, parts = _release(checkpoint)
    sd = parts["bridge"]
    source = str(Path(folder) / "pytorch_model.bin")
    if "projector.0.weight" not in sd:
        raise CheckpointError(f"{source!r} has no bridge heads", missing=["seedx.projector.0.weight"])
    shape = tuple(sd["projector.0.weight"].shape)
    if len(shape) != 2 or min(shape) < 1 or shape[0] % C.FUSER_HEADS:
        raise CheckpointError(
            f"{source!r}: seedx.projector.0.weight has shape {shape}; the bridge needs a (dim, llm_dim) matrix "
            f"with dim a multiple of the fuser's {C.FUSER_HEADS} heads (docs/audiostory.md §1.5): "
            "this is not the AudioStory release's checkpoint, or it is damaged: download the release again"
        )
    dim, llm_dim = shape
    heads = BridgeHeads(int(llm_dim), int(dim), C.FUSER_HEADS)
    load_strict(heads, sd, f"bridge (projectors + fuser) of {source!r}")
    return BridgeRuntime(heads.to(device, dtype).eval(), cfg["scale"], device, dtype)


def _dit_from_config(conf: dict[str, Any], text_dim: int, source: str | os.PathLike[str] = "config.json") -> Any:
    """The DiT that ``conf`` (the release's ``config.json``, read from ``source``) describes; a field of the wrong
    type, or sizes that make no DiT, are a :class:`CheckpointError` naming the file."""
    from .dit import TangoFluxDiT

    path = Path(source)
    ints = {name: _positive_int(conf.get(name, default), name, path) for name, default in (
        ("in_channels", 64), ("num_layers", 6), ("num_single_layers", 18), ("attention_head_dim", 128),
        ("num_attention_heads", 8), ("joint_attention_dim", 1024), ("audio_seq_len", C.AUDIO_SEQ_LEN))}
    rope = conf.get("axes_dims_rope", (16, 56, 56))
    duration = conf.get("max_duration", C.MAX_DURATION)
    if not isinstance(rope, (list, tuple)) or not rope or not all(isinstance(x, int) and x > 0 for x in rope):
        raise CheckpointError(f"{str(path)!r}: axes_dims_rope is {rope!r}, not a list of positive whole numbers; restore the release's config.json")
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not 0 < duration < float("inf"):
        raise CheckpointError(f"{str(path)!r}: max_duration is {duration!r}, not a positive number of seconds; restore the release's config.json")
    try:
        return TangoFluxDiT(
            in_channels=ints["in_channels"], num_layers=ints["num_layers"],
            num_single_layers=ints["num_single_layers"], attention_head_dim=ints["attention_head_dim"],
            num_attention_heads=ints["num_attention_heads"], joint_attention_dim=ints["joint_attention_dim"],
            text_dim=text_dim, audio_seq_len=ints["audio_seq_len"], max_duration=float(duration),
            axes_dims_rope=tuple(rope),
        )
    except (AssertionError, ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(
            f"{str(path)!r} describes no TangoFlux DiT ({type(exc).__name__}: {exc}); restore the release's config.json"
        ) from exc


def _t5(text_encoder: str | None, t5_sd: dict[str, Any] | None) -> tuple[Any, Any]:
    """Flan-T5's tokenizer and encoder; with ``t5_sd`` (the checkpoint's own T5) only the folder's config is used.
    Every file is checked: a broken one is a :class:`CheckpointError` naming it, and the folder's
    weights load with every key accounted for (:func:`storysdk.runtime.load_pretrained`)."""
    from storysdk.runtime import find_broken_file, load_pretrained, read_json_config
    from transformers import AutoTokenizer, T5Config, T5EncoderModel

    folder = _folder(text_encoder, "Flan-T5", "text_encoder")
    read_json_config(folder / "config.json", what="Flan-T5 config")
    try:
        tok = AutoTokenizer.from_pretrained(str(folder))
    except Exception as exc:  # noqa: BLE001 - tokenizer files: JSON, sentencepiece, ...
        raise find_broken_file(folder, what="Flan-T5") or CheckpointError(
            f"the Flan-T5 tokenizer in {str(folder)!r} cannot be read ({type(exc).__name__}: {exc}); it needs "
            "tokenizer.json (or spiece.model with sentencepiece installed): download flan-t5-large there again"
        ) from exc
    if t5_sd:  # the checkpoint's own T5 wins over the folder's (upstream load order)
        try:
            model = T5EncoderModel(T5Config.from_pretrained(str(folder)))
        except Exception as exc:  # noqa: BLE001 - a config of another model
            raise CheckpointError(
                f"{str(folder / 'config.json')!r} does not describe a T5 encoder ({type(exc).__name__}: {exc}); "
                "pass text_encoder=<local flan-t5-large folder>"
            ) from exc
        load_strict(model, t5_sd, "Flan-T5 encoder", tied={T5_TIED: "shared.weight"})
    else:
        model = load_pretrained(T5EncoderModel, folder, what="Flan-T5 encoder")
    return tok, model.eval()


def _vae(conf: dict[str, Any], weights: Path) -> Any:
    import warnings

    from diffusers import AutoencoderOobleck

    vae_conf = conf.get("vae_config", {})
    if not isinstance(vae_conf, dict):
        raise CheckpointError(f"the config.json beside {str(weights)!r}: vae_config is {vae_conf!r}, not an object; restore it")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*weight_norm.*", category=FutureWarning)
            vae = AutoencoderOobleck(**vae_conf)  # the release: AutoencoderOobleck() (§3)
    except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
        raise CheckpointError(
            f"the config.json beside {str(weights)!r} describes no Oobleck VAE ({type(exc).__name__}: {exc}); restore it"
        ) from exc
    load_strict(vae, load_state_file(weights), f"Oobleck VAE {str(weights)!r}")
    return vae.eval()


def load_release_audio(
    checkpoint: str, *, vae: str | None, text_encoder: str | None, device: torch.device, dtype: torch.dtype
) -> AudioRuntime:
    """DiT + VAE + Flan-T5 from the AudioStory release, or from TangoFlux's own release folder."""
    import torch

    from .runtime import AudioRuntime

    from storysdk.runtime import read_json_config

    folder = _folder(checkpoint, "checkpoint", "checkpoint")
    if (folder / "tangoflux.safetensors").is_file():  # TangoFlux's release
        conf_file = folder / "config.json"
        conf = read_json_config(conf_file, what="TangoFlux config")
        weights = folder / "tangoflux.safetensors"
        sd = load_state_file(weights)
        t5_sd = {k[len("text_encoder."):]: v for k, v in sd.items() if k.startswith("text_encoder.")}
        dit_sd = {k: v for k, v in sd.items() if not k.startswith("text_encoder.")}
        vae_conf, vae_file = conf, folder / "vae.safetensors"
    else:
        _, _, parts = _release(folder)
        weights = folder / "pytorch_model.bin"
        vae_folder = _folder(vae, "VAE (TangoFlux detokenizer)", "vae")
        conf_file = vae_folder / "config.json"
        conf = read_json_config(conf_file, what="TangoFlux config")
        dit_sd, t5_sd = parts["dit"], parts["t5"]
        vae_conf, vae_file = conf, vae_folder / "model.safetensors"
    tok, t5 = _t5(text_encoder, t5_sd)
    dit = _dit_from_config(conf, int(t5.config.d_model), conf_file)
    load_strict(dit, dit_sd, f"TangoFlux DiT ({str(weights)!r} against {str(conf_file)!r})")
    return AudioRuntime(dit=dit.to(device, dtype).eval(), vae=_vae(vae_conf, vae_file).to(device, torch.float32),
                        t5_tokenizer=tok, t5=t5.to(device, dtype), device=device, dtype=dtype)
