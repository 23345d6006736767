"""The public namespace is exactly what __all__ says (httpx's exported-members test)."""

from __future__ import annotations

import subprocess
import sys

import storysdk


def test_all_is_sorted_and_complete() -> None:
    public = {n for n in dir(storysdk) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(storysdk, n)).__name__ == "module"}
    assert storysdk.__all__ == sorted(set(storysdk.__all__))
    assert set(storysdk.__all__) - {"__version__"} == public - modules


def test_every_error_is_a_storysdk_error() -> None:
    from storysdk import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), storysdk.StorySDKError)


def test_import_does_not_import_torch() -> None:
    code = (
        "import sys, storysdk, storysdk.cli, storysdk.testing, storysdk.builtins.plugin;"
        "from storysdk.testing import make_registry; make_registry().components();"
        "bad = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_py_typed_is_shipped() -> None:
    from importlib.resources import files

    assert files("storysdk").joinpath("py.typed").is_file()
