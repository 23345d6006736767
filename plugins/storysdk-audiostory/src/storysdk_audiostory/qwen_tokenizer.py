"""The planner's tokenizer: Qwen2.5's byte-level BPE plus AudioStory's 612 added tokens (§1.2).

* :func:`load_qwen_tokenizer` loads the base tokenizer from a local ``Qwen2.5-3B-Instruct``
  folder and adds the tokens with ``add_tokens`` in file order, as upstream ``init_tokenizer``
  does; the ids that result are checked against the released vocabulary size (152,277).
* :func:`tiny_qwen_tokenizer` builds a small tokenizer of the same kind in code (byte-level BPE
  learned deterministically from storysdk's test corpus, Qwen's chat tokens, the 612 tokens).

Ids are always resolved by string (:meth:`SpecialIds.from_tokenizer`), never hard-coded.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import TYPE_CHECKING, Any

from storysdk.errors import CheckpointError, ConfigError

from . import constants as C

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["add_audiostory_tokens", "load_qwen_tokenizer", "tiny_qwen_tokenizer"]

TINY_MERGES = 240


def add_audiostory_tokens(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Add the 612 tokens of §1.2 in order (upstream ``init_tokenizer``: ``add_tokens`` of the keys)."""
    tokenizer.add_tokens(C.added_tokens())
    return tokenizer


def load_qwen_tokenizer(path: str | os.PathLike[str], *, expected_vocab: int | None = C.RELEASED_VOCAB) -> Any:
    """The Qwen2.5 tokenizer of a local folder with the AudioStory tokens added.

    ``expected_vocab`` (the checkpoint's ``vocab_size``) is checked: a different length means
    the ids would not match the checkpoint's embedding rows (docs/audiostory.md §8).
    """
    from transformers import AutoTokenizer

    if not os.path.isdir(path):
        raise CheckpointError(
            f"tokenizer folder {str(path)!r} does not exist; pass base_llm=<local Qwen2.5-3B-Instruct folder>"
        )
    tok = add_audiostory_tokens(AutoTokenizer.from_pretrained(str(path)))
    if expected_vocab is not None and len(tok) != expected_vocab:
        raise CheckpointError(
            f"the tokenizer in {str(path)!r} has {len(tok)} tokens after adding AudioStory's 612, but the "
            f"checkpoint expects {expected_vocab}; use the Qwen2.5-3B-Instruct tokenizer the checkpoint was trained with"
        )
    return tok


def _learn_byte_merges(words: Counter[str], max_merges: int) -> list[tuple[str, str]]:
    """Byte-level BPE merges (GPT-2 style, no end-of-word marker); ties broken by string order."""
    seqs = {w: list(w) for w in words}
    merges: list[tuple[str, str]] = []
    while len(merges) < max_merges:
        counts: Counter[tuple[str, str]] = Counter()
        for w, seq in seqs.items():
            for pair in zip(seq, seq[1:]):
                counts[pair] += words[w]
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        if counts[best] < 2:
            break
        merges.append(best)
        for w, seq in seqs.items():
            out: list[str] = []
            k = 0
            while k < len(seq):
                if k + 1 < len(seq) and (seq[k], seq[k + 1]) == best:
                    out.append(seq[k] + seq[k + 1])
                    k += 2
                else:
                    out.append(seq[k])
                    k += 1
            seqs[w] = out
    return merges


def tiny_qwen_tokenizer(merges: int = TINY_MERGES, *, audiostory_tokens: bool = True) -> Any:
    """A small Qwen2-style tokenizer built in code: byte-level BPE + chat tokens + the 612 tokens.

    Layout as Qwen2.5: the BPE vocabulary, then ``<|endoftext|>``, ``<|im_start|>``,
    ``<|im_end|>`` (special), then the AudioStory tokens in §1.2 order. Deterministic.
    """
    from storysdk.tiny import STORY_CORPUS
    from tokenizers import pre_tokenizers
    from transformers import Qwen2Tokenizer

    if merges < 0:
        raise ConfigError(f"merges must be >= 0, got {merges}")
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    words = Counter(w for w, _ in pre.pre_tokenize_str(STORY_CORPUS))
    learned = _learn_byte_merges(words, merges)
    vocab: dict[str, int] = {sym: i for i, sym in enumerate(alphabet)}
    for a, b in learned:
        vocab.setdefault(a + b, len(vocab))
    tok = Qwen2Tokenizer(vocab=vocab, merges=list(learned))
    tok.add_special_tokens({"additional_special_tokens": [C.IM_START, C.IM_END]})
    return add_audiostory_tokens(tok) if audiostory_tokens else tok
