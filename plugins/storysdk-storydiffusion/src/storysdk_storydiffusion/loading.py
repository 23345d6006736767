"""Loading an SDXL-architecture pipeline for StoryDiffusion: names, folders, hub ids, single files.

``model`` is one of the base-model names of the hosted API and upstream app
(:data:`.styles.SD_MODELS`: Unstable, RealVision, SDXL, Juggernaut), a local diffusers
folder or hub id (``from_pretrained``), or a local single-file ``.safetensors`` checkpoint
(``from_single_file``). ``preset="tiny"`` builds the tiny SDXL of :mod:`storysdk.tiny` offline
(its random weights seeded with ``weights_seed``).
Whatever loads must be SDXL-shaped (8x VAE, up-block self-attention at 1/32 and 1/16), else
:class:`~storysdk.errors.ComponentError`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from storysdk.errors import CheckpointError, ComponentError, ConfigError

if TYPE_CHECKING:
    import torch

__all__ = ["FREEU", "SCHEDULERS", "check_pipeline", "load_pipeline", "make_scheduler", "prepare_pipeline", "resolve_model"]

#: Short scheduler names -> diffusers classes. DDIM is upstream's scheduler (docs/storydiffusion.md §2).
SCHEDULERS: dict[str, str] = {
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "dpmpp_2m": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
    "pndm": "PNDMScheduler",
    "lms": "LMSDiscreteScheduler",
}
#: Schedulers that call the UNet more than once per step, which breaks CSA's step bookkeeping (§1.3).
MULTI_CALL_SCHEDULERS = ("HeunDiscreteScheduler", "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler")
#: FreeU factors the upstream app enables (docs/storydiffusion.md §2 defaults table).
FREEU = {"s1": 0.6, "s2": 0.4, "b1": 1.1, "b2": 1.2}


def resolve_model(model: str | os.PathLike[str] | None) -> tuple[str, str | None]:
    """``(checkpoint, single_file_name)`` for a base-model name, folder, hub id or file."""
    from .styles import DEFAULT_SD_MODEL, SD_MODELS, get_sd_model

    name = DEFAULT_SD_MODEL if model is None else os.fspath(model)
    if name.casefold() in {k.casefold() for k in SD_MODELS}:
        entry = get_sd_model(name)
        return entry.checkpoint, entry.single_file
    return name, None


def make_scheduler(pipe: Any, name: str) -> Any:
    """A scheduler ``name`` (short name or diffusers class name) configured like ``pipe.scheduler``."""
    import diffusers

    cls_name = SCHEDULERS.get(name.strip().lower(), name)
    if cls_name in MULTI_CALL_SCHEDULERS:
        raise ConfigError(
            f"scheduler {name!r} calls the UNet more than once per step, which consistent "
            "self-attention cannot follow (docs/storydiffusion.md §1.3); use 'ddim' (upstream), "
            "'euler', 'dpmpp_2m' or 'unipc'"
        )
    cls = getattr(diffusers, cls_name, None)
    if cls is None or not cls_name.endswith("Scheduler") or not hasattr(cls, "from_config"):
        raise ConfigError(
            f"scheduler {name!r} is unknown; use one of {', '.join(SCHEDULERS)} or a diffusers "
            "scheduler class name such as 'DDIMScheduler'"
        )
    return cls.from_config(pipe.scheduler.config)


def _from_single_file(path: str, dtype: torch.dtype, config: str | None) -> Any:
    """``StableDiffusionXLPipeline.from_single_file``; the file is checked first (complete
    safetensors: a truncated, empty or damaged one is a :class:`CheckpointError` naming it)."""
    from diffusers import StableDiffusionXLPipeline

    from storysdk.errors import StorySDKError
    from storysdk.runtime import dtype_kwargs, safetensors_keys

    safetensors_keys(path, what="SDXL single-file checkpoint")
    kwargs: dict[str, Any] = dtype_kwargs(dtype)
    if config is not None:
        kwargs["config"] = config
    try:
        return StableDiffusionXLPipeline.from_single_file(path, **kwargs)
    except StorySDKError:
        raise
    except ImportError as exc:
        raise ConfigError(f"loading {path!r} needs a package that is not installed: {exc}; install it and retry") from exc
    except MemoryError:
        raise
    except OSError as exc:  # SDXL's configs: no config= folder and no hub
        raise ConfigError(
            f"could not load the single-file checkpoint {path!r} as SDXL: {type(exc).__name__}: {exc}. "
            "A single file needs SDXL's diffusers configs: pass config='<local SDXL diffusers folder>' "
            "(or reach the hub once), and check that the file is an SDXL checkpoint"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - diffusers' key conversion raises many error types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(
            f"the single-file checkpoint {path!r} does not load as SDXL ({type(exc).__name__}: {first[:240]}): "
            "it is incomplete or not an SDXL checkpoint; give a complete SDXL .safetensors file, or pass "
            "config='<local SDXL diffusers folder>' for its configs"
        ) from exc


def _from_pretrained(ref: str, dtype: torch.dtype) -> Any:
    """``StableDiffusionXLPipeline.from_pretrained`` through :func:`storysdk.runtime.load_pretrained_pipeline`:
    every model component strict (missing, unexpected or wrongly shaped tensors are a
    :class:`CheckpointError` naming its folder), a broken file named, an unreachable hub id a
    :class:`ConfigError` with the fixes."""
    from diffusers import StableDiffusionXLPipeline

    from storysdk.runtime import dtype_kwargs, load_pretrained_pipeline

    try:
        return load_pretrained_pipeline(StableDiffusionXLPipeline, ref, what="SDXL model", **dtype_kwargs(dtype))
    except ConfigError as exc:
        raise ConfigError(
            f"{exc}. For StoryDiffusion give an SDXL base-model name (Unstable, RealVision, SDXL, Juggernaut), "
            "a local diffusers folder, a hub id reachable from here, a local .safetensors file, or preset='tiny'"
        ) from exc


def check_pipeline(pipe: Any) -> None:
    """Refuse a pipeline CSA cannot patch: not SDXL-shaped (8x VAE, up-block attention at 1/32, 1/16)."""
    from .patch import check_unet

    unet = getattr(pipe, "unet", None)
    if unet is None or not hasattr(pipe, "text_encoder_2"):
        raise ComponentError(
            f"{type(pipe).__name__} is not an SDXL pipeline (no unet or no second text encoder); "
            "StoryDiffusion needs an SDXL-architecture checkpoint"
        )
    scale = int(getattr(pipe, "vae_scale_factor", 8))
    if scale != 8:
        raise ComponentError(
            f"the VAE of this checkpoint down-samples {scale}x, SDXL's down-samples 8x; the 1/32 and "
            "1/16 self-attention layers of docs/storydiffusion.md §1.2 need SDXL's VAE"
        )
    check_unet(unet, scale)


def load_pipeline(
    model: str | os.PathLike[str] | None,
    *,
    preset: str | None,
    device: torch.device,
    dtype: torch.dtype,
    offload: str | None = None,
    scheduler: str = "ddim",
    freeu: bool = True,
    config: str | None = None,
    weights_seed: int = 0,
) -> Any:
    """Load, check and set up the SDXL pipeline (scheduler, FreeU, device/offload).

    ``preset``: ``"tiny"``, ``"full"`` or ``None`` (full), as :func:`storysdk.runtime.resolve`
    gives it; ``"auto"`` is resolved here too.
    """
    from storysdk.runtime import resolve_preset

    ref, single = resolve_model(model)
    kind = resolve_preset(preset, ref if single is None else None)
    if kind == "tiny":
        from storysdk.tiny import tiny_sdxl_pipeline

        pipe = tiny_sdxl_pipeline(weights_seed)
        if dtype != pipe.unet.dtype:
            pipe = pipe.to(dtype=dtype)
    elif single is not None:
        from huggingface_hub import hf_hub_download

        try:
            path = hf_hub_download(ref, single)
        except Exception as exc:  # offline, unknown repo, ...: all say the same to the user
            raise ConfigError(
                f"could not fetch {single!r} from {ref!r} ({type(exc).__name__}: {exc}); download it "
                "and pass model='<path to the .safetensors file>', or use preset='tiny'"
            ) from exc
        pipe = _from_single_file(path, dtype, config)
    elif ref.endswith(".ckpt"):
        raise ConfigError(
            f"{ref!r} is a pickled .ckpt checkpoint; convert it to .safetensors (storysdk never unpickles "
            "untrusted weights) and pass that file"
        )
    elif ref.endswith(".safetensors"):
        if not os.path.isfile(os.path.expanduser(ref)):
            raise ConfigError(f"checkpoint file {ref!r} does not exist; give the path of an SDXL .safetensors file")
        pipe = _from_single_file(os.path.expanduser(ref), dtype, config)
    else:
        pipe = _from_pretrained(os.path.expanduser(ref) if os.path.exists(os.path.expanduser(ref)) else ref, dtype)
    return prepare_pipeline(pipe, device=device, offload=offload, scheduler=scheduler, freeu=freeu)


def prepare_pipeline(
    pipe: Any, *, device: torch.device, offload: str | None = None, scheduler: str = "ddim", freeu: bool = True
) -> Any:
    """Check ``pipe`` (SDXL-shaped) and set it up in place: scheduler, FreeU (or off), device/offload."""
    from storysdk.runtime import apply_offload

    check_pipeline(pipe)
    pipe.scheduler = make_scheduler(pipe, scheduler)
    if freeu:
        pipe.enable_freeu(**FREEU)
    else:
        pipe.disable_freeu()
    pipe.set_progress_bar_config(disable=True)
    return apply_offload(pipe, offload, device)
