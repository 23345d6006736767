"""The per-run state of the story loop (docs/seed-story.md §2), in its two cache modes.

``PrefillStory`` is the release's behaviour: the prompt string is rebuilt and re-encoded from
scratch every step, with the window of 8 images cut out of the string. ``SinkStory`` keeps
the KV cache across steps and evicts old images with the attention-sink rule of §2.
Both live in the pipeline's per-run ``StepContext.state``, never on the planner.

Both can be rebuilt from the scenes written so far (``replay``), so a run resumed from its
saved plan continues exactly where it stopped: the prompt mode from each scene's text and
regressed features, the sink mode by feeding each scene's generated text ids one at a time
and its image block in one pass, as the steps did (the same cache, bit for bit).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import torch

from .constants import EOI_TOKEN, IMAGE_BLOCK, INST, NUM_IMG_TOKENS, WINDOW_SIZE
from .decode import BlockMode, Report, decode_step
from .mllm import MLLM
from .sink import reindex_cache, sink_positions
from .text import clean_text

__all__ = ["PrefillStory", "SinkStory", "StepOutput", "cut_window"]


@attrs.define
class StepOutput:
    """One scene from the loop: the cleaned text, the raw decoded text, the image features."""

    text: str
    raw: str
    features: torch.Tensor | None  # (256, D) regressed features, or None when no image came
    context_tokens: int
    text_ids: list[int] = attrs.field(factory=list)  # the generated ids before the image block


def cut_window(prompt: str, features: list[torch.Tensor], window: int = WINDOW_SIZE) -> tuple[str, list[torch.Tensor]]:
    """§2 window: while more than ``window`` images are held, cut the prompt up to the first
    ``</img>`` plus ``len("[INST]")`` characters and drop the oldest image feature."""
    while len(features) > window:
        cut = prompt.index(EOI_TOKEN) + len(EOI_TOKEN) + len(INST)
        prompt, features = prompt[cut:], features[1:]
    return prompt, features


def _no_grad(fn: Any) -> Any:
    return torch.no_grad()(fn)


@attrs.define
class PrefillStory:
    """Release mode: ``prompt`` and ``features`` as upstream's ``gen_george.py`` keeps them."""

    prompt: str
    features: list[torch.Tensor]
    window: int = WINDOW_SIZE

    @classmethod
    def start(cls, caption: str, features: torch.Tensor, window: int = WINDOW_SIZE) -> PrefillStory:
        return cls(prompt=caption + IMAGE_BLOCK, features=[features], window=window)

    @classmethod
    def replay(cls, caption: str, features: torch.Tensor, steps: Sequence[tuple[str, list[int], torch.Tensor]],
               window: int = WINDOW_SIZE) -> PrefillStory:
        """The state after ``steps`` (each step's cleaned text, text ids, regressed features)."""
        state = cls.start(caption, features, window)
        for text, _ids, feats in steps:
            state._append(text, feats)
        return state

    def _append(self, text: str, feats: torch.Tensor) -> None:
        # §2 history: the regressed features themselves, then the window
        self.prompt, self.features = cut_window(self.prompt + text + IMAGE_BLOCK, self.features + [feats], self.window)

    @_no_grad
    def step(self, lm: MLLM, max_new_tokens: int, block: BlockMode = "one-pass",
             max_text_tokens: int | None = None, report: Report | None = None) -> StepOutput:
        """One scene: re-encode the prompt, decode. ``report`` (before every forward call) may
        raise to stop within one token; the state is then as before the step."""
        from transformers import DynamicCache

        ids = [lm.ids.bos] + lm.tokenizer.encode(self.prompt, add_special_tokens=False)
        embeds = lm.inject(ids, torch.stack(self.features))
        cache = DynamicCache()
        if report is not None:
            report(0, max_new_tokens)
        _, logits = lm.forward(embeds, cache, 0)
        out = decode_step(lm, cache, logits, len(ids), max_new_tokens, block, max_text_tokens, report)
        raw = lm.tokenizer.decode(out.gen_ids, skip_special_tokens=False)
        text = clean_text(raw)
        feats = None if out.image_hidden is None else lm.regress(out.image_hidden)
        if feats is not None:
            self._append(text, feats)
        return StepOutput(text, raw, feats, len(ids), out.text_ids)


@attrs.define
class SinkStory:
    """KV-reuse mode: the cache persists; images leaving the window are evicted per §2's sink rule.

    ``kept`` holds the absolute sequence position of every cache row; ``images`` the absolute
    (boi, eoi) of every image block, oldest first; ``evicted`` those that left the window.
    """

    cache: Any
    logits: torch.Tensor
    total: int
    kept: list[int]
    images: list[tuple[int, int]]
    evicted: list[tuple[int, int]] = attrs.field(factory=list)
    window: int = WINDOW_SIZE

    @classmethod
    @_no_grad
    def start(cls, lm: MLLM, caption: str, features: torch.Tensor, window: int = WINDOW_SIZE) -> SinkStory:
        from transformers import DynamicCache

        ids = [lm.ids.bos] + lm.tokenizer.encode(caption + IMAGE_BLOCK, add_special_tokens=False)
        cache = DynamicCache()
        _, logits = lm.forward(lm.inject(ids, features[None]), cache, 0)
        boi = ids.index(lm.ids.boi)
        return cls(cache, logits, len(ids), list(range(len(ids))), [(boi, boi + NUM_IMG_TOKENS + 1)], window=window)

    @classmethod
    @_no_grad
    def replay(cls, lm: MLLM, caption: str, features: torch.Tensor,
               steps: Sequence[tuple[str, list[int], torch.Tensor]], window: int = WINDOW_SIZE,
               report: Report | None = None) -> SinkStory:
        """The state after ``steps`` (each step's cleaned text, text ids, regressed features).

        ``report(done, total)`` comes before every forward call (``done`` of ``total`` forward
        calls of the replay) and may raise to stop it."""
        total = 1 + sum(len(ids) + 1 for _text, ids, _feats in steps)
        done = 0

        def tick() -> None:
            nonlocal done
            if report is not None:
                report(done, total)
            done += 1

        tick()
        state = cls.start(lm, caption, features, window)
        for _text, ids, feats in steps:
            pos = len(state.kept)
            for k, t in enumerate(ids):  # one forward per text token, as decode_step fed them
                tick()
                _, state.logits = lm.forward(lm.embed_ids([t]), state.cache, pos + k)
            state._keep_fed(len(ids), None)
            tick()
            state._add_image(lm, feats)
        return state

    @property
    def live_images(self) -> int:
        return len(self.images) - len(self.evicted)

    @_no_grad
    def step(self, lm: MLLM, max_new_tokens: int, block: BlockMode = "one-pass",
             max_text_tokens: int | None = None, report: Report | None = None) -> StepOutput:
        """One scene on the kept cache. ``report`` (before every forward call) may raise to stop
        within one token; the cache then holds the tokens fed so far, so the state is spent (a
        resumed run replays it from the saved scenes)."""
        context = len(self.kept)
        out = decode_step(lm, self.cache, self.logits, context, max_new_tokens, block, max_text_tokens, report)
        raw = lm.tokenizer.decode(out.gen_ids, skip_special_tokens=False)
        feats = None if out.image_hidden is None else lm.regress(out.image_hidden)
        fed = out.next_pos - context
        if feats is None:
            self._keep_fed(fed, out.logits)
            return StepOutput(clean_text(raw), raw, None, context, out.text_ids)
        # Replace the generated chain by the canonical block with the regressed features fed
        # back through the input resampler, exactly what a re-prefill would hold (§2 history).
        if report is not None:  # before the block's forward call
            report(len(out.gen_ids), max_new_tokens)
        drop = fed - (out.chain_start or 0)
        self.cache.crop(-drop)
        self._keep_fed(fed - drop, None)
        self._add_image(lm, feats)
        return StepOutput(clean_text(raw), raw, feats, context, out.text_ids)

    def _add_image(self, lm: MLLM, feats: torch.Tensor) -> None:
        """Feed ``<img>`` + 64 image positions (``input_resampler(feats)``) + ``</img>``, then evict (§2)."""
        start = len(self.kept)
        block_ids = list(lm.ids.chain)
        embeds = lm.inject(block_ids, feats[None])
        _, self.logits = lm.forward(embeds, self.cache, start)
        boi = self.total
        self._keep_fed(len(block_ids), self.logits)
        self.images.append((boi, boi + NUM_IMG_TOKENS + 1))
        while self.live_images > self.window:
            self.evict(lm)

    def _keep_fed(self, n: int, logits: torch.Tensor | None) -> None:
        self.kept.extend(range(self.total, self.total + n))
        self.total += n
        if logits is not None:
            self.logits = logits

    def evict(self, lm: MLLM) -> None:
        """Evict the oldest live image and rebuild the cache with the kept positions (§2)."""
        self.evicted.append(self.images[len(self.evicted)])
        keep = sink_positions(self.total, self.evicted)
        row_of = {p: r for r, p in enumerate(self.kept)}
        rows = [row_of[p] for p in keep if p in row_of]
        self.cache = reindex_cache(lm.llm, self.cache, rows)
        self.kept = [self.kept[r] for r in rows]
