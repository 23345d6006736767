"""Render a story file with one of its components swapped or dropped (cookbook recipe D).

    python examples/cookbook/swap_component.py examples/frames-with-tangoflux.toml out/cookbook/swapped \\
        --preset tiny --swap storydiffusion=diffusers-image --set steps=2 --drop tangoflux

``--swap OLD=NEW`` replaces the component named OLD (planner, tokenizer, generator or composer)
by NEW of the same kind. The options written for OLD that NEW also accepts are carried over
(the others are listed and left out); ``--set KEY=VALUE`` then sets options of NEW (VALUE is
read as TOML: ``4``, ``0.5``, ``true``, ``[512, 512]``, else as a string). ``--drop NAME``
removes a tokenizer, generator or composer. The story file itself is not changed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import storysdk

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

KINDS = (("planner", None), ("tokenizer", "tokenizers"), ("generator", "generators"), ("composer", "composers"))


def toml_value(text: str) -> Any:
    """``"4"`` -> 4, ``"true"`` -> True, ``"[1, 2]"`` -> [1, 2]; anything else stays a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def swap(story_file: storysdk.StoryFile, old: str, new: str, options: dict[str, Any]) -> list[str]:
    """Replace component ``old`` by ``new`` in place; returns the options of ``old`` left out."""
    registry = storysdk.get_registry()
    for kind, attr in KINDS:
        specs = [story_file.planner] if attr is None else getattr(story_file, attr)
        for i, spec in enumerate(specs):
            if spec["name"] != old:
                continue
            accepted = registry.get(kind, new).options()  # an unknown name raises, listing the known ones
            kept = {k: v for k, v in spec.items() if k != "name" and k in accepted}
            dropped = sorted(k for k in spec if k != "name" and k not in accepted)
            replacement = {"name": new, **kept, **options}
            if attr is None:
                story_file.planner = replacement
            else:
                specs[i] = replacement
            return dropped
    raise storysdk.ConfigError(f"the story file has no component named {old!r}; see its tables for the names")


def drop(story_file: storysdk.StoryFile, name: str) -> None:
    """Remove the tokenizer, generator or composer named ``name``."""
    for _, attr in KINDS[1:]:
        specs = getattr(story_file, attr)
        if any(s["name"] == name for s in specs):
            setattr(story_file, attr, [s for s in specs if s["name"] != name])
            return
    raise storysdk.ConfigError(f"the story file has no tokenizer, generator or composer named {name!r}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("story_file")
    parser.add_argument("out_dir")
    parser.add_argument("--swap", action="append", default=[], metavar="OLD=NEW")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an option of the last --swap's NEW")
    parser.add_argument("--drop", action="append", default=[], metavar="NAME")
    parser.add_argument("--preset", help="overrides the file's [defaults] preset (tiny, auto, full)")
    parser.add_argument("--device", help="overrides the file's [defaults] device")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    for item in [*args.swap, *args.set]:
        if "=" not in item:
            parser.error(f"{item!r} must be written NAME=VALUE")
    if args.set and not args.swap:
        parser.error("--set sets options of the component given by --swap; add --swap OLD=NEW")
    return args


def main(argv: Sequence[str] | None = None) -> storysdk.Story:
    args = parse_args(argv)
    story_file = storysdk.load_story_file(args.story_file)
    options = {k.strip(): toml_value(v.strip()) for k, v in (s.split("=", 1) for s in args.set)}
    for n, item in enumerate(args.swap):
        old, new = (part.strip() for part in item.split("=", 1))
        dropped = swap(story_file, old, new, options if n == len(args.swap) - 1 else {})
        if dropped:
            print(f"{new} does not take {', '.join(dropped)} (options of {old}): left out", file=sys.stderr)
    for name in args.drop:
        drop(story_file, name)
    overrides = {k: v for k, v in (("preset", args.preset), ("device", args.device)) if v}
    story = story_file.pipeline(defaults=overrides).run(
        story_file.request, out_dir=Path(args.out_dir), overwrite=args.overwrite
    )
    for paths in story.files.values():
        for path in paths:
            print(path)
    return story


if __name__ == "__main__":
    main(sys.argv[1:])
