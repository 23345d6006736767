"""The project's structure rules, read from the source: layering, public API only, no import loops.

- the core (``storysdk/``) imports no plugin package and names none;
- first-party plugins import only the core's public modules (no ``storysdk._*``,
  ``storysdk.builtins``, or ``storysdk.testing`` from package code);
- no import loops inside the core or inside a plugin (imports under ``if TYPE_CHECKING:`` do
  not count: they never run);
- every plugin has the same layout (``src/``), a README and its spec in ``docs/``;
- every ``*.md`` file that code cites exists in the repository.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "storysdk"
PLUGINS = sorted(p for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").is_file())
TEMPLATE = ROOT / "examples" / "plugin-template"


def _packages(plugin: Path) -> list[Path]:
    return sorted(p for p in (plugin / "src").iterdir() if (p / "__init__.py").is_file())


PLUGIN_PACKAGES = {pkg.name: pkg for plugin in PLUGINS for pkg in _packages(plugin)}
PLUGIN_PACKAGES[TEMPLATE.name] = TEMPLATE / "storysdk_plugin_template"


def _module_name(path: Path, package_root: Path) -> str:
    rel = path.relative_to(package_root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """``(line, absolute module)`` for every import that runs (``if TYPE_CHECKING:`` bodies skipped).

    ``from a import b`` yields both ``a`` and ``a.b`` (``b`` may be a module).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skipped = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _is_type_checking(node)
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:
                yield node.lineno, f"{target}.{alias.name}"


def _modules(package: Path) -> dict[str, Path]:
    return {_module_name(p, package): p for p in sorted(package.rglob("*.py"))}


def test_the_core_imports_no_plugin() -> None:
    bad = []
    for module, path in _modules(CORE).items():
        for line, target in _imports(path, module):
            top = target.split(".")[0]
            if top in PLUGIN_PACKAGES:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not bad, "the core must name no plugin (use a hook):\n" + "\n".join(bad)


def test_the_core_names_no_plugin_package() -> None:
    pattern = re.compile("|".join(map(re.escape, PLUGIN_PACKAGES)))
    bad = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in sorted(CORE.rglob("*.py"))
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert not bad, bad


@pytest.mark.parametrize("package", sorted(PLUGIN_PACKAGES), ids=str)
def test_plugins_use_only_the_public_core(package: str) -> None:
    bad = []
    for module, path in _modules(PLUGIN_PACKAGES[package]).items():
        for line, target in _imports(path, module):
            parts = target.split(".")
            if parts[0] != "storysdk" or len(parts) < 2:
                continue
            if parts[1].startswith("_") or parts[1] in ("builtins", "testing"):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not bad, "plugins use the public, documented core API only:\n" + "\n".join(bad)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = walk(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = walk(node)
            if found:
                return found
    return None


def _graph(package: Path) -> dict[str, set[str]]:
    mods = _modules(package)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for module, path in mods.items():
        for _line, target in _imports(path, module):
            # "from pkg import name" counts as an edge to pkg.name when that is a module
            while target and target not in mods:
                target = target.rpartition(".")[0]
            if target and target != module and not module.startswith(target + "."):
                # a package's __init__ importing its own submodules is not a loop; a submodule
                # importing its package's __init__ only counts when __init__ is not just re-exports
                if mods[target].name == "__init__.py" and module.startswith(target + "."):
                    continue
                graph[module].add(target)
    return graph


@pytest.mark.parametrize("package", ["storysdk", *sorted(PLUGIN_PACKAGES)], ids=str)
def test_no_import_loops(package: str) -> None:
    root = CORE if package == "storysdk" else PLUGIN_PACKAGES[package]
    graph = _graph(root)
    # the package's __init__ re-exports its modules; modules reach each other directly
    top = package
    for deps in graph.values():
        deps.discard(top)
    cycle = _cycle({m: d for m, d in graph.items() if m != top})
    assert cycle is None, "import loop: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.name)
def test_every_plugin_has_the_same_layout(plugin: Path) -> None:
    assert _packages(plugin), f"{plugin.name}: the package lives under src/"
    assert not [p for p in plugin.iterdir() if (p / "__init__.py").is_file()], f"{plugin.name}: a package outside src/"
    assert (plugin / "README.md").is_file(), f"{plugin.name} has no README.md"
    assert list((plugin / "docs").glob("*.md")), f"{plugin.name} ships no spec in docs/"
    assert (plugin / "tests").is_dir()
    text = (plugin / "pyproject.toml").read_text(encoding="utf-8")
    assert 'where = ["src"]' in text and "Apache-2.0" in text
    for pkg in _packages(plugin):
        assert (pkg / "py.typed").is_file(), f"{pkg.name} does not ship py.typed"


#: Markdown files that code writes (not citations).
WRITTEN_FILES = {"story.md"}

_CITED = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]+\.md)\b")


def _code_files() -> Iterator[Path]:
    for base in ("storysdk", "plugins", "examples", "benchmarks", "tests"):
        yield from sorted((ROOT / base).rglob("*.py"))


def test_every_cited_spec_ships_in_the_repository() -> None:
    missing = []
    for path in _code_files():
        plugin_root = next((p for p in PLUGINS if path.is_relative_to(p)), None)
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for cited in _CITED.findall(line):
                bases = [ROOT, ROOT / "docs", path.parent] + ([plugin_root] if plugin_root else [])
                if any((b / cited).is_file() for b in bases):
                    continue
                if cited in WRITTEN_FILES:
                    continue
                missing.append(f"{path.relative_to(ROOT)}:{n} cites {cited}")
    assert not missing, "cite specs that ship in the repository:\n" + "\n".join(missing)
