"""storysdk.styles: the Style type, the identity, and lookup by name among the styles plugins register.

The styles here come from small test plugins (``register_styles``); StoryDiffusion's own
templates are tested in its plugin's tests.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from storysdk import Registry, hookimpl
from storysdk.errors import ConfigError, PluginError
from storysdk.styles import (
    IDENTITY,
    NO_STYLE,
    Style,
    apply_style,
    get_style,
    match_name,
    menu,
    menu_names,
    style_catalog,
    style_names,
)

SKETCH = Style("Pencil Sketch", "pencil sketch of {prompt}, graphite", "colour, paint")
INK = Style("Ink Wash", "{prompt} . ink wash painting", "photo")
NEON = Style("Neon", "neon {prompt} at night", "")


class ArtPlugin:
    """Three styles; the app menu lists two of them, the kiosk menu the others in its own order."""

    @hookimpl
    def register_styles(self, register: Any) -> None:
        register(SKETCH, menus=("art-app",))
        register(INK, menus=("art-app",))
        register(NEON)
        for style in (NEON, IDENTITY, SKETCH):  # registered again to list them in another menu
            register(style, menus=("kiosk",))


def registry(*plugins: object) -> Registry:
    reg = Registry(entrypoints=False)
    for i, p in enumerate(plugins):
        reg.register_plugin(p, name=f"styles-{i}")
    return reg


def test_registered_styles_in_order_and_menus_in_their_order() -> None:
    reg = registry(ArtPlugin())
    assert style_names(reg) == [NO_STYLE, "Pencil Sketch", "Ink Wash", "Neon"]
    assert menu_names(reg) == ["art-app", "kiosk"]
    assert menu("art-app", reg) == ("Pencil Sketch", "Ink Wash")
    assert menu("KIOSK", reg) == ("Neon", NO_STYLE, "Pencil Sketch")
    catalog = style_catalog(reg)
    assert catalog.owners["Ink Wash"] == "styles-0" and catalog.owners[NO_STYLE] == "storysdk"
    assert not catalog.conflicts and not catalog.failed
    with pytest.raises(ConfigError, match=r"unknown style menu 'kiosks' \(did you mean 'kiosk'\?\)"):
        menu("kiosks", reg)


def test_apply_fills_the_template_and_joins_the_negatives() -> None:
    reg = registry(ArtPlugin())
    assert apply_style("Pencil Sketch", "a cat", "blurry", registry=reg) == (
        "pencil sketch of a cat, graphite", "colour, paint blurry")
    # an empty user negative still gets the joining space: style_negative + " " + negative
    assert apply_style("Neon", "a cat", registry=reg) == ("neon a cat at night", " ")
    assert get_style("ink wash", reg).apply("a {red} cat") == ("a {red} cat . ink wash painting", "photo ")


def test_the_identity_needs_no_plugin() -> None:
    bare = Registry(entrypoints=False)
    assert get_style(None, bare) is IDENTITY and get_style(NO_STYLE, bare) is IDENTITY
    assert get_style("(no STYLE)", bare) is IDENTITY
    assert apply_style(None, "a cat", "ugly", registry=bare) == ("a cat", " ugly")
    assert apply_style(None, "a cat", "ugly") == ("a cat", " ugly")  # the default registry: no lookup needed
    assert style_names(bare) == [NO_STYLE]


def test_lookup_ignores_case_and_outer_spaces() -> None:
    reg = registry(ArtPlugin())
    assert get_style("pencil SKETCH", reg) is SKETCH
    assert get_style("  Neon ", reg) is NEON


def test_unknown_style_lists_names_and_close_matches() -> None:
    reg = registry(ArtPlugin())
    with pytest.raises(ConfigError) as info:
        get_style("Pencil Skech", reg)
    msg = str(info.value)
    assert msg.startswith("unknown style 'Pencil Skech' (did you mean 'Pencil Sketch'?); use one of: ")
    for name in style_names(reg):
        assert repr(name) in msg
    with pytest.raises(ConfigError, match="unknown style 'zzz'; use one of"):
        get_style("zzz", reg)
    with pytest.raises(ConfigError, match="must be a string or None"):
        get_style(3, reg)  # type: ignore[arg-type]


def test_match_name_for_other_tables() -> None:
    names = ["Unstable", "SDXL"]
    assert match_name("base model", "sdxl", names) == "SDXL"
    with pytest.raises(ConfigError, match=r"unknown base model 'Unstabel' \(did you mean 'Unstable'\?\)"):
        match_name("base model", "Unstabel", names)


def test_two_plugins_with_one_name_and_different_templates() -> None:
    class Other:
        @hookimpl
        def register_styles(self, register: Any) -> None:
            register(Style("Neon", "{prompt}, neon lights", "dark"))
            register(SKETCH)  # the same style as ArtPlugin's: fine

    reg = registry(ArtPlugin(), Other())
    assert get_style("Pencil Sketch", reg) is SKETCH
    assert style_catalog(reg).conflicts == {"Neon": ("styles-0", "styles-1")}
    with pytest.raises(PluginError, match=r"style 'Neon' is registered by plugins 'styles-0' and 'styles-1'"):
        get_style("neon", reg)


def test_broken_style_plugins_are_reported_and_the_others_still_work() -> None:
    class NotAStyle:
        @hookimpl
        def register_styles(self, register: Any) -> None:
            register(INK)
            register("Sketchy", "{prompt}")

    class Raises:
        @hookimpl
        def register_styles(self, register: Any) -> None:
            raise RuntimeError("template file missing")

    class FakeIdentity:
        @hookimpl
        def register_styles(self, register: Any) -> None:
            register(Style(NO_STYLE, "always {prompt}", ""))

    reg = registry(ArtPlugin(), NotAStyle(), Raises(), FakeIdentity())
    catalog = style_catalog(reg)
    assert set(catalog.failed) == {"styles-1", "styles-2", "styles-3"}
    assert "register(Style(name, positive, negative))" in catalog.failed["styles-1"]
    assert "RuntimeError: template file missing" in catalog.failed["styles-2"]
    assert "core's identity style" in catalog.failed["styles-3"]
    assert get_style("Ink Wash", reg) is INK and get_style(NO_STYLE, reg) is IDENTITY
    assert catalog.owners["Ink Wash"] == "styles-0"  # NotAStyle's valid registration is dropped with it
    with pytest.raises(ConfigError, match=r"Style plugins that failed to load: styles-1: .*styles-2: "):
        get_style("Sketchy", reg)


def test_styles_are_checked_and_immutable() -> None:
    with pytest.raises(ConfigError, match=r"must contain '\{prompt\}'"):
        Style("broken", "no placeholder", "")
    with pytest.raises(ConfigError, match="non-empty name"):
        Style(" ", "{prompt}", "")
    with pytest.raises(ConfigError, match="negative prompt must be text"):
        Style("x", "{prompt}", None)  # type: ignore[arg-type]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        SKETCH.positive = "{prompt}"  # type: ignore[misc]
    catalog = style_catalog(registry(ArtPlugin()))
    with pytest.raises(TypeError):
        catalog.styles["Neon"] = SKETCH  # type: ignore[index]
    assert Style("x", "{prompt}!", "n") == Style("x", "{prompt}!", "n")
