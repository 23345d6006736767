"""Fault injection for tests of storysdk and its plugins: broken files, hostile pickles, stopped runs.

- :func:`truncate` cuts a file (a download that stopped half way);
- :class:`UnsafePickle` unpickles to a call of ``open(target, "w")``: a stand-in for a checkpoint
  that runs code; a safe loader refuses it and ``target`` never appears;
- :func:`assert_clear` checks that an error is a :class:`~storysdk.errors.StorySDKError` naming
  what it should, saying how to fix it, and never advising unsafe unpickling (``weights_only=False``),
  nor raised from an error that does;
- :func:`stop_at` is a progress callback that raises :class:`StopRun` at its n-th step report
  (what a cancelled job does), and :func:`forward_calls` counts a module's forward calls, so a
  test can assert that a component stops within one step or token.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import StorySDKError
from ..interfaces import ProgressEvent

__all__ = ["FIXES", "StopRun", "UnsafePickle", "assert_clear", "forward_calls", "stop_at", "truncate"]

#: Words of which a clear checkpoint error has at least one: how to fix it.
FIXES = ("download", "restore", "give ", "get these weights", "pass ", "finish the download")


def truncate(path: Path, keep: float = 0.5) -> None:
    """Keep only the first ``keep`` share of ``path``'s bytes."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


class UnsafePickle:
    """Unpickling this would create the file ``target`` (a stand-in for arbitrary code)."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (builtins.open, (self.target, "w"))


def assert_clear(err: BaseException, *names: object, fixes: tuple[str, ...] = FIXES) -> str:
    """The message names every ``names`` item, says how to fix it, and never advises unsafe unpickling."""
    msg = str(err)
    assert isinstance(err, StorySDKError), f"{type(err).__name__} is not a StorySDKError: {msg}"
    for name in names:
        assert str(name) in msg, f"{name!s} not in: {msg}"
    assert any(fix in msg for fix in fixes), f"no fix in: {msg}"
    assert "weights_only" not in msg and "ignore_mismatched_sizes" not in msg
    cause = err.__cause__
    while cause is not None:  # nor does anything it was raised from (what --traceback would show)
        assert "weights_only` set to `False`" not in str(cause) and "weights_only=False" not in str(cause)
        cause = cause.__cause__
    return msg


class StopRun(Exception):
    """What :func:`stop_at`'s callback raises (a cancelled server job raises ``JobCancelled``)."""


def stop_at(n: int | None, stage: str = "step") -> Callable[[ProgressEvent], None]:
    """A progress callback that raises :class:`StopRun` at its ``n``-th event of ``stage`` (from 1;
    never when ``n`` is ``None``). The events it saw are in its ``seen`` attribute."""
    seen: list[ProgressEvent] = []

    def progress(ev: ProgressEvent) -> None:
        if ev.stage == stage:
            seen.append(ev)
            if len(seen) == n:
                raise StopRun(n)

    progress.seen = seen  # type: ignore[attr-defined]
    return progress


@contextmanager
def forward_calls(*modules: Any) -> Iterator[list[int]]:
    """Counts the forward calls of the torch ``modules`` (all together) while the block runs."""
    calls = [0]

    def hook(_module: Any, _args: Any) -> None:
        calls[0] += 1

    handles = [m.register_forward_pre_hook(hook) for m in modules]
    try:
        yield calls
    finally:
        for h in handles:
            h.remove()
