"""The command line's progress display (``storysdk run`` and ``storysdk batch``)."""

from __future__ import annotations

import re
import sys
from typing import TextIO

from .interfaces import ProgressEvent

__all__ = ["ProgressBar"]

#: A generate event of a pipeline with several tracks: ``"<generator> (<track>)"``.
_TRACK_LABEL = re.compile(r"^(?P<generator>.+) \((?P<track>[A-Za-z0-9][A-Za-z0-9_-]*)\)$")


def track_of(component: str) -> str | None:
    """The track a generate event's ``component`` names (``"diffusers-audio (music)"`` -> ``"music"``)."""
    match = _TRACK_LABEL.match(component)
    return match.group("track") if match else None


def _shown(component: str) -> str:
    """``component`` as the bar shows it: a track named after its generator (the ``generators=[...]``
    shorthand) is not named twice (``"fake-image (fake-image)"`` -> ``"fake-image"``)."""
    match = _TRACK_LABEL.match(component)
    return match.group("generator") if match and match.group("generator") == match.group("track") else component


class ProgressBar:
    """A one-line progress bar on a terminal; one line per finished item elsewhere (logs, CI).

    Pass it as a pipeline's ``progress`` callback; call :meth:`close` when the run ends.

    A pipeline with several tracks labels its generate events ``"<generator> (<track>)"``.
    While two or more tracks render at the same time (side by side), the terminal line shows
    every one of them, ``[#####---] 5/12 generate frames 2/6 | ambience 3/6``, and their
    denoising steps are not drawn (they would flicker between the tracks); elsewhere each
    finished asset is one line naming its track.
    """

    def __init__(self, stream: TextIO | None = None, width: int = 24) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.tty = self.stream.isatty()
        self._open = False
        self._active: dict[str, tuple[int, int]] = {}  # generate label -> (done, total), unfinished

    def __call__(self, ev: ProgressEvent) -> None:
        if ev.stage == "generate":
            if ev.done >= ev.total:
                self._active.pop(ev.component, None)
            else:
                self._active[ev.component] = (ev.done, ev.total)
        if ev.stage == "step" and (not self.tty or len(self._active) > 1):
            return
        if self.tty and ev.stage == "generate" and len(self._active) > 1 and ev.component in self._active:
            self._tracks_line()
            return
        total = max(ev.total, 1)
        label = f"{ev.stage:<8} {_shown(ev.component)}"
        if ev.scene_index is not None and ev.stage != "step":
            label += f" {getattr(ev, 'unit', 'scene') or 'scene'} {ev.scene_index}"
        if ev.message:
            label += f" ({ev.message})"
        if self.tty:
            self._line(ev.done, ev.total, total, label)
            if ev.done >= ev.total and ev.stage != "step":
                self.stream.write("\n")
                self._open = False
        elif ev.done > 0 or ev.message:
            self.stream.write(f"{ev.done}/{ev.total} {label}\n")
        self.stream.flush()

    def _line(self, done: int, shown_total: int, total: int, label: str) -> None:
        filled = int(self.width * min(done, total) / total)
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r\x1b[K[{bar}] {done}/{shown_total} {label}")
        self._open = True

    def _tracks_line(self) -> None:
        """One line for the tracks rendering side by side: their sum as the bar, each one's count."""
        done = sum(d for d, _ in self._active.values())
        total = sum(t for _, t in self._active.values())
        parts = [f"{track_of(label) or label} {d}/{t}" for label, (d, t) in self._active.items()]
        self._line(done, total, max(total, 1), f"{'generate':<8} {' | '.join(parts)}")
        self.stream.flush()

    def close(self) -> None:
        if self._open:
            self.stream.write("\n")
            self._open = False
