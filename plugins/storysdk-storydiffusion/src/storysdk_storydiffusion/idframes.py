"""Which frames are each character's id (identity) frames (docs/storydiffusion.md §1.5, §2).

Consistent Self-Attention first renders ``num_ids`` *id frames* per character together; their
attention features are the character's reference for the other frames. Choosing them, and
refusing a plan whose characters lack them, is this module's job (the generator's
``check_plan`` calls :func:`choose_id_frames` before any model is loaded; ``generate`` calls it
again). It works on plans from any planner:

- **marked plans**: scenes with ``metadata["id_frame"] = True`` (and ``"id_character"``) are
  used as they are (a plan written by hand, or saved by an earlier storysdk);
- **unnamed mode** of the ``script`` planner (``plan.metadata["character_mode"] ==
  "unnamed"``, the hosted API and predict.py): the first ``num_ids`` frames, whatever they
  show; more ids than frames is an error (predict.py). ``[NC]`` among them is an error, as in
  the gradio apps (``old.py``, ``lowvram.py`` L792-802), unless ``allow_nc_id_frames``:
  predict.py (and so the hosted API) renders that ``[NC]`` frame in the id batch, without the
  description;
- **named mode** of the ``script`` planner (lowvram.py): for each character of the plan, the
  first ``num_ids`` frames that show *only* that character (``process_original_prompt``);
  fewer is an error naming the character's line and the frame lines (upstream issue #168), and
  so is a character that appears alone in no frame (upstream meant to raise one, but its
  check is dead code). ``nc_rows_check`` also rejects ``[NC]`` in the first ``num_ids`` rows
  of the script, as lowvram.py does although id frames are chosen per character;
- **any other plan** (no ``character_mode``): derived as upstream, for each character that
  appears in a scene, the first ``num_ids`` scenes showing only it.

The scene facts come from the ``script`` planner's metadata (``"line"``, ``"nc"``); a plan
without them counts scenes by position and takes a scene without characters as ``[NC]``.
"""

from __future__ import annotations

from storysdk.errors import ScriptError
from storysdk.model import Scene, StoryPlan

__all__ = ["DEFAULT_NUM_IDS", "characters_in_order", "choose_id_frames", "id_frames_of"]

#: The hosted API's default (docs/storydiffusion-api.md); the upstream app's slider defaults to 1.
DEFAULT_NUM_IDS = 3


def characters_in_order(plan: StoryPlan) -> list[str]:
    """The plan's characters, then names that only appear in scenes, in order of first appearance."""
    names = [c.name for c in plan.characters]
    for scene in plan.scenes:
        for name in scene.characters:
            if name not in names:
                names.append(name)
    return names


def _marked(plan: StoryPlan) -> dict[str, list[Scene]]:
    out: dict[str, list[Scene]] = {}
    for scene in plan.scenes:
        if not scene.metadata.get("id_frame"):
            continue
        name = scene.metadata.get("id_character")
        if name is None:
            if len(scene.characters) != 1:
                raise ScriptError(
                    f"scene {scene.index} is marked as an id frame but names no id_character and shows "
                    f"{len(scene.characters)} characters; set metadata['id_character'] to the character "
                    "it is a reference of",
                    field="plan",
                )
            name = scene.characters[0]
        out.setdefault(str(name), []).append(scene)
    return out


def _line(scene: Scene) -> int | None:
    line = scene.metadata.get("line")
    return line if isinstance(line, int) and not isinstance(line, bool) else None


def _is_nc(scene: Scene) -> bool:
    nc = scene.metadata.get("nc")
    return bool(nc) if nc is not None else not scene.characters


def _reject_nc_rows(scenes: list[Scene], n: int) -> None:
    for scene in scenes[:n]:
        if _is_nc(scene):
            raise ScriptError(
                f"[NC] on one of the first num_ids={n} frames; these are the character's id "
                "(reference) frames and must show the character: move the [NC] frame later, "
                "or lower num_ids",
                line=_line(scene),
            )


def _unnamed(plan: StoryPlan, n: int, allow_nc_id_frames: bool) -> dict[str, list[Scene]]:
    scenes = list(plan.scenes)
    if n > len(scenes):
        raise ScriptError(
            f"num_ids={n} but the script has only {len(scenes)} frame line(s); the first "
            f"num_ids frames are the character's id (reference) frames: add frame lines or "
            f"lower num_ids to at most {len(scenes)}"
        )
    if not allow_nc_id_frames:
        _reject_nc_rows(scenes, n)
    if not plan.characters:
        return {}
    return {plan.characters[0].name: scenes[:n]}


def _named(plan: StoryPlan, n: int, nc_rows_check: bool) -> dict[str, list[Scene]]:
    scenes = list(plan.scenes)
    if nc_rows_check:
        _reject_nc_rows(scenes, n)
    lines = plan.metadata.get("character_lines")
    lines = lines if isinstance(lines, dict) else {}
    out: dict[str, list[Scene]] = {}
    for character in plan.characters:
        name = character.name
        alone = [s for s in scenes if tuple(s.characters) == (name,)]
        if len(alone) < n:
            lines_of = [_line(s) for s in alone]
            word, numbers = ("line", lines_of) if None not in lines_of else ("scene", [s.index for s in alone])
            where = f" ({word}{'s' if len(alone) > 1 else ''} {', '.join(map(str, numbers))})" if alone else ""
            lower = (
                f", or lower num_ids to {len(alone)}"
                if alone
                else f", or remove [{name}] from the characters if no frame needs it"
            )
            raise ScriptError(
                f"character [{name}] appears alone in {len(alone)} frame line(s){where}, but "
                f"num_ids={n} id frames are needed: the first {n} frames that show only [{name}] "
                f"are rendered together as its reference. Add {n - len(alone)} more frame "
                f"line(s) with [{name}] and no other tag{lower} (upstream issue #168)",
                line=lines.get(name),
                field="characters",
            )
        out[name] = alone[:n]
    # in plan order of the first id frame, as the planner's marks used to give them
    return dict(sorted(out.items(), key=lambda kv: kv[1][0].index))


def id_frames_of(plan: StoryPlan, num_ids: int) -> dict[str, list[Scene]]:
    """``{character: its id scenes}`` of a plan from any planner, derived as upstream does.

    Marked plans (``Scene.metadata["id_frame"]``) are used as they are; otherwise the first
    ``num_ids`` scenes showing only the character are chosen, and a character appearing alone
    in fewer scenes is a :class:`ScriptError` (upstream raises too, issue #168).
    """
    if any(s.metadata.get("id_frame") for s in plan.scenes):
        return _marked(plan)
    out: dict[str, list[Scene]] = {}
    for name in characters_in_order(plan):
        if not any(name in s.characters for s in plan.scenes):
            continue
        alone = [s for s in plan.scenes if tuple(s.characters) == (name,)]
        if len(alone) < num_ids:
            raise ScriptError(
                f"character [{name}] appears alone in {len(alone)} scene(s) but num_ids={num_ids} id "
                f"frames are needed (the first {num_ids} scenes showing only [{name}] are rendered "
                f"together as its reference, docs/storydiffusion.md §1.5); add scenes with only [{name}] "
                f"or lower num_ids to {max(1, len(alone))}",
                field="plan",
            )
        out[name] = alone[:num_ids]
    return out


def choose_id_frames(
    plan: StoryPlan,
    num_ids: int | None = None,
    *,
    allow_nc_id_frames: bool = False,
    nc_rows_check: bool = False,
) -> dict[str, list[Scene]]:
    """``{character: its id scenes}`` for ``plan`` (see the module docs), or a :class:`ScriptError`.

    ``num_ids`` ``None``: the plan's ``metadata["num_ids"]`` when it sets one, else
    :data:`DEFAULT_NUM_IDS`. Needs no model.
    """
    if num_ids is None:
        given = plan.metadata.get("num_ids")
        num_ids = given if isinstance(given, int) and not isinstance(given, bool) and given >= 1 else DEFAULT_NUM_IDS
    if any(s.metadata.get("id_frame") for s in plan.scenes):
        return _marked(plan)
    mode = plan.metadata.get("character_mode")
    if mode == "unnamed":
        return _unnamed(plan, num_ids, allow_nc_id_frames)
    if mode == "named":
        return _named(plan, num_ids, nc_rows_check)
    return id_frames_of(plan, num_ids)
