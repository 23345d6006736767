"""The storysdk command: plugins, plan, run, errors, progress output."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

import storysdk.registry
from storysdk.cli import ProgressBar, main
from storysdk.interfaces import ProgressEvent
from storysdk.testing import make_registry

STORY = """
[story]
seed = 3
width = 16
height = 16
script = '''
a cat
a dog
a bird
'''

[planner]
name = "fake-planner"

[[generators]]
name = "fake-image"

[[generators]]
name = "fake-audio"

[[composers]]
name = "fake-composer"
"""


@pytest.fixture(autouse=True)
def fake_default_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storysdk.registry, "_default", make_registry())


@pytest.fixture
def story(tmp_path: Path) -> Path:
    path = tmp_path / "tale.toml"
    path.write_text(STORY)
    return path


def test_plugins_lists_components_with_plugin_and_capabilities(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    lines = {tuple(line.split()[:3]) for line in out.splitlines()[1:] if line.strip()}
    assert ("generator", "fake-image", "storysdk.testing") in lines
    assert ("composer", "fake-composer", "storysdk.testing") in lines
    assert "modality=image" in out and "batching=True" in out


def test_plugins_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    fakes = next(p for p in data["plugins"] if p["name"] == "storysdk.testing")
    assert {"kind": "generator", "name": "fake-audio", "needs_gpu": False, "tiny_preset": False,
            "modality": "audio", "batching": False, "consumes": []} in fakes["components"]
    assert data["failed"] == []


def test_plan_writes_json(story: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(story), "--seed", "9"]) == 0
    plan = json.loads(story.with_suffix(".plan.json").read_text())
    assert [s["prompt"] for s in plan["scenes"]] == ["a cat", "a dog", "a bird"] and plan["seed"] == 9
    assert main(["plan", str(story), "--out", "-"]) == 0
    assert '"a dog"' in capsys.readouterr().out


def test_run_twice_is_byte_identical_and_prints_files(story: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(story), "--out", str(tmp_path / "a"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"fake-composer: {tmp_path / 'a' / 'story.json'}" in out
    assert main(["run", str(story), "--out", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert "3/3 generate fake-image scene 2" in err
    for p in (tmp_path / "a").rglob("*"):
        if p.is_file():
            assert p.read_bytes() == (tmp_path / "b" / p.relative_to(tmp_path / "a")).read_bytes()


def test_run_with_an_edited_plan(story: Path, tmp_path: Path) -> None:
    main(["plan", str(story), "--out", str(tmp_path / "p.json")])
    data = json.loads((tmp_path / "p.json").read_text())
    data["scenes"][0]["caption"] = "A CAT"
    (tmp_path / "p.json").write_text(json.dumps(data))
    assert main(["run", str(story), "--plan", str(tmp_path / "p.json"), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert json.loads((tmp_path / "o" / "story.json").read_text())[0]["caption"] == "A CAT"


def test_errors_are_one_line_with_exit_code_2(story: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(STORY.replace('name = "fake-image"', 'name = "fake-imag"'))
    assert main(["run", str(bad), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("storysdk: error: no generator named 'fake-imag'") and "Did you mean 'fake-image'" in err
    main(["run", str(story), "--out", str(tmp_path / "y"), "--quiet"])
    assert main(["run", str(story), "--seed", "4", "--out", str(tmp_path / "y"), "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["run", str(story), "--seed", "4", "--out", str(tmp_path / "y"), "--quiet", "--overwrite"]) == 0


def test_progress_bar_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    bar = ProgressBar(stream, width=10)
    bar(ProgressEvent("generate", "g", 1, 4, 0))
    bar(ProgressEvent("step", "g", 2, 4))
    bar(ProgressEvent("generate", "g", 4, 4, 3))
    text = stream.getvalue()
    assert "[##--------] 1/4 generate g scene 0" in text
    assert "[#####-----] 2/4 step     g" in text
    assert text.endswith("[##########] 4/4 generate g scene 3\n")
