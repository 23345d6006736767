"""Greedy decoding of the planner LLM with a KV cache and AudioStory's query blocks (§1.4).

Upstream uses ``generate`` with two logits processors: after ``<t5>`` (or ``<t5_k>``, k < N-1)
the next token is forced to ``<t5_{k+1}>`` (then ``</t5>``), likewise for ``<aud>``; otherwise
the N + 1 query/closing ids of each block get logit 0 (a weak suppression). That spends
N + M + 2 decode steps per event on tokens whose values are known in advance.

:func:`greedy_decode` with ``one_pass=True`` (the default) appends the whole forced
continuation in **one** forward pass as soon as the model chooses a token that starts it;
under causal attention the hidden states are those of the forced single steps (the tests check
this against ``one_pass=False``, the upstream step-by-step behaviour). The hidden state kept for
each generated token is the last layer's (after the final RMSNorm) with that token as *input*,
the convention of upstream's concatenated ``generate`` hidden states.

Imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
import torch

from .grammar import SpecialIds

__all__ = ["DecodeResult", "greedy_decode", "teacher_force"]


@attrs.define
class DecodeResult:
    """Generated ids, the hidden state of each generated token fed back as input, why it stopped.

    ``hidden[j]`` belongs to ``ids[j]``; a final token that was never fed (``<|im_end|>``, or
    the last token when the budget ran out) has no state, so ``len(hidden) <= len(ids)``.
    ``forward_passes`` counts LLM calls after the prompt.
    """

    ids: list[int]
    hidden: torch.Tensor
    stop: str
    forward_passes: int


def _blocks(special: SpecialIds) -> list[list[int]]:
    return [special.t5_block, special.aud_block]


def _suppressed(special: SpecialIds) -> list[int]:
    # upstream: scores[..., ids_list[1:]] = 0 for each block (queries and the closer)
    return [*special.t5_block[1:], *special.aud_block[1:]]


def _forced_continuation(token: int, blocks: list[list[int]]) -> list[int] | None:
    """The block tail that the logits processors would force after ``token`` (inclusive)."""
    for block in blocks:
        if token in block[:-1]:
            i = block.index(token)
            return block[i:]
    return None


def _step(model: Any, ids: list[int], cache: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Feed ``ids`` after the cached context; return (hidden states (len, H), next-token logits (V,))."""
    inp = torch.tensor([ids], dtype=torch.long, device=device)
    out = model.model(input_ids=inp, past_key_values=cache, use_cache=True)
    hidden = out.last_hidden_state[0]
    logits = model.lm_head(hidden[-1:])[0]
    return hidden, logits


@torch.no_grad()
def greedy_decode(
    model: Any,
    prompt_ids: Sequence[int],
    special: SpecialIds,
    *,
    max_new_tokens: int,
    one_pass: bool = True,
    on_token: Callable[[int], None] | None = None,
    report: Callable[[int, int], None] | None = None,
) -> DecodeResult:
    """Greedy decoding until ``<|im_end|>`` or ``max_new_tokens`` (docs/audiostory.md §1.4).

    ``report(done, max_new_tokens)`` is called before every forward call (the prompt's, then
    each fed token or query block; ``done``: tokens written so far, the fed ones included).
    It is the cancellation point: what it raises stops decoding within one token.
    """
    from transformers import DynamicCache

    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    device = next(model.parameters()).device
    cache = DynamicCache(config=model.config)
    if report is not None:
        report(0, max_new_tokens)
    _, logits = _step(model, list(prompt_ids), cache, device)
    blocks = _blocks(special)
    suppress = torch.tensor(_suppressed(special), device=device)
    ids: list[int] = []
    states: list[torch.Tensor] = []
    passes = 0
    stop = "max_new_tokens"
    while len(ids) < max_new_tokens:
        last = ids[-1] if ids else int(prompt_ids[-1])
        forced = None if one_pass else _forced_continuation(last, blocks)
        if forced is not None:  # upstream: the processor forces the block's next id
            token = forced[1]
        else:
            scores = logits.float().clone()
            scores[suppress] = 0.0
            token = int(torch.argmax(scores))
        chunk = [token]
        if one_pass:
            tail = _forced_continuation(token, blocks)
            if tail is not None:
                chunk = tail[: max_new_tokens - len(ids)]
        ids.extend(chunk)
        if on_token is not None:
            for t in chunk:
                on_token(t)
        if token == special.im_end and len(chunk) == 1:
            stop = "im_end"
            break
        if len(ids) >= max_new_tokens and len(chunk) == 1:
            break
        # a query block is fed even when it fills the budget: its states are the features
        if report is not None:
            report(len(ids), max_new_tokens)
        hidden, logits = _step(model, chunk, cache, device)
        states.append(hidden.float())
        passes += 1
        if len(ids) >= max_new_tokens:
            break
    hidden = torch.cat(states, dim=0) if states else torch.zeros(0, model.config.hidden_size)
    return DecodeResult(ids=ids, hidden=hidden.cpu(), stop=stop, forward_passes=passes)


@torch.no_grad()
def teacher_force(model: Any, prompt_ids: Sequence[int], response_ids: Sequence[int]) -> torch.Tensor:
    """Hidden states (len(response), H) of a given response fed after the prompt in one pass."""
    device = next(model.parameters()).device
    ids = torch.tensor([list(prompt_ids) + list(response_ids)], dtype=torch.long, device=device)
    hidden = model.model(input_ids=ids).last_hidden_state[0]
    return hidden[len(prompt_ids):].float().cpu()
