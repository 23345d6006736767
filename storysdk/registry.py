"""The component registry: a pluggy plugin manager plus a table of registered components.

Plugins are found through the ``storysdk`` entry-point group. A plugin that fails to import,
or whose hook raises, is recorded in :attr:`Registry.failed` with its error and never breaks
the others. Environment switches:

- ``STORYSDK_LOAD_PLUGINS=a,b`` loads only those plugins (entry-point or distribution
  names); set it to an empty string to load none. Built-ins are always loaded.
- ``STORYSDK_TRACE_PLUGINS=1`` prints every hook call and its result to stderr.
- ``STORYSDK_PLUGINS=pkg.module,pkg.module:Object`` registers these plugin objects as well
  (like pytest's ``PYTEST_PLUGINS``): a plugin that is not installed, or the test fakes in a
  subprocess (``STORYSDK_PLUGINS=storysdk.testing:FakesPlugin``). A class is instantiated.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import os
import sys
import traceback
from collections.abc import Mapping
from functools import partial
from typing import Any

import attrs
import pluggy

from . import hookspecs
from .errors import ConfigError, PluginError, UnknownComponentError
from .interfaces import Component, Composer, Generator, Planner, Tokenizer, capabilities_of
from .options import OptionInfo, Options, describe_options, suggest, validate_options

__all__ = ["ComponentInfo", "FailedPlugin", "PluginInfo", "Registration", "Registry", "get_registry"]

ENTRY_POINT_GROUP = "storysdk"
BUILTIN_PLUGIN = "storysdk.builtins"

#: kind -> (hook name, base class)
KINDS: dict[str, tuple[str, type[Component]]] = {
    "planner": ("register_planners", Planner),
    "tokenizer": ("register_tokenizers", Tokenizer),
    "generator": ("register_generators", Generator),
    "composer": ("register_composers", Composer),
}


@attrs.frozen
class ComponentInfo:
    """A registered component: its kind, name, class and the plugin that registered it."""

    kind: str
    name: str
    factory: type[Component]
    plugin: str
    version: str | None = None

    def capabilities(self) -> dict[str, Any]:
        return capabilities_of(self.factory)

    def declared(self) -> bool:
        """Whether the component declares its options (an ``Options`` class), as every component should."""
        return self.factory.Options is not Options or _init_of(self.factory) is Component.__init__

    def option_info(self) -> list[OptionInfo]:
        """The declared options (name, type, default, constraints, description)."""
        if self.declared():
            return describe_options(self.factory.Options)
        out = []
        for key, default in self._signature_options().items():
            out.append(OptionInfo(key, "any", None if default is ... else default, default is ..., (), ""))
        return out

    def options(self) -> dict[str, Any]:
        """The option names the component accepts, with their defaults (``...``: required)."""
        if self.declared():
            return {
                o.name: (... if o.required else o.default) for o in describe_options(self.factory.Options)
            }
        return self._signature_options()

    def _signature_options(self) -> dict[str, Any]:
        # a component written before declared options: its constructor's keyword arguments
        sig = inspect.signature(self.factory.__init__)
        out: dict[str, Any] = {}
        for p in list(sig.parameters.values())[1:]:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            out[p.name] = ... if p.default is p.empty else p.default
        return out

    def renamed(self) -> Mapping[str, str]:
        """Former option names and the names that replaced them."""
        return self.factory.Options.renamed

    def create(self, **options: Any) -> Component:
        """Instantiate with ``options``; an unknown, renamed, missing or invalid option is a :class:`ConfigError`."""
        if self.declared():
            validate_options(self.factory.Options, options, kind=self.kind, name=self.name)
            return self.factory(**options)
        sig = inspect.signature(self.factory.__init__)
        params = list(sig.parameters.values())[1:]
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
        if not takes_any:
            known = {p.name for p in params if p.kind is not p.VAR_POSITIONAL}
            unknown = sorted(set(options) - known)
            if unknown:
                raise ConfigError(
                    f"{self.kind} {self.name!r} has no option {', '.join(map(repr, unknown))};"
                    f"{suggest(unknown[0], known)} its options are: {', '.join(sorted(known)) or '(none)'}"
                )
        try:
            sig.bind(None, **options)
        except TypeError as exc:
            raise ConfigError(f"{self.kind} {self.name!r}: {exc}") from exc
        return self.factory(**options)


def _init_of(cls: type) -> Any:
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            return vars(klass)["__init__"]
    return None


@attrs.frozen
class FailedPlugin:
    """A plugin that could not be imported or whose registration hook raised."""

    name: str
    distribution: str | None
    version: str | None
    error: str
    traceback: str = ""


@attrs.frozen
class Registration:
    """One ``register(*args, **kwargs)`` call a plugin made in a non-component hook."""

    plugin: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]


@attrs.frozen
class PluginInfo:
    """A loaded plugin: name, distribution version, hooks it implements, components it gave."""

    name: str
    version: str | None
    hooks: tuple[str, ...]
    components: tuple[ComponentInfo, ...]


def _version(dist_name: str | None) -> str | None:
    if not dist_name:
        return None
    try:
        return importlib.metadata.version(dist_name)
    except importlib.metadata.PackageNotFoundError:
        return None


class Registry:
    """Plugins and the components they registered.

    ``Registry()`` loads the built-ins and every installed plugin; ``Registry(entrypoints=False)``
    only the built-ins (what :func:`storysdk.testing.storysdk_registry` gives tests).
    """

    def __init__(
        self,
        *,
        entrypoints: bool = True,
        builtins: bool = True,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self._import_failures: list[FailedPlugin] = []
        self._hook_failures: list[FailedPlugin] = []
        self._versions: dict[str, str | None] = {}
        self._dists: dict[str, str | None] = {}
        self._table: dict[tuple[str, str], ComponentInfo] | None = None
        self._undo_trace: Any = None
        if env.get("STORYSDK_TRACE_PLUGINS", "") not in ("", "0"):
            self._enable_trace()
        if builtins:
            from .builtins import plugin as builtin_plugin

            self.register_plugin(builtin_plugin, name=BUILTIN_PLUGIN, version=_version("storysdk"))
        if entrypoints:
            only = env.get("STORYSDK_LOAD_PLUGINS")
            allowed = None if only is None else {n.strip() for n in only.split(",") if n.strip()}
            self._load_entrypoints(allowed)
        for spec in (n.strip() for n in env.get("STORYSDK_PLUGINS", "").split(",")):
            if spec:
                self._load_named(spec)

    # -- loading -----------------------------------------------------------------------
    def _enable_trace(self) -> None:
        def before(hook_name: str, impls: list[Any], kwargs: Mapping[str, Any]) -> None:
            names = ", ".join(i.plugin_name for i in impls) or "(no implementations)"
            print(f"[storysdk trace] {hook_name} -> {names}", file=sys.stderr)

        def after(outcome: Any, hook_name: str, impls: list[Any], kwargs: Mapping[str, Any]) -> None:
            exc = outcome.exception
            status = f"raised {exc!r}" if exc is not None else "ok"
            print(f"[storysdk trace] {hook_name} <- {status}", file=sys.stderr)

        self._undo_trace = self.pm.add_hookcall_monitoring(before, after)

    def _load_entrypoints(self, allowed: set[str] | None) -> None:
        eps = sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
        for ep in eps:
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else None
            if allowed is not None and ep.name not in allowed and dist_name not in allowed:
                continue
            if self.pm.has_plugin(ep.name) or self.pm.is_blocked(ep.name):
                continue
            version = dist.version if dist is not None else None
            try:
                module = ep.load()
            except BaseException as exc:  # noqa: BLE001 - a broken plugin must not stop the others
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                self._import_failures.append(
                    FailedPlugin(ep.name, dist_name, version, f"{type(exc).__name__}: {exc}", traceback.format_exc())
                )
                continue
            self.register_plugin(module, name=ep.name, version=version, distribution=dist_name)

    def _load_named(self, spec: str) -> None:
        module_name, _, attr = spec.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in filter(None, attr.split(".")):
                obj = getattr(obj, part)
            if inspect.isclass(obj):
                obj = obj()
        except Exception as exc:  # noqa: BLE001 - reported like a broken entry point
            self._import_failures.append(
                FailedPlugin(spec, None, None, f"{type(exc).__name__}: {exc} (from STORYSDK_PLUGINS)", traceback.format_exc())
            )
            return
        if not self.pm.has_plugin(spec):
            self.register_plugin(obj, name=spec)

    def register_plugin(
        self,
        plugin: object,
        *,
        name: str | None = None,
        version: str | None = None,
        distribution: str | None = None,
    ) -> str:
        """Register a plugin object (a module or any object with ``@hookimpl`` methods)."""
        try:
            plugin_name = self.pm.register(plugin, name=name)
        except ValueError as exc:
            raise PluginError(f"plugin {name!r} could not be registered: {exc}") from exc
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {name!r} has an invalid hook implementation: {exc}") from exc
        assert plugin_name is not None
        self._versions[plugin_name] = version
        self._dists[plugin_name] = distribution
        self._table = None
        return plugin_name

    def unregister_plugin(self, name: str) -> None:
        self.pm.unregister(name=name)
        self._table = None

    # -- the component table ---------------------------------------------------------------
    def _collect(self) -> dict[tuple[str, str], ComponentInfo]:
        if self._table is not None:
            return self._table
        table: dict[tuple[str, str], ComponentInfo] = {}
        self._hook_failures = []
        # registration order: built-ins first, then entry points by name, then plugins
        # registered by hand; of two equal names the first registered wins
        plugins = self.pm.list_name_plugin()
        for plugin_name, plugin in plugins:
            others = [p for n, p in plugins if n != plugin_name]
            added: list[tuple[str, str]] = []
            try:
                for kind, (hook_name, _) in KINDS.items():
                    caller = self.pm.subset_hook_caller(hook_name, remove_plugins=others)
                    caller(register=partial(self._add, table, added, kind, plugin_name))
            except Exception as exc:  # noqa: BLE001 - reported, other plugins go on
                for key in added:
                    table.pop(key, None)
                self._hook_failures.append(
                    FailedPlugin(
                        plugin_name,
                        self._dists.get(plugin_name),
                        self._versions.get(plugin_name),
                        f"{type(exc).__name__}: {exc}",
                        traceback.format_exc(),
                    )
                )
        self._table = table
        return table

    def _add(
        self,
        table: dict[tuple[str, str], ComponentInfo],
        added: list[tuple[str, str]],
        kind: str,
        plugin_name: str,
        factory: type[Component],
        *,
        name: str | None = None,
    ) -> None:
        base = KINDS[kind][1]
        if not (isinstance(factory, type) and issubclass(factory, base)):
            raise PluginError(
                f"{KINDS[kind][0]} of plugin {plugin_name!r} registered {factory!r}, "
                f"which is not a subclass of storysdk.{base.__name__}"
            )
        cname = name or factory.name
        if not cname:
            raise PluginError(
                f"{factory.__name__} of plugin {plugin_name!r} has no name; set the class attribute 'name'"
            )
        if (kind, cname) in table:
            other = table[(kind, cname)].plugin
            raise PluginError(
                f"{kind} {cname!r} is already registered by plugin {other!r}; rename one of them"
            )
        table[(kind, cname)] = ComponentInfo(kind, cname, factory, plugin_name, self._versions.get(plugin_name))
        added.append((kind, cname))

    # -- other registrations (styles, routes, ...) -------------------------------------------
    def collect(self, hook_name: str) -> list[Registration]:
        """Every ``register(...)`` call that plugins make in the hook ``hook_name``, in plugin order.

        For the hooks that register things other than components (``register_styles``,
        ``register_routes``). A plugin whose hook raises is reported in :attr:`failed`, and
        its registrations are left out; the others still count.
        """
        if not hasattr(self.pm.hook, hook_name):
            raise ConfigError(f"no hook named {hook_name!r}; hooks are {', '.join(sorted(self.hook_names()))}")
        self._collect()
        out: list[Registration] = []
        plugins = self.pm.list_name_plugin()
        for plugin_name, _plugin in plugins:
            others = [p for n, p in plugins if n != plugin_name]
            made: list[Registration] = []

            def register(*args: Any, _made: list[Registration] = made, _name: str = plugin_name, **kwargs: Any) -> None:
                _made.append(Registration(_name, args, kwargs))

            try:
                self.pm.subset_hook_caller(hook_name, remove_plugins=others)(register=register)
            except Exception as exc:  # noqa: BLE001 - reported, other plugins go on
                failure = FailedPlugin(
                    plugin_name, self._dists.get(plugin_name), self._versions.get(plugin_name),
                    f"{hook_name}: {type(exc).__name__}: {exc}", traceback.format_exc(),
                )
                if failure not in self._hook_failures:
                    self._hook_failures.append(failure)
                continue
            out.extend(made)
        return out

    def hook_names(self) -> list[str]:
        """The names of the storysdk hooks."""
        return sorted(n for n in dir(hookspecs) if n.startswith("register_"))

    # -- queries ---------------------------------------------------------------------------
    @property
    def failed(self) -> list[FailedPlugin]:
        """Plugins that failed to import, or whose registration hook raised, with their errors."""
        self._collect()
        return self._import_failures + self._hook_failures

    def components(self, kind: str | None = None) -> list[ComponentInfo]:
        """Registered components (of one kind), sorted by kind then name."""
        if kind is not None and kind not in KINDS:
            raise ConfigError(f"unknown component kind {kind!r}; kinds are {', '.join(KINDS)}")
        infos = [i for (k, _), i in self._collect().items() if kind is None or k == kind]
        order = list(KINDS)
        return sorted(infos, key=lambda i: (order.index(i.kind), i.name))

    def get(self, kind: str, name: str) -> ComponentInfo:
        """The component ``name`` of ``kind``; :class:`UnknownComponentError` with suggestions."""
        table = self._collect()
        if kind not in KINDS:
            raise ConfigError(f"unknown component kind {kind!r}; kinds are {', '.join(KINDS)}")
        info = table.get((kind, name))
        if info is not None:
            return info
        names = sorted(n for (k, n) in table if k == kind)
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        failed = [f.name for f in self._import_failures + self._hook_failures]
        fail_hint = (
            f" Plugins that failed to load: {', '.join(failed)} (see 'storysdk plugins')." if failed else ""
        )
        raise UnknownComponentError(
            f"no {kind} named {name!r}; registered {kind}s: {', '.join(names) or '(none)'}."
            f"{hint}{fail_hint} Install the plugin that provides it or fix the name."
        )

    def create(self, kind: str, name: str, **options: Any) -> Component:
        return self.get(kind, name).create(**options)

    def plugins(self) -> list[PluginInfo]:
        """Loaded plugins with their versions, implemented hooks and components."""
        table = self._collect()
        out = []
        for plugin_name, plugin in self.pm.list_name_plugin():
            hooks = tuple(sorted(h.name for h in self.pm.get_hookcallers(plugin) or ()))
            comps = tuple(i for i in table.values() if i.plugin == plugin_name)
            out.append(PluginInfo(plugin_name, self._versions.get(plugin_name), hooks, comps))
        out.sort(key=lambda p: (p.name != BUILTIN_PLUGIN, p.name))
        return out

    def names(self, kind: str) -> list[str]:
        return [i.name for i in self.components(kind)]


_default: Registry | None = None


def get_registry(*, reload: bool = False) -> Registry:
    """The process-wide default registry (built-ins plus installed plugins), created on first use."""
    global _default
    if _default is None or reload:
        _default = Registry()
    return _default
