"""The runtime toolkit of model-backed components, for plugin authors and built-ins alike.

- :func:`resolve` (and :func:`resolve_preset`, :func:`resolve_device`, :func:`resolve_dtype`):
  which weights, which device, which dtype, from a component's ``preset``/``device``/``dtype``
  options (:class:`storysdk.options.DeviceOptions` declares them);
- :func:`apply_offload`: a diffusers pipeline onto its device, or CPU offload;
- :func:`cpu_generator` and :func:`seeded`: seeded noise and seeded construction that never
  touch the global torch RNG (the project keeps no global mutable state);
- :func:`load_safetensors` and :func:`load_state_dict`: loaders that fail loudly, naming the
  file and every missing or unexpected key (:class:`~storysdk.errors.CheckpointError`);
- :func:`require_torch` and :func:`dtype_kwargs`.

Everything here imports torch (and diffusers, huggingface_hub, safetensors) inside the
functions, so that importing this module stays as light as ``import storysdk``. See
``docs/plugin-utilities.md``.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from .errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    import torch

__all__ = [
    "OFFLOAD_MODES",
    "PRESETS",
    "Resolved",
    "apply_offload",
    "cpu_generator",
    "dtype_kwargs",
    "load_safetensors",
    "load_state_dict",
    "require_torch",
    "resolve",
    "resolve_device",
    "resolve_dtype",
    "resolve_preset",
    "seeded",
]

TORCH_EXTRA_HINT = "pip install 'storysdk[torch]'"
PRESETS = ("tiny", "full", "auto")
OFFLOAD_MODES = ("model", "sequential")

_DTYPE_NAMES = {
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
}


def require_torch(feature: str) -> None:
    """Raise a :class:`ConfigError` naming ``feature`` when torch, diffusers or transformers is missing."""
    missing = [m for m in ("torch", "diffusers", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"{feature} needs the torch extra ({', '.join(missing)} not installed): {TORCH_EXTRA_HINT}"
        )


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"``: CUDA when available, else CPU; otherwise the named device, checked."""
    import torch

    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"device {device!r} is not a torch device name; use 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {device!r} asked for CUDA but no CUDA GPU is available; use device='cpu' or 'auto'"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) exist; "
                f"use cuda:0..cuda:{torch.cuda.device_count() - 1}"
            )
    elif dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ConfigError(f"device {device!r}: MPS is not available here; use device='cpu' or 'auto'")
    elif dev.type != "cpu" and not _accelerator_available(dev.type):
        raise ConfigError(
            f"device {device!r} is not available on this machine; use 'auto', 'cpu' or 'cuda'"
        )
    return dev


def _accelerator_available(kind: str) -> bool:
    import torch

    mod = getattr(torch, kind, None)
    is_available = getattr(mod, "is_available", None)
    return bool(is_available()) if callable(is_available) else False


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device | str) -> torch.dtype:
    """``None``/``"auto"``: float16 on CUDA, float32 elsewhere; else one of float16/bfloat16/float32."""
    import torch

    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if dtype is None or (isinstance(dtype, str) and dtype.strip().lower() == "auto"):
        return torch.float16 if dev.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype in (torch.float16, torch.bfloat16, torch.float32):
            return dtype
        raise ConfigError(f"dtype {dtype} is not supported; use 'float16', 'bfloat16', 'float32' or 'auto'")
    name = _DTYPE_NAMES.get(str(dtype).strip().lower().removeprefix("torch."))
    if name is None:
        raise ConfigError(
            f"dtype {dtype!r} is not supported; use 'auto', 'float16' (fp16), 'bfloat16' (bf16) or 'float32' (fp32)"
        )
    return getattr(torch, name)


def cpu_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed`` (diffusers' convention for reproducible noise)."""
    import torch

    return torch.Generator(device="cpu").manual_seed(int(seed))


def resolve_preset(preset: str | None, model: str | os.PathLike[str] | None) -> str:
    """``"tiny"`` or ``"full"``: which weights a component should use.

    ``None``/``"full"``: the named (or default) model. ``"tiny"``: toy weights built in code.
    ``"auto"``: ``"full"`` when ``model`` is a local path or is already in the local Hugging
    Face cache (checked offline, never over the network), otherwise ``"tiny"`` with a warning.
    """
    if preset is None:
        return "full"
    key = str(preset).strip().lower()
    if key not in PRESETS:
        raise ConfigError(f"preset {preset!r} is unknown; use one of {', '.join(PRESETS)} (or leave it unset)")
    if key != "auto":
        return key
    if model is not None and _weights_available(str(model)):
        return "full"
    warnings.warn(
        f"preset='auto': no local weights found for model {str(model)!r} (not a local path and not "
        "in the Hugging Face cache), so the tiny preset (random toy weights) is used; "
        "download the model or pass a local path to use real weights",
        UserWarning,
        stacklevel=2,
    )
    return "tiny"


def _weights_available(model: str) -> bool:
    """Whether ``model`` is a local path or a repo id whose files are in the local HF cache."""
    if os.path.exists(os.path.expanduser(model)):
        return True
    if importlib.util.find_spec("huggingface_hub") is None:
        return False
    from huggingface_hub import try_to_load_from_cache

    for filename in ("model_index.json", "config.json"):
        try:
            found = try_to_load_from_cache(repo_id=model, filename=filename)
        except Exception:  # an id that is not a valid repo name (HFValidationError, ...)
            return False
        if isinstance(found, str):
            return True
    return False


def dtype_kwargs(dtype: torch.dtype) -> dict[str, Any]:
    """``{"dtype": dtype}`` for diffusers' loaders, or ``{"torch_dtype": dtype}`` before diffusers
    renamed it (docs/reference/plugin-conventions.md §3: ``torch_dtype`` is deprecated in favour of ``dtype``)."""
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401
    except ImportError:
        return {"torch_dtype": dtype}
    return {"dtype": dtype}


def apply_offload(pipe: Any, offload: str | None, device: torch.device) -> Any:
    """Put ``pipe`` on ``device``: ``None`` moves it, ``"model"``/``"sequential"`` enable CPU offload."""
    if offload is None:
        return pipe.to(device)
    if offload not in OFFLOAD_MODES:
        raise ConfigError(
            f"offload {offload!r} is unknown; use 'model' (whole models), 'sequential' (layer by layer) or None"
        )
    if getattr(device, "type", str(device)) != "cuda":
        raise ConfigError(
            f"offload={offload!r} needs a CUDA device (got {str(device)!r}); drop the offload option on CPU"
        )
    if offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.enable_sequential_cpu_offload(device=device)
    return pipe


@contextmanager
def seeded(seed: int, devices: tuple[Any, ...] = ()) -> Iterator[None]:
    """Run the block with the torch RNG seeded with ``seed``, restoring the caller's RNG after.

    For building modules with seeded random weights (tiny presets)::

        with seeded(weights_seed):
            model = TinyModel(config)

    The global RNG state (CPU, and the CUDA ``devices`` named) is forked, so code around the
    block sees the same random numbers as if the block had not run.
    """
    import torch

    with torch.random.fork_rng(devices=list(devices)):
        torch.manual_seed(int(seed))
        yield


@attrs.frozen
class Resolved:
    """What :func:`resolve` decided: ``preset`` (``"tiny"``/``"full"``), ``device`` and ``dtype``."""

    preset: str
    device: torch.device
    dtype: torch.dtype


def resolve(
    who: str,
    *,
    preset: str | None,
    model: str | os.PathLike[str] | None,
    device: str | torch.device | None,
    dtype: str | torch.dtype | None,
    needs_model: bool = False,
) -> Resolved:
    """Preset, device and dtype of the component ``who`` (for errors), in one call.

    Checks that torch is installed, resolves ``preset`` against ``model`` (``"auto"`` looks for
    local weights, offline), then the device and the dtype for it. ``needs_model=True``: the
    full preset without a ``model`` is a :class:`ConfigError` (a checkpoint folder is required).
    """
    require_torch(who)
    key = resolve_preset(preset, model)
    if key == "full" and needs_model and not model:
        raise ConfigError(
            f"{who}: the real weights need a local checkpoint folder (the model/checkpoint option); "
            "or use preset='tiny' for toy weights"
        )
    dev = resolve_device(device)
    return Resolved(key, dev, resolve_dtype(dtype, dev))


def load_safetensors(path: str | os.PathLike[str], *, device: str = "cpu", what: str = "checkpoint") -> dict[str, Any]:
    """All tensors of a ``.safetensors`` file; a missing or broken file is a :class:`CheckpointError` naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"{what} file {str(file)!r} does not exist; check the path or the checkpoint folder's layout")
    try:
        return load_file(str(file), device=device)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{what} file {str(file)!r} is not a readable safetensors file ({type(exc).__name__}: {exc}); "
            "download it again or re-save it with safetensors"
        ) from exc


def load_state_dict(
    module: Any,
    state: Mapping[str, Any],
    *,
    source: str,
    ignore_missing: tuple[str, ...] = (),
    ignore_unexpected: tuple[str, ...] = (),
) -> None:
    """``module.load_state_dict(state)`` that accounts for every key, or a :class:`CheckpointError`.

    ``source`` names where ``state`` came from (a file, a folder and prefix) for the message.
    Keys starting with one of ``ignore_missing``/``ignore_unexpected`` are expected to be absent
    or extra (buffers that are recomputed, heads that inference does not use): name them here,
    never load with ``strict=False``. Shapes that differ are reported with both shapes.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state and not (ignore_missing and k.startswith(ignore_missing))]
    unexpected = [k for k in state if k not in own and not (ignore_unexpected and k.startswith(ignore_unexpected))]
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not match {type(module).__name__}: it is not the checkpoint this component "
            "loads, or it is incomplete",
            missing=sorted(missing),
            unexpected=sorted(unexpected),
        )
    bad = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(v.shape)
    ]
    if bad:
        raise CheckpointError(
            f"{source}: {len(bad)} tensor(s) have other shapes than {type(module).__name__} "
            f"(a checkpoint of another model size?): " + "; ".join(bad[:10])
        )
    # the keys named as expected-missing keep the module's own values; every key is loaded strictly
    full = {k: (state[k] if k in state else v) for k, v in own.items()}
    module.load_state_dict(full, strict=True)
