"""The attention-sink cache of docs/seed-story.md §2 (``vis_george_sink.py``, ``cache_mode='img_head_tail'``).

When an image leaves the window, the KV cache keeps the first 4 tokens of the sequence (the
sink), 12 tokens around each evicted image's ``<img>`` (``boi-4 .. boi+7``), 12 around its
``</img>`` (``eoi-8 .. eoi+3``), accumulated over all evicted images, plus everything after
the last evicted image. Kept keys are re-indexed to contiguous positions by rotating them
with RoPE by (new position - old position), as StreamingLLM does; upstream's own rebuilt
cache is discarded by its script (§2), so this mode is the paper's, not the release's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .constants import HEAD_AFTER_BOI, HEAD_BEFORE_BOI, SINK_TOKENS, TAIL_AFTER_EOI, TAIL_BEFORE_EOI

__all__ = ["reindex_cache", "sink_positions"]


def sink_positions(total: int, evicted: Sequence[tuple[int, int]]) -> list[int]:
    """Sorted absolute positions kept in a sequence of ``total`` tokens whose images ``evicted``
    ((boi, eoi) pairs, oldest first) have left the window."""
    keep = set(range(min(SINK_TOKENS, total)))
    for boi, eoi in evicted:
        keep.update(range(boi - HEAD_BEFORE_BOI, boi + HEAD_AFTER_BOI + 1))
        keep.update(range(eoi - TAIL_BEFORE_EOI, eoi + TAIL_AFTER_EOI + 1))
    if evicted:
        keep.update(range(evicted[-1][1] + 1, total))
    else:
        keep.update(range(total))
    return sorted(p for p in keep if 0 <= p < total)


def reindex_cache(llm: Any, cache: Any, rows: Sequence[int]) -> Any:
    """A new ``DynamicCache`` holding cache rows ``rows`` (in order), keys moved to positions 0..len-1.

    Row ``r`` was stored at position ``r`` (the cache is always compact), so its keys are
    rotated by ``new - r``; values carry no position.
    """
    from transformers import DynamicCache
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    layers = cache.layers
    device = layers[0].keys.device
    index = torch.tensor(list(rows), dtype=torch.long, device=device)
    delta = (torch.arange(len(rows), device=device) - index)[None]
    data = []
    for layer in layers:
        k = layer.keys.index_select(2, index)
        v = layer.values.index_select(2, index)
        cos, sin = llm.model.rotary_emb(k.float(), delta)
        _, k_new = apply_rotary_pos_emb(k.float(), k.float(), cos, sin)
        data.append((k_new.to(k.dtype), v))
    return DynamicCache(ddp_cache_data=data)
