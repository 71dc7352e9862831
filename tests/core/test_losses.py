"""Losses: masked supervised, soft CE, co-annotation and distribution matching.

Every value is checked against arithmetic written out here, on the tables of conftest:

    R (A -> B binary)  u    v         T (A -> C categorical)  d0   d1
        x             0.9  0.1            x                   0.8  0.2
        y             0.5  0.5            y                   0.3  0.7
        z             0.2  0.8            z                   0.5  0.5

Logits are chosen so that the probabilities are round: ``z = log p`` for a softmax, and
``z = ±log 3`` for sigmoid probabilities 0.75 / 0.25. Edges keep float32 tables, hence the
1e-6 tolerance where they are used.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis.extra.numpy import arrays

from dmtl.core.coannotation import co_annotation_losses
from dmtl.core.labels import PartialLabels, TaskLabels, collate_labels, empty_labels
from dmtl.core.losses import (
    masked_binary_cross_entropy,
    masked_cross_entropy,
    soft_cross_entropy,
)
from dmtl.core.matching import distribution_matching_losses
from dmtl.core.relatedness import Relatedness
from dmtl.core.tasks import BinarySetTask, CategoricalTask

F64 = torch.float64
LN = math.log
LN3 = math.log(3.0)
R_BINARY = ((0.9, 0.1), (0.5, 0.5), (0.2, 0.8))  # as in conftest
T_CATEGORICAL = ((0.8, 0.2), (0.3, 0.7), (0.5, 0.5))
FAST = settings(max_examples=30, deadline=None, database=None)


def bce(q: float, p: float) -> float:
    """-(q log p + (1 - q) log(1 - p))"""
    return -(q * LN(p) + (1 - q) * LN(1 - p))


def ce(q: list[float], p: list[float]) -> float:
    """-sum_c q_c log p_c"""
    return -sum(qc * LN(pc) for qc, pc in zip(q, p, strict=True) if qc)


def rows(values: list[float], n: int, log: bool = True) -> torch.Tensor:
    t = torch.tensor([values] * n, dtype=F64)
    return t.log() if log else t


def approx(value: torch.Tensor, expected: float, tol: float = 1e-6) -> None:
    assert float(value) == pytest.approx(expected, rel=tol, abs=tol)


def tasks_and_edges() -> tuple[
    CategoricalTask, BinarySetTask, CategoricalTask, Relatedness, Relatedness
]:
    a, b, c = (
        CategoricalTask("a", ["x", "y", "z"]),
        BinarySetTask("b", ["u", "v"]),
        CategoricalTask("c", ["d0", "d1"]),
    )
    return (
        a,
        b,
        c,
        Relatedness(a, b, torch.tensor(R_BINARY)),
        Relatedness(a, c, torch.tensor(T_CATEGORICAL)),
    )


# ---- supervised ---------------------------------------------------------------------------------


def test_masked_cross_entropy_by_hand() -> None:
    logits = torch.tensor([[1.0, 2.0, 1.0], [1.0, 1.0, 2.0], [5.0, 0.0, 0.0]], dtype=F64).log()
    # row 0: softmax [0.25, 0.5, 0.25], label 1 -> -ln 0.5 = ln 2
    # row 1: softmax [0.25, 0.25, 0.5], label 0 -> -ln 0.25 = ln 4
    # row 2: masked (its filler -1 must not be read)
    # mean over the 2 labelled rows: (ln 2 + ln 4) / 2 = 1.5 ln 2
    labels = TaskLabels(torch.tensor([1, 0, -1]), torch.tensor([True, True, False]))
    approx(masked_cross_entropy(logits, labels), 1.5 * LN(2), 1e-12)


def test_masked_binary_cross_entropy_by_hand() -> None:
    logits = torch.tensor([[0.0, LN3], [LN3, 0.0]], dtype=F64)  # sigmoid [[0.5, 0.75], [0.75, 0.5]]
    target = torch.tensor([[1.0, 0.0], [math.nan, 1.0]], dtype=F64)  # NaN filler, masked
    mask = torch.tensor([[True, True], [False, True]])
    # (0,0): q = 1, p = 0.5 -> ln 2;  (0,1): q = 0, p = 0.75 -> -ln 0.25 = 2 ln 2;  (1,1): ln 2
    approx(masked_binary_cross_entropy(logits, target, mask), 4 * LN(2) / 3, 1e-12)
    # pos_weight [2, 3] multiplies the positive part: (0,0): 2 ln 2; (0,1): 2 ln 2; (1,1): 3 ln 2
    pos_weight = torch.tensor([2.0, 3.0], dtype=F64)
    approx(masked_binary_cross_entropy(logits, target, mask, pos_weight), 7 * LN(2) / 3, 1e-12)
    # soft targets and no mask: BCE(0.25, 0.5) = ln 2 for all four entries
    approx(
        masked_binary_cross_entropy(logits[:1, :1].expand(2, 2), torch.full((2, 2), 0.25)),
        LN(2),
        1e-12,
    )


def test_soft_cross_entropy_by_hand() -> None:
    logits = torch.tensor([[1.0, 2.0, 1.0], [1.0, 1.0, 1.0]], dtype=F64).log()
    target = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], dtype=F64)
    # row 0: -(0.5 ln 0.25 + 0.5 ln 0.5) = 1.5 ln 2;  row 1: -ln(1/3) = ln 3
    approx(soft_cross_entropy(logits, target), (1.5 * LN(2) + LN3) / 2, 1e-12)
    # weights [3, 1]: (3 * 1.5 ln 2 + ln 3) / 4
    approx(
        soft_cross_entropy(logits, target, torch.tensor([3.0, 1.0])), (4.5 * LN(2) + LN3) / 4, 1e-12
    )


def test_hard_targets() -> None:
    four = BinarySetTask("b", ["1", "2", "3", "4"])
    assert four.harden(torch.tensor([[0.9, 0.1, 0.5, 0.49]]))[0].tolist() == [[1, 0, 1, 0]]
    three = CategoricalTask("c", ["x", "y", "z"])
    one_hot, kept = three.harden(torch.tensor([[0.2, 0.7, 0.1], [0.4, 0.3, 0.3]]), 0.5)
    assert one_hot.tolist() == [[0, 1, 0], [1, 0, 0]] and kept.tolist() == [True, False]


# ---- distribution matching ----------------------------------------------------------------------

P_A = [0.5, 0.3, 0.2]


def test_dm_binary_forward_by_hand(edge_ab: Relatedness) -> None:
    # q_B = p_A @ R = [0.64, 0.36] (see test_relatedness); p_B = sigmoid(±ln 3) = [0.75, 0.25]
    # mean over labels of BCE(0.64, 0.75) and BCE(0.36, 0.25)
    logits = {"a": rows(P_A, 2), "b": torch.tensor([[LN3, -LN3]] * 2, dtype=F64)}
    out = distribution_matching_losses(edge_ab, logits, inverse=False)
    assert list(out) == ["a->b"]
    approx(out["a->b"], (bce(0.64, 0.75) + bce(0.36, 0.25)) / 2)
    approx(out["a->b"], 0.6831825, 1e-6)  # = 0.64 ln(4/3) + 0.36 ln 4


def test_dm_categorical_forward_by_hand(edge_ac: Relatedness) -> None:
    # q_C = p_A @ T = [0.59, 0.41]; p_C = [0.75, 0.25] -> CE = -(0.59 ln 0.75 + 0.41 ln 0.25)
    logits = {"a": rows(P_A, 3), "c": rows([0.75, 0.25], 3)}
    out = distribution_matching_losses(edge_ac, logits, inverse=False)
    approx(out["a->c"], ce([0.59, 0.41], [0.75, 0.25]))


def test_dm_binary_inverse_by_hand(edge_ab: Relatedness) -> None:
    # p_B = sigmoid(0) = [0.5, 0.5] as soft evidence; tau = 1: q_A = [0.18, 0.5, 0.32]
    # (see test_relatedness: likelihoods [0.09, 0.25, 0.16] / 0.5); CE against p_A
    logits = {"a": rows(P_A, 2), "b": torch.zeros(2, 2, dtype=F64)}
    out = distribution_matching_losses(edge_ab, logits, tau=1.0, forward=False)
    assert list(out) == ["b->a"]
    approx(out["b->a"], ce([0.18, 0.5, 0.32], P_A))
    # default tau = 3: q_A ∝ [0.09, 0.25, 0.16] ** (1/3)
    lik = [0.09 ** (1 / 3), 0.25 ** (1 / 3), 0.16 ** (1 / 3)]
    q = [v / sum(lik) for v in lik]
    approx(distribution_matching_losses(edge_ab, logits, forward=False)["b->a"], ce(q, P_A))
    # a prior [0.2, 0.3, 0.5] with tau = 1:
    #   [0.2*0.09, 0.3*0.25, 0.5*0.16] = [0.018, 0.075, 0.08], total 0.173
    prior = torch.tensor([0.2, 0.3, 0.5])
    q = [0.018 / 0.173, 0.075 / 0.173, 0.08 / 0.173]
    approx(
        distribution_matching_losses(edge_ab, logits, prior, tau=1.0, forward=False)["b->a"],
        ce(q, P_A),
    )


def test_dm_categorical_inverse_by_hand(edge_ac: Relatedness) -> None:
    # p_C = [0.6, 0.4] -> q_A = [5/14, 0.3125, 37/112] (see test_relatedness); CE against p_A
    logits = {"a": rows(P_A, 2), "c": rows([0.6, 0.4], 2)}
    out = distribution_matching_losses(edge_ac, logits)
    assert list(out) == ["a->c", "c->a"]
    approx(out["c->a"], ce([5 / 14, 0.3125, 37 / 112], P_A))
    # forward direction in the same call: q_C = [0.59, 0.41] vs p_C = [0.6, 0.4]
    approx(out["a->c"], ce([0.59, 0.41], [0.6, 0.4]))


def test_dm_forward_never_negative_when_float32_rounding_pushes_the_target_above_one() -> None:
    """Regression: q_B = softmax(z_A) @ R could exceed 1 by an ulp; BCE then went negative."""
    a, b = CategoricalTask("a", ["x", "y", "z"]), BinarySetTask("b", ["u", "v"])
    edge = Relatedness(a, b, torch.ones(3, 2))
    z_a = torch.randn(2000, 3, generator=torch.Generator().manual_seed(0)) * 10
    z_b = torch.full((2000, 2), 1e4)
    for stop in (True, False):
        loss = distribution_matching_losses(edge, {"a": z_a, "b": z_b}, stop_gradient=stop)["a->b"]
        assert loss.item() >= 0.0


def test_dm_weight_restricts_samples(edge_ab: Relatedness) -> None:
    logits = {"a": rows(P_A, 2), "b": torch.tensor([[LN3, -LN3], [0.0, 0.0]], dtype=F64)}
    # only row 0 counts: same as the one-row case above
    out = distribution_matching_losses(
        edge_ab, logits, inverse=False, weight=torch.tensor([1.0, 0.0])
    )
    approx(out["a->b"], (bce(0.64, 0.75) + bce(0.36, 0.25)) / 2)


# ---- co-annotation ------------------------------------------------------------------------------

BINARY_BATCH = [
    {"a": "x"},  # s0: A only -> B's target R[x] = [0.9, 0.1] on both labels
    {"a": "z", "b": {"u": 1}},  # s1: B.v missing -> its target R[z, v] = 0.8
    {"b": [1, 0]},  # s2: B only -> A's target ∝ [0.81, 0.25, 0.04] (/ 1.1)
    {"b": {"v": 1}},  # s3: only v observed -> A's target ∝ [0.1, 0.5, 0.8] (/ 1.4)
    {"a": "y", "b": [0, 1]},  # s4: fully labelled, no co-annotation
    {},  # s5: nothing
]


def _binary_logits() -> dict[str, torch.Tensor]:
    # p_A = [0.5, 0.3, 0.2] and p_B = [0.75, 0.25] on every row
    return {"a": rows(P_A, 6), "b": torch.tensor([[LN3, -LN3]] * 6, dtype=F64)}


def test_co_annotation_soft_binary_by_hand(edge_ab: Relatedness, task_a, task_b) -> None:  # type: ignore[no-untyped-def]
    labels = collate_labels([task_a, task_b], BINARY_BATCH)
    out = co_annotation_losses(edge_ab, _binary_logits(), labels, "soft")
    # A -> B, 3 entries: (s0,u) BCE(0.9, 0.75), (s0,v) BCE(0.1, 0.25), (s1,v) BCE(0.8, 0.25)
    approx(out["a->b"], (bce(0.9, 0.75) + bce(0.1, 0.25) + bce(0.8, 0.25)) / 3)
    # B -> A, 2 samples: CE([0.81, 0.25, 0.04]/1.1, p_A) and CE([0.1, 0.5, 0.8]/1.4, p_A)
    s2 = ce([0.81 / 1.1, 0.25 / 1.1, 0.04 / 1.1], P_A)
    s3 = ce([0.1 / 1.4, 0.5 / 1.4, 0.8 / 1.4], P_A)
    approx(out["b->a"], (s2 + s3) / 2)
    # with a prior [0.2, 0.3, 0.5]:
    #   s2 ∝ [0.162, 0.075, 0.02] (/ 0.257), s3 ∝ [0.02, 0.15, 0.4] (/ 0.57)
    out = co_annotation_losses(
        edge_ab, _binary_logits(), labels, "soft", prior=torch.tensor([0.2, 0.3, 0.5])
    )
    s2 = ce([0.162 / 0.257, 0.075 / 0.257, 0.02 / 0.257], P_A)
    s3 = ce([0.02 / 0.57, 0.15 / 0.57, 0.4 / 0.57], P_A)
    approx(out["b->a"], (s2 + s3) / 2)
    # tau = 2 on label evidence: s2 ∝ [0.9, 0.5, 0.2] (/ 1.6), s3 ∝ sqrt([0.1, 0.5, 0.8])
    out = co_annotation_losses(edge_ab, _binary_logits(), labels, "soft", tau=2.0)
    r = [math.sqrt(v) for v in (0.1, 0.5, 0.8)]
    s3 = ce([v / sum(r) for v in r], P_A)
    approx(out["b->a"], (ce([0.5625, 0.3125, 0.125], P_A) + s3) / 2)


def test_co_annotation_hard_binary_by_hand(edge_ab: Relatedness, task_a, task_b) -> None:  # type: ignore[no-untyped-def]
    labels = collate_labels([task_a, task_b], BINARY_BATCH)
    out = co_annotation_losses(edge_ab, _binary_logits(), labels, "hard")
    # A -> B: R >= 0.5 -> x: [1, 0], z: [0, 1];
    #   (s0,u) q=1, p=0.75: -ln 0.75;  (s0,v) q=0, p=0.25: -ln 0.75;  (s1,v) q=1, p=0.25: -ln 0.25
    approx(out["a->b"], (2 * -LN(0.75) - LN(0.25)) / 3)
    # B -> A: s2 arg-max x (0.736 >= 0.5) -> -ln 0.5;  s3 arg-max z (0.571 >= 0.5) -> -ln 0.2
    approx(out["b->a"], (LN(2) + LN(5)) / 2)
    # threshold 0.6 drops s3 (0.571 < 0.6)
    out = co_annotation_losses(edge_ab, _binary_logits(), labels, "hard", hard_threshold=0.6)
    approx(out["b->a"], LN(2))


def test_co_annotation_categorical_by_hand(edge_ac: Relatedness, task_a, task_c) -> None:  # type: ignore[no-untyped-def]
    labels = collate_labels(
        [task_a, task_c],
        [
            {"a": "x"},  # C's target T[x] = [0.8, 0.2]
            {"c": "d1"},  # A's target P[d1] = [0.2, 0.7, 0.5] / 1.4 = [1/7, 1/2, 5/14]
            {"a": "y", "c": "d0"},  # both labelled: nothing
        ],
    )
    logits = {"a": rows(P_A, 3), "c": rows([0.75, 0.25], 3)}
    out = co_annotation_losses(edge_ac, logits, labels, "soft")
    approx(out["a->c"], ce([0.8, 0.2], [0.75, 0.25]))
    approx(out["c->a"], ce([1 / 7, 1 / 2, 5 / 14], P_A))
    # hard, threshold 0.45: C's target d0 (0.8) -> -ln 0.75;  A's target y (0.5) -> -ln 0.3
    out = co_annotation_losses(edge_ac, logits, labels, "hard", hard_threshold=0.45)
    approx(out["a->c"], -LN(0.75))
    approx(out["c->a"], -LN(0.3))
    # hard, threshold 0.9: neither 0.8 nor 0.5 qualifies -> exact zeros
    out = co_annotation_losses(edge_ac, logits, labels, "hard", hard_threshold=0.9)
    assert float(out["a->c"]) == 0.0 and float(out["c->a"]) == 0.0


def test_co_annotation_when_a_task_is_absent_from_the_batch(
    edge_ab: Relatedness, task_a, task_b
) -> None:  # type: ignore[no-untyped-def]
    """Regression: a batch from a source labelled for A only still co-annotates B (and back)."""
    only_a = PartialLabels(
        [task_a, task_b], {"a": TaskLabels(torch.tensor([0, 2]), torch.tensor([True, False]))}
    )
    logits = {"a": rows(P_A, 2), "b": torch.tensor([[LN3, -LN3]] * 2, dtype=F64)}
    out = co_annotation_losses(edge_ab, logits, only_a)
    # row 0 (class x): B's targets [0.9, 0.1] vs [0.75, 0.25]; row 1 is unlabelled
    approx(out["a->b"], (bce(0.9, 0.75) + bce(0.1, 0.25)) / 2)
    assert float(out["b->a"]) == 0.0
    only_b = PartialLabels(
        [task_a, task_b],
        {"b": TaskLabels(torch.tensor([[1.0, 0.0]] * 2), torch.ones(2, 2, dtype=torch.bool))},
    )
    out = co_annotation_losses(edge_ab, logits, only_b)
    approx(out["b->a"], ce([0.81 / 1.1, 0.25 / 1.1, 0.04 / 1.1], P_A))
    assert float(out["a->b"]) == 0.0


def test_co_annotation_ignores_nan_fillers(edge_ab: Relatedness, task_a, task_b) -> None:  # type: ignore[no-untyped-def]
    labels = PartialLabels(
        [task_a, task_b],
        {
            "a": TaskLabels(torch.tensor([-1, 0]), torch.tensor([False, True])),
            "b": TaskLabels(
                torch.tensor([[1.0, math.nan], [math.nan, math.nan]]),
                torch.tensor([[True, False], [False, False]]),
            ),
        },
    )
    logits = {"a": rows(P_A, 2), "b": torch.tensor([[LN3, -LN3]] * 2, dtype=F64)}
    out = co_annotation_losses(edge_ab, logits, labels)
    # row 1 (x): B targets [0.9, 0.1];  row 0: only u = 1 observed -> A ∝ [0.9, 0.5, 0.2] / 1.6
    approx(out["a->b"], (bce(0.9, 0.75) + bce(0.1, 0.25)) / 2)
    approx(out["b->a"], ce([0.5625, 0.3125, 0.125], P_A))


# ---- gradients ----------------------------------------------------------------------------------


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(
        *shape, dtype=F64, generator=torch.Generator().manual_seed(seed)
    ).requires_grad_()


def test_gradcheck_soft_cross_entropy() -> None:
    target = torch.softmax(_randn(4, 3, seed=1), -1).detach().requires_grad_()
    weight = torch.tensor([1.0, 0.0, 2.0, 0.5], dtype=F64)
    assert torch.autograd.gradcheck(
        lambda z, q: soft_cross_entropy(z, q, weight), (_randn(4, 3, seed=0), target)
    )


def test_gradcheck_masked_losses() -> None:
    mask = torch.tensor([[True, False], [True, True], [False, False]])
    target = torch.tensor([[1.0, 0.0], [0.3, 1.0], [0.0, 1.0]], dtype=F64)
    pos_weight = torch.tensor([2.0, 0.5], dtype=F64)
    assert torch.autograd.gradcheck(
        lambda z: masked_binary_cross_entropy(z, target, mask, pos_weight), (_randn(3, 2, seed=2),)
    )
    labels = TaskLabels(torch.tensor([2, 0, 1]), torch.tensor([True, False, True]))
    assert torch.autograd.gradcheck(
        lambda z: masked_cross_entropy(z, labels), (_randn(3, 3, seed=3),)
    )


@pytest.mark.parametrize("target", ["b", "c"])
def test_gradcheck_dm_without_stop_gradient(
    target: str, edge_ab: Relatedness, edge_ac: Relatedness
) -> None:
    edge = edge_ab if target == "b" else edge_ac
    prior = torch.tensor([0.2, 0.3, 0.5])

    def f(z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        out = distribution_matching_losses(
            edge, {"a": z_a, target: z_b}, prior, stop_gradient=False
        )
        return out[f"a->{target}"] + 2 * out[f"{target}->a"]

    assert torch.autograd.gradcheck(f, (_randn(4, 3, seed=4), _randn(4, 2, seed=5)))


@pytest.mark.parametrize("target", ["b", "c"])
def test_gradcheck_dm_with_stop_gradient(
    target: str, edge_ab: Relatedness, edge_ac: Relatedness
) -> None:
    """With the target detached, each term is a function of the student's logits alone.

    The gradient of the combined loss w.r.t. both logits must equal, for each head, the
    (gradchecked) gradient of its own term with the teacher's logits held constant.
    """
    edge = edge_ab if target == "b" else edge_ac
    z_a, z_b = _randn(4, 3, seed=6), _randn(4, 2, seed=7)

    def student_b(zb: torch.Tensor) -> torch.Tensor:  # A teaches B
        return distribution_matching_losses(edge, {"a": z_a.detach(), target: zb}, inverse=False)[
            f"a->{target}"
        ]

    def student_a(za: torch.Tensor) -> torch.Tensor:  # B teaches A
        return distribution_matching_losses(edge, {"a": za, target: z_b.detach()}, forward=False)[
            f"{target}->a"
        ]

    assert torch.autograd.gradcheck(student_b, (z_b,))
    assert torch.autograd.gradcheck(student_a, (z_a,))
    out = distribution_matching_losses(edge, {"a": z_a, target: z_b}, stop_gradient=True)
    g_a, g_b = torch.autograd.grad(sum(out.values()), (z_a, z_b))
    torch.testing.assert_close(g_a, torch.autograd.grad(student_a(z_a), z_a)[0])
    torch.testing.assert_close(g_b, torch.autograd.grad(student_b(z_b), z_b)[0])


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_gradcheck_co_annotation(
    mode: str, edge_ab: Relatedness, edge_ac: Relatedness, task_a, task_b, task_c
) -> None:  # type: ignore[no-untyped-def]
    labels_b = collate_labels([task_a, task_b], BINARY_BATCH)
    labels_c = collate_labels(
        [task_a, task_c], [{"a": "x"}, {"c": "d1"}, {"a": "y", "c": "d0"}, {}, {"c": 0}, {"a": 2}]
    )
    for edge, labels, t in ((edge_ab, labels_b, "b"), (edge_ac, labels_c, "c")):

        def f(z_a: torch.Tensor, z_t: torch.Tensor, edge=edge, labels=labels, t=t) -> torch.Tensor:  # type: ignore[no-untyped-def]
            out = co_annotation_losses(edge, {"a": z_a, t: z_t}, labels, mode, hard_threshold=0.3)
            return out[f"a->{t}"] + 3 * out[f"{t}->a"]

        assert torch.autograd.gradcheck(
            f, (_randn(6, 3, seed=8), _randn(6, 2, seed=9)), fast_mode=True
        )


# ---- stop-gradient ------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["b", "c"])
def test_stop_gradient(target: str, edge_ab: Relatedness, edge_ac: Relatedness) -> None:
    edge = edge_ab if target == "b" else edge_ac
    for stop in (True, False):
        z_a, z_t = _randn(5, 3, seed=10), _randn(5, 2, seed=11)
        forward = distribution_matching_losses(
            edge, {"a": z_a, target: z_t}, stop_gradient=stop, inverse=False
        )
        g_teacher, g_student = torch.autograd.grad(
            forward[f"a->{target}"], (z_a, z_t), allow_unused=True, materialize_grads=True
        )
        assert float(g_student.abs().sum()) > 0
        assert (
            float(g_teacher.abs().sum()) == 0.0
        ) is stop  # A->B: A's logits untouched iff stopped
        inverse = distribution_matching_losses(
            edge, {"a": z_a, target: z_t}, stop_gradient=stop, forward=False
        )
        g_student, g_teacher = torch.autograd.grad(
            inverse[f"{target}->a"], (z_a, z_t), allow_unused=True, materialize_grads=True
        )
        assert float(g_student.abs().sum()) > 0
        assert (
            float(g_teacher.abs().sum()) == 0.0
        ) is stop  # B->A: B's logits untouched iff stopped


# ---- nothing to act on: exact zeros, zero gradients ---------------------------------------------


Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _all_losses(n: int) -> list[tuple[str, str, Loss]]:
    """(name, logits used among "a", "b", "c", loss of (z_a, z_b, z_c)) with nothing to act on."""
    a, b, c, edge_ab, edge_ac = tasks_and_edges()
    labels = empty_labels([a, b, c], n)
    none = torch.zeros(n, 2, dtype=torch.bool)
    return [
        ("masked CE", "a", lambda za, zb, zc: masked_cross_entropy(za, labels["a"])),
        (
            "masked BCE",
            "b",
            lambda za, zb, zc: masked_binary_cross_entropy(
                zb, torch.ones_like(zb), none, torch.full((2,), 3.0, dtype=zb.dtype)
            ),
        ),
        (
            "soft CE",
            "a",
            lambda za, zb, zc: soft_cross_entropy(za, torch.full_like(za, 1 / 3), torch.zeros(n)),
        ),
        (
            "CA a-b",
            "ab",
            lambda za, zb, zc: sum(
                co_annotation_losses(edge_ab, {"a": za, "b": zb}, labels).values()
            ),
        ),
        (
            "CA a-c hard",
            "ac",
            lambda za, zb, zc: sum(
                co_annotation_losses(edge_ac, {"a": za, "c": zc}, labels, "hard").values()
            ),
        ),
        (
            "CA, no labels at all",
            "ab",
            lambda za, zb, zc: sum(
                co_annotation_losses(
                    edge_ab, {"a": za, "b": zb}, PartialLabels([a, b], {})
                ).values()
            ),
        ),
        (
            "DM a-b, zero weights",
            "ab",
            lambda za, zb, zc: sum(
                distribution_matching_losses(
                    edge_ab, {"a": za, "b": zb}, stop_gradient=False, weight=torch.zeros(n)
                ).values()
            ),
        ),
        (
            "DM a-c, zero weights",
            "ac",
            lambda za, zb, zc: sum(
                distribution_matching_losses(
                    edge_ac, {"a": za, "c": zc}, weight=torch.zeros(n)
                ).values()
            ),
        ),
    ]


@pytest.mark.parametrize("n", [0, 4])
@pytest.mark.parametrize("index", range(8))
def test_nothing_to_act_on_gives_exact_zero_and_zero_gradients(n: int, index: int) -> None:
    """All-masked (n = 4) or empty (n = 0) batches: loss exactly 0, zero (not None/NaN) grads."""
    name, used, loss_fn = _all_losses(n)[index]
    z = {"a": _randn(n, 3, seed=12), "b": _randn(n, 2, seed=13), "c": _randn(n, 2, seed=14)}
    if n:
        with torch.no_grad():
            z["a"][0, 0], z["b"][0, 0], z["c"][0, 1] = 1e4, -1e4, 1e4  # extreme logits: no change
    loss = loss_fn(z["a"], z["b"], z["c"])
    assert loss.shape == () and loss.item() == 0.0, name
    loss.backward()
    for key in used:
        grad = z[key].grad
        assert grad is not None, (name, key)
        assert grad.shape == z[key].shape
        assert not bool(torch.isnan(grad).any()) and grad.abs().sum().item() == 0.0, (name, key)


# ---- properties ---------------------------------------------------------------------------------


def _logits(dtype: np.dtype, shape: tuple[int, int]) -> st.SearchStrategy:
    width = 32 if dtype == np.float32 else 64
    return arrays(
        dtype, shape, elements=st.sampled_from([-1e4, 1e4, 0.0]) | st.floats(-1e4, 1e4, width=width)
    )


@st.composite
def _batch(draw: st.DrawFn) -> tuple:
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    n = 4
    za, zb, zc = (
        draw(_logits(dtype, (n, 3))),
        draw(_logits(dtype, (n, 2))),
        draw(_logits(dtype, (n, 2))),
    )
    a_lab = draw(st.lists(st.sampled_from([None, "x", "y", "z"]), min_size=n, max_size=n))
    b_lab = draw(
        st.lists(
            st.lists(st.sampled_from([None, 0, 1]), min_size=2, max_size=2), min_size=n, max_size=n
        )
    )
    c_lab = draw(st.lists(st.sampled_from([None, "d0", "d1"]), min_size=n, max_size=n))
    soft = draw(arrays(np.float64, (n, 3), elements=st.floats(0, 1)))
    pos_weight = draw(arrays(np.float64, (2,), elements=st.floats(0.1, 100)))
    return (
        torch.from_numpy(za),
        torch.from_numpy(zb),
        torch.from_numpy(zc),
        a_lab,
        b_lab,
        c_lab,
        soft,
        pos_weight,
    )


@FAST
@given(batch=_batch(), stop=st.booleans(), mode=st.sampled_from(["soft", "hard"]))
def test_every_loss_finite_and_non_negative_for_extreme_logits(batch, stop, mode) -> None:  # type: ignore[no-untyped-def]
    za, zb, zc, a_lab, b_lab, c_lab, soft, pos_weight = batch
    a, b, c, edge_ab, edge_ac = tasks_and_edges()
    samples = [
        {k: v for k, v in (("a", al), ("b", bl), ("c", cl)) if v is not None}
        for al, bl, cl in zip(a_lab, b_lab, c_lab, strict=True)
    ]
    labels = collate_labels([a, b, c], samples)
    za, zb, zc = za.requires_grad_(), zb.requires_grad_(), zc.requires_grad_()
    logits = {"a": za, "b": zb, "c": zc}
    dtype = za.dtype
    losses = {
        "masked CE": masked_cross_entropy(za, labels["a"]),
        "masked BCE": masked_binary_cross_entropy(
            zb, labels["b"].target, labels["b"].mask, torch.from_numpy(pos_weight).to(dtype)
        ),
        "soft CE": soft_cross_entropy(
            za, torch.from_numpy(soft / soft.sum(1, keepdims=True).clip(1e-9)).to(dtype)
        ),
    }
    for edge in (edge_ab, edge_ac):
        for k, v in co_annotation_losses(edge, logits, labels, mode).items():
            losses[f"ca {k}"] = v
        prior = torch.tensor([0.2, 0.3, 0.5])
        for k, v in distribution_matching_losses(edge, logits, prior, stop_gradient=stop).items():
            losses[f"dm {k}"] = v
    for name, loss in losses.items():
        assert loss.dtype == dtype, name
        assert bool(torch.isfinite(loss)), (name, loss.item())
        assert loss.item() >= 0.0, (name, loss.item())
    grads = torch.autograd.grad(sum(losses.values()), (za, zb, zc))
    assert all(bool(torch.isfinite(g).all()) for g in grads)


@FAST
@given(
    za=arrays(np.float64, (3, 3), elements=st.floats(-20, 20)),
    table=arrays(np.float64, (3, 4), elements=st.floats(0.02, 0.98)),
    delta=arrays(np.float64, (3, 4), elements=st.floats(-2, 2)),
    categorical=st.booleans(),
)
def test_dm_forward_is_minimal_at_the_mapped_distribution(za, table, delta, categorical) -> None:  # type: ignore[no-untyped-def]
    """As a function of B's logits (A fixed), L_DM(A->B) is smallest where p_B = p_A @ R."""
    a = CategoricalTask("a", ["x", "y", "z"])
    t = torch.from_numpy(table)
    if categorical:
        target = CategoricalTask("t", ["0", "1", "2", "3"])
        t = t / t.sum(1, keepdim=True)
    else:
        target = BinarySetTask("t", ["0", "1", "2", "3"])
    edge = Relatedness(a, target, t.float())
    z_a = torch.from_numpy(za)
    q = torch.softmax(z_a, -1) @ edge.table.double()
    best = q.log() if categorical else torch.logit(q)

    def loss(z_t: torch.Tensor) -> float:
        return float(
            distribution_matching_losses(edge, {"a": z_a, "t": z_t}, inverse=False)["a->t"]
        )

    assert loss(best) <= loss(best + torch.from_numpy(delta)) + 1e-12
    # and the gradient vanishes there
    z = best.clone().requires_grad_()
    (g,) = torch.autograd.grad(
        distribution_matching_losses(edge, {"a": z_a, "t": z}, inverse=False)["a->t"], z
    )
    assert float(g.abs().max()) < 1e-9
