"""The ``script`` planner: StoryDiffusion's frame-line syntax, one scene per line, no model.

Syntax (``plugins/storysdk-storydiffusion/docs/storydiffusion.md`` §2, ``plugins/storysdk-storydiffusion/docs/storydiffusion-api.md``)
-----------------------------------------------------------
``request.script`` holds the frame lines, one frame per line (``str.splitlines``)::

    [Bob] at home, read new paper #The newspaper says there is a treasure house.
    [NC] A house in the forest, at night #Suddenly, they discover the treasure house!
    [Bob] and [Alice] running very fast, in the forest, at night

- ``[NC]`` anywhere in a line: the frame has no character. Every ``[NC]`` is removed and
  the rest of the line is the prompt.
- ``#``: the prompt is the text before the **last** ``#``; the caption is the text after it.
  A line without ``#`` is both prompt and caption. Captions keep raw ``[Name]`` tags, as
  upstream does (``strip_tags_in_captions=True`` turns ``[Bob]`` into ``Bob``); ``[NC]`` is
  removed from captions too (upstream L946-951).

``request.characters`` is either a list of :class:`~storysdk.model.Character` or the text
of StoryDiffusion's character box. Two modes follow from it:

**Named mode** (current app, ``lowvram.py``): the box has one ``[Name] description`` line per
character (the name is the text between the first ``[`` and the first ``]``; the description
is the rest of the line, cut at its last ``#``; ``character_to_dict``). In frame lines each
``[Name]`` is replaced by ``description + " "`` (``process_original_prompt``), and
``Scene.characters`` lists the tagged names in order of first appearance. A frame line with
no tag has no character. Tags after the caption ``#`` do not count (upstream tags are looked
up in the prompt part only).

**Unnamed mode** (v0.01 app, ``predict.py``, the hosted API): the character text has no
``[Name]`` tag, e.g. ``"a man, wearing black suit"``. It is one character called
``default_character_name``; every frame line without ``[NC]`` gets the prompt
``description + "," + line`` and that one character.

What the plan records
---------------------
Every scene's ``Scene.metadata`` holds ``"raw"`` (the original line), ``"line"`` (its 1-based
number in the script) and ``"nc"`` (whether the line has ``[NC]``). ``plan.metadata`` holds
``"character_mode"`` (``"named"`` or ``"unnamed"``), ``"character_lines"`` (each character's
line in the character text, or its 1-based position in a list of characters) and, when
``max_frames`` dropped frames, ``"dropped_lines"``.

The planner parses the syntax only. Choosing StoryDiffusion's *id frames* (the frames rendered
together first as a character's reference) and refusing a script whose characters lack them is
the ``storydiffusion`` generator's job (its ``num_ids``, ``allow_nc_id_frames`` and
``nc_rows_check`` options, checked by its ``check_plan`` before any model is loaded); other
generators render every frame alike.

Deviations from upstream (each with an option for the faithful behaviour where one makes sense)
------------------------------------------------------------------------------------------------
- Malformed input that upstream silently mis-renders is a :class:`~storysdk.errors.ScriptError`
  naming the line and the fix: unknown tags (upstream leaves them in the prompt), a character
  line without a tag in a box with tags (upstream drops it), ``[NC]`` with a ``[Name]`` tag,
  unbalanced brackets, empty prompts, text before a character tag, brackets in a description.
- Blank frame lines are skipped (``skip_blank_lines=False``: each is a frame, as upstream; in
  named mode its prompt is empty, which is an error; in unnamed mode its prompt is
  ``description + ","`` as in predict.py).
- Prompts and captions are stripped at both ends (``strip_whitespace=True``), as predict.py
  does; ``lowvram.py`` does not strip. CLIP tokenizers collapse whitespace, so this does not
  change the tokens. ``strip_whitespace=False`` keeps ``lowvram.py``'s strings unchanged.
- Unnamed mode: a ``#`` in the character text cuts it at its last ``#`` (as named mode does).
  predict.py joins first and cuts later, so there a ``#`` in the description swallowed the
  frame text of every line without ``#``.
- ``max_frames`` counts frames (after blank lines are skipped); predict.py keeps the first 10
  raw lines. The number of lines dropped is in ``plan.metadata["dropped_lines"]``.

The planner reads ``request.script`` only: free text in ``request.prompt`` is for planners
that write scenes. It keeps ``Scene.duration`` ``None`` (audio generators use their default)
unless ``request.duration`` is set, which is split evenly across the scenes.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs
from pydantic import field_validator

from ..errors import ConfigError, ScriptError
from ..interfaces import Planner
from ..model import Character, Scene, StoryPlan, StoryRequest
from ..options import Field
from ..options import Options as BaseOptions

__all__ = ["NC_TAG", "ScriptPlanner"]

#: The no-character marker of a frame line (plugins/storysdk-storydiffusion/docs/storydiffusion.md §2).
NC_TAG = "[NC]"
_NC_NAME = "NC"
_TAG = re.compile(r"\[([^\[\]]*)\]")

#: The upstream app refuses 3 or more character lines (lowvram.py L725-728).
_UPSTREAM_MAX_CHARACTERS = 2


@attrs.frozen
class _Entry:
    """A parsed character: the public object, the text substituted for its tag, where it was."""

    character: Character
    raw: str
    line: int


@attrs.frozen
class _Frame:
    lineno: int
    raw: str
    prompt: str
    caption: str
    characters: tuple[str, ...]
    nc: bool


def _check_brackets(text: str, lineno: int, field: str, what: str) -> None:
    """Raise on a nested, unopened or unclosed bracket in ``text``."""
    open_at: int | None = None
    for col, ch in enumerate(text, start=1):
        if ch == "[":
            if open_at is not None:
                raise ScriptError(
                    f"'[' at column {col} opens a tag inside the tag opened at column {open_at}; "
                    f"a tag is written [Name] with no brackets inside: close the first tag with ']' "
                    f"or remove the extra '[' ({what}: {text!r})",
                    line=lineno,
                    field=field,
                )
            open_at = col
        elif ch == "]":
            if open_at is None:
                raise ScriptError(
                    f"']' at column {col} closes no tag; write tags as [Name] or remove the stray "
                    f"']' ({what}: {text!r})",
                    line=lineno,
                    field=field,
                )
            open_at = None
    if open_at is not None:
        raise ScriptError(
            f"unbalanced '[' at column {open_at}: the tag is never closed; close it with ']' "
            f"(tags are written [Name]) or remove the '[' ({what}: {text!r})",
            line=lineno,
            field=field,
        )


def _name_problem(name: str) -> str | None:
    """What is wrong with ``name`` as a character name (and the fix), or ``None``."""
    if name.strip() == "":
        return (
            "empty character name '[]'; write the character's name between the brackets, "
            "e.g. [Bob] a man in a black suit"
        )
    if name != name.strip():
        return (
            f"character name {name!r} has spaces at its ends; write [{name.strip()}] "
            "(frame lines must use exactly the same tag)"
        )
    if "[" in name or "]" in name:
        return f"character name {name!r} contains a bracket; use a plain name such as Bob"
    if name == _NC_NAME:
        return "[NC] is the no-character marker and cannot name a character; choose another name"
    return None


def _check_name(name: str, lineno: int | None, field: str) -> None:
    problem = _name_problem(name)
    if problem is not None:
        raise ScriptError(problem, line=lineno, field=field)


def _check_duplicate(name: str, lineno: int, seen: dict[str, int], field: str) -> None:
    if name in seen:
        raise ScriptError(
            f"duplicate character [{name}] (first defined on line {seen[name]}); "
            "give each character one line and a unique name",
            line=lineno,
            field=field,
        )
    seen[name] = lineno


def _parse_character_box(text: str) -> list[_Entry]:
    """Named mode: one ``[Name] description`` per non-blank line (character_to_dict)."""
    entries: list[_Entry] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip() == "":
            continue
        _check_brackets(line, lineno, "characters", "character line")
        start, end = line.find("["), line.find("]")
        if start == -1 and end == -1:
            raise ScriptError(
                f"character line {line!r} has no [Name] tag, but other lines of the character "
                "text do; write every character as '[Name] description' on its own line "
                "(or give a single untagged description for the one-character mode)",
                line=lineno,
                field="characters",
            )
        if line[:start].strip():
            raise ScriptError(
                f"text {line[:start].strip()!r} comes before the [Name] tag; start the line "
                "with the tag: '[Name] description'",
                line=lineno,
                field="characters",
            )
        name = line[start + 1 : end]
        _check_name(name, lineno, "characters")
        value = line[end + 1 :]
        if "#" in value:  # character_to_dict: the description is cut at its last '#'
            value = value.rpartition("#")[0]
        if "[" in value or "]" in value:
            raise ScriptError(
                f"the description of [{name}] contains a bracket ({value.strip()!r}); a character "
                "line holds one [Name] tag and a plain description: put each character on its own "
                "line and remove other brackets",
                line=lineno,
                field="characters",
            )
        if value.strip() == "":
            raise ScriptError(
                f"character [{name}] has an empty description; write what it looks like after the "
                f"tag, e.g. '[{name}] a man in a black suit'",
                line=lineno,
                field="characters",
            )
        _check_duplicate(name, lineno, seen, "characters")
        entries.append(_Entry(Character(name=name, description=value.strip()), value, lineno))
    return entries


def _parse_character_list(chars: Sequence[Any]) -> list[_Entry]:
    """Named mode from :class:`Character` objects (``line`` is the 1-based list position)."""
    entries: list[_Entry] = []
    seen: dict[str, int] = {}
    for pos, c in enumerate(chars, start=1):
        if not isinstance(c, Character):
            raise ScriptError(
                f"character {pos} is a {type(c).__name__}, not a storysdk.Character; pass "
                "Character(name=..., description=...) objects or the character text as a string",
                line=pos,
                field="characters",
            )
        name = c.name.strip() if isinstance(c.name, str) else ""
        if len(name) >= 2 and name.startswith("[") and name.endswith("]"):
            name = name[1:-1]  # accept "[Bob]" for "Bob"
        _check_name(name, pos, "characters")
        desc = c.description if isinstance(c.description, str) else ""
        if desc.strip() == "":
            raise ScriptError(
                f"character [{name}] has an empty description; set Character.description to what "
                "it looks like (it replaces the tag in frame prompts)",
                line=pos,
                field="characters",
            )
        if "[" in desc or "]" in desc:
            raise ScriptError(
                f"the description of [{name}] contains a bracket ({desc.strip()!r}); remove it, "
                "descriptions are inserted into prompts as plain text",
                line=pos,
                field="characters",
            )
        _check_duplicate(name, pos, seen, "characters")
        character = Character(name=name, description=desc.strip(), reference_image=c.reference_image)
        entries.append(_Entry(character, desc, pos))
    return entries


def _suggest(tag: str, names: Sequence[str]) -> str:
    pool = list(names) + [_NC_NAME]
    exact = [n for n in pool if n.casefold() == tag.strip().casefold()]
    close = exact or difflib.get_close_matches(tag, pool, n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(f'[{n}]' for n in close)}?)" if close else ""


_ID_FRAMES_MOVED = (
    "id frames are chosen by the image generator that renders them (other generators have none); "
    "give {name} to that generator instead, in its [[generators]] table of a story file or its "
    "options in Python (see 'storysdk plugins --options GENERATOR')"
)


class ScriptPlanner(Planner):
    """Plan a story from StoryDiffusion frame lines: one scene per line (see the module docs).

    The options are declared in :class:`ScriptPlanner.Options` (``storysdk plugins --options
    script``). Id frames are not chosen here: ``num_ids``, ``allow_nc_id_frames`` and
    ``nc_rows_check`` are options of the ``storydiffusion`` generator.
    """

    name: ClassVar[str] = "script"
    description: ClassVar[str] = (
        "StoryDiffusion frame lines ([Name] tags, [NC], '#' captions): one scene per line; no model"
    )

    class Options(BaseOptions):
        max_frames: int | None = Field(
            None, ge=1, description="keep only the first max_frames frames (the hosted demo keeps 10); None keeps all"
        )
        max_characters: int | None = Field(
            None, ge=1, description="refuse more characters than this (the upstream app allows 2); None: any number"
        )
        default_character_name: str = Field(
            "character", description="the name of the one character of unnamed mode (an untagged character text)"
        )
        strip_tags_in_captions: bool = Field(
            False, description="write [Bob] in captions as Bob (upstream keeps the tags)"
        )
        skip_blank_lines: bool = Field(
            True, description="skip blank frame lines (a deviation); False: each is a frame, as upstream"
        )
        strip_whitespace: bool = Field(
            True, description="strip prompts and captions at both ends (predict.py); False: lowvram.py's strings unchanged"
        )

        @field_validator("default_character_name")
        @classmethod
        def _plain_name(cls, value: str) -> str:
            problem = _name_problem(value)
            if problem is not None:
                raise ValueError(problem)
            return value

        moved: ClassVar[dict[str, str]] = {
            name: _ID_FRAMES_MOVED.format(name=name) for name in ("num_ids", "allow_nc_id_frames", "nc_rows_check")
        }

    options: Options

    # -- public API -----------------------------------------------------------------

    def plan(self, request: StoryRequest) -> StoryPlan:
        """Parse ``request.script`` and ``request.characters`` into a :class:`StoryPlan`."""
        script = self._script_text(request)
        named, entries = self._characters(request.characters)
        frames, dropped = self._frames(script, named, entries)
        scenes = self._scenes(frames, request.duration)
        metadata: dict[str, Any] = {
            "character_mode": "named" if named else "unnamed",
            "character_lines": {e.character.name: e.line for e in entries},
        }
        if dropped:
            metadata["dropped_lines"] = dropped
        return StoryPlan(
            scenes=scenes,
            characters=[e.character for e in entries],
            title=str(request.metadata.get("title", "")),
            style=request.style,
            negative_prompt=request.negative_prompt,
            width=request.width,
            height=request.height,
            seed=request.seed,
            planner=self.name,
            metadata=metadata,
        )

    # -- steps ----------------------------------------------------------------------

    def _script_text(self, request: StoryRequest) -> str:
        script = request.script
        if script is not None and not isinstance(script, str):
            raise ScriptError(
                f"script must be text (one frame per line), got {type(script).__name__}; "
                "join the frame lines with newlines"
            )
        if script is None or script.strip() == "":
            if request.prompt and request.prompt.strip():
                raise ScriptError(
                    "the script planner needs frame lines in 'script' (one frame per line) and does "
                    "not read the free-text 'prompt'; write the frames as a script, or choose a "
                    "planner that writes scenes from free text (an LLM planner such as the "
                    "SEED-Story or AudioStory planners; list them with "
                    "storysdk.get_registry().names('planner'))"
                )
            raise ScriptError(
                "the script is empty; write one frame per line, e.g. '[Bob] at home, reading a "
                "newspaper #Bob reads the news.'"
            )
        return script

    def _characters(self, chars: list[Character] | str | None) -> tuple[bool, list[_Entry]]:
        """``(named, entries)`` from the request's characters."""
        if chars is None:
            entries: list[_Entry] = []
            named = True
        elif isinstance(chars, str):
            if chars.strip() == "":
                entries, named = [], True
            elif "[" in chars or "]" in chars:
                entries, named = _parse_character_box(chars), True
            else:  # unnamed mode: the whole text is one description (predict.py)
                raw = chars.rpartition("#")[0] if "#" in chars else chars
                if raw.strip() == "":
                    raise ScriptError(
                        "the character description is empty before its '#'; write what the "
                        "character looks like, e.g. 'a man, wearing black suit'",
                        line=1,
                        field="characters",
                    )
                character = Character(name=self.options.default_character_name, description=raw.strip())
                entries, named = [_Entry(character, raw, 1)], False
        elif isinstance(chars, (list, tuple)):
            entries, named = _parse_character_list(chars), True
        else:
            raise ScriptError(
                f"characters must be a list of storysdk.Character or the character text, got "
                f"{type(chars).__name__}",
                field="characters",
            )
        limit = self.options.max_characters
        if limit is not None and len(entries) > limit:
            extra = entries[limit]
            upstream = (
                " (StoryDiffusion's app refuses 3 or more characters because of GPU memory limits)"
                if limit == _UPSTREAM_MAX_CHARACTERS
                else ""
            )
            raise ScriptError(
                f"{len(entries)} characters given, but at most {limit} are supported"
                f"{upstream}; [{extra.character.name}] is one too many: remove characters or "
                f"raise max_characters (None allows any number)",
                line=extra.line,
                field="characters",
            )
        return named, entries

    def _frames(
        self, script: str, named: bool, entries: list[_Entry]
    ) -> tuple[list[_Frame], int]:
        frames: list[_Frame] = []
        dropped = 0
        for lineno, line in enumerate(script.splitlines(), start=1):
            if self.options.skip_blank_lines and line.strip() == "":
                continue
            if self.options.max_frames is not None and len(frames) >= self.options.max_frames:
                dropped += 1
                continue
            frames.append(self._frame(line, lineno, named, entries))
        if not frames:
            raise ScriptError(
                "the script has only blank lines; write one frame per line"
            )
        return frames, dropped

    def _frame(self, line: str, lineno: int, named: bool, entries: list[_Entry]) -> _Frame:
        _check_brackets(line, lineno, "script", "frame line")
        nc = NC_TAG in line
        body = line.replace(NC_TAG, "")  # every [NC] is removed (L792-802, L946-951)
        if "#" in body:
            prompt_part, _, caption = body.rpartition("#")
        else:
            prompt_part, caption = body, body
        raw_by_name = {e.character.name: e.raw for e in entries}
        tags: list[str] = []
        for tag in _TAG.findall(prompt_part):
            if tag == "":
                raise ScriptError(
                    "empty tag '[]'; write a character name between the brackets or remove them",
                    line=lineno,
                )
            if tag not in raw_by_name:
                if named and raw_by_name:
                    known = ", ".join(f"[{n}]" for n in raw_by_name)
                    fix = f"tags must be character names ({known}) or [NC]"
                elif named:
                    fix = "no characters are defined: define it in characters as '[Name] description'"
                else:
                    fix = (
                        "the character text has no [Name] tags, so frame lines may only use [NC]; "
                        "to name characters write '[Name] description' lines in characters"
                    )
                raise ScriptError(
                    f"unknown tag [{tag}]{_suggest(tag, list(raw_by_name))}; {fix}",
                    line=lineno,
                )
            if tag not in tags:
                tags.append(tag)
        if nc and tags:
            raise ScriptError(
                f"[NC] (no character) together with {', '.join(f'[{t}]' for t in tags)} in one "
                "frame; remove [NC] to show the character, or remove the tag for a frame without one",
                line=lineno,
            )
        if named:
            prompt = prompt_part
            for name in tags:  # process_original_prompt: tag -> description + " "
                prompt = prompt.replace(f"[{name}]", raw_by_name[name] + " ")
            characters = tuple(tags)
        elif nc:
            prompt, characters = prompt_part, ()
        else:  # predict.py: description + "," + line
            prompt, characters = entries[0].raw + "," + prompt_part, (entries[0].character.name,)
        if prompt_part.strip() == "" and not characters:
            raise ScriptError(
                f"the frame has an empty prompt after removing [NC] and the caption after the last "
                f"'#' (line {line!r}); write what the frame shows before the '#'",
                line=lineno,
            )
        if self.options.strip_tags_in_captions:
            for name in raw_by_name:
                caption = caption.replace(f"[{name}]", name)
        if self.options.strip_whitespace:
            prompt, caption = prompt.strip(), caption.strip()
        return _Frame(lineno, line, prompt, caption, characters, nc)

    def _scenes(self, frames: list[_Frame], duration: float | None) -> list[Scene]:
        each = duration / len(frames) if duration is not None else None
        return [
            Scene(
                index=index,
                prompt=f.prompt,
                caption=f.caption,
                characters=f.characters,
                duration=each,
                metadata={"raw": f.raw, "line": f.lineno, "nc": f.nc},
            )
            for index, f in enumerate(frames)
        ]
