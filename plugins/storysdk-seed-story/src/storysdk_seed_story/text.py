"""The Llama tokenizer with SEED-Story's 66 added tokens (docs/seed-story.md §1.4), and the ids resolved by string.

The tiny preset builds a Llama-2-style tokenizer in code (SentencePiece-like unigram pieces
``▁word`` over the story corpus, ``<unk>``/``<s>``/``</s>`` at ids 0/1/2, Llama-2's
normaliser and decoder), then adds the 66 tokens in the released order (``<img>``,
``</img>``, ``<img_00000>`` ... ``<img_00063>``). The released tokenizer folder
(``cvlm_llama2_tokenizer``) loads with transformers' ``AutoTokenizer``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
from storysdk.errors import CheckpointError, ConfigError

from .constants import ADDED_TOKENS, BOI_TOKEN, EOI_TOKEN, IMG_TOKENS, TAG_RE

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["SpecialIds", "clean_text", "load_tokenizer", "resolve_special_ids", "tiny_llama_tokenizer"]

TINY_BASE_VOCAB = 256
_CHARS = "".join(sorted(set(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"-()[]/&*+=<>_"
)))


def tiny_llama_tokenizer(base_vocab: int = TINY_BASE_VOCAB) -> PreTrainedTokenizerBase:
    """A Llama-2-style tokenizer of ``base_vocab`` pieces plus the 66 added tokens (§1.4), built offline."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers
    from transformers import PreTrainedTokenizerFast

    from storysdk.tiny import corpus_words

    specials = [("<unk>", 0.0), ("<s>", 0.0), ("</s>", 0.0)]
    pieces = specials + [("\u2581", -2.0)] + [(c, -10.0) for c in _CHARS]
    counts = Counter(w for w in corpus_words() if w.isalpha())
    total = sum(counts.values())
    room = base_vocab - len(pieces)
    if room < 0:
        raise ConfigError(f"base_vocab must be at least {len(pieces)}, got {base_vocab}")
    for word, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:room]:
        pieces.append(("\u2581" + word, math.log(n / total)))
    # past the corpus (e.g. base_vocab=32000 for full-size benchmarks): filler pieces
    pieces.extend(("\u2581w" + str(i), -30.0) for i in range(base_vocab - len(pieces)))
    tok = Tokenizer(models.Unigram(pieces, unk_id=0))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.add_tokens([AddedToken(t, special=True, normalized=False) for t in ADDED_TOKENS], special_tokens=True)
    return fast


def load_tokenizer(folder: str | Path) -> PreTrainedTokenizerBase:
    """The released ``cvlm_llama2_tokenizer`` folder (§1.6), or any folder saved by transformers."""
    from transformers import AutoTokenizer

    path = Path(folder)
    if not path.is_dir():
        raise ConfigError(f"tokenizer folder {str(path)!r} does not exist; download cvlm_llama2_tokenizer (§1.6)")
    try:
        return AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError, ImportError) as exc:
        raise CheckpointError(
            f"could not read the tokenizer in {str(path)!r} ({exc}); it needs tokenizer.json, or tokenizer.model "
            "with the sentencepiece package installed (pip install sentencepiece)"
        ) from exc


@attrs.frozen
class SpecialIds:
    """Token ids of the special tokens, each resolved from its string (§1.4)."""

    bos: int
    eos: int
    boi: int
    eoi: int
    img: tuple[int, ...]

    @property
    def chain(self) -> tuple[int, ...]:
        """``<img>``, the 64 image tokens, ``</img>``: the forced chain of §2."""
        return (self.boi, *self.img, self.eoi)


def resolve_special_ids(tokenizer: PreTrainedTokenizerBase) -> SpecialIds:
    """Resolve BOI/EOI/image tokens with ``encode(tok, add_special_tokens=False)`` as upstream does (§1.4).

    Raises CheckpointError when a token is missing (it would split into several pieces).
    """

    def one(token: str) -> int:
        ids = tokenizer.encode(token, add_special_tokens=False)
        if len(ids) != 1:
            raise CheckpointError(
                f"the tokenizer splits {token!r} into {len(ids)} pieces; it lacks SEED-Story's 66 added tokens: "
                "use the released cvlm_llama2_tokenizer folder (§1.6)"
            )
        return int(ids[0])

    if tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
        raise CheckpointError("the tokenizer has no <s>/</s> tokens; use the released cvlm_llama2_tokenizer folder")
    return SpecialIds(
        bos=int(tokenizer.bos_token_id),
        eos=int(tokenizer.eos_token_id),
        boi=one(BOI_TOKEN),
        eoi=one(EOI_TOKEN),
        img=tuple(one(t) for t in IMG_TOKENS),
    )


def clean_text(decoded: str) -> str:
    """§2 text: every ``<...>`` tag (with the spaces around it) becomes one space; then strip."""
    return re.sub(TAG_RE, " ", decoded).strip()
