"""Text processing shared by the speech generators (docs/speech.md §1-§4).

- :func:`split_sentences`: lines and sentences, abbreviations ("Dr.", "e.g.") and initials kept intact.
- :func:`normalize`: numbers and abbreviations written out as words. Numbers go through num2words
  (LGPL-2.1, imported as a library, which the LGPL allows from Apache-2.0 code): it covers cardinals,
  ordinals, years, decimals and currencies correctly, which a small own table would not.
- :func:`speaker_parts`: which character speaks which part ("Name: ..." or "[Name] ..." lines/sentences).
- :func:`check_alphabet`, :func:`piper_missing`, :func:`warn_dropped`: characters or phonemes a backend
  cannot speak, dropped with one warning naming them.

Nothing here imports piper, torch or transformers.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Collection, Iterable

__all__ = [
    "ABBREVIATIONS",
    "check_alphabet",
    "normalize",
    "piper_missing",
    "speaker_parts",
    "split_sentences",
    "warn_dropped",
]

#: Abbreviations (lower case, without the final dot) after which a "." does not end a sentence, and the
#: words :func:`normalize` speaks them as. "St." is "Saint" before a capitalised word, else "Street".
ABBREVIATIONS: dict[str, str] = {
    "dr": "Doctor",
    "mr": "Mister",
    "mrs": "Missus",
    "ms": "Miz",
    "prof": "Professor",
    "st": "Street",
    "jr": "Junior",
    "sr": "Senior",
    "mt": "Mount",
    "capt": "Captain",
    "gen": "General",
    "sgt": "Sergeant",
    "lt": "Lieutenant",
    "col": "Colonel",
    "gov": "Governor",
    "rev": "Reverend",
    "ave": "Avenue",
    "vs": "versus",
    "etc": "et cetera",
    "e.g": "for example",
    "i.e": "that is",
    "a.m": "A M",
    "p.m": "P M",
    "approx": "approximately",
    "no": "number",
}

_END = re.compile(r"([.!?\u2026]+)([\"'\u201d\u2019)\]]*)(\s+)")
_WORD_BEFORE = re.compile(r"(\S+)$")


def _is_abbreviation(word: str) -> bool:
    """``word`` is the token before a single ".", dot excluded (opening quotes/brackets stripped)."""
    word = word.lstrip("\"'(\u201c\u2018[").lower()
    if word in ABBREVIATIONS and word != "no":
        return True
    # single initials ("J. R. R. Tolkien") and dotted forms ("U.S.")
    return bool(re.fullmatch(r"[a-z]", word) or re.fullmatch(r"(?:[a-z]\.)+[a-z]", word))


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` in order, each stripped, none empty.

    Every line is split on its own (a line break always ends a sentence). Within a line, a sentence ends at
    ".", "!", "?" or "…" (closing quotes/brackets stay with it) followed by white space — except after an
    abbreviation of :data:`ABBREVIATIONS` or a single initial ("Dr. Lee", "J. Smith"), and except when the
    next word starts lower case ("Wait... then what?" stays one sentence; "No. 5" too: "no" counts only
    before a digit).
    """
    out: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        start = 0
        for m in _END.finditer(line):
            cut = m.end(2)
            rest = line[m.end() :]
            if not rest:
                break
            if rest[0].islower():
                continue
            if m.group(1) == ".":
                before = _WORD_BEFORE.search(line[: m.start(1)])
                word = before.group(1) if before else ""
                if _is_abbreviation(word) or (word.lower() == "no" and rest[0].isdigit()):
                    continue
            sentence = line[start:cut].strip()
            if sentence:
                out.append(sentence)
            start = m.end()
        tail = line[start:].strip()
        if tail:
            out.append(tail)
    return out


# -- normalize ---------------------------------------------------------------------------------------------

_CURRENCIES = {"$": "USD", "\u20ac": "EUR", "\u00a3": "GBP"}
_NUMBER = re.compile(
    r"(?P<cur>[$\u20ac\u00a3])?"
    r"(?P<sign>(?<![\w.])-)?"
    r"(?P<num>\d{1,3}(?:,\d{3})+|\d+)"
    r"(?P<frac>\.\d+)?"
    r"(?P<ord>st|nd|rd|th)?"
    r"(?P<pct>\s?%)?"
    r"(?![\w])"
)
_TIME = re.compile(r"\b([01]?\d|2[0-3]):([0-5]\d)\b")
_ABBREV_WORD = re.compile(r"(?<![\w.])([A-Za-z]+(?:\.[A-Za-z])*)\.(?=\s|$|[,;:!?)\"'])")


def _words(value: int | float | str, **kwargs: object) -> str:
    from num2words import num2words  # type: ignore[import-untyped]

    return str(num2words(value, lang="en", **kwargs))


def _number(m: re.Match[str]) -> str:
    raw = m.group("num").replace(",", "")
    frac = m.group("frac")
    if m.group("cur"):
        amount = f"{raw}{frac or ''}"
        spoken = _words(float(amount), to="currency", currency=_CURRENCIES[m.group("cur")])
        if not frac:
            spoken = re.sub(r", zero \w+$", "", spoken)
    elif m.group("ord") and not frac:
        spoken = _words(int(raw), to="ordinal")
    elif frac:
        spoken = _words(f"{raw}{frac}")
    elif len(raw) == 4 and "," not in m.group("num") and 1100 <= int(raw) <= 2099 and not m.group("pct"):
        spoken = _words(int(raw), to="year")
    else:
        spoken = _words(int(raw))
    if m.group("sign"):
        spoken = "minus " + spoken
    if m.group("pct"):
        spoken += " percent"
    return spoken


def _time(m: re.Match[str]) -> str:
    hour, minute = int(m.group(1)), int(m.group(2))
    if minute == 0:
        return f"{_words(hour)} o'clock"
    if minute < 10:
        return f"{_words(hour)} oh {_words(minute)}"
    return f"{_words(hour)} {_words(minute)}"


def _abbreviation(m: re.Match[str]) -> str:
    word = m.group(1)
    key = word.lower()
    if key not in ABBREVIATIONS:
        return m.group(0)
    after = m.string[m.end() :].lstrip()
    if key == "no" and not after[:1].isdigit():
        return m.group(0)
    if key == "st" and after[:1].isupper():
        return "Saint"
    spoken = ABBREVIATIONS[key]
    # the abbreviation ended the sentence ("... and so on etc.")? keep the dot
    if key in ("etc",) and (not after or after[:1].isupper()):
        return spoken + "."
    return spoken


def normalize(text: str, *, numbers: bool = True, abbreviations: bool = True) -> str:
    """``text`` as it is read aloud: runs of white space become one space (line breaks are kept),
    abbreviations of :data:`ABBREVIATIONS` become words ("Dr." -> "Doctor"; ``abbreviations=False``
    keeps them), and numbers become words (``numbers=False`` keeps them): "3" -> "three", "1,200" ->
    "one thousand, two hundred", "21st" -> "twenty-first", "3.5" -> "three point five", "1999" (a
    four-digit number from 1100 to 2099) -> "nineteen ninety-nine", "$5" -> "five dollars", "50%" ->
    "fifty percent", "-2" -> "minus two", "7:05" -> "seven oh five", "&" -> "and".
    """
    lines = []
    for line in text.splitlines():
        line = re.sub(r"[ \t\f\v]+", " ", line).strip()
        if abbreviations:
            line = _ABBREV_WORD.sub(_abbreviation, line)
            line = re.sub(r"\s&\s", " and ", line)
        if numbers:
            line = _TIME.sub(_time, line)
            line = _NUMBER.sub(_number, line)
        lines.append(line)
    return "\n".join(lines).strip()


# -- speakers ----------------------------------------------------------------------------------------------


def speaker_parts(text: str, characters: Collection[str]) -> list[tuple[str | None, str]]:
    """``text`` cut into (speaker, text) parts in order: ``None`` is the narrator.

    A line starting "Name:" or "[Name]" (Name one of ``characters``, matched ignoring case; the part
    names the character as spelled in ``characters``) is that character's up to the end of the line or
    the next such tag. Inside a line, a sentence starting with a tag starts that character's part
    ("The dog barked. Lily: Stop it!"). A "Name:" whose Name is no character stays narration, tag
    included ("Note: ..."). Consecutive parts of one speaker are joined (with a line break when they
    came from two lines, so sentence boundaries survive); parts are stripped and never empty.
    """
    names = sorted({c for c in characters if c and c.strip()}, key=len, reverse=True)
    by_lower = {n.lower(): n for n in names}
    tag = None
    if names:
        alt = "|".join(re.escape(n) for n in names)
        tag = re.compile(rf"^(?:\[\s*(?P<b>{alt})\s*\]\s*:?|(?P<c>{alt})\s*:)\s*", re.IGNORECASE)
    parts: list[tuple[str | None, str, bool]] = []  # speaker, text, starts a new line

    def add(speaker: str | None, piece: str, newline: bool) -> None:
        piece = piece.strip()
        if not piece:
            return
        if parts and parts[-1][0] == speaker:
            prev = parts[-1]
            parts[-1] = (speaker, prev[1] + ("\n" if newline else " ") + piece, prev[2])
        else:
            parts.append((speaker, piece, newline))

    for line in text.splitlines():
        if not line.strip():
            continue
        speaker: str | None = None
        first = True
        for sentence in split_sentences(line):
            m = tag.match(sentence) if tag else None
            if m:
                speaker = by_lower[(m.group("b") or m.group("c")).lower()]
                sentence = sentence[m.end() :]
            add(speaker, sentence, first)
            first = False
    return [(s, t) for s, t, _ in parts]


# -- alphabet checks ---------------------------------------------------------------------------------------


def warn_dropped(dropped: Iterable[str], source: str) -> None:
    """One warning naming the characters (or phonemes) ``source`` cannot speak and dropped; none if none."""
    chars = sorted(set(dropped))
    if chars:
        shown = ", ".join(repr(c) for c in chars)
        warnings.warn(
            f"{source} cannot speak {len(chars)} character(s) of the text and dropped them: {shown}. "
            "Rewrite those characters in words, or choose a voice/model that covers them",
            stacklevel=3,
        )


def check_alphabet(text: str, alphabet: Collection[str], *, source: str) -> str:
    """``text`` without the characters that are not in ``alphabet`` (one warning naming them, see
    :func:`warn_dropped`); ``source`` names the voice/model in the warning."""
    allowed = set(alphabet)
    dropped = {c for c in text if c not in allowed}
    if not dropped:
        return text
    warn_dropped(dropped, source)
    return "".join(c for c in text if c in allowed)


_MISSING = re.compile(r"Missing phoneme from id map:\s*(.+?)\s*$", re.MULTILINE)


def piper_missing(stderr: str) -> list[str]:
    """The phonemes piper reported missing from the voice's id map in its ``stderr`` (its
    "Missing phoneme from id map: X" warnings), each once, in order of first report."""
    seen: dict[str, None] = {}
    for m in _MISSING.finditer(stderr):
        seen.setdefault(m.group(1), None)
    return list(seen)
