"""The CSA processor against an independent reference computation (docs/storydiffusion.md §1.4-§1.8)."""

from __future__ import annotations

import random

import pytest
import torch
from sd_helpers import reference_attention
from diffusers.models.attention_processor import Attention

from storysdk.errors import ComponentError, ConfigError
from storysdk_storydiffusion.attention import ConsistentSelfAttnProcessor
from storysdk_storydiffusion.state import CSAConfig, ConsistencyState, Row, TokenBank

C = 16
H = W = 128  # n32 = 16 tokens, n64 = 64 tokens
ALWAYS = dict(warmup_steps=1, bypass_early=0.0, bypass_late=0.0)  # CSA on every call after step 0


def make_attn(seed: int = 0) -> Attention:
    torch.manual_seed(seed)
    return Attention(query_dim=C, heads=2, dim_head=8, bias=True).eval()


def at_step(state: ConsistencyState, step: int) -> None:
    if step:
        state.on_step_end(step - 1)


@pytest.mark.parametrize("n_tokens, rate_name", [(16, "sa32"), (64, "sa64")])
def test_write_phase_matches_reference(n_tokens: int, rate_name: str) -> None:
    attn = make_attn()
    state = ConsistencyState(CSAConfig(sa32=0.5, sa64=0.5, **ALWAYS), height=H, width=W, seed=3)
    proc = ConsistentSelfAttnProcessor(state, "up_blocks.0.attentions.0.transformer_blocks.0.attn1.processor")
    ids = 3
    state.begin_call([Row.write("A")] * ids)
    at_step(state, 1)
    hs = torch.randn(2 * ids, n_tokens, C, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = proc(attn, hs.clone())
        idx = state.sampled_indices("A", n_tokens)
        assert len(idx) == ids
        x = hs.view(2, ids, n_tokens, C)
        for i in range(ids):
            assert 0 < idx[i].numel() < n_tokens  # a Bernoulli(0.5) sample of this image's tokens
            for half in range(2):
                others = [x[half, j, idx[j]] for j in range(ids) if j != i]
                kv = torch.cat(others + [x[half, i]], dim=0)
                want = reference_attention(attn, x[half, i], kv)
                got = out[half * ids + i]
                torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        # §1.5 step 2: the bank holds each image's sampled tokens, both CFG halves, as (2, k_i, C)
        banked = state.bank.get("A", 1, proc.layer)
        for i in range(ids):
            assert banked[i].shape == (2, idx[i].numel(), C)
            assert torch.equal(banked[i], x[:, i, idx[i]])
    assert state.csa_calls == 1


def test_cfg_halves_are_kept_apart() -> None:
    attn = make_attn()
    state = ConsistencyState(CSAConfig(**ALWAYS), height=H, width=W, seed=0)
    proc = ConsistentSelfAttnProcessor(state, "up_blocks.1.x.attn1.processor")
    state.begin_call([Row.write("A")] * 2)
    at_step(state, 1)
    hs = torch.randn(4, 64, C, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a = proc(attn, hs.clone())
        changed = hs.clone()
        changed[1] += 5.0  # the uncond half of image 1
        b = proc(attn, changed)
    # the cond half (rows 2, 3) never sees uncond tokens (§1.8)
    assert torch.equal(a[2:], b[2:])
    assert not torch.allclose(a[0], b[0])  # image 0's uncond half does see image 1's uncond tokens


def test_read_phase_matches_reference() -> None:
    attn = make_attn(1)
    state = ConsistencyState(CSAConfig(sa32=0.6, sa64=0.4, **ALWAYS), height=H, width=W, seed=5)
    layer = "up_blocks.0.attentions.1.transformer_blocks.0.attn1.processor"
    proc = ConsistentSelfAttnProcessor(state, layer)
    n = 16
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for char in ("A", "B"):  # two write phases fill the bank for step 2
            state.begin_call([Row.write(char)] * 2)
            at_step(state, 2)
            proc(attn, torch.randn(4, n, C, generator=g))
        rows = [Row.read(["A"]), Row.plain(), Row.read(["A", "B"]), Row.read([])]
        state.begin_call(rows)
        at_step(state, 2)
        hs = torch.randn(2 * len(rows), n, C, generator=g)
        out = proc(attn, hs.clone())
    x = hs.view(2, len(rows), n, C)
    bank_a = state.bank.get("A", 2, layer)
    bank_b = state.bank.get("B", 2, layer)
    refs = {0: bank_a, 1: [], 2: bank_a + bank_b, 3: []}
    for r in range(len(rows)):
        for half in range(2):
            kv = torch.cat([t[half] for t in refs[r]] + [x[half, r]], dim=0)
            want = reference_attention(attn, x[half, r], kv)
            torch.testing.assert_close(out[half * len(rows) + r], want, atol=1e-5, rtol=1e-5)


def test_read_uses_the_bank_of_the_same_step() -> None:
    attn = make_attn()
    state = ConsistencyState(CSAConfig(**ALWAYS), height=H, width=W, seed=1)
    layer = "up_blocks.0.a.attn1.processor"
    proc = ConsistentSelfAttnProcessor(state, layer)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        state.begin_call([Row.write("A")] * 2)
        for step in range(3):
            at_step(state, step)
            proc(attn, torch.randn(4, 16, C, generator=g))
        assert state.bank.steps("A") == [0, 1, 2]  # cached every step, also the warm-up step 0
        state.begin_call([Row.read(["A"])])
        state.on_step_end(1)  # step 2
        hs = torch.randn(2, 16, C, generator=g)
        out = proc(attn, hs.clone())
    kv = torch.cat([t[1] for t in state.bank.get("A", 2, layer)] + [hs[1]], dim=0)
    torch.testing.assert_close(out[1], reference_attention(attn, hs[1], kv), atol=1e-5, rtol=1e-5)


def test_fresh_sample_each_step_shared_within_a_step() -> None:
    state = ConsistencyState(CSAConfig(), height=H, width=W, seed=0)
    state.begin_call([Row.write("A")] * 2)
    s1 = state.sampled_indices("A", 64)
    assert state.sampled_indices("A", 64) is s1  # every layer of the step sees the same sample
    state.on_step_end(0)
    s2 = state.sampled_indices("A", 64)
    assert any(not torch.equal(a, b) for a, b in zip(s1, s2))
    # re-seeded at every call (upstream re-seeds before every pipeline call, §2)
    state.begin_call([Row.write("A")] * 2)
    assert all(torch.equal(a, b) for a, b in zip(state.sampled_indices("A", 64), s1))


def test_bypass_schedule_replays_an_independent_random() -> None:
    cfg = CSAConfig(warmup_steps=2, bypass_early=0.3, bypass_late=0.1, bypass_switch_step=4)
    state = ConsistencyState(cfg, height=H, width=W, seed=11)
    state.begin_call([Row.write("A")] * 2)
    got = []
    for step in range(7):
        if step:
            state.on_step_end(step - 1)
        got.append([state.use_csa() for _ in range(5)])
    rng = random.Random(11)  # §1.7: step < warmup plain (no draw), then p=0.3 before step 4, 0.1 after
    want = []
    for step in range(7):
        if step < 2:
            want.append([False] * 5)
        else:
            p = 0.3 if step < 4 else 0.1
            want.append([rng.random() > p for _ in range(5)])
    assert got == want


def test_plain_outside_a_call_and_with_a_mask() -> None:
    from diffusers.models.attention_processor import AttnProcessor2_0

    attn = make_attn()
    state = ConsistencyState(CSAConfig(**ALWAYS), height=H, width=W)
    proc = ConsistentSelfAttnProcessor(state, "up_blocks.0.x.attn1.processor")
    hs = torch.randn(2, 16, C)
    mask = torch.zeros(2, 1, 16)
    mask[:, :, :4] = -1e4
    with torch.no_grad():
        assert torch.equal(proc(attn, hs, attention_mask=mask), AttnProcessor2_0()(attn, hs, attention_mask=mask))
        state.begin_call([Row.write("A")])
        with pytest.raises(ConfigError, match="mask"):
            proc(attn, torch.randn(2, 16, C), attention_mask=mask)
        with pytest.raises(ComponentError, match="cross-attention"):
            proc(attn, hs, encoder_hidden_states=hs)
        with pytest.raises(ComponentError, match="tokens"):
            proc(attn, torch.randn(2, 15, C))
        with pytest.raises(ConfigError, match="CFG-doubled"):
            proc(attn, torch.randn(3, 16, C))


def test_contract_4d_input_norms_residual_rescale() -> None:
    torch.manual_seed(0)
    attn = Attention(
        query_dim=C, heads=2, dim_head=8, bias=True, norm_num_groups=4,
        residual_connection=True, rescale_output_factor=2.0,
    ).eval()
    state = ConsistencyState(CSAConfig(**ALWAYS), height=H, width=W, seed=2)
    proc = ConsistentSelfAttnProcessor(state, "up_blocks.0.x.attn1.processor")
    state.begin_call([Row.write("A")] * 2)
    at_step(state, 1)
    hs = torch.randn(4, C, 4, 4)  # 16 tokens, 4-D as a VAE-style attention block gets them
    with torch.no_grad():
        out = proc(attn, hs.clone())
        tokens = attn.group_norm(hs.view(4, C, 16)).transpose(1, 2).reshape(2, 2, 16, C)
        idx = state.sampled_indices("A", 16)
        for i in range(2):
            for half in range(2):
                kv = torch.cat([tokens[half, 1 - i, idx[1 - i]], tokens[half, i]], dim=0)
                want = reference_attention(attn, tokens[half, i], kv).T.reshape(C, 4, 4)
                want = (want + hs[half * 2 + i]) / 2.0
                torch.testing.assert_close(out[half * 2 + i], want, atol=1e-5, rtol=1e-5)


def test_bank_device_limit_and_lockstep_window() -> None:
    x = torch.randn(2, 5, C)
    bank = TokenBank(device="cpu", max_steps=1)
    bank.put("A", 0, "l", [x])
    bank.put("A", 1, "l", [x])
    assert bank.steps("A") == [1]  # bounded: only the current step is held
    assert bank.nbytes() == x.numel() * 4
    assert bank.peak_bytes == x.numel() * 4
    limited = TokenBank(limit_bytes=x.numel() * 4 + 1)
    limited.put("A", 0, "l", [x])
    with pytest.raises(ConfigError, match="lockstep"):
        limited.put("A", 1, "l", [x])
    with pytest.raises(ComponentError, match="id frames"):
        bank.get("B", 0, "l")


def test_bad_config_and_sizes() -> None:
    with pytest.raises(ConfigError, match="sa32"):
        CSAConfig(sa32=1.5)
    with pytest.raises(ConfigError, match="bypass_late"):
        CSAConfig(bypass_late=-0.1)
    with pytest.raises(ConfigError, match="multiple of 32"):
        ConsistencyState(height=100, width=128)
    state = ConsistencyState(height=64, width=64)
    with pytest.raises(ConfigError, match="no id frames"):
        state.begin_call([Row.read(["Z"])])
