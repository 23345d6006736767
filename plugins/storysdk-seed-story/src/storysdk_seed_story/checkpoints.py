"""Reading the released files of §1.6 (docs/seed-story.md) with strict key accounting.

Upstream loads every checkpoint non-strictly, ignoring key mismatches (§6 pitfalls); here every
tensor of a file must be used and every tensor of the module found: the modules are loaded with
:func:`storysdk.runtime.load_state_dict`, which raises a :class:`~storysdk.errors.CheckpointError`
listing the missing and unexpected keys. Only the frozen sin-cos tables (``*pos_embed``) may be
absent: they are recomputed (§9). ``.safetensors`` files are read with
:func:`storysdk.runtime.load_safetensors`; pickled ``.bin``/``.pt`` files with
:func:`storysdk.runtime.load_torch_file` (``torch.load(..., weights_only=True)``). A file that is
missing, empty, truncated or damaged, a pickle refused as unsafe, a shard index that is not JSON
or names no shards: each is a :class:`~storysdk.errors.CheckpointError` naming the file and the fix.
"""

from __future__ import annotations

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
    from storysdk.runtime import load_torch_file

    state = load_torch_file(p, what=what)  # truncated, empty or unsafe: a CheckpointError naming the file
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(
            f"{what} file {str(p)!r} holds a {type(state).__name__} that is not a state_dict of tensors; "
            "give the weights file itself (§1.6 layout)"
        )
    return dict(state)


def _shards(folder: Path) -> list[Path]:
    from storysdk.runtime import read_json_config

    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / index).is_file():
            weight_map = read_json_config(folder / index, what="shard index").get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map or not all(
                isinstance(v, str) and v and "/" not in v and "\\" not in v and v not in (".", "..")
                for v in weight_map.values()
            ):
                raise CheckpointError(
                    f"shard index {str(folder / index)!r} has no weight_map of shard file names; "
                    "download the checkpoint's index file again"
                )
            names = sorted(set(weight_map.values()))
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
            from storysdk.runtime import load_safetensors_subset

            part = load_safetensors_subset(shard, lambda key: key.startswith(prefix), what="checkpoint shard")
            out.update((key[len(prefix):], tensor) for key, tensor in part.items())
        else:
            out.update(split_prefix(read_state_dict(shard, what="checkpoint shard"), prefix))
    if not out:
        raise CheckpointError(f"no tensors under {prefix!r} in {str(folder)!r}; is this the right checkpoint folder?")
    return out


def split_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``state`` under ``prefix``, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

