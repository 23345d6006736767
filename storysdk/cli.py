"""The ``storysdk`` command: ``plugins``, ``plan``, ``run``, ``batch`` and ``serve``."""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import textwrap
import traceback
from collections.abc import Sequence
from types import TracebackType
from pathlib import Path
from typing import Any

from .cliargs import add_limit_arguments, add_runtime_arguments, limits_from_args, runtime_options
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


def _cmd_limits(args: argparse.Namespace) -> int:
    """``storysdk limits``: every limit with its value (the defaults, or with ``--limit`` flags), unit and meaning."""
    from .limits import LIMITS

    values = limits_from_args(args).to_dict()
    if args.json:
        data = {name: {"value": values[name], "unit": info.unit, "what": info.what, "why": info.why}
                for name, info in LIMITS.items()}
        print(json.dumps(data, indent=2))
        return 0
    rows = [("LIMIT", "VALUE", "UNIT", "BOUNDS")]
    for name, info in LIMITS.items():
        value = values[name]
        shown = "none" if value is None else str(int(value)) if float(value).is_integer() else str(value)
        rows.append((name, shown, info.unit, info.what))
    _print_table(rows)
    print("\nRaise or lower one with --limit NAME=VALUE (storysdk run, plan, serve; NAME=none: no limit),")
    print("or Limits(NAME=VALUE) in Python (Pipeline(limits=...)). Why each default: docs/story-files.md#limits")
    return 0


def _pipeline(sf: Any, args: argparse.Namespace) -> Any:
    """The story file's pipeline with the command's runtime options and limits (``--limit``)."""
    limits = limits_from_args(args)
    limits.check_tracks(sf.tracks if sf.tracks is not None else sf.generators)  # before any is built
    pipe = sf.pipeline(defaults=runtime_options(args))
    pipe.limits = limits
    return pipe


def _weights_line(weights: dict[str, str]) -> str | None:
    """The run summary's one line on which weights were used (components with the same weights
    together); loud when ``preset='auto'`` fell back to the tiny preset."""
    if not weights:
        return None
    groups: dict[str, list[str]] = {}
    for who, used in weights.items():
        groups.setdefault(used, []).append(who)
    listed = "; ".join(f"{', '.join(whos)}: {used}" for used, whos in groups.items())
    fell = [who for who, used in weights.items() if used.startswith("tiny (fallback:")]
    if fell:
        return (f"  weights: RANDOM TOY WEIGHTS, preset=auto fell back to the tiny preset for {len(fell)} of "
                f"{len(weights)} components; {listed}")
    return f"  weights: {listed}"


def _story_lines(story: Any, out: Path) -> list[str]:
    """The run summary's lines on the timeline and each track: what it made and where."""
    lines = []
    timeline = story.timeline
    if timeline is not None and (out / "timeline.json").is_file():
        lines.append(f"  timeline: {out / 'timeline.json'} ({len(timeline.scenes)} scenes, {timeline.total:.2f} s)")
    for name, track in story.tracks.items():
        made = "pictures" if track.modality == "image" else "clips"
        count = f"{len(track.assets)} {made}"
        if track.planner:
            count += f" for {len(track.cues)} cues planned by {track.planner}"
        mix = []
        if track.modality == "audio" and track.gain:
            mix.append(f"gain {track.gain:+g} dB")
        if track.modality == "audio" and track.duck is not None:
            mix.append(f"ducks the others by {track.duck:g} dB")
        extra = f", {', '.join(mix)}" if mix else ""
        lines.append(f"  track {name} ({track.modality}, {track.generator}{extra}): {count} in {out / 'tracks' / name}")
    return lines


def _cmd_plan(args: argparse.Namespace) -> int:
    sf = _load(args)
    pipe = _pipeline(sf, args)
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
    pipe = _pipeline(sf, args)
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
    for line in _story_lines(story, out):
        print(line)
    line = _weights_line(pipe.weights())
    if line is not None:
        print(line)
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
        add_limit_arguments(sp)

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

    p = sub.add_parser("limits", help="list the limits checked before any model loads, with their values")
    add_limit_arguments(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_limits)

    from .batch import add_parser as _add_batch

    _add_batch(sub)
    from .server.cli import add_parser as _add_serve

    _add_serve(sub)
    trace_help = "on an error, print the Python traceback too (for debugging and bug reports)"
    parser.add_argument("--traceback", action="store_true", help=trace_help)
    for sp in sub.choices.values():  # also accepted after the command: storysdk run x.toml --traceback
        sp.add_argument("--traceback", action="store_true", default=argparse.SUPPRESS, help=trace_help)
    return parser


# -- errors: one line on stderr, exit 2 for what the user can fix, 1 for anything else ----------
def _one_line(text: str) -> str:
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _notes(exc: BaseException) -> str:
    notes = [n.removeprefix("storysdk: ") for n in getattr(exc, "__notes__", ())]
    return "".join(f"; {_one_line(n)}" for n in notes)


def _written_file(tb: TracebackType | None) -> str | None:
    """The file a storysdk module was writing when an OSError without a file name was raised
    (a full disk fails the write, not the open, so the error names no file): the innermost
    ``path`` of a storysdk or plugin frame."""
    found = None
    while tb is not None:
        frame = tb.tb_frame
        module = str(frame.f_globals.get("__name__", ""))
        path = frame.f_locals.get("path")
        if module.startswith("storysdk") and isinstance(path, (str, os.PathLike)):
            found = os.fspath(path)
        tb = tb.tb_next
    return found


def _os_error(exc: OSError) -> str:
    """What a failed read or write means for the user, and what to do about it."""
    name = exc.filename
    if name is not None and os.path.basename(os.fspath(name)).startswith(".") and ".part" in os.fspath(name):
        name = _written_file(exc.__traceback__) or os.path.dirname(os.fspath(name))  # not the temporary name
    elif name is None:
        name = _written_file(exc.__traceback__)
    target = repr(os.fspath(name)) if name is not None else "a file"
    reason = exc.strerror or str(exc) or type(exc).__name__
    code = exc.errno
    notes = _notes(exc)
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        text = f"no space left on the device while writing {target}; free some space (or choose another --out folder)"
        if "finished assets" not in notes:
            text += " and run the same command again: what was finished is kept and not made again"
    elif code == errno.EROFS:
        text = f"cannot write {target}: the file system is read-only; choose an --out folder on a writable disk"
    elif code in (errno.EACCES, errno.EPERM):
        text = (f"permission denied for {target}; choose an --out folder you can write, or change the "
                "permissions of that file or folder")
    elif code in (errno.ENOTDIR, errno.EEXIST):
        text = (f"{target} is a file where a folder is needed ({reason}); an output folder cannot be an "
                "existing file: choose another --out or move the file away")
    elif code == errno.EISDIR:
        text = f"{target} is a folder where a file is needed; give the path of a file (for 'plan --out', a .json file)"
    elif code == errno.ENOENT:
        text = f"{target} does not exist; check the path"
    elif code == errno.ENAMETOOLONG:
        text = f"the path {target} is too long; choose a shorter --out"
    else:
        text = f"cannot read or write {target}: {reason}"
    return text + notes


def _report(message: str, exc: BaseException, show_traceback: bool) -> None:
    if show_traceback:
        traceback.print_exception(exc, file=sys.stderr)
    print(f"storysdk: error: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``storysdk`` command; returns the exit status.

    0: done. 2: an error the user can fix (a :class:`StorySDKError`: bad story file, plan,
    option, or a file that cannot be read or written), printed as one line
    ``storysdk: error: ...``. 1: anything else (a bug, or a component failing on its own),
    also one line, saying to run again with ``--traceback``. 130: interrupted (Ctrl-C).
    ``--traceback`` prints the Python traceback before the line.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    show = bool(getattr(args, "traceback", False))
    try:
        return int(args.func(args))
    except StorySDKError as exc:
        _report(_one_line(str(exc)) + _notes(exc), exc, show)
        return 2
    except BrokenPipeError:  # the reader went away (storysdk plugins | head): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as exc:  # a file the user named cannot be read or written: full disk, read-only, ...
        _report(_os_error(exc), exc, show)
        return 2
    except KeyboardInterrupt:
        print("\nstorysdk: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - not the user's mistake: still one line, details on request
        hint = "" if show else "; run the same command with --traceback for the details, and report it if it is a bug"
        _report(f"{type(exc).__name__}: {_one_line(str(exc))}{_notes(exc)}{hint}", exc, show)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
