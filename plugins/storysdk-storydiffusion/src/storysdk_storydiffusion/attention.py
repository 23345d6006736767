"""The Consistent Self-Attention processor (variant B, "index-gather", docs/storydiffusion.md §1.1).

:class:`ConsistentSelfAttnProcessor` is a diffusers attention processor for the ``attn1``
(self-attention) layers of an SDXL UNet's up blocks; :mod:`.patch` installs it. Per call:

1. the layer's input tokens are viewed as ``(2, rows, N, C)``: the two classifier-free-guidance
   halves are kept apart (§1.8);
2. for every write group (id frames of one character) the sampled tokens of each id image are
   cached in the bank for this step and layer, at every step, bypassed or not (§1.5 step 2);
3. the warm-up/bypass schedule (§1.7) decides between plain attention for the whole batch and
   the consistent path: an id image attends to the sampled tokens of the other id images of its
   character plus all its own tokens (§1.5 step 3); a read frame attends to the banked tokens of
   its characters for the same step plus its own tokens (§1.6); plain rows attend to themselves.

Keys and values are the layer's own ``to_k``/``to_v`` applied to those tokens; no weights are
added. This module imports torch; it is only imported once a model is built. The projections of the batch are computed once and gathered (``to_k`` acts token by
token, so this equals projecting the concatenated tokens as upstream does). The rest of the
``AttnProcessor2_0`` contract (``spatial_norm``, ``group_norm``, 4-D input, ``norm_q``/``norm_k``,
``residual_connection``, ``rescale_output_factor``) is kept; an ``attention_mask`` is honoured
on the plain path and refused on the consistent path (upstream silently drops it).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from storysdk.errors import ComponentError, ConfigError

from .state import ConsistencyState

__all__ = ["ConsistentSelfAttnProcessor", "attend"]


def attend(attn: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Multi-head scaled dot-product attention of projected ``(b, L, inner)`` tensors, as ``AttnProcessor2_0``."""
    b = query.shape[0]
    head_dim = key.shape[-1] // attn.heads
    q = query.reshape(b, -1, attn.heads, head_dim).transpose(1, 2)
    k = key.reshape(b, -1, attn.heads, head_dim).transpose(1, 2)
    v = value.reshape(b, -1, attn.heads, head_dim).transpose(1, 2)
    if attn.norm_q is not None:
        q = attn.norm_q(q)
    if attn.norm_k is not None:
        k = attn.norm_k(k)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False)
    return out.transpose(1, 2).reshape(b, -1, attn.heads * head_dim).to(q.dtype)


class ConsistentSelfAttnProcessor:
    """CSA for one self-attention layer named ``layer``, sharing the per-run ``state``.

    Outside a call with write or read rows (``state.active`` false) it is exactly diffusers'
    ``AttnProcessor2_0``.
    """

    def __init__(self, state: ConsistencyState, layer: str) -> None:
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.state = state
        self.layer = layer
        self._plain = AttnProcessor2_0()

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        state = self.state
        if encoder_hidden_states is not None:
            raise ComponentError(
                f"ConsistentSelfAttnProcessor is on {self.layer!r}, which received encoder states "
                "(a cross-attention layer); install it only on attn1 self-attention layers"
            )
        if not state.active:
            return self._plain(attn, hidden_states, None, attention_mask, temb)
        if attention_mask is not None:
            raise ConfigError(
                f"layer {self.layer!r} got a self-attention mask, which consistent self-attention "
                "cannot combine with the shared id-frame tokens; call the UNet without attention_mask"
            )
        residual = hidden_states
        x = hidden_states
        if attn.spatial_norm is not None:
            x = attn.spatial_norm(x, temb)
        input_ndim = x.ndim
        if input_ndim == 4:
            b4, c4, h4, w4 = x.shape
            x = x.view(b4, c4, h4 * w4).transpose(1, 2)
        if attn.group_norm is not None:
            x = attn.group_norm(x.transpose(1, 2)).transpose(1, 2)
        batch, n_tokens, channels = x.shape
        state.check_token_count(n_tokens, self.layer)
        rows = len(state.rows or ())
        if batch != 2 * rows:
            raise ConfigError(
                f"layer {self.layer!r} got a batch of {batch} for {rows} image(s); consistent "
                "self-attention needs the CFG-doubled batch (guidance > 1, docs/storydiffusion.md §1.3)"
            )
        xs = x.reshape(2, rows, n_tokens, channels)  # §1.5: (CFG half, image, token, channel)

        # §1.5 step 2: cache the sampled tokens of every id image, every step (bypassed or not)
        samples: dict[str, list[torch.Tensor]] = {}
        for char, positions in state.write_groups.items():
            idx = state.sampled_indices(char, n_tokens)
            idx = [i.to(x.device) for i in idx]
            samples[char] = idx
            state.bank.put(char, state.step, self.layer, [xs[:, p, i] for p, i in zip(positions, idx)])

        state.layer_calls += 1
        if not state.use_csa():  # §1.7 warm-up and random bypass
            return self._plain(attn, hidden_states, None, None, temb)

        refs = {chars: self._read_tokens(chars, x) for chars in state.read_groups}
        write_extra = {
            char: [sum(int(i.numel()) for j, i in enumerate(idx) if j != a) for a in range(len(idx))]
            for char, idx in samples.items()
        }
        shared = any(r.shape[1] for r in refs.values()) or any(
            n for counts in write_extra.values() for n in counts
        )
        if not shared:  # nothing to share (sa32 = sa64 = 0): exactly plain attention
            return self._plain(attn, hidden_states, None, None, temb)
        state.csa_calls += 1

        q = attn.to_q(x).reshape(2, rows, n_tokens, -1)
        k = attn.to_k(x).reshape(2, rows, n_tokens, -1)
        v = attn.to_v(x).reshape(2, rows, n_tokens, -1)
        inner = q.shape[-1]
        out = q.new_empty(q.shape)
        plain = list(state.plain_rows)

        for char, positions in state.write_groups.items():  # §1.5 step 3
            idx = samples[char]
            ks = [k[:, p, i] for p, i in zip(positions, idx)]
            vs = [v[:, p, i] for p, i in zip(positions, idx)]
            for a, p in enumerate(positions):
                if not write_extra[char][a]:
                    plain.append(p)
                    continue
                kk = torch.cat([t for j, t in enumerate(ks) if j != a] + [k[:, p]], dim=1)
                vv = torch.cat([t for j, t in enumerate(vs) if j != a] + [v[:, p]], dim=1)
                out[:, p] = attend(attn, q[:, p], kk, vv)

        for chars, positions in state.read_groups.items():  # §1.6, all frames of a group at once
            ref = refs[chars]
            if not ref.shape[1]:
                plain.extend(positions)
                continue
            g, n_ref = len(positions), ref.shape[1]
            rk = attn.to_k(ref).unsqueeze(1).expand(2, g, n_ref, inner)
            rv = attn.to_v(ref).unsqueeze(1).expand(2, g, n_ref, inner)
            kk = torch.cat([rk, k[:, positions]], dim=2).reshape(2 * g, n_ref + n_tokens, inner)
            vv = torch.cat([rv, v[:, positions]], dim=2).reshape(2 * g, n_ref + n_tokens, inner)
            qq = q[:, positions].reshape(2 * g, n_tokens, inner)
            out[:, positions] = attend(attn, qq, kk, vv).reshape(2, g, n_tokens, inner)

        if plain:
            plain.sort()
            g = len(plain)
            qq = q[:, plain].reshape(2 * g, n_tokens, inner)
            kk = k[:, plain].reshape(2 * g, n_tokens, inner)
            vv = v[:, plain].reshape(2 * g, n_tokens, inner)
            out[:, plain] = attend(attn, qq, kk, vv).reshape(2, g, n_tokens, inner)

        hs = out.reshape(batch, n_tokens, inner)
        hs = attn.to_out[0](hs)
        hs = attn.to_out[1](hs)
        if input_ndim == 4:
            hs = hs.transpose(-1, -2).reshape(b4, c4, h4, w4)
        if attn.residual_connection:
            hs = hs + residual
        return hs / attn.rescale_output_factor

    def _read_tokens(self, chars: tuple[str, ...], like: torch.Tensor) -> torch.Tensor:
        """The banked tokens of ``chars`` for this step and layer, as one ``(2, K, C)`` tensor (§1.6)."""
        state = self.state
        parts = [
            t.to(device=like.device, dtype=like.dtype)
            for c in chars
            for t in state.bank.get(c, state.step, self.layer)
        ]
        return torch.cat(parts, dim=1)

