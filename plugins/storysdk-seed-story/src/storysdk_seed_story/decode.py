"""One story step's decoding (docs/seed-story.md §2 "Decoding" and "Regression"), shared by both cache modes.

Greedy text with the free-mode logits processor; when the model starts the image chain
(``<img>``, or an ``<img_k>`` whose 0.0 logit won), the rest of the chain up to ``</img>`` is
forced. ``block="one-pass"`` feeds the forced tokens in ONE forward pass (equivalent because
attention is causal, §2 pseudocode); ``block="stepwise"`` feeds them one per forward call, as
upstream's ``generate`` does (kept for the equivalence test and the benchmark).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import attrs
import torch

from .constants import NUM_IMG_TOKENS
from .mllm import MLLM

__all__ = ["BLOCK_MODES", "Decoded", "Report", "decode_step"]

BlockMode = Literal["one-pass", "stepwise"]
BLOCK_MODES = ("one-pass", "stepwise")

#: ``report(done, total)`` before every LLM forward call: tokens written so far (with the ones
#: about to be fed) of the step's budget. It is the cancellation point: it may raise.
Report = Callable[[int, int], None]


@attrs.define
class Decoded:
    """What one step produced: generated ids, hidden states of every fed id, and the image."""

    gen_ids: list[int]
    hidden: torch.Tensor  # (n_fed, H): row j is the state at gen_ids[j]
    logits: torch.Tensor  # logits after the last fed token
    next_pos: int
    chain_start: int | None  # index in gen_ids where the forced chain began
    image_hidden: torch.Tensor | None  # (64, H) states at the 64 image-token positions

    @property
    def text_ids(self) -> list[int]:
        return self.gen_ids if self.chain_start is None else self.gen_ids[: self.chain_start]


def decode_step(
    lm: MLLM,
    cache: Any,
    logits: torch.Tensor,
    pos: int,
    max_new_tokens: int,
    block: BlockMode = "one-pass",
    max_text_tokens: int | None = None,
    report: Report | None = None,
) -> Decoded:
    """Decode from ``logits`` (the prediction after position ``pos-1``) until EOS, an image or the budget.

    ``max_text_tokens`` (a deviation, ``None`` in faithful mode): once that many text tokens
    are written without an image, ``<img>`` is forced. ``report(done, total)`` is called
    before every forward call (``total``: ``max_new_tokens``); what it raises stops decoding
    within one token (the KV cache then holds the tokens fed so far).
    """
    chain = list(lm.ids.chain)
    gen: list[int] = []
    states: list[torch.Tensor] = []
    chain_start: int | None = None
    while len(gen) < max_new_tokens:
        t = lm.pick(logits)
        if max_text_tokens is not None and len(gen) >= max_text_tokens:
            t = lm.ids.boi
        if t == lm.ids.eos:
            gen.append(t)  # kept in the ids (decoded, then stripped as a tag); never fed
            break
        if t in chain[:-1]:  # <img> or <img_k>: force the rest of the chain (§2)
            chain_start = len(gen)
            forced = chain[chain.index(t):][: max_new_tokens - len(gen)]  # the 500-token budget includes it
            if block == "one-pass":
                if report is not None:
                    report(len(gen) + len(forced), max_new_tokens)
                h, logits = lm.forward(lm.embed_ids(forced), cache, pos)
                states.append(h)
            else:
                for k, f in enumerate(forced):
                    if report is not None:
                        report(len(gen) + k + 1, max_new_tokens)
                    h, logits = lm.forward(lm.embed_ids([f]), cache, pos + k)
                    states.append(h)
            gen.extend(forced)
            pos += len(forced)
            break
        if report is not None:
            report(len(gen) + 1, max_new_tokens)
        h, logits = lm.forward(lm.embed_ids([t]), cache, pos)
        states.append(h)
        gen.append(t)
        pos += 1
        if t == lm.ids.eoi:  # a bare </img> whose 0.0 logit won: the step ends here
            break
    hidden = torch.cat(states, dim=0) if states else torch.zeros(0, 0)
    image = _image_hidden(lm, gen, hidden)
    if image is not None and chain_start is None:  # bare </img>: its 64 predecessors are the image
        chain_start = max(i for i, t in enumerate(gen) if t == lm.ids.eoi) - NUM_IMG_TOKENS
    return Decoded(gen, hidden, logits, pos, chain_start, image)


def _image_hidden(lm: MLLM, gen: list[int], hidden: torch.Tensor) -> torch.Tensor | None:
    """The states at ``eoi-64 : eoi`` for the LAST ``</img>`` among the generated ids (§2 steps 2-3)."""
    eois = [i for i, t in enumerate(gen) if t == lm.ids.eoi]
    if not eois or eois[-1] < NUM_IMG_TOKENS:
        return None  # no image, or fewer than 64 generated positions before it
    eoi = eois[-1]
    return hidden[eoi - NUM_IMG_TOKENS : eoi]
