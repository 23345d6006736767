"""The registry: hooks, names, options, failures, environment switches."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import storysdk
from storysdk import ConfigError, Generator, PluginError, Registry, UnknownComponentError, hookimpl
from storysdk.testing import FakeImageGenerator, make_registry

BUILTINS = {
    ("planner", "script"),
    ("tokenizer", "clip-text"),
    ("generator", "diffusers-image"),
    ("generator", "diffusers-audio"),
    ("composer", "comic"),
    ("composer", "frames"),
    ("composer", "soundtrack"),
    ("composer", "storybook"),
}


def test_builtins_register_through_the_hooks(storysdk_registry: Registry) -> None:
    names = {(c.kind, c.name) for c in storysdk_registry.components()}
    assert BUILTINS <= names
    assert not storysdk_registry.failed
    for c in storysdk_registry.components():
        if (c.kind, c.name) in BUILTINS:
            assert c.plugin == "storysdk.builtins"
            assert c.version == storysdk.__version__
    hooks = {p.name: p.hooks for p in storysdk_registry.plugins()}
    assert set(hooks["storysdk.builtins"]) == {
        "register_planners",
        "register_tokenizers",
        "register_generators",
        "register_composers",
    }


def test_capabilities_are_reported(storysdk_registry: Registry) -> None:
    caps = storysdk_registry.get("generator", "diffusers-image").capabilities()
    assert caps["modality"] == "image" and caps["batching"] is True and caps["tiny_preset"] is True
    assert storysdk_registry.get("generator", "diffusers-audio").capabilities()["modality"] == "audio"
    assert storysdk_registry.get("planner", "script").capabilities()["interleaved"] is False


def test_unknown_name_suggests_close_matches(storysdk_registry: Registry) -> None:
    with pytest.raises(UnknownComponentError, match="Did you mean 'comic'") as info:
        storysdk_registry.get("composer", "comc")
    assert "registered composers" in str(info.value)
    with pytest.raises(ConfigError, match="unknown component kind"):
        storysdk_registry.get("painter", "x")


def test_options_are_validated(storysdk_registry: Registry) -> None:
    info = storysdk_registry.get("generator", "fake-image")
    assert info.options() == {"width": None, "height": None, "fail_scenes": []}
    assert isinstance(info.create(width=8), FakeImageGenerator)
    with pytest.raises(ConfigError, match="has no option 'widht'.*width"):
        info.create(widht=8)


class _Two:
    class Gen(FakeImageGenerator):
        name = "two-gen"

    @hookimpl
    def register_generators(self, register: Any) -> None:
        register(self.Gen)


class _Broken:
    @hookimpl
    def register_generators(self, register: Any) -> None:
        register(_Two.Gen)
        raise RuntimeError("boom in hook")


class _NotAComponent:
    @hookimpl
    def register_composers(self, register: Any) -> None:
        register(object)


class _Duplicate:
    class Gen(FakeImageGenerator):
        name = "fake-image"

    @hookimpl
    def register_generators(self, register: Any) -> None:
        register(self.Gen)


def test_a_raising_hook_is_reported_and_others_survive() -> None:
    reg = make_registry()
    reg.register_plugin(_Broken(), name="broken")
    reg.register_plugin(_Two(), name="zz-two")
    # the broken plugin's partial registration is rolled back; the later plugin still registers
    names = {c.name for c in reg.components("generator")}
    assert "two-gen" in names and "fake-image" in names
    assert reg.get("generator", "two-gen").plugin == "zz-two"
    failed = {f.name: f.error for f in reg.failed}
    assert failed == {"broken": "RuntimeError: boom in hook"}


def test_wrong_type_and_duplicate_names_are_reported() -> None:
    reg = make_registry()
    reg.register_plugin(_NotAComponent(), name="notcomp")
    reg.register_plugin(_Duplicate(), name="dup")
    errors = {f.name: f.error for f in reg.failed}
    assert "not a subclass of storysdk.Composer" in errors["notcomp"]
    assert "already registered by plugin 'storysdk.testing'" in errors["dup"]
    assert reg.get("generator", "fake-image").plugin == "storysdk.testing"


def test_registering_the_same_plugin_name_twice_is_an_error() -> None:
    reg = make_registry()
    reg.register_plugin(_Two(), name="x")
    with pytest.raises(PluginError):
        reg.register_plugin(_Two(), name="x")
    reg.unregister_plugin("x")
    assert "two-gen" not in reg.names("generator")


def _fake_distribution(root: Path, dist: str, ep_name: str, module: str, body: str) -> None:
    (root / f"{module}.py").write_text(textwrap.dedent(body))
    info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[storysdk]\n{ep_name} = {module}\n")


@pytest.fixture
def fake_dists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    _fake_distribution(
        tmp_path,
        "storysdk-good",
        "good",
        "storysdk_good_mod",
        """
        from storysdk import hookimpl
        from storysdk.testing import FakeAudioGenerator

        class Beep(FakeAudioGenerator):
            name = "good-beep"

        @hookimpl
        def register_generators(register):
            register(Beep)
        """,
    )
    _fake_distribution(tmp_path, "storysdk-bad", "bad", "storysdk_bad_mod", "raise ImportError('missing dep xyz')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for mod in ("storysdk_good_mod", "storysdk_bad_mod"):
        sys.modules.pop(mod, None)
    return tmp_path


def test_entry_points_load_and_a_failing_import_is_listed(fake_dists: Path) -> None:
    reg = Registry(environ={})
    info = reg.get("generator", "good-beep")
    assert info.plugin == "good" and info.version == "1.2.3"
    bad = [f for f in reg.failed if f.name == "bad"]
    assert len(bad) == 1
    assert bad[0].distribution == "storysdk-bad" and bad[0].version == "1.2.3"
    assert "ImportError: missing dep xyz" in bad[0].error
    assert reg.get("planner", "script").plugin == "storysdk.builtins"
    with pytest.raises(UnknownComponentError, match="Plugins that failed to load: bad"):
        reg.get("generator", "nope")


def test_load_plugins_env_restricts_loading(fake_dists: Path) -> None:
    reg = Registry(environ={"STORYSDK_LOAD_PLUGINS": "storysdk-good"})
    assert "good-beep" in reg.names("generator")
    assert not any(f.name == "bad" for f in reg.failed)
    none = Registry(environ={"STORYSDK_LOAD_PLUGINS": ""})
    assert "good-beep" not in none.names("generator")
    assert "script" in none.names("planner")


def test_trace_env_prints_hook_calls(capsys: pytest.CaptureFixture[str]) -> None:
    reg = Registry(entrypoints=False, environ={"STORYSDK_TRACE_PLUGINS": "1"})
    reg.components()
    err = capsys.readouterr().err
    for hook in ("register_planners", "register_generators", "register_composers", "register_tokenizers"):
        assert f"[storysdk trace] {hook} -> storysdk.builtins" in err
    assert "[storysdk trace] register_generators <- ok" in err


def test_default_registry_is_cached() -> None:
    assert storysdk.get_registry() is storysdk.get_registry()


def test_component_base_classes_have_one_abstract_method() -> None:
    for base in (storysdk.Planner, storysdk.Tokenizer, Generator, storysdk.Composer):
        assert len(base.__abstractmethods__) == 1


def test_storysdk_plugins_registers_named_plugin_objects() -> None:
    from storysdk.registry import Registry

    reg = Registry(entrypoints=True, environ={"STORYSDK_LOAD_PLUGINS": "", "STORYSDK_PLUGINS": "storysdk.testing:FakesPlugin"})
    assert reg.get("generator", "fake-image").plugin == "storysdk.testing:FakesPlugin"
    assert reg.failed == []
    broken = Registry(environ={"STORYSDK_LOAD_PLUGINS": "", "STORYSDK_PLUGINS": "storysdk.testing:NoSuchThing, no_such_module"})
    assert [f.name for f in broken.failed] == ["storysdk.testing:NoSuchThing", "no_such_module"]
    assert "AttributeError" in broken.failed[0].error and "STORYSDK_PLUGINS" in broken.failed[0].error
    assert "ModuleNotFoundError" in broken.failed[1].error
    assert "fake-image" not in broken.names("generator")
