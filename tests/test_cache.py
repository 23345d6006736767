"""ComponentCache: built components kept between pipelines, keyed by kind, name and options."""

from __future__ import annotations

from pathlib import Path

import pytest

from storysdk import ComponentCache, ConfigError, Pipeline, StoryRequest
from storysdk.testing import make_registry


def test_same_options_give_the_same_instance_and_others_a_new_one() -> None:
    reg = make_registry()
    cache = ComponentCache()
    info = reg.get("generator", "fake-image")
    a = cache.get("generator", info, {})
    assert cache.get("generator", info, {}) is a
    wide = cache.get("generator", info, {"width": 8})
    assert wide is not a and wide.options.width == 8  # type: ignore[attr-defined]
    other = cache.get("planner", reg.get("planner", "fake-planner"), {"duration": 2.0})
    assert other is not a and other.options.duration == 2.0  # type: ignore[attr-defined]
    assert cache.get("planner", reg.get("planner", "fake-planner"), {"duration": 2.0}) is other
    assert cache.get("planner", reg.get("planner", "fake-planner"), {"duration": 3.0}) is not other
    assert (cache.hits, cache.misses) == (2, 4)
    cache.clear()
    assert len(cache) == 0 and cache.get("generator", info, {}) is not a


def test_least_recently_used_is_dropped_and_object_options_are_not_kept() -> None:
    reg = make_registry()
    info = reg.get("planner", "fake-planner")
    cache = ComponentCache(max_entries=2)
    one = cache.get("planner", info, {"duration": 1.0})
    cache.get("planner", info, {"duration": 2.0})
    assert cache.get("planner", info, {"duration": 1.0}) is one  # now most recent
    cache.get("planner", info, {"duration": 3.0})  # drops duration=2.0
    assert len(cache) == 2
    assert cache.get("planner", info, {"duration": 1.0}) is one
    before = cache.misses
    cache.get("planner", info, {"duration": 2.0})
    assert cache.misses == before + 1
    with pytest.raises(ConfigError, match="max_entries"):
        ComponentCache(max_entries=0)
    # options that are not JSON data (an object, NaN) are built anew, never kept
    image = reg.get("generator", "diffusers-image")
    for extra in ({"callback": object()}, {"eta": float("nan")}):
        opts = {"preset": "tiny", "extra": extra}
        assert cache.get("generator", image, opts) is not cache.get("generator", image, opts)
    assert len(cache) == 2


def test_pipelines_sharing_a_cache_share_components_and_render_the_same(tmp_path: Path) -> None:
    reg = make_registry()
    cache = ComponentCache()
    spec = dict(planner="fake-planner", generators=["fake-image", "fake-audio"], composers=["fake-composer"])
    p1 = Pipeline(**spec, registry=reg, cache=cache)  # type: ignore[arg-type]
    # runtime options no component takes (the CLI's --preset here) change nothing and are left out
    p2 = Pipeline(**spec, registry=reg, cache=cache, runtime={"preset": "tiny"})  # type: ignore[arg-type]
    assert p1.planner is p2.planner and p1.generators[0] is p2.generators[0]
    assert p1.describe() == p2.describe()  # the run fingerprint still names the options
    req = StoryRequest(script="a\nb", seed=4, width=8, height=8)
    p1.run(req, out_dir=tmp_path / "one")
    p2.run(req, out_dir=tmp_path / "two")
    for name in ("tracks/fake-image/scene-0001.png", "tracks/fake-audio/scene-0000.wav", "story.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    p3 = Pipeline(planner="fake-planner", generators=["fake-image"], registry=reg)
    assert p3.generators[0] is not p1.generators[0]  # no cache, no sharing
