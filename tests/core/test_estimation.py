"""Empirical relatedness: counts by hand, smoothing, unseen classes, batching, predictions."""

from __future__ import annotations

import itertools
import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

from dmtl.core.estimation import RelatednessEstimator
from dmtl.core.labels import PartialLabels, TaskLabels, collate_labels
from dmtl.core.tasks import BinarySetTask, CategoricalTask
from dmtl.errors import SpecError

F64 = torch.float64
FAST = settings(max_examples=40, deadline=None, database=None)
NAN = math.nan

# A = (x, y, z), B binary (u, v); NaN = label not observed, a missing key = task not labelled.
BINARY_SAMPLES = [
    {"a": "x", "b": [1, 0]},  # 1
    {"a": "x", "b": [1, None]},  # 2
    {"a": "y", "b": [0, 1]},  # 3
    {"a": "x", "b": [0, 1]},  # 4
    {"a": "z"},  # 5: no B label -> not counted
    {"b": [1, 1]},  # 6: no A label -> not counted
    {"a": "y", "b": [None, 1]},  # 7
]
# Counts (n_c per label = samples of class c observing the label, n_cj = those with b_j = 1):
#   x: u observed by 1, 2, 4 (n = 3), positive in 1, 2 (n_cj = 2); v observed by 1, 4 (n = 2),
#      positive in 4 (n_cj = 1)
#   y: u observed by 3 (n = 1), positive 0; v observed by 3, 7 (n = 2), positive 2
#   z: never co-annotated
# Marginals: m_u = (2 + 0) / (3 + 1) = 0.5;  m_v = (1 + 2) / (2 + 2) = 0.75


def close(actual: torch.Tensor, expected: list, tol: float = 1e-6) -> None:
    torch.testing.assert_close(
        actual, torch.tensor(expected, dtype=actual.dtype), rtol=tol, atol=tol
    )


def _estimate(task_a, task_b, samples, alpha):  # type: ignore[no-untyped-def]
    est = RelatednessEstimator(task_a, task_b, alpha=alpha)
    est.update(collate_labels([task_a, task_b], samples))
    return est


def test_binary_counts_alpha_zero(task_a: CategoricalTask, task_b: BinarySetTask) -> None:
    est = _estimate(task_a, task_b, BINARY_SAMPLES, 0.0)
    assert est.num_samples == 5
    close(est.marginal(), [0.5, 0.75])
    # x: [2/3, 1/2]; y: [0/1, 2/2]; z unseen -> the marginal [0.5, 0.75]
    close(est.compute().table, [[2 / 3, 0.5], [0.0, 1.0], [0.5, 0.75]])


def test_binary_counts_alpha_one(task_a: CategoricalTask, task_b: BinarySetTask) -> None:
    est = _estimate(task_a, task_b, BINARY_SAMPLES, 1.0)
    # (n_cj + alpha m_j) / (n_c + alpha):
    #   x: u (2 + 0.5) / (3 + 1) = 0.625;   v (1 + 0.75) / (2 + 1) = 0.583333
    #   y: u (0 + 0.5) / (1 + 1) = 0.25;    v (2 + 0.75) / (2 + 1) = 0.916667
    #   z: unseen -> (0 + alpha m) / (0 + alpha) = m = [0.5, 0.75]
    edge = est.compute()
    assert edge.source is task_a and edge.target is task_b and edge.table.dtype == torch.float32
    close(edge.table, [[0.625, 1.75 / 3], [0.25, 2.75 / 3], [0.5, 0.75]])
    # alpha = 2: x, u: (2 + 1) / (3 + 2) = 0.6
    assert float(
        _estimate(task_a, task_b, BINARY_SAMPLES, 2.0).compute().table[0, 0]
    ) == pytest.approx(0.6)


def test_categorical_counts(task_a: CategoricalTask, task_c: CategoricalTask) -> None:
    samples = [
        {"a": "x", "c": "d0"},
        {"a": "x", "c": "d0"},
        {"a": "x", "c": "d1"},
        {"a": "y", "c": "d1"},
        {"a": "z"},
        {"c": "d0"},
    ]
    # pairs: x: d0 twice, d1 once (n_x = 3); y: d1 once (n_y = 1); marginal m = [2/4, 2/4]
    est = _estimate(task_a, task_c, samples, 1.0)
    close(est.marginal(), [0.5, 0.5])
    # x: [(2 + 0.5)/4, (1 + 0.5)/4] = [0.625, 0.375];  y: [(0 + 0.5)/2, (1 + 0.5)/2] = [0.25, 0.75]
    # z: unseen -> the marginal [0.5, 0.5]; every row sums to 1
    table = est.compute().table
    close(table, [[0.625, 0.375], [0.25, 0.75], [0.5, 0.5]])
    close(table.sum(1), [1.0, 1.0, 1.0])
    close(
        _estimate(task_a, task_c, samples, 0.0).compute().table,
        [[2 / 3, 1 / 3], [0.0, 1.0], [0.5, 0.5]],
    )


def test_no_co_annotated_sample(task_a: CategoricalTask, task_b: BinarySetTask) -> None:
    est = _estimate(task_a, task_b, [{"a": "x"}, {"b": [1, 0]}], 1.0)
    with pytest.raises(
        SpecError,
        match=r"edge a->b: no sample labelled for both tasks observes \['u', 'v'\]",
    ):
        est.compute()
    # One label never co-observed is named alone.
    est = _estimate(task_a, task_b, [{"a": "x", "b": [1, None]}], 1.0)
    with pytest.raises(SpecError, match=r"observes \['v'\]; cannot estimate the table"):
        est.compute()
    # A batch without one of the tasks at all is ignored.
    est = RelatednessEstimator(task_a, task_b)
    est.update(
        PartialLabels([task_a, task_b], {"a": TaskLabels(torch.tensor([0]), torch.tensor([True]))})
    )
    assert est.num_samples == 0
    with pytest.raises(SpecError, match="no sample labelled for both tasks"):
        est.marginal()


def test_estimator_arguments(task_a: CategoricalTask, task_b: BinarySetTask) -> None:
    with pytest.raises(SpecError, match=r"edge a->b: alpha must be >= 0, got -1"):
        RelatednessEstimator(task_a, task_b, alpha=-1)
    with pytest.raises(SpecError, match=r"edge b->a: source must be categorical"):
        RelatednessEstimator(task_b, task_a)  # type: ignore[arg-type]


def test_nan_fillers_do_not_poison_counts(task_a: CategoricalTask, task_b: BinarySetTask) -> None:
    labels = PartialLabels(
        [task_a, task_b],
        {
            "a": TaskLabels(torch.tensor([0, 0]), torch.tensor([True, True])),
            "b": TaskLabels(
                torch.tensor([[1.0, NAN], [0.0, 1.0]]), torch.tensor([[True, False], [True, True]])
            ),
        },
    )
    est = RelatednessEstimator(task_a, task_b, alpha=0.0)
    est.update(labels)
    close(est.compute().table[0], [0.5, 1.0])


# ---- batching independence, against counting by hand -------------------------------------------

_label = st.sampled_from([None, 0, 1])
_sample = st.fixed_dictionaries(
    {},
    optional={"a": st.sampled_from(["x", "y", "z"]), "b": st.lists(_label, min_size=2, max_size=2)},
)


def _count_by_hand(samples, alpha):  # type: ignore[no-untyped-def]
    """The formula of method.md section 3, with plain Python loops."""
    classes, labels = ["x", "y", "z"], [0, 1]
    n = {(c, j): 0 for c in classes for j in labels}
    n_pos = {(c, j): 0 for c in classes for j in labels}
    for s in samples:
        if "a" not in s or "b" not in s:
            continue
        for j in labels:
            if s["b"][j] is not None:
                n[s["a"], j] += 1
                n_pos[s["a"], j] += s["b"][j]
    marginal = [sum(n_pos[c, j] for c in classes) / sum(n[c, j] for c in classes) for j in labels]
    return [
        [
            (n_pos[c, j] + alpha * marginal[j]) / (n[c, j] + alpha) if n[c, j] else marginal[j]
            for j in labels
        ]
        for c in classes
    ]


@FAST
@given(
    samples=st.lists(_sample, min_size=0, max_size=30),
    cuts=st.lists(st.integers(0, 30), max_size=6),
    alpha=st.sampled_from([0.0, 0.5, 1.0, 3.0]),
)
def test_estimate_equals_counting_by_hand_and_ignores_batching(samples, cuts, alpha) -> None:  # type: ignore[no-untyped-def]
    a, b = CategoricalTask("a", ["x", "y", "z"]), BinarySetTask("b", ["u", "v"])
    whole = RelatednessEstimator(a, b, alpha)
    whole.update(collate_labels([a, b], samples))
    batched = RelatednessEstimator(a, b, alpha)
    bounds = sorted({0, len(samples), *(c for c in cuts if c <= len(samples))})
    for lo, hi in itertools.pairwise(bounds):
        batched.update(collate_labels([a, b], samples[lo:hi]))
    assert torch.equal(whole.joint, batched.joint)
    assert torch.equal(whole.observed, batched.observed)
    assert whole.num_samples == batched.num_samples
    # merging two halves' estimators is the same again
    half = len(samples) // 2
    first, second = RelatednessEstimator(a, b, alpha), RelatednessEstimator(a, b, alpha)
    first.update(collate_labels([a, b], samples[:half]))
    second.update(collate_labels([a, b], samples[half:]))
    first.merge(second)
    assert torch.equal(first.joint, whole.joint) and torch.equal(first.observed, whole.observed)

    co_observed = [
        j for j in (0, 1) if any("a" in s and "b" in s and s["b"][j] is not None for s in samples)
    ]
    if len(co_observed) < 2:
        with pytest.raises(SpecError, match="no sample labelled for both tasks"):
            batched.compute()
        return
    expected = _count_by_hand(samples, alpha)
    torch.testing.assert_close(batched.compute().table, torch.tensor(expected, dtype=torch.float32))
    assert torch.equal(batched.compute().table, whole.compute().table)


# ---- from predictions ---------------------------------------------------------------------------


def test_from_predictions_alpha_zero_is_the_formula(
    task_a: CategoricalTask, task_b: BinarySetTask
) -> None:
    g = torch.Generator().manual_seed(0)
    p_a = torch.softmax(torch.randn(50, 3, generator=g, dtype=F64), -1)
    p_b = torch.sigmoid(torch.randn(50, 2, generator=g, dtype=F64))
    est = RelatednessEstimator(task_a, task_b, alpha=0.0)
    for lo in range(0, 50, 16):  # batched
        est.update_from_predictions(p_a[lo : lo + 16], p_b[lo : lo + 16])
    # R[c, j] = sum_x p_A(c|x) p_B,j(x) / sum_x p_A(c|x)
    formula = (p_a.T @ p_b) / p_a.sum(0)[:, None]
    torch.testing.assert_close(est.compute().table, formula.float())
    assert est.num_samples == 50


def test_from_predictions_smoothing_by_hand(task_a: CategoricalTask, task_b: BinarySetTask) -> None:
    p_a = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    p_b = torch.tensor([[0.2, 0.6], [0.8, 0.4]])
    # soft counts: n_x = 0.5 + 1 = 1.5, n_y = 0.5, n_z = 0
    #   joint x = 0.5*[0.2, 0.6] + 1*[0.8, 0.4] = [0.9, 0.7];  joint y = 0.5*[0.2, 0.6] = [0.1, 0.3]
    #   marginal m = [0.9 + 0.1, 0.7 + 0.3] / 2 = [0.5, 0.5]
    # alpha = 1: x = ([0.9, 0.7] + 0.5) / 2.5 = [0.56, 0.48]
    #            y = ([0.1, 0.3] + 0.5) / 1.5 = [0.4, 0.533333]
    #            z: unseen -> m = [0.5, 0.5]
    est = RelatednessEstimator(task_a, task_b, alpha=1.0)
    est.update_from_predictions(p_a, p_b)
    close(est.marginal(), [0.5, 0.5])
    close(est.compute().table, [[0.56, 0.48], [0.4, 0.8 / 1.5], [0.5, 0.5]])


def test_from_predictions_categorical_rows_sum_to_one(
    task_a: CategoricalTask, task_c: CategoricalTask
) -> None:
    g = torch.Generator().manual_seed(1)
    est = RelatednessEstimator(task_a, task_c, alpha=0.7)
    est.update_from_predictions(
        torch.softmax(torch.randn(20, 3, generator=g), -1),
        torch.softmax(torch.randn(20, 2, generator=g), -1),
    )
    close(est.compute().table.sum(1), [1.0, 1.0, 1.0])
