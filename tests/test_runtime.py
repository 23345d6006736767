"""storysdk.runtime: devices, dtypes, generators, presets, offload, seeded construction, loud loaders."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch

from storysdk import runtime as _torch  # the module under test
from storysdk.runtime import (
    apply_offload,
    cpu_generator,
    require_torch,
    resolve_device,
    resolve_dtype,
    resolve_preset,
)
from storysdk.errors import ConfigError, StorySDKError


def test_resolve_device_auto_and_names():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == expected
    assert resolve_device("auto").type == expected
    assert resolve_device("AUTO").type == expected
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("bad", ["gpu0", "cuda:x", "", "banana"])
def test_resolve_device_bad_names(bad):
    with pytest.raises(ConfigError, match="device"):
        resolve_device(bad)


def test_resolve_device_cuda_missing_is_clear(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


@pytest.mark.parametrize(
    "name, expected",
    [
        ("float16", torch.float16),
        ("fp16", torch.float16),
        ("bfloat16", torch.bfloat16),
        ("bf16", torch.bfloat16),
        ("float32", torch.float32),
        ("fp32", torch.float32),
        ("torch.float16", torch.float16),
        (torch.bfloat16, torch.bfloat16),
    ],
)
def test_resolve_dtype_names(name, expected):
    assert resolve_dtype(name, torch.device("cpu")) is expected


def test_resolve_dtype_auto_depends_on_device():
    assert resolve_dtype("auto", torch.device("cpu")) is torch.float32
    assert resolve_dtype(None, "cpu") is torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) is torch.float16
    assert resolve_dtype(None, "cuda:0") is torch.float16


@pytest.mark.parametrize("bad", ["int8", "float64", "double", torch.int64])
def test_resolve_dtype_bad(bad):
    with pytest.raises(ConfigError, match="dtype"):
        resolve_dtype(bad, torch.device("cpu"))


def test_cpu_generator_is_seeded_cpu():
    g1, g2 = cpu_generator(123), cpu_generator(123)
    assert g1.device.type == "cpu"
    a = torch.randn(5, generator=g1)
    b = torch.randn(5, generator=g2)
    reference = torch.randn(5, generator=torch.Generator().manual_seed(123))
    assert torch.equal(a, b) and torch.equal(a, reference)
    assert not torch.equal(a, torch.randn(5, generator=cpu_generator(124)))


def test_resolve_preset_plain():
    assert resolve_preset("tiny", None) == "tiny"
    assert resolve_preset("tiny", "/does/not/matter") == "tiny"
    assert resolve_preset(None, None) == "full"
    assert resolve_preset("full", "some/model") == "full"
    with pytest.raises(ConfigError, match="preset 'huge'"):
        resolve_preset("huge", None)


def test_resolve_preset_auto_local_path(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_preset("auto", str(tmp_path)) == "full"


def test_resolve_preset_auto_falls_back_to_tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.warns(UserWarning, match="tiny preset"):
        assert resolve_preset("auto", "nobody/no-such-model-xyz") == "tiny"
    with pytest.warns(UserWarning):
        assert resolve_preset("auto", None) == "tiny"
    # a local path that does not exist is a typo, not "no weights" (tests/test_preset_auto.py)
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_preset("auto", str(tmp_path / "missing"))


def test_resolve_preset_auto_finds_hf_cache(tmp_path, monkeypatch):
    # Build the hub cache layout by hand: models--org--name/snapshots/<rev>/model_index.json
    cache = tmp_path / "hub"
    repo = cache / "models--org--cached-model"
    rev = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    snap = repo / "snapshots" / rev
    snap.mkdir(parents=True)
    (snap / "model_index.json").write_text("{}")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_preset("auto", "org/cached-model") == "full"


class _FakePipe:
    def __init__(self):
        self.calls = []

    def to(self, device):
        self.calls.append(("to", device))
        return self

    def enable_model_cpu_offload(self, device=None):
        self.calls.append(("model", device))

    def enable_sequential_cpu_offload(self, device=None):
        self.calls.append(("sequential", device))


def test_apply_offload():
    pipe = _FakePipe()
    assert apply_offload(pipe, None, torch.device("cpu")) is pipe
    assert pipe.calls == [("to", torch.device("cpu"))]
    cuda = torch.device("cuda")
    pipe = _FakePipe()
    apply_offload(pipe, "model", cuda)
    apply_offload(pipe, "sequential", cuda)
    assert pipe.calls == [("model", cuda), ("sequential", cuda)]


def test_apply_offload_errors():
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        apply_offload(_FakePipe(), "model", torch.device("cpu"))
    with pytest.raises(ConfigError, match="offload 'disk' is unknown"):
        apply_offload(_FakePipe(), "disk", torch.device("cuda"))


def test_require_torch(monkeypatch):
    require_torch("anything")  # installed here
    real = _torch.importlib.util.find_spec
    monkeypatch.setattr(
        _torch.importlib.util, "find_spec", lambda name: None if name == "diffusers" else real(name)
    )
    with pytest.raises(StorySDKError, match=r"my feature needs the torch extra .*storysdk\[torch\]"):
        require_torch("my feature")


@pytest.mark.parametrize(
    "module",
    [
        "storysdk.runtime",
        "storysdk.tiny",
        "storysdk.tiny.tokenizers",
        "storysdk.options",
        "storysdk.builtins.diffusers_image",
        "storysdk.builtins.diffusers_audio",
        "storysdk.builtins.clip_text",
    ],
)
def test_modules_import_without_torch(module):
    code = (
        f"import {module}, sys; "
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'tokenizers') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_seeded_builds_the_same_weights_and_restores_the_global_rng():
    import torch

    from storysdk.runtime import seeded

    torch.manual_seed(99)
    expected_next = torch.rand(3)
    torch.manual_seed(99)
    with seeded(7):
        a = torch.nn.Linear(3, 2).weight.detach().clone()
    assert torch.equal(torch.rand(3), expected_next)  # the caller's stream goes on as if nothing ran
    torch.manual_seed(7)
    reference = torch.nn.Linear(3, 2).weight.detach()  # the same draw, seeded by hand
    assert torch.equal(a, reference)


def test_resolve_gives_preset_device_and_dtype_and_refuses_full_without_a_model():
    import torch

    from storysdk.runtime import resolve

    r = resolve("generator 'x'", preset="tiny", model=None, device="cpu", dtype="bf16")
    assert (r.preset, r.device, r.dtype) == ("tiny", torch.device("cpu"), torch.bfloat16)
    assert resolve("x", preset=None, model="some/model", device="cpu", dtype=None).preset == "full"
    with pytest.raises(ConfigError, match=r"generator 'x': the real weights need a local checkpoint folder"):
        resolve("generator 'x'", preset="full", model=None, device="cpu", dtype=None, needs_model=True)
    with pytest.raises(ConfigError, match="preset 'huge' is unknown"):
        resolve("x", preset="huge", model=None, device="cpu", dtype=None)


def test_load_state_dict_accounts_for_every_key():
    import torch

    from storysdk import CheckpointError
    from storysdk.runtime import load_state_dict

    def net():
        m = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
        m.register_buffer("scale", torch.ones(1))
        return m

    src = net()
    state = {k: v + 1 for k, v in src.state_dict().items()}
    dst = net()
    load_state_dict(dst, state, source="full.safetensors")
    assert all(torch.equal(dst.state_dict()[k], state[k]) for k in state)

    partial = {k: v for k, v in state.items() if k != "1.bias"}
    with pytest.raises(CheckpointError, match="full.safetensors does not match Sequential") as err:
        load_state_dict(net(), {**partial, "extra.weight": torch.zeros(1)}, source="full.safetensors")
    assert err.value.missing == ["1.bias"] and err.value.unexpected == ["extra.weight"]

    no_scale = {k: v for k, v in state.items() if k != "scale"}
    kept = net()
    load_state_dict(kept, no_scale, source="s", ignore_missing=("scale",))  # named as expected-missing
    assert torch.equal(kept.scale, torch.ones(1)) and torch.equal(kept[1].bias, state["1.bias"])

    wrong = dict(state, **{"0.weight": torch.zeros(4, 2)})
    with pytest.raises(CheckpointError, match=r"0.weight: checkpoint \(4, 2\) vs model \(3, 2\)"):
        load_state_dict(net(), wrong, source="s")


def test_load_safetensors_names_a_missing_or_broken_file(tmp_path):
    import torch
    from safetensors.torch import save_file

    from storysdk import CheckpointError
    from storysdk.runtime import load_safetensors

    good = tmp_path / "good.safetensors"
    save_file({"w": torch.arange(3.0)}, str(good))
    assert torch.equal(load_safetensors(good)["w"], torch.arange(3.0))
    with pytest.raises(CheckpointError, match=r"unet file '.*nope.safetensors' does not exist"):
        load_safetensors(tmp_path / "nope.safetensors", what="unet")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(good.read_bytes()[:20])
    with pytest.raises(CheckpointError, match=r"broken.safetensors' is not a readable safetensors file"):
        load_safetensors(broken)
