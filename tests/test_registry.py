"""The registries of ``dmtl.registry`` (checked when a config is read) and the factories
that build the parts (torch side) know the same names, and each options model has the
factory's keyword arguments, no more, no fewer."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from dmtl.registry import (
    AGGREGATORS,
    BACKBONES,
    BUILTINS,
    READERS,
    REGIMES,
    WEIGHTINGS,
    GuardOptions,
    Registry,
)


def _keywords(function: Callable[..., Any], skip: tuple[str, ...] = ()) -> set[str]:
    parameters = inspect.signature(function).parameters
    return {
        name for name, p in parameters.items()
        if name not in ("self", *skip) and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }


def _fields(registry: Registry, name: str) -> set[str]:
    return set(registry.options_model(name).model_fields)


def test_aggregators_match_core() -> None:
    from dmtl.core.aggregation import AGGREGATORS as CORE

    assert AGGREGATORS.names() == list(CORE)
    for name, entry in CORE.items():
        assert _fields(AGGREGATORS, name) == _keywords(entry.build) - NOT_IN_A_CONFIG, name


NOT_IN_A_CONFIG = {"pref_vector", "f", "leak"}
"""TorchJD arguments that take a tensor or a function: no YAML value is one."""


def test_weightings_match_core() -> None:
    from dmtl.core.weighting import WEIGHTINGS as CORE

    assert WEIGHTINGS.names() == list(CORE)
    for name, cls in CORE.items():
        expected = set() if name == "fixed" else _keywords(cls.__init__, ("task_names",))
        assert _fields(WEIGHTINGS, name) == expected, name  # fixed: method.task_weights


def test_guard_options_match_core() -> None:
    from dmtl.core.guard import RelatednessGuard

    assert set(GuardOptions.model_fields) == _keywords(RelatednessGuard.__init__, ("targets",))


def test_regimes_match_data() -> None:
    from dmtl.data import regimes

    assert REGIMES.names() == list(regimes.REGIMES)
    for name in REGIMES.names():
        model = REGIMES.options_model(name)
        assert set(model.model_fields) == set(regimes._PARAMS[name]), name
        required = {f for f, info in model.model_fields.items() if info.is_required()}
        assert required == set(regimes._REQUIRED.get(name, ())), name


def test_builtins_match_data() -> None:
    from dmtl.data.builtin import BUILTIN_DATASETS
    from dmtl.data.builtin.digits import load_digits
    from dmtl.data.builtin.fashion_mnist import load_fashion_mnist

    assert BUILTINS.names() == list(BUILTIN_DATASETS)
    assert _fields(BUILTINS, "digits") == _keywords(load_digits)
    assert _fields(BUILTINS, "fashion_mnist") == _keywords(load_fashion_mnist)


def test_readers_match_data() -> None:
    from dmtl.data.readers import READERS as DATA_READERS

    assert sorted(READERS.names()) == sorted(DATA_READERS)
    for name in READERS.names():
        assert _fields(READERS, name) == _keywords(DATA_READERS[name], ("root",)), name


def test_backbones_match_backbones() -> None:
    from dmtl import backbones

    assert set(BACKBONES.names()) <= set(backbones.list_backbones())
    for name in BACKBONES.names():
        factory = backbones._REGISTRY[name]
        assert _fields(BACKBONES, name) == _keywords(
            factory, ("in_channels", "image_size", "pretrained")
        ), name


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_options_are_finite(value: float) -> None:
    problems = WEIGHTINGS.problems("dwa", {"temperature": value}, "w", "w_options")
    assert problems and "finite" in problems[0][1]


def test_a_new_entry_plugs_in() -> None:
    """How another part declares its options: a model, registered under its name."""
    from pydantic import Field

    from dmtl.registry import Options

    class WidthOptions(Options):
        width: int = Field(default=8, gt=0)

    AGGREGATORS.register("my_test_aggregator", WidthOptions)
    try:
        assert AGGREGATORS.problems("my_test_aggregator", {"width": 3}, "a", "o") == []
        [(where, message)] = AGGREGATORS.problems("my_test_aggregator", {"width": 0}, "a", "o")
        assert where == "o.width" and "greater than 0" in message
    finally:
        AGGREGATORS.unregister("my_test_aggregator")
