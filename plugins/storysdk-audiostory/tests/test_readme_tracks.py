"""The README's track-planner section runs as written: its story file, saved as the README says,
through the ``storysdk run`` command it shows (the CLI entry point, in a temporary folder)."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from pathlib import Path

import numpy as np
import soundfile
from storysdk.cli import main as storysdk_main

README = Path(__file__).resolve().parents[1] / "README.md"
SR = 32000  # docs/audiostory.md §1.7
CROSSFADE = 3.0  # docs/audiostory.md §1.7


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## A story's sound track")
    return text[start : text.index("\n## ", start + 1)]


def test_the_track_section_runs_as_written(tmp_path, monkeypatch):
    section = _section()
    (story,) = re.findall(r"^```toml\n(.*?)^```", section, flags=re.S | re.M)
    (command,) = re.findall(r"^```bash\n(.*?)^```", section, flags=re.S | re.M)
    name = re.search(r"Saved as `([^`]+)`", section).group(1)
    (tmp_path / name).write_text(story, encoding="utf-8")
    argv = shlex.split(command)
    assert argv[:2] == ["storysdk", "run"] and argv[2] == name
    monkeypatch.chdir(tmp_path)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert storysdk_main(argv[1:]) == 0, err.getvalue()[-2000:]

    out = tmp_path / argv[argv.index("--out") + 1]
    cues = json.loads((out / "tracks" / "ambience" / "cues.json").read_text())["cues"]
    # four events: 1 s and 3 s in each 4 s scene (duration 8 over two frames), end to end
    assert [(c["scene"], c["start"], c["duration"]) for c in cues] == [(0, 0.0, 1.0), (0, 1.0, 3.0),
                                                                       (1, 4.0, 1.0), (1, 5.0, 3.0)]
    assert [c["caption"] for c in cues] == ["Waves wash ashore", "Wind over the water"] * 2
    for c, text in zip(cues, ["Gulls circle the lighthouse.", "Gulls circle the lighthouse.",
                              "A foghorn sounds over the water.", "A foghorn sounds over the water."]):
        assert c["metadata"]["instruction"].endswith(f"{text} The total duration is 4.0 seconds.")
    clips = [soundfile.read(out / "tracks" / "ambience" / f"cue-{k:04d}.wav", always_2d=True)[0] for k in range(4)]
    pads = [CROSSFADE] * 3 + [0.0]  # every clip but the track's last
    for clip, cue, pad in zip(clips, cues, pads):
        assert abs(clip.shape[0] - (cue["duration"] + pad) * SR) <= SR / 256 + 1  # the tiny VAE's 256 Hz
    wav, rate = soundfile.read(out / "soundtrack.wav", always_2d=True)
    assert rate == SR and wav.shape == (8 * SR, 2)
    assert float(np.abs(wav).max()) > 0
    assert sorted(p.name for p in (out / "tracks" / "frames").glob("*.png")) == ["scene-0000.png", "scene-0001.png"]
