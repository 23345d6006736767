"""The ``storysdk`` command: ``plugins``, ``plan``, ``run``, ``batch`` and ``serve``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from .errors import StorySDKError
from .interfaces import ProgressEvent

__all__ = ["main"]


class ProgressBar:
    """A one-line progress bar on a terminal; one line per finished item elsewhere (logs, CI)."""

    def __init__(self, stream: TextIO | None = None, width: int = 24) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.tty = self.stream.isatty()
        self._open = False

    def __call__(self, ev: ProgressEvent) -> None:
        if ev.stage == "step":
            if not self.tty:
                return
        total = max(ev.total, 1)
        label = f"{ev.stage:<8} {ev.component}"
        if ev.scene_index is not None and ev.stage != "step":
            label += f" scene {ev.scene_index}"
        if ev.message:
            label += f" ({ev.message})"
        if self.tty:
            filled = int(self.width * min(ev.done, total) / total)
            bar = "#" * filled + "-" * (self.width - filled)
            self.stream.write(f"\r\x1b[K[{bar}] {ev.done}/{ev.total} {label}")
            self._open = True
            if ev.done >= ev.total and ev.stage != "step":
                self.stream.write("\n")
                self._open = False
        elif ev.done > 0 or ev.message:
            self.stream.write(f"{ev.done}/{ev.total} {label}\n")
        self.stream.flush()

    def close(self) -> None:
        if self._open:
            self.stream.write("\n")
            self._open = False


def _cmd_plugins(args: argparse.Namespace) -> int:
    from .registry import get_registry

    reg = get_registry()
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
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4])
    if reg.failed:
        print("\nFailed plugins:")
        for f in reg.failed:
            ver = f" {f.version}" if f.version else ""
            print(f"  {f.name}{ver}: {f.error}")
    return 0


def _defaults(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("preset", "device", "dtype"):
        value = getattr(args, key, None)
        if value is not None:
            out[key] = value
    return out


def _load(args: argparse.Namespace) -> Any:
    from .storyfile import load_story_file

    sf = load_story_file(args.story)
    if args.seed is not None:
        sf.request.seed = args.seed
    return sf


def _cmd_plan(args: argparse.Namespace) -> int:
    sf = _load(args)
    pipe = sf.pipeline(defaults=_defaults(args))
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
    pipe = sf.pipeline(defaults=_defaults(args))
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

    p = sub.add_parser("plugins", help="list components with their plugin, version and capabilities")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_plugins)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("story", help="story file (TOML)")
        sp.add_argument("--seed", type=int, help="override the story's seed")
        sp.add_argument("--preset", help="preset for model-backed components: tiny, auto or full")
        sp.add_argument("--device", help="cpu, cuda, cuda:1, auto")
        sp.add_argument("--dtype", help="float32, float16, bfloat16, auto")

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
    except KeyboardInterrupt:
        print("\nstorysdk: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
