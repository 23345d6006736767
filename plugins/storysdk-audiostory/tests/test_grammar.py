"""The output grammar (docs/audiostory.md §1.4) on hand-written token streams, and duration repairs."""

from __future__ import annotations

import pytest
from storysdk.errors import ConfigError
from storysdk_audiostory import constants as C
from storysdk_audiostory.grammar import GrammarError, parse_stream
from storysdk_audiostory.timing import resolve_durations

from storysdk_audiostory.streams import block_text, event_text


def encode(tok, text):
    return tok.encode(text, add_special_tokens=False)


def _parse(tok, special, text, **kw):
    ids = encode(tok, text)
    return ids, parse_stream(ids, special, lambda part: tok.decode(list(part)), **kw)


def test_added_tokens_order_and_ids(tok):
    names = C.added_tokens()
    assert len(names) == 612 and names[0] == "</t5>" and names[4] == "<t5>" and names[-1] == "<|/think|>"
    ids = tok.convert_tokens_to_ids(names)
    base = len(tok) - 612
    assert ids == list(range(base, base + 612))  # add_tokens in file order, consecutive ids (§1.2)


def test_good_stream(tok, special):
    text = ("three dogs, then rain<|/think|>" + event_text("A dog barks", "4.5") + "\n"
            + event_text(" Rain falls on a roof ", "6") + "<|im_end|>")
    ids, parsed = _parse(tok, special, text)
    assert parsed.finished and parsed.reasoning == "three dogs, then rain"
    assert [e.caption for e in parsed.events] == ["A dog barks", "Rain falls on a roof"]
    assert [e.duration for e in parsed.events] == [4.5, 6.0]
    for e in parsed.events:
        a, b = e.t5_positions
        assert ids[a:b] == list(special.t5_queries) and ids[a - 1] == special.t5_open and ids[b] == special.t5_close
        a, b = e.aud_positions
        assert ids[a:b] == list(special.aud_queries) and ids[b] == special.aud_close
        assert e.problems == ()


def test_missing_and_bad_timestamps_are_reported(tok, special):
    text = "r<|/think|>" + event_text("wind", None) + event_text("birds", "soon") + event_text("rain", "-2") + "<|im_end|>"
    _, parsed = _parse(tok, special, text)
    assert [e.duration for e in parsed.events] == [None, None, None]
    assert "no <timestamp>" in parsed.events[0].problems[0]
    assert "'soon' is not a number" in parsed.events[1].problems[0]
    assert "not a positive number" in parsed.events[2].problems[0]


def test_no_events_is_an_error(tok, special):
    with pytest.raises(GrammarError, match="no complete <\\|gen\\|> event"):
        _parse(tok, special, "just thinking<|/think|>nothing to do<|im_end|>")
    assert issubclass(GrammarError, ConfigError)


def test_wrong_query_count_is_an_error(tok, special):
    bad = "<|gen|>a cat<timestamp>3</timestamp>" + block_text("t5", 10) + block_text("aud", 8) + "<|/gen|><|im_end|>"
    with pytest.raises(GrammarError, match="event 0: the <t5> block is malformed") as err:
        _parse(tok, special, "r<|/think|>" + bad)
    assert err.value.position is not None


def test_missing_blocks_are_errors(tok, special):
    with pytest.raises(GrammarError, match="no <t5> query block"):
        _parse(tok, special, "r<|/think|><|gen|>a cat<timestamp>3</timestamp><|/gen|><|im_end|>")
    no_aud = "<|gen|>a cat<timestamp>3</timestamp>" + block_text("t5", 64) + "<|/gen|><|im_end|>"
    with pytest.raises(GrammarError, match="expected <aud> after </t5>"):
        _parse(tok, special, "r<|/think|>" + no_aud)


def test_truncated_event_is_dropped_or_an_error(tok, special):
    text = "r<|/think|>" + event_text("one", "5") + "<|gen|>two<timestamp>5</timestamp>" + block_text("t5", 20, close=False)
    _, parsed = _parse(tok, special, text)
    assert not parsed.finished and len(parsed.events) == 1 and "cut off" in parsed.notes[0]
    with pytest.raises(GrammarError, match="cut off by the token budget"):
        _parse(tok, special, text, repair=False)


def test_stray_block_skipped_or_error(tok, special):
    text = "r<|/think|>" + block_text("aud", 8) + event_text("one", "5") + "<|im_end|>"
    _, parsed = _parse(tok, special, text)
    assert len(parsed.events) == 1 and "outside any <|gen|> event" in parsed.notes[0]
    with pytest.raises(GrammarError, match="outside any"):
        _parse(tok, special, text, repair=False)


def test_durations_repairs():
    d, notes = resolve_durations([4.0, None, 6.0], 20.0, max_clip=30.0, crossfade=3.0, tolerance=0.25, repair=True)
    assert d == [4.0, 10.0, 6.0] and "share of the requested total" in notes[1][0]
    # clip longer than the window: non-final clips leave room for the 3 s crossfade padding
    d, notes = resolve_durations([29.0, 29.5], 58.5, max_clip=30.0, crossfade=3.0, tolerance=0.25, repair=True)
    assert d == [27.0, 29.5] and "clamped" in notes[0][0] and notes[1] == []
    # far from the requested total: rescaled
    d, notes = resolve_durations([2.0, 2.0], 10.0, max_clip=30.0, crossfade=3.0, tolerance=0.25, repair=True)
    assert d == [5.0, 5.0] and "scaled by 2.5000" in notes[0][0]


def test_durations_errors_without_repair():
    kw = dict(max_clip=30.0, crossfade=3.0, tolerance=0.25, repair=False)
    with pytest.raises(ConfigError, match=r"event\(s\) \[1\] have no valid duration"):
        resolve_durations([4.0, None], 10.0, **kw)
    with pytest.raises(ConfigError, match="event 0 lasts 28.00 s but the DiT renders at most 27.00 s"):
        resolve_durations([28.0, 2.0], 30.0, **kw)
    with pytest.raises(ConfigError, match="events last 4.00 s in all but 10.00 s were requested"):
        resolve_durations([2.0, 2.0], 10.0, **kw)
