"""The example third-party plugin (examples/plugin-template), installed as a real distribution.

``make test`` installs it with ``pip install -e examples/plugin-template``; these tests check
the core's side: discovery through the entry point, listing with its version, the CLI, a
mixed pipeline of built-in, fake and plugin components, failure isolation and the
STORYSDK_LOAD_PLUGINS / STORYSDK_TRACE_PLUGINS switches.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import storysdk
import storysdk.registry
from storysdk.cli import main
from storysdk.testing import FakesPlugin

TEMPLATE_DIST = "storysdk-plugin-template"
TEMPLATE_COMPONENTS = {("generator", "template-shapes"), ("composer", "template-contact-sheet")}


def _template_version() -> str:
    try:
        return importlib.metadata.version(TEMPLATE_DIST)
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a setup error, not a skip
        pytest.fail(f"{TEMPLATE_DIST} is not installed; run 'pip install -e examples/plugin-template' (make test does)")


@pytest.fixture
def broken_dist(tmp_path: Path) -> Path:
    """A folder holding a distribution 'storysdk-broken' whose plugin module raises on import."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "storysdk_broken_plugin.py").write_text("raise RuntimeError('broken on purpose: missing weights')\n")
    info = root / "storysdk_broken-0.0.7.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: storysdk-broken\nVersion: 0.0.7\n")
    (info / "entry_points.txt").write_text("[storysdk]\nbroken = storysdk_broken_plugin\n")
    return root


def _on_path(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(root))
    sys.modules.pop("storysdk_broken_plugin", None)


def test_registry_lists_the_template_with_its_plugin_name_and_version() -> None:
    reg = storysdk.Registry(environ={})
    version = _template_version()
    found = {(c.kind, c.name): c for c in reg.components() if c.plugin == "template"}
    assert set(found) == TEMPLATE_COMPONENTS
    assert all(c.version == version for c in found.values())
    (plugin,) = [p for p in reg.plugins() if p.name == "template"]
    assert plugin.version == version
    assert plugin.hooks == ("register_composers", "register_generators")
    assert found[("generator", "template-shapes")].capabilities()["modality"] == "image"
    # the built-ins are there too, from the same kind of hooks
    assert reg.get("planner", "script").plugin == "storysdk.builtins"


def test_storysdk_plugins_cli_lists_the_template(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("STORYSDK_LOAD_PLUGINS", raising=False)
    monkeypatch.setattr(storysdk.registry, "_default", None)  # the CLI builds the real default registry
    assert main(["plugins"]) == 0
    rows = {tuple(line.split()[:4]) for line in capsys.readouterr().out.splitlines()}
    version = _template_version()
    assert ("generator", "template-shapes", "template", version) in rows
    assert ("composer", "template-contact-sheet", "template", version) in rows
    assert main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (entry,) = [p for p in data["plugins"] if p["name"] == "template"]
    assert entry["version"] == version
    assert {(c["kind"], c["name"]) for c in entry["components"]} == TEMPLATE_COMPONENTS


def test_storysdk_plugins_options_of_a_plugin_component(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("STORYSDK_LOAD_PLUGINS", raising=False)
    monkeypatch.setattr(storysdk.registry, "_default", None)
    assert main(["plugins", "--options", "template-shapes"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"generator 'template-shapes' (plugin template {_template_version()}): seeded shapes")
    rows = {line.split()[0]: line.split(None, 4) for line in out.splitlines()[2:]}
    assert rows["shapes"][:4] == ["shapes", "int", "5", ">="] and "how many shapes to draw per picture" in out
    assert rows["width"][:3] == ["width", "int", "|"] and "None: the plan's width, else 64" in out
    assert main(["plugins", "--options", "template-shapes", "--json"]) == 0
    (comp,) = json.loads(capsys.readouterr().out)["components"]
    assert comp["plugin"] == "template" and comp["options"][0] == {
        "name": "shapes", "type": "int", "default": 5, "required": False, "constraints": [">= 1"],
        "description": "how many shapes to draw per picture",
    }


def test_mixed_pipeline_with_builtins_fakes_and_the_template(tmp_path: Path) -> None:
    reg = storysdk.Registry(environ={"STORYSDK_LOAD_PLUGINS": "template"})
    reg.register_plugin(FakesPlugin(), name="storysdk.testing")
    request = storysdk.StoryRequest(
        characters="[Mia] a girl with a red scarf",
        script="[Mia] finds a map #Mia finds a map.\n[NC] a storm over the hills #A storm rolls in.\n"
        "[Mia] reaches the cave #She reaches the cave.",
        width=48,
        height=32,
        duration=3.0,
        seed=5,
    )
    pipe = storysdk.Pipeline(
        planner="script",
        generators=["template-shapes", ("fake-audio", {"sample_rate": 8000})],
        composers=[("template-contact-sheet", {"thumb": 32}), "storybook", "soundtrack"],
        registry=reg,
    )
    story = pipe.run(request, out_dir=tmp_path / "out")
    assert sorted(story.images) == sorted(story.audio) == [0, 1, 2]
    assert [s.characters for s in story.plan.scenes] == [("Mia",), (), ("Mia",)]
    assert {a.image.size for a in story.images.values()} == {(48, 32)}
    # the script planner split the story's 3 s over the scenes; fake-audio honours the duration
    assert [a.frames for _, a in story.ordered_audio()] == [8000, 8000, 8000]
    # Mia's disc has the same colour in both of her scenes and is absent from the [NC] scene
    ctx = storysdk.RenderContext(plan=story.plan, seed=story.plan.seed)
    mia = np.array(pipe.generators[0].character_colour(ctx, "Mia"), dtype=np.uint8)  # type: ignore[attr-defined]
    has_mia = [bool(np.all(np.asarray(story.images[i].image) == mia, axis=-1).any()) for i in range(3)]
    assert has_mia == [True, False, True]

    (sheet,) = story.files["template-contact-sheet"]
    assert Image.open(sheet).size == (3 * 32 + 4 * 8, 32 + 18 + 2 * 8)
    html_files = [p for p in story.files["storybook"] if p.suffix == ".html"]
    assert len(html_files) == 1
    html = html_files[0].read_text(encoding="utf-8")
    for caption in ("Mia finds a map.", "A storm rolls in.", "She reaches the cave."):
        assert caption in html
    assert story.files["soundtrack"] and all(p.is_file() for p in story.files["soundtrack"])
    manifest = json.loads((tmp_path / "out" / "files.json").read_text())
    assert manifest["template-contact-sheet"] == ["contact-sheet.png"]


def test_a_plugin_that_fails_to_import_is_listed_and_the_others_work(
    broken_dist: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _on_path(broken_dist, monkeypatch)
    reg = storysdk.Registry(environ={})
    (failed,) = [f for f in reg.failed if f.name == "broken"]
    assert failed.distribution == "storysdk-broken" and failed.version == "0.0.7"
    assert failed.error == "RuntimeError: broken on purpose: missing weights"
    assert "storysdk_broken_plugin" in failed.traceback
    # built-ins and the template still resolve and run
    assert reg.get("planner", "script").plugin == "storysdk.builtins"
    assert reg.get("generator", "template-shapes").plugin == "template"
    reg.register_plugin(FakesPlugin(), name="storysdk.testing")
    story = storysdk.Pipeline(
        planner="fake-planner", generators=["template-shapes"], composers=["template-contact-sheet"], registry=reg
    ).run(storysdk.StoryRequest(script="one\ntwo", seed=1), out_dir=tmp_path / "out")
    assert sorted(story.images) == [0, 1] and story.files["template-contact-sheet"][0].is_file()
    # the CLI lists it with its error
    monkeypatch.setattr(storysdk.registry, "_default", storysdk.Registry(environ={}))
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "Failed plugins:" in out
    assert "broken 0.0.7: RuntimeError: broken on purpose: missing weights" in out
    assert "template-shapes" in out


def test_the_storysdk_command_in_a_fresh_process(broken_dist: Path) -> None:
    """The installed entry points as a user sees them: ``python -m storysdk plugins``."""
    env = dict(os.environ)
    env.pop("STORYSDK_LOAD_PLUGINS", None)
    env["PYTHONPATH"] = os.pathsep.join([str(broken_dist), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    code = textwrap.dedent(
        """
        import sys
        from storysdk.cli import main
        rc = main(["plugins"])
        assert "torch" not in sys.modules, "listing plugins imported torch"
        sys.exit(rc)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "template-contact-sheet" in proc.stdout
    assert "broken 0.0.7: RuntimeError: broken on purpose" in proc.stdout


def test_load_plugins_restricts_loading(broken_dist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _on_path(broken_dist, monkeypatch)
    only = storysdk.Registry(environ={"STORYSDK_LOAD_PLUGINS": "template"})
    assert [p.name for p in only.plugins()] == ["storysdk.builtins", "template"]
    assert only.failed == []  # the broken plugin was never imported
    assert "storysdk_broken_plugin" not in sys.modules
    by_dist = storysdk.Registry(environ={"STORYSDK_LOAD_PLUGINS": f" {TEMPLATE_DIST} , nothing-else"})
    assert [p.name for p in by_dist.plugins()] == ["storysdk.builtins", "template"]
    none = storysdk.Registry(environ={"STORYSDK_LOAD_PLUGINS": ""})
    assert [p.name for p in none.plugins()] == ["storysdk.builtins"]
    assert "template-shapes" not in none.names("generator")
    both = storysdk.Registry(environ={"STORYSDK_LOAD_PLUGINS": "template,broken"})
    assert [f.name for f in both.failed] == ["broken"]


def test_trace_plugins_prints_hook_calls(capsys: pytest.CaptureFixture[str]) -> None:
    quiet = storysdk.Registry(environ={"STORYSDK_LOAD_PLUGINS": "template"})
    quiet.components()
    assert "[storysdk trace]" not in capsys.readouterr().err
    traced = storysdk.Registry(environ={"STORYSDK_LOAD_PLUGINS": "template", "STORYSDK_TRACE_PLUGINS": "1"})
    traced.components()
    err = capsys.readouterr().err
    assert "[storysdk trace] register_generators -> template" in err
    assert "[storysdk trace] register_composers -> template" in err
    assert "[storysdk trace] register_generators <- ok" in err
    off = storysdk.Registry(environ={"STORYSDK_LOAD_PLUGINS": "template", "STORYSDK_TRACE_PLUGINS": "0"})
    off.components()
    assert "[storysdk trace]" not in capsys.readouterr().err
