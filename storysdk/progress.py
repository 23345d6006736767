"""The command line's progress display (``storysdk run`` and ``storysdk batch``)."""

from __future__ import annotations

import sys
from typing import TextIO

from .interfaces import ProgressEvent

__all__ = ["ProgressBar"]


class ProgressBar:
    """A one-line progress bar on a terminal; one line per finished item elsewhere (logs, CI).

    Pass it as a pipeline's ``progress`` callback; call :meth:`close` when the run ends.
    """

    def __init__(self, stream: TextIO | None = None, width: int = 24) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.tty = self.stream.isatty()
        self._open = False

    def __call__(self, ev: ProgressEvent) -> None:
        if ev.stage == "step" and not self.tty:
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
