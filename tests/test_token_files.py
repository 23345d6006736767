"""Token files: the same tokens always give the same bytes, and older files still load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from storysdk.model import Scene, Tokens
from storysdk.output import OutputFolder


def _save(root: Path, tensors: dict, metadata: dict) -> bytes:
    scene = Scene(index=2, prompt="a fox")
    scene.tokens["kind-a"] = Tokens("kind-a", "maker", tensors, metadata)
    OutputFolder(root).save_tokens(scene)
    return (root / "tokens" / "scene-0002.kind-a.safetensors").read_bytes()


def test_the_same_tokens_give_byte_identical_files(tmp_path: Path) -> None:
    meta = {"zeta": 1, "alpha": [1, 2], "mid": {"b": 2, "a": 1}}
    for tensors in ({"x": torch.arange(6.0).reshape(2, 3), "a": torch.ones(2)}, {"ids": np.arange(4)}):
        files = {_save(tmp_path / f"run{i}-{len(tensors)}", tensors, meta) for i in range(12)}
        assert len(files) == 1  # safetensors would write several metadata keys in hash order


def test_tokens_round_trip_and_files_of_the_former_layout_load(tmp_path: Path) -> None:
    _save(tmp_path / "new", {"x": torch.arange(3.0)}, {"prompt": "a fox", "n": 3})
    scene = Scene(index=2, prompt="a fox")
    OutputFolder(tmp_path / "new").load_tokens(scene)
    tok = scene.tokens["kind-a"]
    assert (tok.kind, tok.made_by, tok.metadata) == ("kind-a", "maker", {"prompt": "a fox", "n": 3})
    assert torch.equal(tok.tensors["x"], torch.arange(3.0))

    old = tmp_path / "old" / "tokens"
    old.mkdir(parents=True)
    save_file({"x": torch.arange(2.0)}, str(old / "scene-0002.kind-b.safetensors"),
              metadata={"kind": "kind-b", "made_by": "m", "metadata": '{"k": 1}', "format": "torch"})
    scene = Scene(index=2, prompt="a fox")
    OutputFolder(tmp_path / "old").load_tokens(scene)
    assert scene.tokens["kind-b"].metadata == {"k": 1} and scene.tokens["kind-b"].made_by == "m"
