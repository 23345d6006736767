"""The runtime toolkit of model-backed components, for plugin authors and built-ins alike.

- :func:`resolve` (and :func:`resolve_preset`, :func:`resolve_device`, :func:`resolve_dtype`):
  which weights, which device, which dtype, from a component's ``preset``/``device``/``dtype``
  options (:class:`storysdk.options.DeviceOptions` declares them);
- :func:`resolve_weights` and :class:`Weights`: which weights, offline, and why ``preset='auto'``
  fell back to the tiny preset (a model *path* that does not exist is an error);
  :func:`weights_of`: the one line the pipeline records in ``run.json`` for a component (a
  model-backed component says it with a ``weights`` attribute or property);
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
    "check_weights_file",
    "cpu_generator",
    "dtype_kwargs",
    "find_broken_file",
    "load_pretrained",
    "load_pretrained_pipeline",
    "load_safetensors",
    "load_safetensors_subset",
    "load_state_dict",
    "load_torch_file",
    "read_json_config",
    "require_torch",
    "resolve",
    "resolve_device",
    "resolve_dtype",
    "resolve_preset",
    "resolve_weights",
    "safetensors_keys",
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
    never load non-strictly (missing weights would stay random). Shapes that differ are reported with both shapes.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state and not (ignore_missing and k.startswith(ignore_missing))]
    unexpected = [k for k in state if k not in own and not (ignore_unexpected and k.startswith(ignore_unexpected))]
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not match {type(module).__name__}: it is not the checkpoint this component "
            "loads, or it is incomplete; download the checkpoint again, or give the one of this model and size",
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
            + "; give the checkpoint of this model size (or the matching size/architecture option)"
        )
    # the keys named as expected-missing keep the module's own values; every key is loaded strictly
    full = {k: (state[k] if k in state else v) for k, v in own.items()}
    module.load_state_dict(full, strict=True)


# -- loud readers of checkpoint files and folders ------------------------------------------
# Every built-in and plugin loader reads weights and configs through these, so that a broken
# file (truncated, empty, not JSON, an unsafe pickle, tensors of another model) is one
# CheckpointError that names the file and the fix, never a library's raw error (issue 12).

#: Suffixes of pickled torch checkpoints; they are only ever unpickled with ``weights_only=True``.
TORCH_FILE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
#: Suffixes of weight files a model folder may hold (checked by :func:`find_broken_file`).
WEIGHT_FILE_SUFFIXES = (".safetensors", *TORCH_FILE_SUFFIXES)
_REFUSED_MARK = "weights only load failed"  # the start of torch's weights_only refusal message
_MAX_SCANNED_FILES = 5000


def _reason(exc: BaseException) -> str:
    """``Type: first sentence`` of ``exc`` for a message: short, and never a library's advice to
    unpickle with ``weights_only=False`` or to ignore mismatched sizes (both load what is unsafe or random)."""
    text = str(exc).strip()
    text = text.splitlines()[0] if text else ""
    text = text.split(". ")[0].strip().rstrip(".")
    if "weights_only" in text or "ignore_mismatched_sizes" in text or "low_cpu_mem_usage" in text:
        text = ""
    if isinstance(exc, EOFError) and not text:
        text = "the file ends before its data does"
    if len(text) > 240:
        text = text[:240] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _hides_unsafe_advice(exc: BaseException | None) -> bool:
    """Whether ``exc`` or an exception it was raised from carries torch's ``weights_only=False`` advice."""
    seen = 0
    while exc is not None and seen < 20:
        if "weights_only" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _cause(exc: BaseException) -> BaseException | None:
    """What a CheckpointError is raised ``from``: ``exc``, unless its chain suggests unsafe unpickling."""
    return None if _hides_unsafe_advice(exc) else exc


def _is_refusal(exc: BaseException) -> bool:
    return _REFUSED_MARK in str(exc).lower()


def _refused_globals(exc: BaseException) -> list[str]:
    import re

    names = re.findall(r"GLOBAL ([A-Za-z_][\w.]*)", str(exc))
    return sorted(set(names))


def _check_file(file: Path, what: str) -> None:
    """A :class:`CheckpointError` unless ``file`` is an existing, readable, non-empty file."""
    if not file.exists():
        raise CheckpointError(
            f"{what} file {str(file)!r} does not exist; check the path, or download the checkpoint (again) to it"
        )
    if not file.is_file():
        raise CheckpointError(f"{what} {str(file)!r} is a folder, not a file; give the path of the weights file in it")
    try:
        size = file.stat().st_size
        with open(file, "rb"):
            pass
    except OSError as exc:
        raise CheckpointError(
            f"{what} file {str(file)!r} cannot be read ({_reason(exc)}); make it readable or copy it to a folder you own"
        ) from exc
    if size == 0:
        raise CheckpointError(
            f"{what} file {str(file)!r} is empty (0 bytes): its download or copy did not finish; download it again"
        )


def _damaged(file: Path, what: str, kind: str, exc: BaseException) -> CheckpointError:
    return CheckpointError(
        f"{what} file {str(file)!r} is truncated or damaged: it is not a complete {kind} ({_reason(exc)}); "
        "download it again"
    )


def _refused(file: Path, what: str, exc: BaseException) -> CheckpointError:
    names = _refused_globals(exc)
    holds = f" ({', '.join(names)})" if names else ""
    return CheckpointError(
        f"{what} file {str(file)!r} was refused as unsafe: it is a pickle that holds Python objects other "
        f"than tensors{holds}, and unpickling those can run code. storysdk never unpickles such a file; "
        "get these weights as .safetensors, or as a plain state dict of tensors, from a source you trust"
    )


def load_torch_file(path: str | os.PathLike[str], *, what: str = "checkpoint", map_location: Any = "cpu") -> Any:
    """What a pickled torch checkpoint (``.bin``/``.pt``/``.ckpt``) holds, unpickled with ``weights_only=True``.

    Zip-format files (what ``torch.save`` writes since torch 1.6) are memory-mapped. Every
    failure is a :class:`CheckpointError` naming the file (``what`` says which one it is): a
    file that is missing or empty, one that is truncated or damaged (download it again), and a
    pickle that holds more than tensors and plain containers, which is refused as unsafe
    (unpickling it could run code; the message names the refused globals). There is no switch
    that unpickles such a file anyway.
    """
    import pickle
    import zipfile

    import torch

    file = Path(path)
    _check_file(file, what)
    try:
        mmap = zipfile.is_zipfile(file)
    except OSError:
        mmap = False
    oom = tuple(c for c in (MemoryError, getattr(torch, "OutOfMemoryError", None)) if isinstance(c, type))
    try:
        return torch.load(str(file), map_location=map_location, weights_only=True, mmap=mmap)
    except oom:
        raise
    except pickle.UnpicklingError as exc:
        if _is_refusal(exc):
            raise _refused(file, what, exc) from None
        raise _damaged(file, what, "torch checkpoint", exc) from exc
    except Exception as exc:  # noqa: BLE001 - zip, pickle and storage errors have many types
        if _is_refusal(exc):
            raise _refused(file, what, exc) from None
        raise _damaged(file, what, "torch checkpoint", exc) from _cause(exc)


def read_json_config(path: str | os.PathLike[str], *, what: str = "config") -> dict[str, Any]:
    """The JSON object in ``path`` (a ``config.json``, ``model_index.json``, shard index, ...).

    A file that is missing, empty, not UTF-8, not JSON (the message gives the line and column)
    or that holds something other than an object is a :class:`CheckpointError` naming it.
    """
    import json

    file = Path(path)
    if not file.is_file():
        raise CheckpointError(
            f"{what} {str(file)!r} does not exist; the folder is incomplete: download it again (with its JSON files)"
        )
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(
            f"{what} {str(file)!r} is not UTF-8 text (a binary or damaged file?); download it again"
        ) from exc
    except OSError as exc:
        raise CheckpointError(f"{what} {str(file)!r} cannot be read ({_reason(exc)}); make it readable") from exc
    if not text.strip():
        raise CheckpointError(f"{what} {str(file)!r} is empty: its download did not finish; download it again")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"{what} {str(file)!r} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "download it again or restore the original file"
        ) from exc
    except RecursionError as exc:
        raise CheckpointError(f"{what} {str(file)!r} is nested too deeply to be a config; restore the original file") from exc
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{what} {str(file)!r} holds a JSON {type(data).__name__}, where an object of settings "
            "({...}) is expected; restore the original file"
        )
    return data


def safetensors_keys(path: str | os.PathLike[str], *, what: str = "checkpoint") -> list[str]:
    """The tensor names of a ``.safetensors`` file, read from its header only (no tensor is loaded).

    The header check covers the whole file, so a truncated file is caught here: a missing,
    empty, truncated or damaged file is a :class:`CheckpointError` naming it.
    """
    return list(load_safetensors_subset(path, lambda _key: False, what=what, keys_only=True))


def load_safetensors_subset(
    path: str | os.PathLike[str],
    keep: Any,
    *,
    what: str = "checkpoint",
    device: str = "cpu",
    keys_only: bool = False,
) -> dict[str, Any]:
    """The tensors of a ``.safetensors`` file whose names ``keep(name)`` accepts (the others are not read).

    For shards of which a loader needs a part (the visual tower of a multimodal checkpoint,
    the layers a checkpoint lacks). ``keys_only=True`` maps every name to ``None`` instead.
    A missing, empty, truncated or damaged file is a :class:`CheckpointError` naming it.
    """
    from safetensors import SafetensorError, safe_open

    file = Path(path)
    _check_file(file, what)
    try:
        with safe_open(str(file), framework="pt", device=device) as fh:
            names = list(fh.keys())
            if keys_only:
                return dict.fromkeys(names)
            return {k: fh.get_tensor(k) for k in names if keep(k)}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise _damaged(file, what, "safetensors file", exc) from exc


def check_weights_file(path: str | os.PathLike[str], *, what: str = "checkpoint") -> None:
    """Check that a weights file is complete and safe to load, without loading its tensors.

    ``.safetensors``: the header and that the file covers every tensor; a torch pickle: it
    unpickles with ``weights_only=True`` (onto the meta device). A :class:`CheckpointError`
    naming the file otherwise (see :func:`load_torch_file`). Other suffixes: only that the file
    exists and is not empty.
    """
    file = Path(path)
    if file.suffix == ".safetensors":
        safetensors_keys(file, what=what)
    elif file.suffix in TORCH_FILE_SUFFIXES:
        load_torch_file(file, what=what, map_location="meta")
    else:
        _check_file(file, what)


def find_broken_file(folder: str | os.PathLike[str], *, what: str = "model") -> CheckpointError | None:
    """The :class:`CheckpointError` of the first unreadable file in a model folder, or ``None``.

    Reads every ``*.json`` file (is it JSON?) and checks every weights file
    (:func:`check_weights_file`) under ``folder``, hidden folders skipped. Loaders call it
    when a library failed to load a folder, to name the file that broke and why.
    """
    import json

    root = Path(folder)
    if not root.is_dir():
        return None
    files = sorted(
        p for p in root.rglob("*") if not any(part.startswith(".") for part in p.relative_to(root).parts)
    )[:_MAX_SCANNED_FILES]
    for file in files:
        if not file.is_file():
            continue
        try:
            if file.suffix == ".json":
                try:
                    text = file.read_text(encoding="utf-8")
                    json.loads(text)
                except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, OSError):
                    read_json_config(file, what=f"{what} file")  # raises the precise error
            elif file.suffix in WEIGHT_FILE_SUFFIXES:
                check_weights_file(file, what=what)
        except CheckpointError as err:
            return err
    return None


def _local_folder(source: str | os.PathLike[str]) -> Path | None:
    """``source`` as a local folder: itself, or a hub id's snapshot in the local cache (offline)."""
    path = Path(os.path.expanduser(str(source)))
    if path.is_dir():
        return path
    if importlib.util.find_spec("huggingface_hub") is None:
        return None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(source), local_files_only=True))
    except Exception:  # noqa: BLE001 - not a repo id, not cached, ...
        return None


def _shape_mismatch(text: str) -> tuple[str, str, str] | None:
    import re

    found = re.search(r"because (\S+) expected shape (.+?), but got (.+?)\.(?:\s|$)", text)
    return (found.group(1), found.group(3), found.group(2)) if found else None


def _pretrained_error(where: str, exc: BaseException, label: str) -> CheckpointError:
    """The error for a library's failed ``from_pretrained`` of the folder ``where``: the broken file if
    one is found, else the library's reason with the fix."""
    folder = _local_folder(where)
    if folder is not None:
        broken = find_broken_file(folder, what=label)
        if broken is not None:
            return broken
    shape = _shape_mismatch(str(exc))
    if shape is not None:
        key, got, want = shape
        return CheckpointError(
            f"{label} in {where!r}: tensor {key} has shape {got} in the weights file but {want} by its "
            "config.json: the weights and the config are of different models; download the folder again"
        )
    return CheckpointError(
        f"could not load {label} from {where!r} ({_reason(exc)}); check that the folder is complete "
        "(config.json and its weights) and that its config.json is the model's own, or download it again"
    )


def _is_transformers_model(cls: Any) -> bool:
    try:
        from transformers import PreTrainedModel
    except ImportError:
        return False
    return isinstance(cls, type) and issubclass(cls, PreTrainedModel)


def _check_loading_info(info: Mapping[str, Any], where: str, label: str, cls_name: str) -> None:
    """Raise when a library's loading report lists a key it could not account for."""
    missing = sorted(str(k) for k in info.get("missing_keys") or ())
    unexpected = sorted(str(k) for k in info.get("unexpected_keys") or ())
    mismatched = []
    for entry in info.get("mismatched_keys") or ():
        if isinstance(entry, (tuple, list)) and len(entry) == 3:
            mismatched.append(f"{entry[0]}: checkpoint {tuple(entry[1])} vs model {tuple(entry[2])}")
        else:
            mismatched.append(str(entry))
    if mismatched:
        raise CheckpointError(
            f"{label} in {where!r}: {len(mismatched)} tensor(s) have other shapes than its config.json gives "
            f"{cls_name} (weights and config of different models?): " + "; ".join(sorted(mismatched)[:10])
            + "; download the folder again"
        )
    errors = [str(e) for e in info.get("error_msgs") or ()]
    if missing or unexpected or errors:
        raise CheckpointError(
            f"{label} in {where!r} does not match {cls_name}: it is not the checkpoint this model loads, or "
            "it is incomplete; download the folder again"
            + (f" ({'; '.join(errors[:3])})" if errors else ""),
            missing=missing,
            unexpected=unexpected,
        )


def load_pretrained(
    cls: Any, source: str | os.PathLike[str], *, subfolder: str | None = None, what: str | None = None, **kwargs: Any
) -> Any:
    """``cls.from_pretrained(source, subfolder=...)`` for one diffusers or transformers model, every key accounted for.

    The library's own loading report is checked (``output_loading_info=True``): weights the
    files lack (which the library would initialise at random), tensors the model does not
    have, and tensors of another shape are a :class:`CheckpointError` with the lists, instead
    of a warning and a model that renders noise. A file the library could not read (truncated,
    empty, not JSON, an unsafe pickle) is found and named (:func:`find_broken_file`).
    ``kwargs`` go to ``from_pretrained`` (``dtype``, ...); ``what`` names the model in messages.
    """
    src = os.path.expanduser(os.fspath(source))
    where = str(Path(src) / subfolder) if subfolder else src
    label = what or f"{getattr(cls, '__name__', 'model')} weights"
    extra: dict[str, Any] = {"subfolder": subfolder} if subfolder else {}
    if _is_transformers_model(cls):
        # mismatched shapes are then listed in the report (and refused below), not raised without their names
        extra["ignore_mismatched_sizes"] = True
    try:
        model, info = cls.from_pretrained(src, output_loading_info=True, **extra, **kwargs)
    except (CheckpointError, ConfigError):
        raise
    except ImportError as exc:
        raise ConfigError(f"{label} needs a package that is not installed ({exc}); install it and retry") from exc
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - the libraries raise OSError, ValueError, SafetensorError, ...
        raise _pretrained_error(where, exc, label) from _cause(exc)
    _check_loading_info(info, where, label, getattr(cls, "__name__", "the model"))
    return model


def _model_class(library: str, name: str) -> Any:
    """The torch model class a ``model_index.json`` entry names, or ``None`` (a tokenizer, a scheduler, unknown)."""
    import importlib

    cls = None
    for module in (library, f"diffusers.pipelines.{library}"):
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if cls is not None:
            break
    if not isinstance(cls, type):
        return None
    from diffusers import ModelMixin

    return cls if issubclass(cls, ModelMixin) or _is_transformers_model(cls) else None


def load_pretrained_pipeline(cls: Any, model: str | os.PathLike[str], *, what: str = "model", **kwargs: Any) -> Any:
    """``cls.from_pretrained(model, **kwargs)`` for a diffusers pipeline, every model component strict.

    ``model`` is a local folder or a hub id (fetched or taken from the cache as diffusers
    does). Each torch model named in ``model_index.json`` (unet, vae, text encoders, ...) is
    loaded with :func:`load_pretrained`, so a missing, unexpected or wrongly shaped tensor is a
    :class:`CheckpointError` naming the component's folder; a component given in ``kwargs``
    (``unet=None``, ...) is used as given. A file that cannot be read is named
    (:func:`find_broken_file`); a hub id that is neither reachable nor cached is a
    :class:`ConfigError` with the fixes.
    """
    source = os.path.expanduser(os.fspath(model))
    if os.path.isdir(source):
        folder = source
    else:
        try:
            folder = os.fspath(cls.download(source))
        except (CheckpointError, ConfigError):
            raise
        except Exception as exc:  # noqa: BLE001 - offline, unknown repo, gated repo, ...
            raise ConfigError(
                f"could not fetch {what} {source!r} ({_reason(exc)}); give a local folder (save_pretrained "
                "layout), a hub id reachable from here (or already in the local cache), or preset='tiny' for toy weights"
            ) from _cause(exc)
    index = read_json_config(Path(folder) / "model_index.json", what=f"{what} index")
    dtype_only = {k: v for k, v in kwargs.items() if k in ("dtype", "torch_dtype")}
    parts: dict[str, Any] = {}
    for name, entry in index.items():
        if name.startswith("_") or name in kwargs:
            continue
        if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(x, str) for x in entry)):
            continue  # [null, null]: an optional component that is absent
        klass = _model_class(entry[0], entry[1])
        if klass is None:
            continue
        if not (Path(folder) / name).is_dir():
            raise CheckpointError(
                f"{what} {folder!r} is incomplete: its model_index.json names the component {name!r} "
                f"({entry[1]}), but the folder {str(Path(folder) / name)!r} does not exist; download the model again"
            )
        parts[name] = load_pretrained(klass, folder, subfolder=name, what=f"{what} {name}", **dtype_only)
    try:
        return cls.from_pretrained(folder, **parts, **kwargs)
    except (CheckpointError, ConfigError):
        raise
    except ImportError as exc:  # e.g. Stable Audio's scheduler needs torchsde
        raise ConfigError(f"{what} {source!r} needs a package that is not installed: {exc}; install it and retry") from exc
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - tokenizers, schedulers, configs: many error types
        raise _pretrained_error(folder, exc, what) from _cause(exc)
