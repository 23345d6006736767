"""What a client may read of an error: the server's own paths are left out (the server log has them).

:func:`redact` rewrites a message before it is answered or shown on a job: a path under the
server's ``--out`` folder becomes ``<out>/...`` (the job folders a client knows about), the
folder of a model or font the operator configured becomes ``<model NAME>`` / ``<font NAME>``,
and any other absolute path (POSIX, ``~/``, or a Windows drive) becomes ``<server path>``.
API paths (``/v1/...``) and URLs are left as they are.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["SERVER_PATH", "redact"]

SERVER_PATH = "<server path>"

# An absolute path: '/' or '~/' (not after a word, a dot, a colon or another slash: no URLs, no
# 'a/b' ratios), or a Windows drive; up to the next space, quote or bracket.
_STOP = r"\s'\"`,;()\[\]{}<>|"
_PATH = re.compile(
    rf"(?<![\w./:~>-])(?:~/[^{_STOP}]*|/(?!v1/|v1\b)[^{_STOP}]+)"
    rf"|(?<![\w])[A-Za-z]:\\[^{_STOP}]*"
)


def _variants(path: str | os.PathLike[str]) -> list[str]:
    out = {str(path)}
    try:
        out.add(str(Path(path).expanduser().resolve()))
        out.add(os.path.abspath(os.path.expanduser(str(path))))
    except (OSError, RuntimeError, ValueError):
        pass
    return sorted((v.rstrip("/\\") for v in out if v and v not in ("/", ".")), key=len, reverse=True)


def redact(
    message: str,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    named: Mapping[str, Mapping[str, str]] | None = None,
    extra: Iterable[str] = (),
) -> str:
    """``message`` without the server's paths (see the module).

    ``named`` maps a kind (``"model"``, ``"font"``) to the operator's ``{name: path}``;
    ``extra`` are more strings to hide (each becomes ``<server path>``).
    """
    text = str(message)
    replacements: list[tuple[str, str]] = []
    for kind, table in (named or {}).items():
        for name, path in table.items():
            if os.sep in str(path) or "/" in str(path) or str(path).startswith((".", "~")):
                replacements += [(v, f"<{kind} {name}>") for v in _variants(path)]
    if out_dir is not None:
        replacements += [(v, "<out>") for v in _variants(out_dir)]
    replacements += [(str(v), SERVER_PATH) for v in extra if str(v)]
    for old, new in sorted(replacements, key=lambda r: len(r[0]), reverse=True):
        text = text.replace(old, new)
    return _PATH.sub(SERVER_PATH, text)
