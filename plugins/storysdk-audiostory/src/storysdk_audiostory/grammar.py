"""The output grammar of AudioStory's planner LLM (docs/audiostory.md §1.4), parsed from token ids.

The assistant turn is opened with ``<|think|>`` by the prompt; the model then writes::

    reasoning <|/think|>
    <|gen|> caption <timestamp>d</timestamp> <t5> N queries </t5> <aud> M queries </aud> <|/gen|>
    ... (one block per event) ...
    <|im_end|>

:func:`parse_stream` turns the generated ids into :class:`ParsedEvent` s: the caption (the
text between ``<|gen|>`` and ``<t5>`` with the timestamp removed), the duration parsed from
the timestamp, and the positions of the ``N`` ``<t5_k>`` and ``M`` ``<aud_k>`` tokens, whose
last-layer hidden states are the event's query features. Malformed streams raise
:class:`GrammarError` naming the event and the position; with ``repair=True`` two harmless
defects are repaired and recorded in ``notes``: an event cut off by the token budget is
dropped, and a query block written outside an event is skipped. Problems with a duration
(missing, non-numeric) are reported per event and settled by :mod:`.timing`.

No torch here: the parser works on plain lists of ints, so it is tested on hand-written streams.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from storysdk.errors import ConfigError

from . import constants as C

__all__ = ["GrammarError", "ParsedEvent", "ParsedStream", "SpecialIds", "parse_stream"]

Decode = Callable[[Sequence[int]], str]


class GrammarError(ConfigError):
    """The planner LLM's output does not follow AudioStory's event grammar (docs/audiostory.md §1.4).

    ``position`` is the index in the generated ids where the problem was found (``None`` when
    it concerns the whole stream).
    """

    def __init__(self, message: str, *, position: int | None = None) -> None:
        self.position = position
        where = f" (at generated token {position})" if position is not None else ""
        super().__init__(message + where)


@attrs.frozen
class SpecialIds:
    """Ids of the grammar's tokens, resolved by string from a tokenizer (never hard-coded, §1.2)."""

    t5_open: int
    t5_close: int
    t5_queries: tuple[int, ...]
    aud_open: int
    aud_close: int
    aud_queries: tuple[int, ...]
    gen_open: int
    gen_close: int
    think_open: int
    think_close: int
    ts_open: int
    ts_close: int
    im_end: int

    @property
    def t5_block(self) -> list[int]:
        """``<t5>``, the N queries, ``</t5>``: the sequence the logits processor forces (§1.4)."""
        return [self.t5_open, *self.t5_queries, self.t5_close]

    @property
    def aud_block(self) -> list[int]:
        """``<aud>``, the M queries, ``</aud>`` (§1.4)."""
        return [self.aud_open, *self.aud_queries, self.aud_close]

    @property
    def num_t5(self) -> int:
        return len(self.t5_queries)

    @property
    def num_aud(self) -> int:
        return len(self.aud_queries)

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, num_t5: int = C.NUM_T5_TOKENS, num_aud: int = C.NUM_AUD_TOKENS) -> SpecialIds:
        """Resolve every id by its string; a token the tokenizer lacks is a :class:`ConfigError`."""
        if not 1 <= num_t5 <= C.T5_QUERY_VOCAB:
            raise ConfigError(f"num_t5 must be in 1..{C.T5_QUERY_VOCAB} (the <t5_k> tokens in the vocabulary), got {num_t5}")
        if not 1 <= num_aud <= C.AUD_QUERY_VOCAB:
            raise ConfigError(f"num_aud must be in 1..{C.AUD_QUERY_VOCAB} (the <aud_k> tokens in the vocabulary), got {num_aud}")

        def one(token: str) -> int:
            ids = tokenizer.encode(token, add_special_tokens=False)
            if len(ids) != 1:
                raise ConfigError(
                    f"the tokenizer does not know the AudioStory token {token!r} (it encodes to {ids}); "
                    "build it with storysdk_audiostory.qwen_tokenizer (which adds the 612 tokens of §1.2)"
                )
            return int(ids[0])

        return cls(
            t5_open=one(C.T5_OPEN),
            t5_close=one(C.T5_CLOSE),
            t5_queries=tuple(one(C.T5_QUERY.format(k)) for k in range(num_t5)),
            aud_open=one(C.AUD_OPEN),
            aud_close=one(C.AUD_CLOSE),
            aud_queries=tuple(one(C.AUD_QUERY.format(k)) for k in range(num_aud)),
            gen_open=one(C.GEN_OPEN),
            gen_close=one(C.GEN_CLOSE),
            think_open=one(C.THINK_OPEN),
            think_close=one(C.THINK_CLOSE),
            ts_open=one(C.TS_OPEN),
            ts_close=one(C.TS_CLOSE),
            im_end=one(C.IM_END),
        )


@attrs.frozen
class ParsedEvent:
    """One event: caption, duration (``None`` when missing or not a number), query positions.

    ``t5_positions``/``aud_positions`` are ``(start, stop)`` indices into the generated ids of
    the N ``<t5_k>`` and M ``<aud_k>`` tokens. ``problems`` lists what is wrong with the duration.
    """

    caption: str
    duration: float | None
    duration_text: str | None
    t5_positions: tuple[int, int]
    aud_positions: tuple[int, int]
    problems: tuple[str, ...] = ()


@attrs.frozen
class ParsedStream:
    """The parsed stream: reasoning text, events, whether ``<|im_end|>`` was reached, repair notes."""

    reasoning: str
    events: tuple[ParsedEvent, ...]
    finished: bool
    notes: tuple[str, ...] = ()


class _Truncated(Exception):
    """The stream ended inside an event."""


def _query_ids(special: SpecialIds) -> set[int]:
    return {special.t5_open, special.t5_close, special.aud_open, special.aud_close, *special.t5_queries, *special.aud_queries}


def parse_stream(ids: Sequence[int], special: SpecialIds, decode: Decode, *, repair: bool = True) -> ParsedStream:
    """Parse the generated ids (after the prompt's ``<|think|>``) into events (docs/audiostory.md §1.4)."""
    ids = [int(i) for i in ids]
    notes: list[str] = []
    end = ids.index(special.im_end) if special.im_end in ids else len(ids)
    finished = end < len(ids)
    if special.think_close in ids[:end]:
        k = ids.index(special.think_close)
        reasoning, pos = decode(ids[:k]), k + 1
    else:
        first = ids.index(special.gen_open) if special.gen_open in ids[:end] else end
        reasoning, pos = decode(ids[:first]), first
        notes.append("no <|/think|> closed the reasoning; the text before the first <|gen|> is taken as reasoning")
    structural = _query_ids(special)
    events: list[ParsedEvent] = []
    while pos < end:
        tok = ids[pos]
        if tok == special.gen_open:
            try:
                event, pos = _parse_event(ids, pos, end, finished, special, decode, len(events))
            except _Truncated:
                msg = (
                    f"event {len(events)} was cut off by the token budget (max_new_tokens) before its query "
                    "blocks were complete"
                )
                if not repair:
                    raise GrammarError(msg + "; raise max_new_tokens or plan a shorter story", position=pos) from None
                notes.append(msg + "; it was dropped")
                break
            events.append(event)
        elif tok in structural:
            block_end = _skip_block(ids, pos, end, special)
            msg = f"a query block ({decode([tok])!r}) appears outside any <|gen|> event"
            if not repair:
                raise GrammarError(msg + "; the stream does not follow the AudioStory grammar", position=pos)
            notes.append(msg + f" at token {pos}; it was skipped")
            pos = block_end
        else:
            pos += 1
    if not events:
        text = decode(ids)
        snippet = text[:200] + ("..." if len(text) > 200 else "")
        raise GrammarError(
            f"the planner LLM wrote no complete <|gen|> event (generated text: {snippet!r}). A model with "
            "random weights (preset='tiny') cannot write a plan: pass response=... to teacher-force one, "
            "or load the AudioStory checkpoint; with real weights raise max_new_tokens"
        )
    return ParsedStream(reasoning=reasoning, events=tuple(events), finished=finished, notes=tuple(notes))


def _skip_block(ids: list[int], pos: int, end: int, special: SpecialIds) -> int:
    """Index after a stray query block starting at ``pos`` (up to and including its closer)."""
    closers = (special.t5_close, special.aud_close)
    j = pos
    while j < end and ids[j] not in closers and (j == pos or ids[j] != special.gen_open):
        j += 1
    return min(j + 1, end) if j < end and ids[j] in closers else j


def _is_blank(tok: int, decode: Decode) -> bool:
    return decode([tok]).strip() == ""


def _expect_block(
    ids: list[int], pos: int, end: int, finished: bool, block: list[int], name: str, event: int
) -> int:
    """Check that ``ids[pos:]`` starts with ``block``; return the index after it."""
    stop = pos + len(block)
    got = ids[pos:min(stop, end)]
    if got != block[: len(got)]:
        bad = next(i for i, (a, b) in enumerate(zip(got, block)) if a != b)
        raise GrammarError(
            f"event {event}: the {name} block is malformed: expected {len(block) - 2} query tokens then its "
            f"closing tag, found token id {got[bad]} in place {bad}",
            position=pos + bad,
        )
    if len(got) < len(block):
        if finished:
            raise GrammarError(f"event {event}: the {name} block is not closed before <|im_end|>", position=end)
        raise _Truncated
    return stop


def _parse_event(
    ids: list[int], g: int, end: int, finished: bool, special: SpecialIds, decode: Decode, index: int
) -> tuple[ParsedEvent, int]:
    t = g + 1
    stops = {special.gen_open, special.gen_close, special.aud_open}
    while t < end and ids[t] != special.t5_open:
        if ids[t] in stops:
            raise GrammarError(
                f"event {index}: no <t5> query block between <|gen|> and {decode([ids[t]])!r}", position=t
            )
        t += 1
    if t >= end:
        if finished:
            raise GrammarError(f"event {index}: no <t5> query block before <|im_end|>", position=g)
        raise _Truncated
    caption_ids = ids[g + 1 : t]
    j = _expect_block(ids, t, end, finished, special.t5_block, "<t5>", index)
    t5_pos = (t + 1, t + 1 + special.num_t5)
    while j < end and ids[j] != special.aud_open and _is_blank(ids[j], decode):
        j += 1
    if j >= end:
        if finished:
            raise GrammarError(f"event {index}: no <aud> query block before <|im_end|>", position=j)
        raise _Truncated
    if ids[j] != special.aud_open:
        raise GrammarError(f"event {index}: expected <aud> after </t5>, found {decode([ids[j]])!r}", position=j)
    a = j
    j = _expect_block(ids, a, end, finished, special.aud_block, "<aud>", index)
    aud_pos = (a + 1, a + 1 + special.num_aud)
    while j < end and ids[j] != special.gen_close and _is_blank(ids[j], decode):
        j += 1
    if j < end and ids[j] == special.gen_close:
        j += 1
    caption, duration, text, problems = _caption_and_duration(caption_ids, special, decode)
    return ParsedEvent(caption, duration, text, t5_pos, aud_pos, problems), j


def _caption_and_duration(
    caption_ids: list[int], special: SpecialIds, decode: Decode
) -> tuple[str, float | None, str | None, tuple[str, ...]]:
    """Split ``caption <timestamp>d</timestamp>`` (evaluate/inference.py's extract_content_and_duration)."""
    if special.ts_open in caption_ids and special.ts_close in caption_ids:
        o = caption_ids.index(special.ts_open)
        c = caption_ids.index(special.ts_close)
        if c > o:
            text = decode(caption_ids[o + 1 : c]).strip()
            caption = (decode(caption_ids[:o]) + decode(caption_ids[c + 1 :])).strip()
            try:
                value = float(text)
            except ValueError:
                return caption, None, text, (f"timestamp {text!r} is not a number",)
            if not math.isfinite(value) or value <= 0:
                return caption, None, text, (f"timestamp {text!r} is not a positive number of seconds",)
            return caption, value, text, ()
    return decode(caption_ids).strip(), None, None, ("no <timestamp>...</timestamp> in the caption",)
