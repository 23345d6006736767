"""Atomic file writes: a temporary file next to the target, renamed into place on success.

An interrupted run never leaves a half-written file that a resume would take as finished.
:mod:`storysdk.output` (the run folder) and :mod:`storysdk.audio` (``write_audio``) both write
through here; ``storysdk.output`` re-exports both functions, their public home.

The temporary files are hidden and named ``.<name>.<8 random characters>.part`` (``atomic_path``
keeps the target's extension after ``.part``, for libraries that choose a format by it), so
that a process killed in the middle of a write (``kill -9``) leaves only files that
:func:`is_temp_name` recognises; the output folder removes them when it is next claimed.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_path", "atomic_write", "is_temp_name"]

# mkstemp's random part: 8 characters of "abcdefghijklmnopqrstuvwxyz0123456789_"
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.part(\.[^./\\]+)?$")


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is the name of a temporary file left by :func:`atomic_write`/:func:`atomic_path`."""
    return bool(_TEMP_NAME.match(name))


def _publish(tmp: str, path: Path) -> None:
    # mkstemp creates 0600 files; give the result the permissions a plain open() would
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def _discard(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


@contextmanager
def atomic_write(path: Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on success it replaces ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
        _publish(tmp, path)
    except BaseException as exc:
        _discard(tmp)
        if isinstance(exc, OSError) and not exc.filename:
            exc.filename = str(path)  # a full disk or a closed pipe names the file it was writing
        raise


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Like :func:`atomic_write` but yields a temporary *path*, for libraries that open files themselves."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".part" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        _publish(tmp, path)
    except BaseException as exc:
        _discard(tmp)
        if isinstance(exc, OSError) and not exc.filename:
            exc.filename = str(path)  # a full disk or a closed pipe names the file it was writing
        raise
