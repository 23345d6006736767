"""The README's code blocks run as written (in a temporary folder), and say what they claim."""

from __future__ import annotations

import re
from pathlib import Path

from storysdk.audio import read_audio

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_story_runs(tmp_path, monkeypatch):
    blocks = _python_blocks()
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    wav = next(p for p in namespace["story"].files["soundtrack"] if p.suffix == ".wav")
    samples, rate = read_audio(tmp_path / "out" / "audiostory" / wav.name)
    assert rate == 32000 and samples.shape == (2, round(5.5 * 32000))  # 2.5 + 3.0 s after the 3 s crossfade
