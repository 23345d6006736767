"""Reading the released files of §1.6 (docs/seed-story.md) with strict key accounting.

Upstream loads every checkpoint non-strictly, ignoring key mismatches (§6 pitfalls); here every
tensor of a file must be used and every tensor of the module found: the modules are loaded with
:func:`storysdk.runtime.load_state_dict`, which raises a :class:`~storysdk.errors.CheckpointError`
listing the missing and unexpected keys. Only the frozen sin-cos tables (``*pos_embed``) may be
absent: they are recomputed (§9). ``.safetensors`` files are read with
:func:`storysdk.runtime.load_safetensors`; pickled ``.bin``/``.pt`` files with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from storysdk.errors import CheckpointError

__all__ = ["read_prefixed", "read_state_dict", "split_prefix"]


def read_state_dict(path: str | Path, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """All tensors of one ``.safetensors``/``.bin``/``.pt`` file, on CPU."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{what} file {str(p)!r} does not exist; download it to that path (§1.6 layout)")
    if p.suffix == ".safetensors":
        from storysdk.runtime import load_safetensors

        return load_safetensors(p, what=what)
    try:
        state = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle/zip errors have many types
        raise CheckpointError(f"cannot read {str(p)!r} as a torch checkpoint ({exc}); is the download complete?") from exc
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{str(p)!r} is not a state_dict of tensors; give the weights file itself")
    return dict(state)


def _shards(folder: Path) -> list[Path]:
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / index).is_file():
            names = sorted(set(json.loads((folder / index).read_text())["weight_map"].values()))
            absent = [n for n in names if not (folder / n).is_file()]
            if absent:
                raise CheckpointError(
                    f"{str(folder / index)!r} names shard(s) that are not there: {', '.join(absent)}; "
                    "finish the download"
                )
            return [folder / n for n in names]
    for single in ("model.safetensors", "pytorch_model.bin"):
        if (folder / single).is_file():
            return [folder / single]
    raise CheckpointError(
        f"no weights in {str(folder)!r}: expected model.safetensors(.index.json) or pytorch_model.bin(.index.json)"
    )


def read_prefixed(folder: str | Path, prefix: str) -> dict[str, torch.Tensor]:
    """The tensors under ``prefix`` in every shard of a transformers checkpoint folder, prefix stripped."""
    out: dict[str, torch.Tensor] = {}
    for shard in _shards(Path(folder)):
        if shard.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(shard), framework="pt") as fh:
                for key in fh.keys():
                    if key.startswith(prefix):
                        out[key[len(prefix):]] = fh.get_tensor(key)
        else:
            out.update(split_prefix(read_state_dict(shard, what="checkpoint shard"), prefix))
    if not out:
        raise CheckpointError(f"no tensors under {prefix!r} in {str(folder)!r}; is this the right checkpoint folder?")
    return out


def split_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``state`` under ``prefix``, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

