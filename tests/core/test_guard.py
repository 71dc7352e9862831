"""The relatedness guard: its update rule and the gradient cosines it reads."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dmtl.core.guard import RelatednessGuard, gradient_cosines
from dmtl.errors import SpecError


def test_rule_halves_doubles_and_keeps() -> None:
    guard = RelatednessGuard({"ca/a->b": "b", "dm/b->a": "a", "dm/a->b": "b"})
    assert guard.update({"ca/a->b": -0.5, "dm/b->a": 0.5, "dm/a->b": None}) == {
        "ca/a->b": 0.5, "dm/b->a": 1.0, "dm/a->b": 1.0,
    }
    for _ in range(6):
        guard.update({"ca/a->b": -0.1})
    assert guard.weights["ca/a->b"] == 1.0 / 16  # the floor
    guard.update({"ca/a->b": 0.2})
    assert guard.weights["ca/a->b"] == 1.0 / 8  # recovers geometrically
    assert guard.update({"unknown": -1.0}) == guard.weights  # names it does not guard


def test_margin_and_state() -> None:
    guard = RelatednessGuard({"x": "t"}, floor=0.25, margin=0.1)
    guard.update({"x": -0.05})
    assert guard.weights == {"x": 1.0}
    guard.update({"x": -0.5})
    state = guard.state_dict()
    other = RelatednessGuard({"x": "t"}, floor=0.25, margin=0.1)
    other.load_state_dict(state)
    assert other.weights == {"x": 0.5}
    for bad in ({"floor": 0.0}, {"margin": 1.0}, {"max_validation": 0}):
        with pytest.raises(SpecError, match="guard"):
            RelatednessGuard({"x": "t"}, **bad)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(-1, 1)), min_size=1, max_size=30))
def test_weights_stay_within_floor_and_one(cosines: list[float | None]) -> None:
    guard = RelatednessGuard({"t": "x"})
    for cosine in cosines:
        weight = guard.update({"t": cosine})["t"]
        assert guard.floor <= weight <= 1.0


def test_cosines_against_hand_values() -> None:
    """L_d = w.a and L_val = w.b have gradients a and b: the cosine is a.b / (|a| |b|)."""
    w = torch.zeros(2, requires_grad=True)
    head = torch.zeros(1, requires_grad=True)
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([2.0, -1.0])
    c = torch.tensor([3.0, 4.0])
    terms = {"ca/x->t": w @ a, "dm/y->t": w @ c + head.sum(), "dm/t->u": w @ a}
    validation = {"t": w @ c}
    cosines = gradient_cosines(
        terms, {"ca/x->t": "t", "dm/y->t": "t", "dm/t->u": "u"}, validation,
        {"t": [w, head], "u": [w]},
    )
    assert cosines["ca/x->t"] == pytest.approx(float(a @ c / (a.norm() * c.norm())))
    # the head's gradient (1) is part of the vector: (3, 4, 1) against (3, 4, 0)
    assert cosines["dm/y->t"] == pytest.approx(25.0 / (26.0**0.5 * 5.0))
    assert cosines["dm/t->u"] is None  # u has no validation label
    assert float(a @ b) == 0.0  # (a and b are orthogonal: a guard would keep the weight)
    orthogonal = gradient_cosines({"d": w @ a}, {"d": "t"}, {"t": w @ b}, {"t": [w]})
    assert orthogonal["d"] == pytest.approx(0.0)
