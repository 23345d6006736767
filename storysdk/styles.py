"""Prompt styles: the :class:`Style` type, the "no style" identity and lookup by name.

A style wraps a scene's prompt in a positive template (``{prompt}`` is replaced by the
prompt) and has a negative prompt that goes in front of the user's negative prompt::

    positive = template.replace("{prompt}", prompt)
    negative = style_negative + " " + user_negative

The core defines no styles besides :data:`NO_STYLE` (the identity, also what ``None``
means). Plugins contribute theirs through the ``register_styles`` hook, optionally listing
them in named *menus* (an app's or a hosted API's choice list, in its order)::

    from storysdk import hookimpl
    from storysdk.styles import Style

    @hookimpl
    def register_styles(register):
        register(Style("Sketch", "pencil sketch of {prompt}", "colour"), menus=("my-app",))

:func:`get_style` and :func:`apply_style` look a name up among the styles registered in a
:class:`~storysdk.Registry` (default: :func:`storysdk.get_registry`); the match ignores case,
and an unknown name raises :class:`~storysdk.errors.ConfigError` listing the styles and the
closest matches. :func:`style_catalog` gives every style and menu at once.

Registering one name twice is fine when both styles are equal (a plugin may register a style
again to list it in another menu); two different styles under one name are a
:class:`~storysdk.errors.PluginError` when that name is looked up, naming both plugins.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs

from .errors import ConfigError, PluginError

if TYPE_CHECKING:
    from .registry import Registry

__all__ = [
    "CORE",
    "IDENTITY",
    "NO_STYLE",
    "Style",
    "StyleCatalog",
    "apply_style",
    "get_style",
    "match_name",
    "menu",
    "menu_names",
    "style_catalog",
    "style_names",
]

#: The name of the style that applies no template (``None`` means this style too).
NO_STYLE = "(No style)"

#: The name recorded as the owner of :data:`IDENTITY`.
CORE = "storysdk"

HOOK = "register_styles"


@attrs.frozen
class Style:
    """One style: ``positive`` is a template containing ``{prompt}``, ``negative`` a negative prompt."""

    name: str
    positive: str
    negative: str

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"a style needs a non-empty name, got {self.name!r}")
        if not isinstance(self.positive, str) or "{prompt}" not in self.positive:
            raise ConfigError(
                f"style {self.name!r}: the positive template must contain '{{prompt}}' "
                "where the scene's prompt goes"
            )
        if not isinstance(self.negative, str):
            raise ConfigError(f"style {self.name!r}: the negative prompt must be text, got {self.negative!r}")

    def apply(self, prompt: str, negative: str = "") -> tuple[str, str]:
        """``(positive, negative)`` for ``prompt``: the template filled in, and ``style negative + " " + negative``.

        ``str.replace`` is used, not ``str.format``, so braces in a prompt are kept as they are.
        """
        return self.positive.replace("{prompt}", prompt), self.negative + " " + negative


#: The identity style: the prompt as it is, an empty style negative.
IDENTITY = Style(NO_STYLE, "{prompt}", "")


def match_name(kind: str, name: str, names: Iterable[str]) -> str:
    """The one of ``names`` that ``name`` means: exact, then ignoring case and outer spaces.

    Otherwise a :class:`ConfigError` ``unknown <kind> 'x' (did you mean ...?); use one of: ...``.
    """
    pool = list(names)
    if name in pool:
        return name
    folded = {k.casefold(): k for k in pool}
    key = folded.get(name.strip().casefold())
    if key is not None:
        return key
    close = difflib.get_close_matches(name.casefold(), list(folded), n=3, cutoff=0.6)
    hint = f" (did you mean {' or '.join(repr(folded[c]) for c in close)}?)" if close else ""
    raise ConfigError(
        f"unknown {kind} {name!r}{hint}; use one of: {', '.join(map(repr, pool)) or '(none)'} "
        "(case does not matter)"
    )


@attrs.frozen
class StyleCatalog:
    """The styles and menus of one registry, in registration order (the identity first).

    ``owners`` names the plugin that registered each style; ``conflicts`` the names that two
    plugins registered with different templates (looking one up is a :class:`PluginError`);
    ``failed`` the plugins whose ``register_styles`` hook raised or registered something
    that is not a style, with the error.
    """

    styles: Mapping[str, Style]
    menus: Mapping[str, tuple[str, ...]]
    owners: Mapping[str, str]
    conflicts: Mapping[str, tuple[str, ...]]
    failed: Mapping[str, str]

    def get(self, name: str | None) -> Style:
        """The style called ``name`` (``None``: the identity); see :func:`get_style`."""
        if name is None:
            return self.styles[NO_STYLE]
        if not isinstance(name, str):
            raise ConfigError(f"a style name must be a string or None, got {type(name).__name__}")
        try:
            key = match_name("style", name, self.styles)
        except ConfigError as exc:
            if self.failed:
                broken = "; ".join(f"{p}: {e}" for p, e in self.failed.items())
                raise ConfigError(f"{exc}. Style plugins that failed to load: {broken}") from None
            raise
        if key in self.conflicts:
            plugins = " and ".join(map(repr, self.conflicts[key]))
            raise PluginError(
                f"style {key!r} is registered by plugins {plugins} with different templates; "
                "uninstall one of them or ask its author to rename the style"
            )
        return self.styles[key]

    def menu(self, name: str) -> tuple[str, ...]:
        """The style names of the menu ``name``, in its order; an unknown menu is a ConfigError."""
        return self.menus[match_name("style menu", name, self.menus)]


def _registered(registration: Any) -> tuple[Style, tuple[str, ...]]:
    args, kwargs = tuple(registration.args), dict(registration.kwargs)
    if len(args) != 1 or not isinstance(args[0], Style) or set(kwargs) - {"menus"}:
        raise PluginError(
            f"register(...) got {args!r} {kwargs!r}; a style plugin calls register(Style(name, positive, negative)) "
            "or register(style, menus=('menu name', ...))"
        )
    menus = kwargs.get("menus", ())
    if isinstance(menus, str) or not all(isinstance(m, str) and m.strip() for m in menus):
        raise PluginError(f"style {args[0].name!r}: menus must be a tuple of menu names, got {menus!r}")
    if args[0].name == NO_STYLE and args[0] != IDENTITY:
        raise PluginError(f"the style name {NO_STYLE!r} is the core's identity style (the prompt as it is); pick another name")
    return args[0], tuple(menus)


def style_catalog(registry: Registry | None = None) -> StyleCatalog:
    """Every style and menu that the plugins of ``registry`` register (default: :func:`storysdk.get_registry`)."""
    if registry is None:
        from . import get_registry  # the package's public default registry (no import at module level)

        registry = get_registry()
    regs = registry.collect(HOOK)
    by_plugin: dict[str, list[tuple[Style, tuple[str, ...]]]] = {}
    failed: dict[str, str] = {}
    for reg in regs:
        if reg.plugin in failed:
            continue
        try:
            by_plugin.setdefault(reg.plugin, []).append(_registered(reg))
        except PluginError as exc:
            failed[reg.plugin] = str(exc)
            by_plugin.pop(reg.plugin, None)
    for f in registry.failed:  # the hook itself raised: Registry.collect recorded it
        if f.error.startswith(HOOK + ":"):
            failed.setdefault(f.name, f.error)
    styles: dict[str, Style] = {NO_STYLE: IDENTITY}
    owners: dict[str, str] = {NO_STYLE: CORE}
    conflicts: dict[str, tuple[str, ...]] = {}
    menus: dict[str, list[str]] = {}
    for plugin, entries in by_plugin.items():
        for style, style_menus in entries:
            known = styles.get(style.name)
            if known is None:
                styles[style.name] = style
                owners[style.name] = plugin
            elif known != style:
                conflicts[style.name] = tuple(dict.fromkeys((*conflicts.get(style.name, (owners[style.name],)), plugin)))
            for m in style_menus:
                names = menus.setdefault(m, [])
                if style.name not in names:
                    names.append(style.name)
    return StyleCatalog(
        styles=MappingProxyType(styles),
        menus=MappingProxyType({k: tuple(v) for k, v in menus.items()}),
        owners=MappingProxyType(owners),
        conflicts=MappingProxyType(conflicts),
        failed=MappingProxyType(failed),
    )


def get_style(name: str | None, registry: Registry | None = None) -> Style:
    """The style called ``name`` among the registered ones; ``None`` means :data:`NO_STYLE`.

    The match ignores case and outer spaces. An unknown name raises
    :class:`~storysdk.errors.ConfigError` naming the registered styles and the closest matches.
    """
    if name is None or name == NO_STYLE:
        return IDENTITY
    if not isinstance(name, str):
        raise ConfigError(f"a style name must be a string or None, got {type(name).__name__}")
    return style_catalog(registry).get(name)


def apply_style(name: str | None, prompt: str, negative: str = "", registry: Registry | None = None) -> tuple[str, str]:
    """``(styled prompt, style_negative + " " + negative)`` for the style ``name``."""
    return get_style(name, registry).apply(prompt, negative)


def style_names(registry: Registry | None = None) -> list[str]:
    """Every registered style name, the identity first, then in registration order."""
    return list(style_catalog(registry).styles)


def menu(name: str, registry: Registry | None = None) -> tuple[str, ...]:
    """The style names that plugins listed in the menu ``name`` (case-insensitive), in order."""
    return style_catalog(registry).menu(name)


def menu_names(registry: Registry | None = None) -> list[str]:
    """The names of the registered style menus."""
    return list(style_catalog(registry).menus)

