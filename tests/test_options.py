"""Declared options: validation, messages, descriptions, renamed names, pipeline defaults."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import pytest
from pydantic import field_validator

import storysdk
from storysdk import ConfigError, Field, Generator, Options, Pipeline
from storysdk.options import DeviceOptions, describe_options, validate_options
from storysdk.testing import make_registry


class Dots(Generator):
    name = "dots"

    class Options(Options):
        count: int = Field(3, ge=1, le=10, description="dots per picture")
        alpha: float = Field(0.5, ge=0, le=1, description="opacity of each dot")
        shape: Literal["round", "square"] = Field("round", description="how a dot looks")
        size: int | None = Field(None, gt=0, multiple_of=8, description="picture size in pixels (None: the plan's)")
        noise_seed: int | None = Field(None, description="fixed noise instead of the story seed")
        renamed: ClassVar[dict[str, str]] = {"seed": "noise_seed"}

        @field_validator("count")
        @classmethod
        def _odd(cls, v: int) -> int:
            if v % 2 == 0:
                raise ValueError(f"count must be odd so a dot sits in the middle; use {v + 1}")
            return v

    def generate(self, scenes: Any, ctx: Any) -> Any:
        return iter(())


def test_defaults_and_values_are_kept_on_the_instance() -> None:
    d = Dots()
    assert (d.options.count, d.options.alpha, d.options.shape, d.options.size) == (3, 0.5, "round", None)
    assert Dots(count=5, alpha=1).options.alpha == 1.0 and isinstance(Dots(alpha=1).options.alpha, float)


@pytest.mark.parametrize(
    ("options", "needles"),
    [
        ({"count": 11}, ["count=11", "less than or equal to 10", "dots per picture"]),
        ({"count": 4}, ["count=4", "must be odd", "use 5"]),
        ({"count": True}, ["count=True", "valid integer"]),
        ({"alpha": "0.5"}, ["alpha='0.5'", "valid number"]),
        ({"alpha": float("nan")}, ["alpha=nan", "finite number"]),
        ({"alpha": float("inf")}, ["alpha=inf", "finite number"]),
        ({"shape": "star"}, ["shape='star'", "'round' or 'square'"]),
        ({"size": 12}, ["size=12", "multiple of 8"]),
    ],
)
def test_bad_values_name_the_option_the_rule_and_its_meaning(options: dict[str, Any], needles: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        Dots(**options)
    text = str(err.value)
    assert text.startswith("generator 'dots': ")
    for needle in needles:
        assert needle in text, text


def test_unknown_option_suggests_the_close_name() -> None:
    with pytest.raises(ConfigError, match=r"has no option 'cuont'\. Did you mean 'count'\?"):
        Dots(cuont=3)


def test_renamed_option_names_its_successor() -> None:
    with pytest.raises(ConfigError, match=r"'seed' was renamed to 'noise_seed' \(fixed noise instead of the story seed\)"):
        Dots(seed=1)


def test_options_are_frozen() -> None:
    with pytest.raises(Exception, match="frozen"):
        Dots().options.count = 5  # type: ignore[misc]


def test_describe_options_lists_types_defaults_bounds_and_descriptions() -> None:
    rows = {o.name: o for o in describe_options(Dots.Options)}
    assert list(rows) == ["count", "alpha", "shape", "size", "noise_seed"]
    assert (rows["count"].type, rows["count"].default, rows["count"].constraints) == ("int", 3, (">= 1", "<= 10"))
    assert rows["shape"].type == "one of 'round', 'square'"
    assert rows["size"].type == "int | None" and rows["size"].constraints == ("> 0", "multiple of 8")
    assert rows["alpha"].description == "opacity of each dot"
    assert rows["count"].to_dict() == {
        "name": "count", "type": "int", "default": 3, "required": False,
        "constraints": [">= 1", "<= 10"], "description": "dots per picture",
    }


def test_device_options_are_shared_and_checked() -> None:
    class Model(Generator):
        name = "model"

        class Options(DeviceOptions):
            steps: int = Field(4, ge=1, description="denoising steps")

        def generate(self, scenes: Any, ctx: Any) -> Any:
            return iter(())

    m = Model(preset="tiny", weights_seed=3)
    assert (m.options.preset, m.options.weights_seed, m.options.device) == ("tiny", 3, None)
    with pytest.raises(ConfigError, match="preset='small'"):
        Model(preset="small")
    with pytest.raises(ConfigError, match="offload='layers'"):
        Model(offload="layers")
    with pytest.raises(ConfigError, match="renamed to 'weights_seed'"):
        Model(seed=3)


def test_validate_options_without_a_component() -> None:
    opts = validate_options(Dots.Options, {"count": 7}, kind="generator", name="dots")
    assert opts.count == 7  # type: ignore[attr-defined]


class _Plugin:
    @storysdk.hookimpl
    def register_generators(self, register: Any) -> None:
        register(Dots)


def test_registry_lists_and_creates_declared_components() -> None:
    reg = make_registry(_Plugin())
    info = reg.get("generator", "dots")
    assert info.declared() and info.options()["count"] == 3
    assert [o.name for o in info.option_info()] == ["count", "alpha", "shape", "size", "noise_seed"]
    assert reg.create("generator", "dots", count=9).options.count == 9  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="Did you mean 'alpha'"):
        reg.create("generator", "dots", alpah=1)


def test_pipeline_defaults_must_be_taken_by_some_component() -> None:
    reg = make_registry(_Plugin())
    pipe = Pipeline(planner="fake-planner", generators=["dots"], registry=reg, defaults={"count": 5})
    assert pipe.generators[0].options.count == 5  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"defaults: no component of this pipeline takes the option 'cout'\. Did you mean 'count'\?"):
        Pipeline(planner="fake-planner", generators=["dots"], registry=reg, defaults={"cout": 5})
    with pytest.raises(ConfigError, match=r"takes 'seed' any more: generator 'dots' calls it 'noise_seed'.*\[story\] seed"):
        Pipeline(planner="fake-planner", generators=["dots"], registry=reg, defaults={"seed": 5})
    # runtime options (the CLI's --preset, a server's settings) go where they are taken, silently elsewhere
    pipe = Pipeline(planner="fake-planner", generators=["dots"], registry=reg, runtime={"preset": "tiny", "count": 7})
    assert pipe.generators[0].options.count == 7  # type: ignore[attr-defined]
    both = Pipeline(planner="fake-planner", generators=["dots"], registry=reg, runtime={"count": 7}, defaults={"count": 9})
    assert both.generators[0].options.count == 9  # type: ignore[attr-defined]


def test_a_defaults_value_is_checked_even_where_a_component_overrides_it() -> None:
    reg = make_registry(_Plugin())
    with pytest.raises(ConfigError, match=r"defaults 'count' for generator 'dots': option count=4: count must be odd"):
        Pipeline(planner="fake-planner", generators=[("dots", {"count": 5})], registry=reg, defaults={"count": 4})
