"""The ``storysdk`` command: ``plugins``, ``plan``, ``run``, ``batch`` and ``serve``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .cliargs import add_runtime_arguments, runtime_options
from .errors import StorySDKError
from .progress import ProgressBar

__all__ = ["ProgressBar", "build_parser", "main"]


def _cmd_plugins(args: argparse.Namespace) -> int:
    from .registry import get_registry

    reg = get_registry()
    if args.options is not None:
        return _print_options(reg, args.options, as_json=args.json)
    if args.json:
        data = {
            "plugins": [
                {
                    "name": p.name,
                    "version": p.version,
                    "hooks": list(p.hooks),
                    "components": [
                        {"kind": c.kind, "name": c.name, **c.capabilities()} for c in p.components
                    ],
                }
                for p in reg.plugins()
            ],
            "failed": [
                {"name": f.name, "distribution": f.distribution, "version": f.version, "error": f.error}
                for f in reg.failed
            ],
        }
        print(json.dumps(data, indent=2))
        return 0
    rows = [("KIND", "NAME", "PLUGIN", "VERSION", "CAPABILITIES")]
    for c in reg.components():
        caps = ", ".join(
            f"{k}={'/'.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in c.capabilities().items()
            if v not in ((), [], "", False)
        )
        rows.append((c.kind, c.name, c.plugin, c.version or "-", caps))
    _print_table(rows)
    if reg.failed:
        print("\nFailed plugins:")
        for f in reg.failed:
            ver = f" {f.version}" if f.version else ""
            print(f"  {f.name}{ver}: {f.error}")
    return 0


def _print_table(rows: Sequence[Sequence[str]], indent: str = "", caps: Sequence[int | None] = ()) -> None:
    """Rows as left-aligned columns. A column with a cap in ``caps`` wraps its cells at that
    width (at spaces); the last column is neither padded nor wrapped (it may be long)."""
    count = len(rows[0])
    limits = list(caps) + [None] * (count - len(caps))
    cells = [
        [
            textwrap.wrap(cell, limits[i], break_long_words=False) or [""]
            if limits[i] is not None and i < count - 1 and len(cell) > limits[i]  # type: ignore[operator]
            else [cell]
            for i, cell in enumerate(row)
        ]
        for row in rows
    ]
    widths = [max(len(line) for row in cells for line in row[i]) for i in range(count - 1)]
    for row in cells:
        for n in range(max(len(c) for c in row)):
            parts = [(row[i][n] if n < len(row[i]) else "").ljust(widths[i]) for i in range(count - 1)]
            last = row[-1][n] if n < len(row[-1]) else ""
            print((indent + "  ".join(parts + [last])).rstrip())


def _shown(value: Any) -> str:
    """An option's default as a story file would spell it (``None`` stays ``None``: unset)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return repr(value)


def _print_options(reg: Any, name: str, *, as_json: bool) -> int:
    """``storysdk plugins --options NAME``: the declared options of every component called ``name``."""
    from .errors import UnknownComponentError
    from .options import suggest

    found = [c for c in reg.components() if c.name == name]
    if not found:
        names = sorted({c.name for c in reg.components()})
        failed = [f.name for f in reg.failed]
        hint = f" Plugins that failed to load: {', '.join(failed)}." if failed else ""
        raise UnknownComponentError(
            f"no component named {name!r}.{suggest(name, names)} "
            f"See 'storysdk plugins' for the registered names.{hint}"
        )
    if as_json:
        data = {
            "components": [
                {
                    "kind": c.kind,
                    "name": c.name,
                    "plugin": c.plugin,
                    "version": c.version,
                    "description": c.factory.description,
                    "declared": c.declared(),
                    "options": [o.to_dict() for o in c.option_info()],
                    "renamed": dict(c.renamed()),
                }
                for c in found
            ]
        }
        print(json.dumps(data, indent=2, ensure_ascii=False, default=repr))
        return 0
    for n, c in enumerate(found):
        if n:
            print()
        version = f" {c.version}" if c.version else ""
        about = f": {c.factory.description}" if c.factory.description else ""
        print(f"{c.kind} {c.name!r} (plugin {c.plugin}{version}){about}")
        infos = c.option_info()
        if not infos:
            print("  no options")
            continue
        rows = [("OPTION", "TYPE", "DEFAULT", "CONSTRAINTS", "DESCRIPTION")]
        for o in infos:
            default = "(required)" if o.required else _shown(o.default)
            rows.append((o.name, o.type, default, ", ".join(o.constraints) or "-", o.description or "-"))
        _print_table(rows, indent="  ", caps=(None, 28, 22, 22))
        for old, new in c.renamed().items():
            print(f"  renamed: {old} -> {new}")
        if not c.declared():
            print("  (options read from the constructor's signature: this component declares no Options class)")
    return 0


def _load(args: argparse.Namespace) -> Any:
    from .storyfile import load_story_file

    sf = load_story_file(args.story)
    if args.seed is not None:
        sf.request.seed = args.seed
    return sf


def _cmd_plan(args: argparse.Namespace) -> int:
    sf = _load(args)
    pipe = sf.pipeline(defaults=runtime_options(args))
    plan = pipe.plan(sf.request)
    text = plan.to_json() + "\n"
    if args.out == "-":
        sys.stdout.write(text)
        return 0
    out = Path(args.out) if args.out else Path(args.story).with_suffix(".plan.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"plan: {out} ({len(plan.scenes)} scenes)")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from .model import StoryPlan

    sf = _load(args)
    pipe = sf.pipeline(defaults=runtime_options(args))
    out = Path(args.out) if args.out else Path(sf.output.get("dir", Path("out") / Path(args.story).stem))
    plan = StoryPlan.load(args.plan) if args.plan else None
    if plan is not None and args.seed is not None:
        plan.seed = args.seed
    bar = ProgressBar() if not args.quiet else None
    try:
        story = pipe.run(sf.request, out_dir=out, plan=plan, progress=bar, overwrite=args.overwrite)
    finally:
        if bar is not None:
            bar.close()
    print(f"story: {out}")
    print(f"  plan: {out / 'plan.json'}")
    for name, paths in story.files.items():
        for p in paths:
            print(f"  {name}: {p}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="storysdk", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "plugins",
        help="list components with their plugin, version and capabilities, or one component's options",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--options",
        metavar="NAME",
        help="print the declared options (type, default, constraints, description) of the components named NAME",
    )
    p.set_defaults(func=_cmd_plugins)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("story", help="story file (TOML)")
        sp.add_argument("--seed", type=int, help="override the story's seed")
        add_runtime_arguments(sp)

    p = sub.add_parser("plan", help="write the plan JSON of a story file")
    common(p)
    p.add_argument("--out", help="plan file to write (default: STORY.plan.json; '-' for stdout)")
    p.set_defaults(func=_cmd_plan)

    p = sub.add_parser("run", help="plan, render and compose a story file")
    common(p)
    p.add_argument("--out", help="output folder (default: out/<story name>)")
    p.add_argument("--plan", help="render this plan JSON instead of planning")
    p.add_argument("--overwrite", action="store_true", help="replace an output folder that holds another story")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_run)

    from .batch import add_parser as _add_batch

    _add_batch(sub)
    from .server.cli import add_parser as _add_serve

    _add_serve(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except StorySDKError as exc:
        print(f"storysdk: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (storysdk plugins | head): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("\nstorysdk: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
