"""Reading the released files of §1.6 with strict key accounting.

Upstream loads every checkpoint non-strictly, ignoring key mismatches (§6 pitfalls); here every tensor of a
file must be used and every tensor of the module must be found, otherwise a
:class:`~storysdk.errors.CheckpointError` lists the missing and unexpected keys. Only the
frozen sin-cos tables (``*pos_embed``) may be absent: they are recomputed (§9).
Unpickling uses ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from storysdk.errors import CheckpointError

__all__ = ["load_exact", "read_state_dict", "read_prefixed", "split_prefix"]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of one ``.safetensors``/``.bin``/``.pt`` file, on CPU."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint file {str(p)!r} does not exist; download it to that path (§1.6 layout)")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p))
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
            out.update(split_prefix(read_state_dict(shard), prefix))
    if not out:
        raise CheckpointError(f"no tensors under {prefix!r} in {str(folder)!r}; is this the right checkpoint folder?")
    return out


def split_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``state`` under ``prefix``, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_exact(
    module: torch.nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    what: str,
    prefix: str = "",
    recomputable: Iterable[str] = (),
) -> None:
    """Load ``state`` into ``module`` accounting for every key (names reported with ``prefix``).

    Keys in ``recomputable`` may be absent (their current values are kept). Shape mismatches
    are reported as a wrong architecture.
    """
    own = module.state_dict()
    optional = set(recomputable)
    missing = sorted(prefix + k for k in own if k not in state and k not in optional)
    unexpected = sorted(prefix + k for k in state if k not in own)
    if missing or unexpected:
        raise CheckpointError(
            f"{what}: the checkpoint does not match the architecture; check that the file is the one §1.6 names",
            missing=missing,
            unexpected=unexpected,
        )
    wrong = [f"{prefix}{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items() if v.shape != own[k].shape]
    if wrong:
        raise CheckpointError(
            f"{what}: tensor shapes do not match the architecture (checkpoint vs model): {'; '.join(wrong[:10])}; "
            "the file is for a different model size (SEED-X-17B weights are not SEED-Story's, §1.0)"
        )
    full = dict(own)
    full.update(state)
    module.load_state_dict(full, strict=True)
