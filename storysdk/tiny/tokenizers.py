"""Offline tokenizers for tiny models: a CLIP BPE and a T5 unigram, built in code in milliseconds.

Hub tokenizers (``hf-internal-testing/tiny-random-clip``...) cannot be downloaded on machines
without a hub, so the tiny presets build theirs from :data:`STORY_CORPUS`, a fixed English
text of story vocabulary (docs/reference/plugin-conventions.md §5, options 2 and 3). Both functions are
deterministic: the same arguments give the same vocabulary and ids in every process.

Deviation from §5 option 2: the BPE merges are learned by :func:`learn_bpe_merges` here,
not by the ``tokenizers`` ``BpeTrainer``, whose tie-breaking follows hash-map order and so
gave a different vocabulary in each process. Normalisation and pre-tokenisation are still
those of the ``tokenizers`` pipeline that ``CLIPTokenizer`` uses.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import CLIPTokenizer, T5Tokenizer

__all__ = ["STORY_CORPUS", "clip_tokenizer", "corpus_words", "learn_bpe_merges", "t5_tokenizer"]

#: The fixed training text (a few hundred words of story, picture and sound vocabulary).
STORY_CORPUS = """
Once upon a time, in a small village at the edge of a dark forest, there lived a curious girl
named Lily and her brave brother Jack. Every morning the children walked along the river to
the old stone bridge, where a friendly fox waited for them under the tall oak tree. One day a
storm rolled over the hills; thunder rumbled, rain poured, and the wind howled through the
trees. The fox led them to a hidden cave full of glowing crystals. Inside, an old wizard with a
long white beard was reading a dusty book by candle light. He smiled and said: the dragon of
the mountain has lost her golden egg, and only kind hearts can find it. The children packed
bread, cheese, apples and a lantern, and set off at dawn. They crossed green meadows, climbed
rocky cliffs, and sailed a tiny boat across a silver lake while birds sang above the water.
At night they camped beside a warm fire, watched the moon and the bright stars, and listened
to owls hooting in the woods. A little robot made of copper and brass joined them; it beeped,
whirred and clanked as it walked. In the city of glass towers, a girl with red hair and a blue
dress painted pictures of the sea. A man in a black coat and a hat wore round glasses and
carried an umbrella. The cat jumped on the table, the dog barked at the door, and the baby
laughed. Footsteps echoed in the empty hall; a door creaked open; a bell rang in the tower;
waves crashed on the beach; a train whistled far away; horses galloped across the field;
music played softly in the garden; people cheered in the market square. The princess rode a
white horse to the castle; the knight drew his sword; the king and the queen danced in the
great hall. A spaceship landed on a strange planet with purple sky and two suns. The
astronaut looked at the alien flowers, which sang a gentle song. Cinematic photo, highly
detailed, sharp focus, soft lighting, warm colors, comic book style, anime artwork, digital
painting, watercolor illustration, pencil sketch, fantasy art, film grain, golden hour,
portrait, close up, wide shot, masterpiece, best quality, low quality, blurry, ugly,
deformed, bad anatomy, noisy, text, watermark, quiet, loud, happy, sad, angry, scared, tired,
sleeping, running, jumping, flying, swimming, eating, drinking, talking, singing, crying,
smiling, reading, writing, walking, sitting, standing, looking, holding, opening, closing,
morning, evening, night, winter, summer, spring, autumn, snow, ice, sun, cloud, sky, road,
house, room, window, kitchen, school, library, street, park, island, ocean, desert, jungle.
A woman in a yellow coat reads a book in the library; a boy with a red kite runs on the hill.
The end.
"""

SOT_TOKEN = "<|startoftext|>"
EOT_TOKEN = "<|endoftext|>"
EOW = "</w>"
# CLIP's pre-tokenizer pattern (words, single digits, runs of punctuation), as transformers' CLIPTokenizer uses.
_CLIP_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
_WORD_RE = re.compile(r"[a-z]+|[0-9]|[^\sa-z0-9]+")


def corpus_words(text: str = STORY_CORPUS) -> list[str]:
    """The lower-cased words and punctuation runs of ``text``, in order."""
    return _WORD_RE.findall(text.lower())


def clip_tokenizer(vocab_size: int = 1000, model_max_length: int = 77) -> CLIPTokenizer:
    """A CLIP byte-level BPE tokenizer of at most ``vocab_size`` ids, trained on :data:`STORY_CORPUS`.

    The vocabulary has OpenAI CLIP's layout: the 256 byte symbols, the same with ``</w>``,
    the merged symbols in merge order, then ``<|startoftext|>`` and ``<|endoftext|>`` last
    (so any text encodes, and the end token has the highest id). ``<|endoftext|>`` pads.
    """
    from tokenizers import Regex, normalizers, pre_tokenizers
    from transformers import CLIPTokenizer

    base = sorted(pre_tokenizers.ByteLevel.alphabet())
    n_fixed = 2 * len(base) + 2
    if vocab_size < n_fixed:
        raise ValueError(f"vocab_size must be at least {n_fixed} (512 byte symbols + 2 special tokens)")
    # The words exactly as CLIPTokenizer's normalizer and pre-tokenizer will see them.
    norm = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    pre = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_CLIP_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    words = Counter(w for w, _ in pre.pre_tokenize_str(norm.normalize_str(STORY_CORPUS)))
    merges = learn_bpe_merges(words, vocab_size - n_fixed)
    vocab: dict[str, int] = {}
    for sym in base:
        vocab[sym] = len(vocab)
    for sym in base:
        vocab[sym + EOW] = len(vocab)
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    vocab[SOT_TOKEN] = len(vocab)
    vocab[EOT_TOKEN] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def learn_bpe_merges(words: Counter[str], max_merges: int, min_frequency: int = 2) -> list[tuple[str, str]]:
    """Learn up to ``max_merges`` BPE merges from ``words`` (word -> count), CLIP style (``</w>``).

    The most frequent adjacent pair is merged first; ties go to the smaller pair in string
    order, so the result is the same in every process. (The ``tokenizers`` ``BpeTrainer``
    breaks ties by hash-map order, which changes from process to process.)
    """
    seqs: list[list[str]] = []
    freqs: list[int] = []
    for word, n in sorted(words.items()):
        seqs.append(list(word[:-1]) + [word[-1] + EOW])
        freqs.append(n)
    pair_counts: Counter[tuple[str, str]] = Counter()
    where: dict[tuple[str, str], set[int]] = {}
    for i, seq in enumerate(seqs):
        for pair in zip(seq, seq[1:]):
            pair_counts[pair] += freqs[i]
            where.setdefault(pair, set()).add(i)
    merges: list[tuple[str, str]] = []
    while len(merges) < max_merges and pair_counts:
        best = min(pair_counts, key=lambda p: (-pair_counts[p], p))
        if pair_counts[best] < min_frequency:
            break
        merges.append(best)
        left, right = best
        for i in sorted(where.pop(best, ())):
            seq, n = seqs[i], freqs[i]
            for pair in zip(seq, seq[1:]):
                pair_counts[pair] -= n
                if pair_counts[pair] <= 0:
                    del pair_counts[pair]
            out: list[str] = []
            k = 0
            while k < len(seq):
                if k + 1 < len(seq) and seq[k] == left and seq[k + 1] == right:
                    out.append(left + right)
                    k += 2
                else:
                    out.append(seq[k])
                    k += 1
            seqs[i] = out
            for pair in zip(out, out[1:]):
                pair_counts[pair] += n
                where.setdefault(pair, set()).add(i)
    return merges


def t5_tokenizer(vocab_size: int = 1000, model_max_length: int = 64) -> T5Tokenizer:
    """A T5 (SentencePiece unigram) tokenizer of at most ``vocab_size`` ids, built from :data:`STORY_CORPUS`.

    Ids follow T5's layout: ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, then ``▁`` (word start),
    the single characters, and the corpus words as ``▁word`` pieces, most frequent first,
    scored by their log frequency (docs/reference/plugin-conventions.md §5, option 3). No sentinel ids.
    """
    from transformers import T5Tokenizer

    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    chars = sorted(set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"-()"))
    pieces: list[tuple[str, float]] = [("\u2581", -2.0)] + [(c, -8.0) for c in chars]
    counts = Counter(w for w in corpus_words() if w.isalpha())
    total = sum(counts.values())
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    room = vocab_size - len(specials) - len(pieces)
    if room < 0:
        raise ValueError(f"vocab_size must be at least {len(specials) + len(pieces)}")
    for word, n in ranked[:room]:
        pieces.append(("\u2581" + word, math.log(n / total)))
    return T5Tokenizer(vocab=specials + pieces, extra_ids=0, model_max_length=model_max_length)
