"""Which frames are each character's id (identity) frames (docs/storydiffusion.md §1.5, §2).

The ``script`` planner marks them in ``Scene.metadata`` (``id_frame``/``id_character``); a
plan from elsewhere gets them derived as upstream does: for each character, the first
``num_ids`` frames that show only that character (``process_original_prompt``).
"""

from __future__ import annotations

from storysdk.errors import ScriptError
from storysdk.model import Scene, StoryPlan

__all__ = ["characters_in_order", "id_frames_of"]


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


def id_frames_of(plan: StoryPlan, num_ids: int) -> dict[str, list[Scene]]:
    """``{character: its id scenes}`` in plan order.

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

