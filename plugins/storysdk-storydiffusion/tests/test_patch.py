"""CSA installed on the tiny SDXL UNet: which layers, token counts per resolution, bank size (§1.2, §1.9)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0
from sd_helpers import unet_inputs

from storysdk.errors import ComponentError, ConfigError
from storysdk_storydiffusion.attention import ConsistentSelfAttnProcessor
from storysdk_storydiffusion.patch import install_csa
from storysdk_storydiffusion.state import CSAConfig, ConsistencyState, Row

SIZE = 64  # pixels; latent 8x8; up_blocks.0 at 1/32 -> 2x2 tokens, up_blocks.1 at 1/16 -> 4x4
LATENT = SIZE // 8


def expected_layers(unet: Any) -> dict[int, tuple[int, int]]:
    """{up block: (self-attention layers, channels)} read off the UNet config, independently of the code."""
    cfg = unet.config
    per_block = list(reversed(cfg.transformer_layers_per_block))
    channels = list(reversed(cfg.block_out_channels))
    out = {}
    for b, kind in enumerate(cfg.up_block_types):
        if kind.startswith("CrossAttn"):
            out[b] = ((cfg.layers_per_block + 1) * per_block[b], channels[b])
    return out


def run_steps(unet: Any, state: ConsistencyState, rows: list[Row], steps: int, seed: int = 0) -> list[torch.Tensor]:
    """Call the UNet once per step with the CFG-doubled batch, advancing the step as a pipeline callback would."""
    state.begin_call(rows)
    outs = []
    with torch.no_grad():
        for step in range(steps):
            outs.append(unet(**unet_inputs(unet, 2 * len(rows), LATENT, seed=seed + step)).sample)
            state.on_step_end(step)
    state.end_call()
    return outs


def plain_outputs(unet: Any, rows: int, steps: int, seed: int = 0) -> list[torch.Tensor]:
    unet.set_attn_processor(AttnProcessor2_0())
    with torch.no_grad():
        return [unet(**unet_inputs(unet, 2 * rows, LATENT, seed=seed + s)).sample for s in range(steps)]


def test_only_up_block_self_attention_is_patched(tiny_unet: Any) -> None:
    state = ConsistencyState(height=SIZE, width=SIZE)
    with install_csa(tiny_unet, state) as handle:
        procs = tiny_unet.attn_processors
        csa = sorted(n for n, p in procs.items() if isinstance(p, ConsistentSelfAttnProcessor))
        assert csa == sorted(handle.layers)
        assert all(n.startswith("up_blocks.") and n.endswith("attn1.processor") for n in csa)
        assert len(csa) == sum(n for n, _ in expected_layers(tiny_unet).values())
        others = [p for n, p in procs.items() if n not in set(csa)]
        assert others and all(type(p) is AttnProcessor2_0 for p in others)
    assert not any(isinstance(p, ConsistentSelfAttnProcessor) for p in tiny_unet.attn_processors.values())


@pytest.mark.parametrize("sa32, sa64", [(1.0, 0.0), (0.0, 1.0)])
def test_token_counts_per_resolution(tiny_unet: Any, sa32: float, sa64: float) -> None:
    state = ConsistencyState(CSAConfig(sa32=sa32, sa64=sa64), height=SIZE, width=SIZE, seed=0)
    with install_csa(tiny_unet, state):
        run_steps(tiny_unet, state, [Row.write("A")] * 2, steps=2)
    n32, n64 = (SIZE // 32) ** 2, (SIZE // 16) ** 2
    for step in (0, 1):
        for layer, tokens in state.bank._data["A"][step].items():
            block = int(layer.split(".")[1])
            k = {0: n32 if sa32 else 0, 1: n64 if sa64 else 0}[block]  # the 1/32 layers use sa32 (§1.2)
            assert [t.shape[1] for t in tokens] == [k, k]


def test_bank_size_matches_the_formula(tiny_unet: Any) -> None:
    """§1.9: steps x id_length x sum over layers of 2·k·C elements (k = sampled tokens per image)."""
    steps, ids = 3, 3
    layers = expected_layers(tiny_unet)
    n = {0: (SIZE // 32) ** 2, 1: (SIZE // 16) ** 2}
    state = ConsistencyState(CSAConfig(sa32=1.0, sa64=1.0), height=SIZE, width=SIZE)
    with install_csa(tiny_unet, state):
        run_steps(tiny_unet, state, [Row.write("A")] * ids, steps=steps)
    exact = steps * ids * sum(count * 2 * n[b] * ch for b, (count, ch) in layers.items())
    assert state.bank.numel() == exact
    assert state.bank.nbytes() == exact * 4  # float32

    # sampled mode, sa = 0.5: k ~ Binomial(N, 0.5); the element count follows the formula with
    # k = sa·N in expectation. Over 5 steps x 3 images x 2 resolutions the relative sd is < 4 %.
    steps = 5
    state = ConsistencyState(CSAConfig(sa32=0.5, sa64=0.5), height=SIZE, width=SIZE, seed=7)
    with install_csa(tiny_unet, state):
        run_steps(tiny_unet, state, [Row.write("A")] * ids, steps=steps)
    expected = steps * ids * sum(count * 2 * 0.5 * n[b] * ch for b, (count, ch) in layers.items())
    assert abs(state.bank.numel() - expected) < 0.2 * expected
    # exact count from the samples themselves: every layer of a step shares the step's sample
    for step in range(steps):
        per_layer = state.bank._data["A"][step]
        for b in layers:
            ks = {tuple(t.shape[1] for t in ts) for name, ts in per_layer.items() if name.startswith(f"up_blocks.{b}.")}
            assert len(ks) == 1


def test_sa_zero_and_forced_bypass_equal_plain_attention(tiny_unet: Any) -> None:
    rows = [Row.write("A")] * 2
    want = plain_outputs(tiny_unet, 2, steps=3)
    for cfg in (CSAConfig(sa32=0.0, sa64=0.0), CSAConfig(bypass_early=1.0, bypass_late=1.0)):
        state = ConsistencyState(cfg, height=SIZE, width=SIZE)
        with install_csa(tiny_unet, state):
            got = run_steps(tiny_unet, state, rows, steps=3)
            # and the read phase: frames reading the bank, plus an [NC] frame
            got_read = run_steps(tiny_unet, state, [Row.read(["A"]), Row.plain()], steps=3)
        assert all(torch.equal(a, b) for a, b in zip(got, want))
        assert all(torch.equal(a, b) for a, b in zip(got_read, want))
    # and the check is not vacuous: with sharing on, the outputs differ from plain attention
    state = ConsistencyState(CSAConfig(sa32=0.5, sa64=0.5, bypass_early=0.0), height=SIZE, width=SIZE)
    with install_csa(tiny_unet, state):
        shared = run_steps(tiny_unet, state, rows, steps=3)
    assert torch.equal(shared[0], want[0])  # step 0 is plain (warm-up)
    assert not torch.allclose(shared[1], want[1])


def test_unet_call_checks(tiny_unet: Any) -> None:
    state = ConsistencyState(height=SIZE, width=SIZE)
    with install_csa(tiny_unet, state), torch.no_grad():
        state.begin_call([Row.write("A")] * 2)
        with pytest.raises(ConfigError, match="guidance"):
            tiny_unet(**unet_inputs(tiny_unet, 2, LATENT))  # no CFG: 2 rows in a batch of 2
        state.begin_call([Row.write("A")] * 2)
        tiny_unet(**unet_inputs(tiny_unet, 4, LATENT))
        with pytest.raises(ConfigError, match="twice"):
            tiny_unet(**unet_inputs(tiny_unet, 4, LATENT))  # a second call in the same step (Heun)
        state.end_call()


def _unet(**kw: Any) -> UNet2DConditionModel:
    base = dict(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        norm_num_groups=8, cross_attention_dim=16, attention_head_dim=2,
    )
    base.update(kw)
    return UNet2DConditionModel(**base)


def test_refuses_unets_it_cannot_patch() -> None:
    state = ConsistencyState(height=SIZE, width=SIZE)
    sd15_like = _unet(
        block_out_channels=(8, 8, 16, 16),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    )
    with pytest.raises(ComponentError, match="1/8"):
        install_csa(sd15_like, state)
    no_attention = _unet(
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D",) * 2,
        up_block_types=("UpBlock2D",) * 2,
        mid_block_type=None,
    )
    with pytest.raises(ComponentError, match="no self-attention"):
        install_csa(no_attention, state)
    with pytest.raises(ComponentError, match="UNet2DConditionModel"):
        install_csa(torch.nn.Linear(2, 2), state)


def test_full_size_sdxl_has_36_patched_layers() -> None:
    """§1.2: on SDXL, 30 layers at 1/32 (1280 channels) and 6 at 1/16 (640), built without memory."""
    from accelerate import init_empty_weights

    from storysdk_storydiffusion.full_size import SDXL_UNET_CONFIG
    from storysdk_storydiffusion.patch import check_unet, up_block_scales

    with init_empty_weights():
        unet = UNet2DConditionModel(**SDXL_UNET_CONFIG)
    names = check_unet(unet)
    assert len(names) == 36
    assert sum(n.startswith("up_blocks.0.") for n in names) == 30
    assert sum(n.startswith("up_blocks.1.") for n in names) == 6
    assert up_block_scales(unet) == {0: 32, 1: 16}
    assert expected_layers(unet) == {0: (30, 1280), 1: (6, 640)}
