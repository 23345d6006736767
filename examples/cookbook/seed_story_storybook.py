"""SEED-Story writes the story, StoryDiffusion draws it, storybook HTML (cookbook recipe B).

    python examples/cookbook/seed_story_storybook.py OUT_DIR                    # tiny preset, CPU, ~30 s
    python examples/cookbook/seed_story_storybook.py OUT_DIR --preset auto --device cuda \\
        --size 768 --steps 50 --scenes 8 --pretrained /w/seed-story             # real weights, GPU

Two pipelines, with a plan file between them:

1. ``OUT_DIR/text``: the ``seed-story`` planner alone (no generator) continues the start
   picture and its caption scene by scene; its ``plan.json`` holds the texts.
2. ``OUT_DIR/cast-plan.json``: every scene is cast with one character (``Character`` in the
   plan, ``Scene.characters``, and the description in front of the prompt), the texts kept
   exactly; the first ``--num-ids`` scenes become the character's id frames.
3. ``OUT_DIR/storybook``: that plan rendered by the ``storydiffusion`` generator (id frames,
   then Consistent Self-Attention) and composed by ``storybook`` (with ``embed=false``: the
   pictures go to ``storybook_files/`` beside the HTML) and ``frames``.

Why not the ``seed-story`` planner with ``storydiffusion`` as its generator in one
interleaved run? It runs, but (a) SEED-Story's scenes name no characters, so every frame
would be an ``[NC]`` frame and Consistent Self-Attention would never engage; (b) the planner
conditions each next scene on its own regressed image features, not on the generator's
picture, so the text is the same either way; (c) even with characters added as scenes are
written, each scene would be its own generator call, re-rendering the id frames every time.
Two pipelines give the same text with one id-frame pass.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import storysdk

HERE = Path(__file__).resolve().parent
START_IMAGE = HERE.parent / "start.png"
START_CAPTION = "George the little monkey sat in the garden and watched the sun rise over the hill."
CHARACTER = "George=a little brown monkey with a red cap"


def write_story(out_dir: Path, args: argparse.Namespace) -> storysdk.Story:
    """Stage 1: SEED-Story's MLLM writes ``args.scenes`` scenes (the start scene included)."""
    request = storysdk.StoryRequest(
        start_image=str(args.start_image), start_caption=args.start_caption, num_scenes=args.scenes, seed=args.seed
    )
    planner = ("seed-story", {"pretrained": args.pretrained} if args.pretrained else {})
    pipe = storysdk.Pipeline(planner=planner, defaults={"preset": args.preset, "device": args.device})
    return pipe.run(request, out_dir=out_dir, overwrite=args.overwrite)


def cast(plan: storysdk.StoryPlan, name: str, description: str, *, style: str | None = None,
         size: int | None = None, num_ids: int = 2) -> storysdk.StoryPlan:
    """A copy of ``plan`` in which every scene shows ``name``; captions are kept as written.

    ``style``, ``size`` (frame width and height) and ``num_ids`` (StoryDiffusion takes the
    first ``num_ids`` scenes showing only ``name`` as its id frames) are written into the
    plan, so whatever renders the plan file later uses them.
    """
    cast_plan = storysdk.StoryPlan.from_dict(plan.to_dict())
    cast_plan.characters = [storysdk.Character(name=name, description=description)]
    cast_plan.style = style or cast_plan.style
    if size is not None:
        cast_plan.width = cast_plan.height = size
    cast_plan.metadata["num_ids"] = num_ids
    for scene in cast_plan.scenes:
        scene.characters = (name,)
        scene.prompt = f"{description}, {scene.prompt}"
    return cast_plan


def draw_storybook(plan: storysdk.StoryPlan, out_dir: Path, args: argparse.Namespace) -> storysdk.Story:
    """Stage 2: StoryDiffusion renders the cast plan; storybook (and frames) compose it."""
    pipe = storysdk.Pipeline(
        generators=[(  # size, style and num_ids: the plan's
            "storydiffusion", {"steps": args.steps, **({"model": args.sd_model} if args.sd_model else {})},
        )],
        composers=[("storybook", {"title": args.title, "embed": False}), "frames"],
        defaults={"preset": args.preset, "device": args.device},
    )
    # the request only seeds the run and identifies the folder; the plan replaces the planner
    request = storysdk.StoryRequest(prompt=args.start_caption, seed=args.seed)
    return pipe.run(request, plan=plan, out_dir=out_dir, overwrite=args.overwrite)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", nargs="?", default="out/cookbook/storybook", help="output folder")
    parser.add_argument("--preset", default="tiny", help="tiny (default), auto or full")
    parser.add_argument("--device", default="auto", help="cpu, cuda, auto")
    parser.add_argument("--start-image", default=START_IMAGE, type=Path, help="the story's first picture")
    parser.add_argument("--start-caption", default=START_CAPTION, help="its caption")
    parser.add_argument("--scenes", type=int, default=4, help="scenes in all, the start scene included")
    parser.add_argument("--character", default=CHARACTER, help='"Name=description" of the character every scene shows')
    parser.add_argument("--num-ids", type=int, default=2, help="id frames of the character (StoryDiffusion's id_length)")
    parser.add_argument("--style", default="Comic book", help="a StoryDiffusion style name")
    parser.add_argument("--title", default="George's Morning", help="the storybook's title")
    parser.add_argument("--size", type=int, help="frame width and height (multiple of 32; tiny: 64, else 768)")
    parser.add_argument("--steps", type=int, help="StoryDiffusion denoising steps (tiny: 2, else 50)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--pretrained", help="SEED-Story's weights folder (default: ./pretrained, see the plugin)")
    parser.add_argument("--sd-model", help="StoryDiffusion's SDXL model: a name (Unstable, ...), folder or .safetensors")
    parser.add_argument("--overwrite", action="store_true", help="replace output folders holding another story")
    args = parser.parse_args(argv)
    if "=" not in args.character:
        parser.error('--character must be "Name=description"')
    tiny = args.preset == "tiny"
    args.size = args.size or (64 if tiny else 768)
    args.steps = args.steps or (2 if tiny else 50)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, storysdk.Story]:
    args = parse_args(argv)
    out = Path(args.out_dir)
    text = write_story(out / "text", args)
    name, description = (part.strip() for part in args.character.split("=", 1))
    plan = cast(text.plan, name, description, style=args.style, size=args.size, num_ids=args.num_ids)
    plan.save(out / "cast-plan.json")
    book = draw_storybook(plan, out / "storybook", args)
    for path in book.files["storybook"][:1]:
        print(path)
    return {"text": text, "storybook": book}


if __name__ == "__main__":
    main(sys.argv[1:])
