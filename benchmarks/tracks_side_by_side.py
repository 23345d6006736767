"""Tracks side by side: a two-track story rendered with ``parallel=True`` and ``parallel=False``.

A picture track (``diffusers-image``) and a sound track (``diffusers-audio``), both on the tiny
preset and both on the CPU, so that ``parallel=True`` renders them in two threads and
``parallel=False`` one after the other. Each track's own time is read from the pipeline's
progress events (its first ``generate`` event to its last); the story's time is its render span
(the first track's start to the last track's end) and the wall time of ``Pipeline.run``.
Reported, as medians with their ranges over the rounds:

- **overlap** = sum of the tracks' times / the story's render span: 1.0 when the tracks run one
  after the other, up to 2.0 when two tracks overlap completely;
- **sequential / parallel**: the ratio of the two modes' wall times (> 1: side by side is faster).

The rounds interleave the modes (alternating which goes first), after a warm-up run of each
that builds and loads the models once (a shared :class:`~storysdk.cache.ComponentCache`), so
load time is not measured. Both modes render the same bytes; the script checks it.

    python benchmarks/tracks_side_by_side.py                  # 5 rounds, 1 torch thread per op
    python benchmarks/tracks_side_by_side.py --threads 2 --rounds 3

On a machine with few cores the two tracks' torch ops compete for them: with N cores and
``--threads T``, two tracks side by side ask for 2T threads. ``--threads 1`` on 2 cores gives
each track a core of its own; more threads than cores shrink the overlap.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import time
from typing import Any

SCRIPT = "\n".join([
    "a lighthouse on a cliff at dusk #The lighthouse.",
    "a small boat in a storm #The storm.",
    "a harbour at dawn, gulls #Home again.",
])


def build(parallel: bool, cache: Any, args: argparse.Namespace) -> Any:
    from storysdk import Pipeline

    tracks = {
        "frames": {"generator": ("diffusers-image", {"steps": args.image_steps, "batch_size": 1})},
        "sound": {"generator": ("diffusers-audio", {"steps": args.audio_steps}), "text": "{caption}"},
    }
    return Pipeline(planner="script", tracks=tracks, parallel=parallel, cache=cache,
                    defaults={"preset": "tiny", "device": "cpu"})


def run_once(pipe: Any, args: argparse.Namespace) -> dict[str, Any]:
    from storysdk import StoryRequest
    from storysdk.progress import track_of

    spans: dict[str, list[float]] = {}

    def progress(ev: Any) -> None:
        if ev.stage != "generate":
            return
        now = time.perf_counter()
        track = track_of(ev.component) or ev.component
        span = spans.setdefault(track, [now, now])
        if ev.done == 0:
            span[0] = now
        span[1] = now

    request = StoryRequest(script=SCRIPT, seed=11, width=args.size, height=args.size, duration=args.seconds)
    t0 = time.perf_counter()
    story = pipe.run(request, progress=progress)
    wall = time.perf_counter() - t0
    tracks = {name: end - start for name, (start, end) in spans.items()}
    render = max(e for _, e in spans.values()) - min(s for s, _ in spans.values())
    digest = hashlib.sha256()
    for name, track in story.tracks.items():
        for index in sorted(track.assets):
            asset = track.assets[index]
            digest.update(asset.image.tobytes() if track.modality == "image" else asset.samples.tobytes())
    return {"wall": wall, "render": render, "tracks": tracks, "sum": sum(tracks.values()), "digest": digest.hexdigest()}


def shown(values: list[float], unit: str = " s", digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f}{unit} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="measured rounds of each mode (default 5)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--size", type=int, default=512, help="picture width and height (default 512)")
    ap.add_argument("--image-steps", type=int, default=6, help="denoising steps of the picture track (default 6)")
    ap.add_argument("--audio-steps", type=int, default=80, help="denoising steps of the sound track (default 80)")
    ap.add_argument("--seconds", type=float, default=30.0, help="seconds of the story (default 30)")
    args = ap.parse_args()

    import torch

    from storysdk.cache import ComponentCache

    torch.set_num_threads(args.threads)
    cache = ComponentCache()
    pipes = {"parallel": build(True, cache, args), "sequential": build(False, cache, args)}
    print(f"cores={os.cpu_count()} torch threads={torch.get_num_threads()} torch={torch.__version__} "
          f"rounds={args.rounds} story: 3 scenes, {args.seconds:g} s; frames: diffusers-image tiny {args.size}x{args.size} "
          f"{args.image_steps} steps; sound: diffusers-audio tiny {args.audio_steps} steps")
    # builds and loads the models, one track after the other: diffusers' and transformers' lazy
    # imports are not safe from two threads at once, so the first import is not made side by side
    warm = {mode: run_once(pipes[mode], args) for mode in ("sequential", "parallel")}
    assert warm["parallel"]["digest"] == warm["sequential"]["digest"], "the two modes rendered different assets"
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in pipes}
    for r in range(args.rounds):
        order = ["parallel", "sequential"] if r % 2 == 0 else ["sequential", "parallel"]
        for mode in order:
            res = run_once(pipes[mode], args)
            assert res["digest"] == warm[mode]["digest"], f"round {r + 1}: {mode} rendered other assets"
            results[mode].append(res)
    names = list(warm["parallel"]["tracks"])
    print(f"{'mode':<11} {'wall':<20} {'render span':<20} " + " ".join(f"{n + ' track':<20}" for n in names)
          + " overlap (sum of tracks / span)")
    for mode, runs in results.items():
        cells = [shown([x["wall"] for x in runs]), shown([x["render"] for x in runs])]
        cells += [shown([x["tracks"][n] for x in runs]) for n in names]
        overlap = shown([x["sum"] / x["render"] for x in runs], unit="", digits=2)
        print(f"{mode:<11} " + " ".join(f"{c:<20}" for c in cells) + f" x{overlap}")
    ratio = [s["wall"] / p["wall"] for s, p in zip(results["sequential"], results["parallel"])]
    print(f"sequential / parallel wall time, round by round: x{shown(ratio, unit='', digits=2)}")


if __name__ == "__main__":
    main()
