"""storysdk_speech.text: sentences, normalisation, speaker parts, alphabet checks."""

from __future__ import annotations

import warnings

import pytest
from storysdk_speech.text import check_alphabet, normalize, piper_missing, speaker_parts, split_sentences


def test_split_sentences_keeps_abbreviations_and_initials():
    text = "Dr. Lee met J. R. Smith at 5 p.m. today. He said hi! Then e.g. rain fell?  No. 5 won…\n\nLily: Hi."
    assert split_sentences(text) == [
        "Dr. Lee met J. R. Smith at 5 p.m. today.",
        "He said hi!",
        "Then e.g. rain fell?",
        "No. 5 won…",
        "Lily: Hi.",
    ]


def test_split_sentences_quotes_lines_and_lower_case():
    assert split_sentences('"Run!" she cried. "Now." Wait... then go.\nno end') == [
        '"Run!" she cried.',
        '"Now."',
        "Wait... then go.",
        "no end",
    ]
    assert split_sentences("   \n\t") == []
    assert split_sentences("One. Two") == ["One.", "Two"]


def test_normalize_numbers_and_abbreviations():
    text = "Dr. Lee paid $5 and $3.50 for 1,200 apples on the 21st, in 1999 at 7:05; 50% more, -2 & 3.5."
    assert normalize(text) == (
        "Doctor Lee paid five dollars and three dollars, fifty cents for one thousand, two hundred apples "
        "on the twenty-first, in nineteen ninety-nine at seven oh five; fifty percent more, minus two and "
        "three point five."
    )
    assert normalize("St. Paul lives on Main St. now. No. 3, no. etc.") == (
        "Saint Paul lives on Main Street now. number three, no. et cetera."
    )
    assert normalize("Dr. Who  has 3\ncats", numbers=False) == "Doctor Who has 3\ncats"
    assert normalize("Dr. Who has 3", abbreviations=False) == "Dr. Who has three"
    assert normalize("at 10:00 and 2500 and 12") == "at ten o'clock and two thousand, five hundred and twelve"


def test_speaker_parts():
    text = "The dog barked. Lily: Stop it! Sit.\n[Old Tom] No way.\nNote: nothing here.\nlily: again\nThe end."
    assert speaker_parts(text, ["Lily", "Old Tom"]) == [
        (None, "The dog barked."),
        ("Lily", "Stop it! Sit."),
        ("Old Tom", "No way."),
        (None, "Note: nothing here."),
        ("Lily", "again"),
        (None, "The end."),
    ]
    # two narrator lines joined keep their line break, so sentences stay apart
    assert speaker_parts("A line\nanother", []) == [(None, "A line\nanother")]
    assert split_sentences(speaker_parts("A line\nanother", [])[0][1]) == ["A line", "another"]
    assert speaker_parts("Lily:   ", ["Lily"]) == []
    assert speaker_parts("Bob: hi", ["Lily"]) == [(None, "Bob: hi")]


def test_check_alphabet_warns_once_naming_dropped():
    with pytest.warns(UserWarning, match=r"tiny-vits cannot speak 2 character\(s\).*'#', '€'") as rec:
        assert check_alphabet("a#b€c#", "abc", source="tiny-vits") == "abc"
    assert len(rec) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_alphabet("abc", "abc", source="x") == "abc"


def test_piper_missing():
    stderr = (
        "WARNING:piper.phoneme_ids:Missing phoneme from id map: ʘ\n"
        "INFO:x:y\nWARNING:piper.phoneme_ids:Missing phoneme from id map: ǀ\n"
        "WARNING:piper.phoneme_ids:Missing phoneme from id map: ʘ\n"
    )
    assert piper_missing(stderr) == ["ʘ", "ǀ"]
    assert piper_missing("") == []
