"""ViT, resamplers, perceiver and preprocessing against reference computations written here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from storysdk.errors import ConfigError
from storysdk_seed_story.configs import TINY, PerceiverConfig
from storysdk_seed_story.constants import CLIP_MEAN, CLIP_STD
from storysdk_seed_story.perceiver import PerceiverResampler
from storysdk_seed_story.preprocess import check_image, preprocess
from storysdk_seed_story.resampler import Resampler, resize_positions, sincos_2d


def ref_sincos(dim: int, grid: int) -> np.ndarray:
    """§9, element by element: channels [0, dim/2) encode the column x, [dim/2, dim) the row y;
    each half is sin then cos with omega_i = 10000^(-i/(dim/4))."""
    q = dim // 4
    out = np.zeros((grid * grid, dim))
    for row in range(grid):
        for col in range(grid):
            for i in range(q):
                w = 10000.0 ** (-i / q)
                out[row * grid + col, i] = math.sin(col * w)
                out[row * grid + col, q + i] = math.cos(col * w)
                out[row * grid + col, 2 * q + i] = math.sin(row * w)
                out[row * grid + col, 3 * q + i] = math.cos(row * w)
    return out


def test_sincos_table_matches_spec_order():
    np.testing.assert_allclose(sincos_2d(16, 5), ref_sincos(16, 5), atol=1e-6)


def test_position_resize_bicubic():
    table = torch.randn(64, 8)
    assert resize_positions(table, 64) is table
    out = resize_positions(table, 256)
    ref = F.interpolate(table.reshape(1, 8, 8, 8).permute(0, 3, 1, 2), size=(16, 16), mode="bicubic",
                        align_corners=False).permute(0, 2, 3, 1).reshape(256, 8)
    torch.testing.assert_close(out, ref)
    const = torch.full((256, 4), 0.25)
    torch.testing.assert_close(resize_positions(const, 64), torch.full((64, 4), 0.25))


def ref_mha(q, k, v, in_w, in_b, out_w, out_b, heads):
    """Plain multi-head attention: [all q; all k; all v] rows of nn.MultiheadAttention."""
    d = q.shape[-1]
    wq, wk, wv = in_w.split(d)
    bq, bk, bv = in_b.split(d)
    Q, K, V = q @ wq.T + bq, k @ wk.T + bk, v @ wv.T + bv
    hd = d // heads
    outs = []
    for h in range(heads):
        s = slice(h * hd, (h + 1) * hd)
        att = torch.softmax(Q[:, s] @ K[:, s].T / math.sqrt(hd), dim=-1)
        outs.append(att @ V[:, s])
    return torch.cat(outs, -1) @ out_w.T + out_b


def ref_resampler(r: Resampler, x: torch.Tensor, eps: float) -> torch.Tensor:
    """§1.2 forward for one sample, by hand: keys LN(kv_proj(x)) + resized pos, values LN(x), queries LN(query) + pos."""
    kv = x if isinstance(r.kv_proj, torch.nn.Identity) else x @ r.kv_proj.weight.T
    kv = F.layer_norm(kv, kv.shape[-1:], r.ln_kv.weight, r.ln_kv.bias, eps)
    n = x.shape[0]
    g = r.grid
    pos = torch.from_numpy(ref_sincos(r.pos_embed.shape[1], g)).float()
    side = int(math.isqrt(n))
    pos_k = F.interpolate(pos.reshape(1, g, g, -1).permute(0, 3, 1, 2), size=(side, side), mode="bicubic",
                          align_corners=False).permute(0, 2, 3, 1).reshape(n, -1) if side != g else pos
    q = F.layer_norm(r.query, r.query.shape[-1:], r.ln_q.weight, r.ln_q.bias, eps) + pos
    a = r.attn
    return ref_mha(q, kv + pos_k, kv, a.in_proj_weight, a.in_proj_bias, a.out_proj.weight, a.out_proj.bias, a.num_heads)


@pytest.mark.parametrize("grid,tokens", [(8, 256), (16, 64)])  # input and output resampler (§1.2)
def test_mllm_resamplers_against_reference(lm, grid, tokens):
    r = lm.input_resampler if grid == 8 else lm.output_resampler
    torch.manual_seed(1)
    x = torch.randn(2, tokens, 64)
    with torch.no_grad():
        out = r(x)
        assert out.shape == (2, grid * grid, 64)
        for b in range(2):
            torch.testing.assert_close(out[b], ref_resampler(r, x[b], 1e-5), atol=2e-5, rtol=1e-4)


def ref_vit(vit, pixels: torch.Tensor) -> torch.Tensor:
    """§1.1 + §9 by hand, one image: per-head fused in_proj, pre-LN blocks, attention pool, ln_post, proj."""
    sd = {k: v.detach() for k, v in vit.state_dict().items()}
    cfg = vit.config
    x = F.conv2d(pixels[None], sd["conv1.weight"], stride=cfg.patch_size)[0]  # (width, 32, 32)
    x = x.flatten(1).T
    pos = sd["positional_embedding"].reshape(1, 16, 16, -1).permute(0, 3, 1, 2)
    pos = F.interpolate(pos, size=(32, 32), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(1024, -1)
    x = F.layer_norm(x + pos, (cfg.width,), sd["ln_pre.weight"], sd["ln_pre.bias"], 1e-6)
    hd = cfg.width // cfg.heads
    for i in range(cfg.layers):
        p = f"transformer.resblocks.{i}."
        h = F.layer_norm(x, (cfg.width,), sd[p + "ln_1.weight"], sd[p + "ln_1.bias"], 1e-6)
        w = sd[p + "attn.in_proj.weight"].reshape(cfg.heads, 3, hd, cfg.width)  # per head: q, k, v rows (§9)
        b = sd[p + "attn.in_proj.bias"].reshape(cfg.heads, 3, hd)
        heads = []
        for j in range(cfg.heads):
            q, k, v = (h @ w[j, t].T + b[j, t] for t in range(3))
            heads.append(torch.softmax(q @ k.T / math.sqrt(hd), -1) @ v)
        x = x + torch.cat(heads, -1) @ sd[p + "attn.out_proj.weight"].T + sd[p + "attn.out_proj.bias"]
        h = F.layer_norm(x, (cfg.width,), sd[p + "ln_2.weight"], sd[p + "ln_2.bias"], 1e-6)
        h = F.gelu(h @ sd[p + "mlp.c_fc.weight"].T + sd[p + "mlp.c_fc.bias"])
        x = x + h @ sd[p + "mlp.c_proj.weight"].T + sd[p + "mlp.c_proj.bias"]
    pooled = ref_resampler(vit.attn_pool, x, 1e-6)
    pooled = F.layer_norm(pooled, (cfg.output_dim,), sd["ln_post.weight"], sd["ln_post.bias"], 1e-6)
    return pooled @ sd["proj"]


def test_vit_against_reference_and_in_proj_layout(vit, start_image):
    pixels = preprocess([start_image])
    with torch.no_grad():
        out = vit(pixels)
        ref = ref_vit(vit, pixels[0])
    assert out.shape == (1, 256, TINY.vit.output_dim)
    torch.testing.assert_close(out[0], ref, atol=1e-4, rtol=1e-4)
    # Reading the fused projection as [all q; all k; all v] must change the features (§9 trap).
    state = vit.state_dict()
    w = state["transformer.resblocks.0.attn.in_proj.weight"]
    cfg = vit.config
    hd = cfg.width // cfg.heads
    swapped = w.reshape(cfg.heads, 3, hd, cfg.width).transpose(0, 1).reshape(3 * cfg.width, cfg.width)
    with torch.no_grad():
        vit.transformer.resblocks[0].attn.in_proj.weight.copy_(swapped)
        other = vit(pixels)
        vit.transformer.resblocks[0].attn.in_proj.weight.copy_(w)
    assert (other - out).abs().max() > 1e-3


def ref_perceiver(p: PerceiverResampler, x: torch.Tensor, token_axis: bool = True):
    """§1.5 by hand for one sample (L2 norm over the TOKEN axis, eps 1e-12)."""
    cfg = p.config
    norm = x.norm(dim=0 if token_axis else 1, keepdim=True).clamp_min(1e-12)
    x = (x / norm) @ p.proj_in.weight.T + p.proj_in.bias
    lat = p.latents[0]

    def ln(t, m):
        return F.layer_norm(t, t.shape[-1:], m.weight, m.bias, 1e-5)

    for attn, ff in p.layers:
        xn, ln_ = ln(x, attn.norm1), ln(lat, attn.norm2)
        q = ln_ @ attn.to_q.weight.T
        kv = torch.cat([xn, ln_]) @ attn.to_kv.weight.T
        inner = cfg.heads * cfg.dim_head
        k, v = kv[:, :inner], kv[:, inner:]
        outs = []
        for h in range(cfg.heads):
            s = slice(h * cfg.dim_head, (h + 1) * cfg.dim_head)
            outs.append(torch.softmax(q[:, s] @ k[:, s].T / math.sqrt(cfg.dim_head), -1) @ v[:, s])
        lat = lat + torch.cat(outs, -1) @ attn.to_out.weight.T
        h = ln(lat, ff[0]) @ ff[1].weight.T
        lat = lat + F.gelu(h) @ ff[3].weight.T
    lat = ln(lat, p.norm_out)
    prompt = torch.cat([lat @ p.unet_proj_1.weight.T + p.unet_proj_1.bias, lat @ p.unet_proj_2.weight.T + p.unet_proj_2.bias], -1)
    pool = p.unet_attnpool
    seq = torch.cat([lat.mean(0, keepdim=True), lat]) + pool.positional_embedding
    hd = cfg.dim // cfg.heads
    Q = seq[:1] @ pool.q_proj.weight.T + pool.q_proj.bias
    K = seq @ pool.k_proj.weight.T + pool.k_proj.bias
    V = seq @ pool.v_proj.weight.T + pool.v_proj.bias
    outs = []
    for h in range(cfg.heads):
        s = slice(h * hd, (h + 1) * hd)
        outs.append(torch.softmax(Q[:, s] @ K[:, s].T / math.sqrt(hd), -1) @ V[:, s])
    pooled = torch.cat(outs, -1) @ pool.c_proj.weight.T + pool.c_proj.bias
    return prompt, pooled[0]


def test_perceiver_against_reference_token_axis_norm():
    cfg = PerceiverConfig(dim=32, depth=2, dim_head=8, heads=4, embedding_dim=64, output1_dim=24, output2_dim=40)
    torch.manual_seed(0)
    p = PerceiverResampler(cfg).eval()
    x = torch.randn(2, 256, 64) * 3 + 1
    with torch.no_grad():
        prompt, pooled = p(x)
        assert prompt.shape == (2, 64, 64) and pooled.shape == (2, 40)
        for b in range(2):
            rp, rpool = ref_perceiver(p, x[b])
            torch.testing.assert_close(prompt[b], rp, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(pooled[b], rpool, atol=1e-5, rtol=1e-4)
        wrong, _ = ref_perceiver(p, x[0], token_axis=False)
    assert (wrong - prompt[0]).abs().max() > 1e-3  # the normalisation axis matters (§1.5)


def test_preprocess_solid_colour_and_bad_images():
    img = Image.new("RGB", (300, 200), (10, 128, 250))
    px = preprocess([img])
    assert px.shape == (1, 3, 448, 448) and px.dtype == torch.float32
    for c, value in enumerate((10, 128, 250)):
        expected = (value / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c]
        assert torch.allclose(px[0, c], torch.full((448, 448), expected), atol=1e-5)
    with pytest.raises(ConfigError, match="convert\\('RGB'\\)"):
        check_image(Image.new("RGBA", (64, 64)))
    with pytest.raises(ConfigError, match="at least 14x14"):
        check_image(Image.new("RGB", (10, 64)))
    with pytest.raises(ConfigError, match="PIL image"):
        check_image(np.zeros((64, 64, 3)))
