"""The README's code blocks run (python in one namespace, the storysdk commands as a user types them)
and its relative links resolve."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[1]
ROOT = PLUGIN.parents[1]
README = PLUGIN / "README.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_python_blocks_run(tmp_path, monkeypatch):
    blocks = _blocks("python")
    assert blocks
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "readme"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{README}:python-block-{i + 1}", "exec"), namespace)  # noqa: S102
    assert sorted(p.name for p in (tmp_path / "out/seed-story/frames").iterdir()) == [
        "scene-000.png", "scene-001.png", "scene-002.png"]


def test_commands_run(tmp_path, monkeypatch, capsys):
    from storysdk.cli import main

    commands = [ln for block in _blocks("bash") for ln in block.splitlines() if ln.strip()]
    assert commands and all(c.startswith("storysdk ") for c in commands)
    (tmp_path / "examples").mkdir()
    for name in ("seed-story-tiny.toml", "start.png"):
        shutil.copy(ROOT / "examples" / name, tmp_path / "examples" / name)
    monkeypatch.chdir(tmp_path)
    for command in commands:
        assert main(shlex.split(command)[1:]) == 0, f"{command}: {capsys.readouterr().err[-2000:]}"
    assert len(list((tmp_path / "out/seed-story-cli/frames").glob("*.png"))) == 4
    out = capsys.readouterr().out
    assert "max_text_tokens" in out and "renamed: seed -> weights_seed" in out


@pytest.mark.parametrize("target", re.findall(r"\]\(([^)#\s]+)", README.read_text(encoding="utf-8")))
def test_relative_links_resolve(target):
    assert (README.parent / target).exists(), target
