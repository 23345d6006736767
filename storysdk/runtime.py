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
import re
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
    "Weights",
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
    "resolve_weights",
    "seeded",
    "weights_of",
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


def _looks_like_path(model: str) -> bool:
    """Whether ``model`` names a local file or folder rather than a hub id (``org/name`` or ``name``).

    Absolute paths, ``./``, ``../`` and ``~`` prefixes, backslashes, drive letters, more than one
    ``/``, a file suffix of a checkpoint and a name with characters a hub id cannot hold are paths.
    """
    text = model.strip()
    if not text:
        return False
    if os.path.isabs(text) or text.startswith(("./", "../", "~", ".\\", "..\\")) or text in (".", ".."):
        return True
    if "\\" in text or (len(text) > 1 and text[1] == ":") or (os.altsep and os.altsep in text):
        return True
    if text.lower().endswith((".safetensors", ".ckpt", ".bin", ".pt", ".pth", ".json", ".gguf")):
        return True
    return _HUB_ID.match(text) is None


_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


@attrs.frozen
class Weights:
    """Which weights a model-backed component uses, as :func:`resolve_weights` decided (offline).

    ``preset`` is ``"tiny"`` or ``"full"``; ``model`` the folder, file or hub id named (or the
    component's default); ``fallback`` says why ``preset="auto"`` fell back to the tiny preset
    (``None``: it did not). ``str(weights)`` is the line recorded in ``run.json`` and printed in
    the CLI's run summary: ``"tiny"``, ``"tiny (fallback: ...)"`` or the model.
    """

    preset: str
    model: str | None = None
    fallback: str | None = None

    def __str__(self) -> str:
        if self.preset == "full":
            return self.model or "full (the component's default model)"
        return f"tiny (fallback: {self.fallback})" if self.fallback else "tiny"


def resolve_weights(
    preset: str | None,
    model: str | os.PathLike[str] | None,
    *,
    filename: str | None = None,
    warn: bool = True,
    who: str = "",
    option: str = "model",
) -> Weights:
    """Which weights to use, offline: ``preset`` against ``model`` (a path or a hub id).

    ``None``/``"full"``: the named (or default) model. ``"tiny"``: toy weights built in code.
    ``"auto"``: the real model when ``model`` is an existing local path or a hub id in the local
    Hugging Face cache (``filename``: the one file of the repo that must be there, for a
    single-file checkpoint; checked offline, never over the network); the tiny preset when it is
    a hub id that is not in the cache (or no model is given), with a :class:`UserWarning` unless
    ``warn=False``. A *path* that does not exist (absolute, ``./``, ``~``, several ``/``, a
    checkpoint file name: :func:`_looks_like_path`) is a :class:`ConfigError` under ``"auto"``:
    a typo is not "no weights". ``who`` (``"generator 'x'"``) and ``option`` (the option that
    names the model) go into the messages.
    """
    if preset is None:
        return Weights("full", None if model is None else str(model))
    key = str(preset).strip().lower()
    if key not in PRESETS:
        raise ConfigError(f"preset {preset!r} is unknown; use one of {', '.join(PRESETS)} (or leave it unset)")
    name = None if model is None else str(model)
    if key != "auto":
        return Weights(key, name if key == "full" else None)
    if name is None or not name.strip():
        reason = "no model given"
    elif os.path.exists(os.path.expanduser(name)):
        return Weights("full", name)
    elif _looks_like_path(name):
        raise ConfigError(
            f"{who + ': ' if who else ''}preset='auto': the {option} path {name!r} does not exist (a path is "
            "never taken for 'no weights'); fix the path, give a hub id, or use preset='tiny' for toy weights"
        )
    elif _in_hf_cache(name, filename):
        return Weights("full", name)
    else:
        reason = (
            f"{filename!r} of the hub repo {name!r} is not in the local Hugging Face cache"
            if filename
            else f"{name!r} is neither a local folder nor in the local Hugging Face cache"
        )
    if warn:
        warnings.warn(
            f"{who + ': ' if who else ''}preset='auto': {reason}, so the tiny preset (random toy weights) is used; "
            "download the model or pass a local path to use real weights",
            UserWarning,
            stacklevel=2,
        )
    return Weights("tiny", name, fallback=reason)


def resolve_preset(preset: str | None, model: str | os.PathLike[str] | None) -> str:
    """``"tiny"`` or ``"full"``: which weights a component should use (:func:`resolve_weights`'s ``preset``).

    ``None``/``"full"``: the named (or default) model. ``"tiny"``: toy weights built in code.
    ``"auto"``: ``"full"`` when ``model`` is an existing local path or is already in the local
    Hugging Face cache (checked offline, never over the network); ``"tiny"`` with a warning for
    a hub id that is not there; a local path that does not exist is a :class:`ConfigError`.
    """
    return resolve_weights(preset, model).preset


def weights_of(component: Any) -> str | None:
    """The weights ``component`` uses, as one line (``None``: it loads no weights).

    A model-backed component says it with a ``weights`` attribute or property (a
    :class:`Weights` or a string; the built-ins and first-party plugins do, without loading
    anything). A component without one that declares ``preset`` is described from its options
    (``preset`` with its ``model``, ``checkpoint`` or ``pretrained`` option), quietly. The
    pipeline records these in ``run.json`` and the CLI prints them in the run summary.
    """
    own = getattr(component, "weights", None)
    if own is not None and not callable(own):
        return str(own)
    options = getattr(component, "options", None)
    fields = getattr(type(options), "model_fields", {})
    if "preset" not in fields:
        return None
    key = next((k for k in ("model", "checkpoint", "pretrained") if k in fields), "model")
    who = f"{getattr(component, 'kind', '')} {getattr(component, 'name', '')!r}".strip()
    return str(resolve_weights(options.preset, getattr(options, key, None), warn=False, who=who, option=key))


def _in_hf_cache(model: str, filename: str | None = None) -> bool:
    """Whether the repo id ``model`` (or its file ``filename``) is in the local HF cache."""
    if importlib.util.find_spec("huggingface_hub") is None:
        return False
    from huggingface_hub import try_to_load_from_cache

    for name in (filename,) if filename else ("model_index.json", "config.json"):
        try:
            found = try_to_load_from_cache(repo_id=model, filename=name)
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
    """What :func:`resolve` decided: ``preset`` (``"tiny"``/``"full"``), ``device``, ``dtype`` and
    ``weights`` (the :class:`Weights` behind ``preset``: which model, or why ``auto`` fell back)."""

    preset: str
    device: torch.device
    dtype: torch.dtype
    weights: Weights | None = None


def resolve(
    who: str,
    *,
    preset: str | None,
    model: str | os.PathLike[str] | None,
    device: str | torch.device | None,
    dtype: str | torch.dtype | None,
    needs_model: bool = False,
    filename: str | None = None,
) -> Resolved:
    """Preset, device and dtype of the component ``who`` (for errors), in one call.

    Checks that torch is installed, resolves ``preset`` against ``model`` (``"auto"`` looks for
    local weights, offline), then the device and the dtype for it. ``needs_model=True``: the
    full preset without a ``model`` is a :class:`ConfigError` (a checkpoint folder is required).
    ``filename``: under ``"auto"``, the one file of the hub repo ``model`` that must be cached (a
    single-file checkpoint).
    """
    require_torch(who)
    weights = resolve_weights(preset, model, filename=filename, who=who)
    key = weights.preset
    if key == "full" and needs_model and not model:
        raise ConfigError(
            f"{who}: the real weights need a local checkpoint folder (the model/checkpoint option); "
            "or use preset='tiny' for toy weights"
        )
    dev = resolve_device(device)
    return Resolved(key, dev, resolve_dtype(dtype, dev), weights)


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
