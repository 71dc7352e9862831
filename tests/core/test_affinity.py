"""Lookahead task affinity (core/affinity.py): hand-worked values, float64 gradients,
partial labels, averaging, grouping and branch points."""

from __future__ import annotations

import math

import pytest
import torch

from dmtl.core.affinity import (
    AffinityAverage,
    AffinityMatrix,
    best_partition,
    branch_point,
    cross_affinity,
    grouping_score,
    lookahead_affinity,
)


def _quadratic(w: torch.Tensor):
    """L_a = (w - 2)^2, L_b = (w - 3)^2 summed over w's entries."""

    def losses(params):
        v = params.get("w", w)
        return {"a": (v - 2.0).pow(2).sum(), "b": (v - 3.0).pow(2).sum()}

    return losses


def test_hand_worked_values() -> None:
    # w = 1: L_a = 1, L_b = 4; grad_a = -2, grad_b = -4; lr = 0.1.
    # step on a: w = 1.2 -> L_a = 0.64 (Z = 0.36), L_b = 3.24 (Z = 1 - 0.81 = 0.19)
    # step on b: w = 1.4 -> L_a = 0.36 (Z = 0.64), L_b = 2.56 (Z = 0.36)
    w = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    z = lookahead_affinity(_quadratic(w), {"w": w}, lr=0.1)["all"]
    assert z.tasks == ("a", "b")
    assert z.values.flatten().tolist() == pytest.approx([0.36, 0.19, 0.64, 0.36], abs=1e-12)
    assert z.get("b", "a") == pytest.approx(0.64)


def test_opposed_tasks_give_negative_affinity() -> None:
    # w = 2.5 between the minima: a step for a (towards 2) raises b's loss and vice versa
    w = torch.tensor([2.5], dtype=torch.float64, requires_grad=True)
    z = lookahead_affinity(_quadratic(w), {"w": w}, lr=0.1)["all"]
    assert z.get("a", "b") < 0 and z.get("b", "a") < 0
    assert z.get("a", "a") > 0 and z.get("b", "b") > 0


def test_small_step_matches_the_first_order_gradient_product_in_float64() -> None:
    """Z_ij ~ lr * (grad L_i . grad L_j) / L_j: the gradients used are the true ones."""
    torch.manual_seed(0)
    x = torch.randn(16, 5, dtype=torch.float64)
    w = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    heads = {"a": torch.randn(3, dtype=torch.float64), "b": torch.randn(3, dtype=torch.float64)}
    ya, yb = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)

    def losses(params):
        h = torch.tanh(x @ params.get("w", w))
        return {"a": ((h @ heads["a"]) - ya).pow(2).mean(),
                "b": ((h @ heads["b"]) - yb).pow(2).mean()}

    lr = 1e-6
    z = lookahead_affinity(losses, {"w": w}, lr=lr)["all"]
    base = losses({})
    grads = {k: torch.autograd.grad(v, w, retain_graph=True)[0] for k, v in base.items()}
    for i in "ab":
        for j in "ab":
            expected = lr * float((grads[i] * grads[j]).sum()) / float(base[j].detach())
            assert z.get(i, j) == pytest.approx(expected, rel=1e-4)
    assert torch.autograd.gradcheck(lambda v: losses({"w": v})["a"], (w.detach().requires_grad_(),))


def test_a_task_without_labels_is_nan_not_zero() -> None:
    w = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)

    def losses(params):
        v = params.get("w", w)
        absent = torch.tensor(float("nan"), dtype=torch.float64)  # no labelled row
        return {"a": (v - 2.0).pow(2).sum(), "b": absent}

    z = lookahead_affinity(losses, {"w": w}, lr=0.1)["all"]
    assert math.isnan(z.get("b", "a")) and math.isnan(z.get("a", "b"))
    assert z.get("a", "a") == pytest.approx(0.36)


def test_groups_restrict_the_step_to_their_parameters() -> None:
    u = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    v = torch.tensor([0.0], dtype=torch.float64, requires_grad=True)

    def losses(params):
        s = params.get("u", u) + params.get("v", v)
        return {"a": (s - 2.0).pow(2).sum(), "b": (s - 3.0).pow(2).sum()}

    z = lookahead_affinity(losses, {"u": u, "v": v}, 0.1, {"all": ["u", "v"], "u": ["u"]})
    # over u alone the step is the one-parameter case; over both it moves s twice as far
    assert z["u"].values.flatten().tolist() == pytest.approx([0.36, 0.19, 0.64, 0.36])
    assert z["all"].get("a", "a") == pytest.approx(1 - (1.4 - 2) ** 2)
    with pytest.raises(ValueError, match="unknown parameters"):
        lookahead_affinity(losses, {"u": u}, 0.1, {"g": ["v"]})
    with pytest.raises(ValueError, match="positive"):
        lookahead_affinity(losses, {"u": u}, 0.0)


def _m(values, tasks=("a", "b", "c")) -> AffinityMatrix:
    return AffinityMatrix(tuple(tasks), torch.tensor(values, dtype=torch.float64))


def test_average_leaves_nan_steps_out() -> None:
    average = AffinityAverage()
    average.add({"all": _m([[1.0, 2.0], [float("nan"), 4.0]], "ab")})
    average.add({"all": _m([[3.0, 4.0], [5.0, float("nan")]], "ab")})
    mean = average.mean()["all"]
    assert mean.values.tolist() == [[2.0, 3.0], [5.0, 4.0]]


def test_partition_groups_helpful_tasks_and_leaves_a_hurt_one_alone() -> None:
    m = _m([[1.0, 0.2, -0.1], [0.3, 1.0, -0.2], [-0.1, -0.3, 1.0]])
    assert best_partition(m) == [["a", "b"], ["c"]]
    # a ~ (0.3 + 0.2)/2 received, c alone receives 0
    assert grouping_score(m, [["a", "b"], ["c"]]) == pytest.approx((0.3 + 0.2) / 3)
    assert best_partition(m, max_groups=1) == [["a", "b", "c"]]


def test_partition_tie_prefers_fewer_groups() -> None:
    zero = _m([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert best_partition(zero) == [["a", "b", "c"]]


def test_branch_point_is_the_first_stage_of_a_non_positive_tail() -> None:
    def pair(z: float) -> AffinityMatrix:
        return _m([[1.0, z], [z, 1.0]], "ab")

    assert branch_point([pair(0.2), pair(-0.1), pair(-0.3)], ["a"], ["b"]) == 1
    assert branch_point([pair(-0.2), pair(-0.1), pair(-0.3)], ["a"], ["b"]) == 0
    assert branch_point([pair(-0.2), pair(0.1), pair(0.3)], ["a"], ["b"]) == 2
    assert cross_affinity(pair(-0.2), ["a"], ["b"]) == pytest.approx(-0.2)
