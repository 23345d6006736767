"""Writing AudioStory assistant responses by hand (for ``response=`` and for tests).

``event_text("A dog barks", 4.0)`` gives ``<|gen|>A dog barks<timestamp>4.0</timestamp><t5>
<t5_00000>...</t5><aud><aud_00000>...</aud><|/gen|>`` (docs/audiostory.md §1.4).
"""

from __future__ import annotations

from . import constants as C

__all__ = ["block_text", "event_text", "response_text"]


def block_text(kind: str, n: int, close: bool = True) -> str:
    """``<kind>`` + ``n`` query tokens (+ the closer): ``kind`` is ``"t5"`` or ``"aud"``."""
    queries = "".join(f"<{kind}_{k:05d}>" for k in range(n))
    return f"<{kind}>{queries}" + (f"</{kind}>" if close else "")


def event_text(caption: str, seconds: float | str | None, n: int = C.NUM_T5_TOKENS, m: int = C.NUM_AUD_TOKENS) -> str:
    """One event block; ``seconds=None`` leaves the timestamp out."""
    stamp = f"{C.TS_OPEN}{seconds}{C.TS_CLOSE}" if seconds is not None else ""
    return f"{C.GEN_OPEN}{caption}{stamp}{block_text('t5', n)}{block_text('aud', m)}{C.GEN_CLOSE}"


def response_text(reasoning: str, events: list[tuple[str, float]]) -> str:
    """A whole assistant response: reasoning, ``<|/think|>``, the events, ``<|im_end|>``."""
    return reasoning + C.THINK_CLOSE + "".join(event_text(c, d) for c, d in events) + C.IM_END
