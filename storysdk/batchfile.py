"""The stories file of ``storysdk batch``: JSON Lines, one story per line.

::

    {"id": "attic", "story": "stories/attic.toml"}
    {"id": "attic-seed-8", "story": "stories/attic.toml", "seed": 8}
    {"id": "inline", "toml": "[story]\\nscript = \\"a cat\\"\\n[tracks.frames]\\ngenerator = \\"diffusers-image\\""}

Each line is a JSON object with exactly one of

- ``"story"``: a story file's path, relative to the stories file's folder (or absolute);
- ``"toml"``: the text of a story file (relative image paths in it resolve against the
  stories file's folder),

and optionally ``"id"`` (the name of the story's output folder; default: the story file's
name without ``.toml``, or ``line-N`` for inline ``toml``) and ``"seed"`` (overrides the
story's seed). Ids are unique (case-insensitively, so that they stay distinct folders on
every file system), 1-100 characters of letters, digits, ``.``, ``_`` and ``-``, not starting
with ``.`` or ``-``. Blank lines are allowed; JSON Lines has no comments, so a line starting
with ``#`` is an error, like any other line that is not a JSON object.

Every problem here is a :class:`~storysdk.errors.ConfigError` naming the line, raised before
any story is rendered. A story file that does not *parse* (bad TOML, an unknown component) is
not a problem of the stories file: that story is recorded as failed and the others run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from .errors import ConfigError
from .model import MAX_SEED, _read_text_file, _shown
from .output import fingerprint

__all__ = ["RESERVED_IDS", "BatchEntry", "load_batch_file", "parse_batch_file"]

KEYS = ("id", "story", "toml", "seed")
ID_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$")
#: Names in the output folder that the batch itself writes, so no story may take them.
RESERVED_IDS = frozenset({"results.jsonl"})


@attrs.frozen
class BatchEntry:
    """One story of a batch: its id, the story file text and where it came from."""

    id: str
    text: str
    base_dir: Path
    source: str
    line: int = 0
    seed: int | None = None

    def fingerprint(self, defaults: Mapping[str, Any] | None = None) -> str:
        """A hash of what decides the story's output: its text, seed override and ``defaults``."""
        return fingerprint({"toml": self.text, "seed": self.seed, "defaults": dict(defaults or {})})


def _check_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not ID_PATTERN.match(value) or value in RESERVED_IDS:
        raise ConfigError(
            f"{where}: id {value!r} cannot name a folder; use 1-100 letters, digits, '.', '_' or '-', "
            f"not starting with '.' or '-' (and not {', '.join(sorted(RESERVED_IDS))})"
        )
    return value


def _entry(data: Any, *, number: int, base_dir: Path, where: str) -> BatchEntry:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: each line must be a JSON object like {{\"id\": ..., \"story\": ...}}, "
                          f"got {type(data).__name__}")
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; known keys: {', '.join(KEYS)}")
    if ("story" in data) == ("toml" in data):
        raise ConfigError(f"{where}: give exactly one of \"story\" (a story file path) or \"toml\" (story file text)")
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED):
        raise ConfigError(f"{where}: \"seed\" must be a whole number from 0 to {MAX_SEED}, got {_shown(seed)}")
    if "story" in data:
        if not isinstance(data["story"], str) or not data["story"]:
            raise ConfigError(f"{where}: \"story\" must be a story file path (a string), got {_shown(data['story'])}")
        path = (base_dir / data["story"]).resolve()
        if not path.is_file():
            raise ConfigError(
                f"{where}: story file {data['story']!r} does not exist ({path}); paths are relative to "
                "the stories file's folder"
            )
        try:
            text = _read_text_file(path, what="story file")
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        default_id, source, story_dir = path.stem, str(path), path.parent
    else:
        if not isinstance(data["toml"], str):
            raise ConfigError(f"{where}: \"toml\" must be the story file's text (a string), got {_shown(data['toml'])}")
        text, default_id, source, story_dir = data["toml"], f"line-{number}", f"{where} (inline toml)", base_dir
    story_id = _check_id(data["id"] if "id" in data else default_id, where)
    return BatchEntry(id=story_id, text=text, base_dir=story_dir, source=source, line=number, seed=seed)


def parse_batch_file(text: str, *, base_dir: str | Path = ".", source: str = "stories file") -> list[BatchEntry]:
    """Parse JSON Lines text into entries (``base_dir`` resolves relative story paths)."""
    base = Path(base_dir).resolve()
    entries: list[BatchEntry] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{source} line {number}"
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            hint = " (JSON Lines has no comments)" if raw.lstrip().startswith("#") else ""
            raise ConfigError(f"{where} is not valid JSON{hint}: {exc.msg} at column {exc.colno}") from exc
        except ValueError as exc:  # an integer with more digits than Python converts
            raise ConfigError(f"{where} holds a number too long to read ({exc.args[0].split(':')[0]})") from exc
        except RecursionError:
            raise ConfigError(f"{where} is nested too deeply; each line is one flat JSON object") from None
        entry = _entry(data, number=number, base_dir=base, where=where)
        key = entry.id.lower()
        if key in seen:
            raise ConfigError(
                f"{where}: id {entry.id!r} is already used by line {seen[key]} (ids are compared "
                "ignoring case); give each story its own \"id\""
            )
        seen[key] = number
        entries.append(entry)
    if not entries:
        raise ConfigError(f"{source} holds no stories; write one JSON object per line, e.g. "
                          "{\"id\": \"first\", \"story\": \"first.toml\"}")
    return entries


def load_batch_file(path: str | Path) -> list[BatchEntry]:
    """Read and parse a stories file (JSON Lines) from disk."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ConfigError(f"stories file {str(path)!r} {what}; give a .jsonl file with one story per line")
    text = _read_text_file(path, what="stories file")
    return parse_batch_file(text, base_dir=path.parent, source=str(path))
