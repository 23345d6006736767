"""Event durations: repairs and checks between the parsed stream and the plan (docs/audiostory.md §1.7, §8).

Upstream trusts the LLM: a missing timestamp crashes (``float(None)``), a clip longer than the
DiT's window is silently truncated, and nothing checks the sum against the requested total.
:func:`resolve_durations` makes each of these an error (``repair=False``) or a documented repair
(``repair=True``), recorded per event:

* missing / non-numeric / non-positive duration: the part of the requested total that the
  other events leave is shared equally (or, without a total or with nothing left, the mean
  of the valid durations, else the TangoFlux default of 10 s);
* a clip longer than the DiT renders (``max_clip`` seconds, less the crossfade padding for
  every clip but the last, §1.7): clamped to that length;
* a sum further than ``tolerance`` (relative) from the requested total: all durations are
  scaled to the total, then clamped again.

On a track (the planner's ``plan_track``, docs/audiostory.md §10) each scene's events are
timed against the scene's span, and :func:`fit_durations` then stretches them to fill it
exactly, so the track's clips join end to end on the story's timeline; ``pad_last`` says the
scene's last event is padded too (every clip but the *track's* last is).
"""

from __future__ import annotations

from collections.abc import Sequence

from storysdk.errors import ConfigError

from . import constants as C

__all__ = ["fit_durations", "resolve_durations"]


def resolve_durations(
    durations: Sequence[float | None],
    total: float | None,
    *,
    max_clip: float,
    crossfade: float,
    tolerance: float,
    repair: bool,
    pad_last: bool = False,
) -> tuple[list[float], list[list[str]]]:
    """Durations for the events and, per event, the repairs made (empty lists when none).

    ``pad_last``: the last event is padded with the crossfade too (a track's scene that is not
    the track's last), so its clip must fit the DiT's window less the padding like the others.
    """
    n = len(durations)
    if n == 0:
        raise ConfigError("no events to time; the planner produced none")
    notes: list[list[str]] = [[] for _ in range(n)]
    caps = _caps(n, max_clip, crossfade, pad_last)
    bad = [i for i, d in enumerate(durations) if d is None or not d > 0]
    if bad and not repair:
        raise ConfigError(
            f"event(s) {bad} have no valid duration (missing or non-numeric <timestamp>); "
            "set repair=True to share the remaining total among them"
        )
    valid = [float(d) for d in durations if d is not None and d > 0]
    out: list[float] = [float(d) if d is not None and d > 0 else 0.0 for d in durations]
    if bad:
        left = (total - sum(valid)) if total is not None else 0.0
        if left > 0:
            fill, why = left / len(bad), "share of the requested total left by the other events"
        elif valid:
            fill, why = sum(valid) / len(valid), "mean of the other events' durations"
        else:
            fill = (total / n) if total is not None else C.TANGOFLUX_DEFAULT_DURATION
            why = "requested total split equally" if total is not None else "TangoFlux default duration"
        for i in bad:
            out[i] = fill
            notes[i].append(f"duration missing or invalid; set to {fill:.3f} s ({why})")
    _clamp(out, caps, notes, repair)
    if total is not None and total > 0:
        s = sum(out)
        if abs(s - total) > tolerance * total:
            if not repair:
                raise ConfigError(
                    f"the events last {s:.2f} s in all but {total:.2f} s were requested (tolerance "
                    f"{tolerance:.0%}); set repair=True to rescale them or loosen total_tolerance"
                )
            factor = total / s
            for i in range(n):
                out[i] *= factor
                notes[i].append(f"scaled by {factor:.4f} so the events add up to the requested {total:.2f} s")
            _clamp(out, caps, notes, repair)
    return out, notes


def fit_durations(
    durations: Sequence[float],
    span: float,
    notes: list[list[str]],
    *,
    max_clip: float,
    crossfade: float,
    repair: bool,
    pad_last: bool = False,
) -> list[float]:
    """``durations`` (already resolved against ``span``) scaled to add up to ``span`` exactly.

    A track's events fill their scene's span, so consecutive clips are contiguous and the mix
    joins them with AudioStory's crossfade (storysdk.mixing). The factor is within
    ``total_tolerance`` of 1 after :func:`resolve_durations`; it is noted on each event when it
    is not 1. An event the factor makes longer than its clip can be is clamped (``repair``) or
    refused, and the scene then ends in silence.
    """
    out = [float(d) for d in durations]
    total = sum(out)
    if span <= 0 or total <= 0 or abs(total - span) <= 1e-9 * span:
        return out
    factor = span / total
    for i in range(len(out)):
        out[i] *= factor
        notes[i].append(f"stretched by {factor:.4f} to fill the scene's {span:.2f} s on the timeline")
    _clamp(out, _caps(len(out), max_clip, crossfade, pad_last), notes, repair)
    return out


def _caps(n: int, max_clip: float, crossfade: float, pad_last: bool) -> list[float]:
    caps = [max_clip - (crossfade if i < n - 1 or pad_last else 0.0) for i in range(n)]
    if min(caps) <= 0:
        raise ConfigError(
            f"crossfade {crossfade} s leaves no room in a {max_clip} s DiT window; use a shorter crossfade"
        )
    return caps


def _clamp(out: list[float], caps: list[float], notes: list[list[str]], repair: bool) -> None:
    for i, (d, cap) in enumerate(zip(out, caps)):
        if d > cap + 1e-9:
            if not repair:
                raise ConfigError(
                    f"event {i} lasts {d:.2f} s but the DiT renders at most {cap:.2f} s for this clip "
                    "(its window less the crossfade padding); set repair=True to clamp it"
                )
            out[i] = cap
            notes[i].append(f"clamped from {d:.3f} s to {cap:.3f} s, the longest clip the DiT renders here")
