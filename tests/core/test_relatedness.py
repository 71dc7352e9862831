"""Relatedness: forward and inverse maps by hand, gradients, properties, CSV io and errors.

Hand-checked tables (see conftest):

    R (A -> B binary)      u    v          T (A -> C categorical)   d0   d1
        x                 0.9  0.1             x                    0.8  0.2
        y                 0.5  0.5             y                    0.3  0.7
        z                 0.2  0.8             z                    0.5  0.5
"""

from __future__ import annotations

import math
from pathlib import Path

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings
from hypothesis.extra.numpy import arrays

from dmtl.core.relatedness import (
    Relatedness,
    categorical_posterior,
    check_eps_tau,
    check_prior,
    forward_map,
    frequency_prior,
    inverse_binary_log_posterior,
    inverse_categorical_map,
    uniform_prior,
)
from dmtl.core.tasks import BinarySetTask, CategoricalTask
from dmtl.errors import SpecError

F64 = torch.float64
R_BINARY = ((0.9, 0.1), (0.5, 0.5), (0.2, 0.8))  # as in conftest
T_CATEGORICAL = ((0.8, 0.2), (0.3, 0.7), (0.5, 0.5))
FAST = settings(max_examples=40, deadline=None, database=None)


def r64() -> torch.Tensor:
    return torch.tensor(R_BINARY, dtype=F64)


def t64() -> torch.Tensor:
    return torch.tensor(T_CATEGORICAL, dtype=F64)


def close(actual: torch.Tensor, expected: list | float, tol: float = 1e-12) -> None:
    expected_t = torch.as_tensor(expected, dtype=actual.dtype)
    torch.testing.assert_close(actual, expected_t, rtol=tol, atol=tol)


# ---- forward map --------------------------------------------------------------------------------


def test_forward_map_binary_by_hand(edge_ab: Relatedness) -> None:
    p = torch.tensor([[0.5, 0.3, 0.2], [1.0, 0.0, 0.0]], dtype=F64)
    # u: 0.5*0.9 + 0.3*0.5 + 0.2*0.2 = 0.45 + 0.15 + 0.04 = 0.64
    # v: 0.5*0.1 + 0.3*0.5 + 0.2*0.8 = 0.05 + 0.15 + 0.16 = 0.36
    # a one-hot A picks its row: R[x] = [0.9, 0.1]
    close(forward_map(p, r64()), [[0.64, 0.36], [0.9, 0.1]])
    # Through the edge (float32 table): same numbers to float32 precision.
    close(edge_ab.forward_map(p.float()), [[0.64, 0.36], [0.9, 0.1]], 1e-6)


def test_forward_map_categorical_by_hand(edge_ac: Relatedness) -> None:
    p = torch.tensor([[0.5, 0.3, 0.2]], dtype=F64)
    # d0: 0.5*0.8 + 0.3*0.3 + 0.2*0.5 = 0.40 + 0.09 + 0.10 = 0.59
    # d1: 0.5*0.2 + 0.3*0.7 + 0.2*0.5 = 0.10 + 0.21 + 0.10 = 0.41  (sums to 1)
    close(forward_map(p, t64()), [[0.59, 0.41]])
    close(edge_ac.forward_map(p), [[0.59, 0.41]], 1e-6)


def test_forward_map_stays_in_unit_interval_despite_rounding() -> None:
    """Regression: a float32 softmax may sum to 1 + ulp; q must not exceed 1."""
    table = torch.ones(3, 2)
    torch.manual_seed(0)
    p = torch.softmax(torch.randn(2000, 3) * 10, dim=-1)
    assert (p.sum(-1) > 1).any()  # the rounding the clamp guards against does happen
    q = forward_map(p, table)
    assert float(q.max()) <= 1.0


# ---- binary inverse map -------------------------------------------------------------------------


def test_inverse_binary_by_hand_defaults() -> None:
    # s = [1, 0], eps = 0.05 (no entry of R is clamped), tau = 1, uniform prior:
    # q(c) ∝ R[c,u] * (1 - R[c,v]):  x: 0.9*0.9 = 0.81, y: 0.5*0.5 = 0.25, z: 0.2*0.2 = 0.04
    # total 1.10 -> [0.81, 0.25, 0.04] / 1.10
    s = torch.tensor([[1.0, 0.0]], dtype=F64)
    log_q = inverse_binary_log_posterior(s, r64())
    close(log_q.exp(), [[0.81 / 1.1, 0.25 / 1.1, 0.04 / 1.1]])
    close(log_q.exp(), [[0.7363636363636363, 0.22727272727272727, 0.03636363636363636]])


def test_inverse_binary_by_hand_tau() -> None:
    # tau = 2 takes the square root of the likelihoods: sqrt([0.81, 0.25, 0.04]) = [0.9, 0.5, 0.2]
    # total 1.6 -> [0.5625, 0.3125, 0.125]
    s = torch.tensor([[1.0, 0.0]], dtype=F64)
    close(inverse_binary_log_posterior(s, r64(), tau=2.0).exp(), [[0.5625, 0.3125, 0.125]])


def test_inverse_binary_by_hand_eps() -> None:
    # eps = 0.15 clamps R to [0.15, 0.85]: R~ = [[0.85, 0.15], [0.5, 0.5], [0.2, 0.8]]
    # s = [1, 0]: x: 0.85*0.85 = 0.7225, y: 0.25, z: 0.04; total 1.0125
    s = torch.tensor([[1.0, 0.0]], dtype=F64)
    close(
        inverse_binary_log_posterior(s, r64(), eps=0.15).exp(),
        [[0.7225 / 1.0125, 0.25 / 1.0125, 0.04 / 1.0125]],
    )


def test_inverse_binary_by_hand_prior(edge_ab: Relatedness) -> None:
    # prior [0.2, 0.3, 0.5]: 0.2*0.81 = 0.162, 0.3*0.25 = 0.075, 0.5*0.04 = 0.02; total 0.257
    s = torch.tensor([[1.0, 0.0]], dtype=F64)
    prior = torch.tensor([0.2, 0.3, 0.5], dtype=F64)
    expected = [[0.162 / 0.257, 0.075 / 0.257, 0.02 / 0.257]]
    close(inverse_binary_log_posterior(s, r64(), log_prior=prior.log()).exp(), expected)
    close(edge_ab.inverse_map(s, prior=prior), expected, 1e-6)
    close(edge_ab.inverse_log_posterior(s, prior=prior).exp(), expected, 1e-6)


def test_inverse_binary_by_hand_partial_observation(edge_ab: Relatedness) -> None:
    # Only v observed (= 1); u's entry is a filler that must be ignored, even NaN:
    # q(c) ∝ R[c,v] = [0.1, 0.5, 0.8]; total 1.4 -> [1/14, 5/14, 8/14]
    expected = [[1 / 14, 5 / 14, 8 / 14]] * 3
    s = torch.tensor([[0.0, 1.0], [1.0, 1.0], [math.nan, 1.0]], dtype=F64)
    observed = torch.tensor([[False, True]] * 3)
    close(inverse_binary_log_posterior(s, r64(), observed).exp(), expected)
    close(edge_ab.inverse_map(s, observed), expected, 1e-6)
    # Nothing observed: the posterior is the prior.
    none = torch.zeros(1, 2, dtype=torch.bool)
    close(edge_ab.inverse_map(s[:1], none), [[1 / 3, 1 / 3, 1 / 3]], 1e-6)


def test_inverse_binary_by_hand_soft_evidence() -> None:
    # s = [0.5, 0.5]: log L(c) = 0.5 log R[c,u] + 0.5 log(1-R[c,u]) + (same for v)
    #   x: sqrt(0.9*0.1*0.1*0.9) = 0.09, y: sqrt(0.5^4) = 0.25, z: sqrt(0.2*0.8*0.8*0.2) = 0.16
    #   total 0.5 -> [0.18, 0.5, 0.32]
    s = torch.tensor([[0.5, 0.5]], dtype=F64)
    close(inverse_binary_log_posterior(s, r64()).exp(), [[0.18, 0.5, 0.32]])


# ---- categorical inverse map --------------------------------------------------------------------


def test_categorical_posterior_by_hand() -> None:
    # uniform prior: P[d, c] = T[c, d] / sum_c' T[c', d]
    #   d0: [0.8, 0.3, 0.5] / 1.6 = [0.5, 0.1875, 0.3125]
    #   d1: [0.2, 0.7, 0.5] / 1.4 = [1/7, 0.5, 5/14]
    close(categorical_posterior(t64()), [[0.5, 0.1875, 0.3125], [1 / 7, 0.5, 5 / 14]])
    # prior [0.5, 0.25, 0.25]:
    #   d0: [0.4, 0.075, 0.125] / 0.6 = [2/3, 1/8, 5/24]
    #   d1: [0.1, 0.175, 0.125] / 0.4 = [0.25, 0.4375, 0.3125]
    prior = torch.tensor([0.5, 0.25, 0.25], dtype=F64)
    close(
        categorical_posterior(t64(), prior),
        [[2 / 3, 1 / 8, 5 / 24], [0.25, 0.4375, 0.3125]],
    )


def test_inverse_categorical_map_by_hand(edge_ac: Relatedness) -> None:
    # p_B = [0.6, 0.4]: q = 0.6*[0.5, 0.1875, 0.3125] + 0.4*[1/7, 0.5, 5/14]
    #   = [0.3 + 0.4/7, 0.1125 + 0.2, 0.1875 + 1/7] = [5/14, 0.3125, 37/112]
    p = torch.tensor([[0.6, 0.4]], dtype=F64)
    expected = [[5 / 14, 0.3125, 37 / 112]]
    close(inverse_categorical_map(p, t64()), expected)
    close(edge_ac.inverse_map(p), expected, 1e-6)
    close(edge_ac.inverse_log_posterior(p).exp(), expected, 1e-6)
    # with the prior above and hard evidence d0: [2/3, 1/8, 5/24]
    prior = torch.tensor([0.5, 0.25, 0.25])
    close(
        edge_ac.inverse_map(torch.tensor([[1.0, 0.0]]), prior=prior), [[2 / 3, 1 / 8, 5 / 24]], 1e-6
    )


def test_inverse_categorical_unreachable_class(task_a: CategoricalTask) -> None:
    """A B-class that no A-class leads to (all-zero column) gives back the prior."""
    c3 = CategoricalTask("c3", ["d0", "d1", "d2"])
    table = torch.tensor([[0.8, 0.2, 0.0], [0.3, 0.7, 0.0], [0.5, 0.5, 0.0]], dtype=F64)
    edge = Relatedness(task_a, c3, table)
    close(categorical_posterior(table)[2], [1 / 3, 1 / 3, 1 / 3])
    prior = torch.tensor([0.2, 0.3, 0.5], dtype=F64)
    close(
        edge.inverse_map(torch.tensor([[0.0, 0.0, 1.0]], dtype=F64), prior=prior),
        [[0.2, 0.3, 0.5]],
        1e-6,
    )
    # Mixed evidence: 0.5 * P[d0] + 0.5 * prior (uniform): 0.5*[0.5, 0.1875, 0.3125] + 0.5/3
    q = edge.inverse_map(torch.tensor([[0.5, 0.0, 0.5]], dtype=F64))
    close(q, [[0.25 + 1 / 6, 0.09375 + 1 / 6, 0.15625 + 1 / 6]], 1e-6)
    assert bool(torch.isfinite(edge.inverse_log_posterior(torch.tensor([[0.0, 0.0, 1.0]]))).all())


# ---- gradients ----------------------------------------------------------------------------------


def _simplex(n: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(n, k, generator=g, dtype=F64), dim=-1)


def test_gradcheck_forward_map() -> None:
    p = _simplex(4, 3, 0).requires_grad_()
    table = 0.1 + 0.8 * torch.rand(3, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    assert torch.autograd.gradcheck(forward_map, (p, table.requires_grad_()))


def test_gradcheck_inverse_binary_log_posterior() -> None:
    g = torch.Generator().manual_seed(2)
    s = torch.rand(5, 2, dtype=F64, generator=g).requires_grad_()
    observed = torch.tensor(
        [[True, True], [True, False], [False, True], [False, False], [True, True]]
    )
    log_prior = torch.tensor([0.2, 0.3, 0.5], dtype=F64).log()

    def f(evidence: torch.Tensor) -> torch.Tensor:
        return inverse_binary_log_posterior(evidence, r64(), observed, log_prior, eps=0.05, tau=2.5)

    assert torch.autograd.gradcheck(f, (s,))
    # also with respect to the table (interior, away from the clamp) and without a mask
    table = r64().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: inverse_binary_log_posterior(s.detach(), t), (table,))


def test_gradcheck_inverse_categorical_map() -> None:
    p = _simplex(4, 2, 3).requires_grad_()
    table = t64().requires_grad_()
    prior = torch.tensor([0.2, 0.3, 0.5], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(inverse_categorical_map, (p, table, prior))


# ---- properties ---------------------------------------------------------------------------------


@FAST
@given(
    evidence=arrays("float64", (4, 5), elements=st.floats(0, 1)),
    observed=arrays(bool, (4, 5)),
    table=arrays("float64", (3, 5), elements=st.floats(0, 1)),
    prior=arrays("float64", (3,), elements=st.floats(0.01, 1)),
    eps=st.floats(1e-6, 0.49),
    tau=st.floats(0.1, 10),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_inverse_binary_rows_sum_to_one(evidence, observed, table, prior, eps, tau, dtype) -> None:  # type: ignore[no-untyped-def]
    s = torch.as_tensor(evidence, dtype=dtype)
    log_prior = torch.as_tensor(prior / prior.sum(), dtype=dtype).log()
    q = inverse_binary_log_posterior(
        s, torch.as_tensor(table), torch.as_tensor(observed), log_prior, eps, tau
    ).exp()
    assert bool(torch.isfinite(q).all()) and bool((q >= 0).all())
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(q.sum(-1), torch.ones(4, dtype=dtype), rtol=0, atol=tol)


@FAST
@given(
    weights=arrays("float64", (4, 3), elements=st.floats(0, 1)),
    columns=arrays("float64", (3, 3), elements=st.floats(0, 1)),
    prior=arrays("float64", (3,), elements=st.floats(0.01, 1)),
)
def test_inverse_categorical_rows_sum_to_one(weights, columns, prior) -> None:  # type: ignore[no-untyped-def]
    # Rows of T normalised to 1 (a zero row becomes uniform); columns may be all zero.
    table = torch.as_tensor(columns)
    table = torch.where(
        table.sum(1, keepdim=True) > 0, table / table.sum(1, keepdim=True).clamp_min(1e-300), 1 / 3
    )
    p = torch.as_tensor(weights) + 1e-3
    p = p / p.sum(-1, keepdim=True)
    q = inverse_categorical_map(p, table, torch.as_tensor(prior / prior.sum()))
    assert bool((q >= 0).all())
    torch.testing.assert_close(q.sum(-1), torch.ones(4, dtype=F64), rtol=0, atol=1e-12)


@FAST
@given(
    logits=arrays("float32", (6, 3), elements=st.floats(-30, 30, width=32)),
    table=arrays(
        "float32", (3, 4), elements=st.sampled_from([0.0, 1.0]) | st.floats(0, 1, width=32)
    ),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_forward_map_maps_simplex_into_unit_interval(logits, table, dtype) -> None:  # type: ignore[no-untyped-def]
    p = torch.softmax(torch.as_tensor(logits, dtype=dtype), dim=-1)
    q = forward_map(p, torch.as_tensor(table))
    assert q.shape == (6, 4) and q.dtype == dtype
    assert bool((q >= 0).all()) and bool((q <= 1).all())


# ---- validation ---------------------------------------------------------------------------------


def test_table_of_wrong_shape(
    task_a: CategoricalTask, task_b: BinarySetTask, task_c: CategoricalTask
) -> None:
    with pytest.raises(
        SpecError,
        match=r"edge a->b: table shape \(2, 2\) does not match the tasks; expected \(3, 2\) "
        r"\(a classes x b labels\)",
    ):
        Relatedness(task_a, task_b, torch.zeros(2, 2))
    with pytest.raises(SpecError, match=r"expected \(3, 2\) \(a classes x c classes\)"):
        Relatedness(task_a, task_c, torch.full((3, 3), 1 / 3))


def test_table_values_out_of_range_and_nan(task_a: CategoricalTask, task_b: BinarySetTask) -> None:
    bad = torch.tensor(R_BINARY)
    bad[1, 1] = 1.5
    with pytest.raises(
        SpecError, match=r"edge a->b: value 1.5 at row 'y', column 'v' is outside \[0, 1\]"
    ):
        Relatedness(task_a, task_b, bad)
    bad[1, 1] = -0.25
    with pytest.raises(SpecError, match=r"value -0.25 at row 'y', column 'v' is outside"):
        Relatedness(task_a, task_b, bad)
    bad[1, 1] = math.nan
    with pytest.raises(SpecError, match=r"edge a->b: NaN at row 'y', column 'v'"):
        Relatedness(task_a, task_b, bad)


def test_categorical_rows_must_sum_to_one(task_a: CategoricalTask, task_c: CategoricalTask) -> None:
    bad = torch.tensor(T_CATEGORICAL)
    bad[2] = torch.tensor([0.5, 0.4])
    with pytest.raises(
        SpecError,
        match=r"edge a->c: row 'z' sums to 0.900000; "
        r"rows must sum to 1 when the target is categorical",
    ):
        Relatedness(task_a, task_c, bad)
    # within the tolerance is fine
    ok = torch.tensor(T_CATEGORICAL)
    ok[0, 0] += 5e-5
    Relatedness(task_a, task_c, ok)


def test_edge_endpoints(task_a: CategoricalTask, task_b: BinarySetTask) -> None:
    with pytest.raises(
        SpecError,
        match=r"edge 'b' -> 'a': the source of a relatedness edge must be a categorical task",
    ):
        Relatedness(task_b, task_a, torch.zeros(2, 3))  # type: ignore[arg-type]
    with pytest.raises(SpecError, match=r"edge 'a' -> 'a': links a task to itself"):
        Relatedness(task_a, task_a, torch.eye(3))


@pytest.mark.parametrize("eps", [0.0, -0.1, 0.5, 0.7, math.nan])
def test_bad_eps(eps: float) -> None:
    with pytest.raises(SpecError, match=r"inverse map: eps must lie in \(0, 0.5\), got"):
        inverse_binary_log_posterior(torch.zeros(1, 2), torch.full((3, 2), 0.5), eps=eps)
    with pytest.raises(SpecError, match=r"^eps must lie in \(0, 0.5\)"):
        check_eps_tau(eps, 1.0)


@pytest.mark.parametrize("tau", [0.0, -1.0, math.inf, math.nan])
def test_bad_tau(tau: float, edge_ab: Relatedness) -> None:
    with pytest.raises(
        SpecError, match=r"inverse map: tau must be a positive finite number, got"
    ):
        edge_ab.inverse_map(torch.zeros(1, 2), tau=tau)
    with pytest.raises(SpecError, match=r"^where: tau must be a positive finite number"):
        check_eps_tau(0.05, tau, "where")


def test_check_prior() -> None:
    ok = check_prior(torch.tensor([0.2, 0.3, 0.5]), 3)
    assert ok.shape == (3,)
    with pytest.raises(SpecError, match=r"prior: expected shape \(3,\), got \(2,\)"):
        check_prior(torch.tensor([0.5, 0.5]), 3)
    with pytest.raises(
        SpecError, match="prior: every class needs a positive prior probability"
    ):
        check_prior(torch.tensor([0.0, 0.5, 0.5]), 3)
    with pytest.raises(SpecError, match="every class needs a positive prior probability"):
        check_prior(torch.tensor([math.nan, 0.5, 0.5]), 3)
    with pytest.raises(SpecError, match=r"pi: must sum to 1, sums to 1.200000"):
        check_prior(torch.tensor([0.2, 0.5, 0.5]), 3, "pi")


def test_priors() -> None:
    task = CategoricalTask("a", ["x", "y", "z", "w"])
    close(uniform_prior(task), [0.25] * 4, 0)
    # (n_c + 1) / (N + C) with counts [3, 0, 1, 0]: [4, 1, 2, 1] / 8
    close(frequency_prior(torch.tensor([3, 0, 1, 0])), [0.5, 0.125, 0.25, 0.125], 1e-7)


# ---- restriction --------------------------------------------------------------------------------


def test_restrict_target_binary(edge_ab: Relatedness, task_b: BinarySetTask) -> None:
    only_v = BinarySetTask("b_v", ["v"])
    sub = edge_ab.restrict_target(only_v)
    assert sub.target is only_v and sub.source is edge_ab.source
    close(sub.table, [[0.1], [0.5], [0.8]], 0)
    swapped = edge_ab.restrict_target(BinarySetTask("b_vu", ["v", "u"]))
    close(swapped.table, [[0.1, 0.9], [0.5, 0.5], [0.8, 0.2]], 0)
    with pytest.raises(
        SpecError, match=r"edge a->b: cannot restrict to 'b2'; unknown labels: w, q"
    ):
        edge_ab.restrict_target(BinarySetTask("b2", ["u", "w", "q"]))


def test_restrict_target_categorical_renormalises(task_a: CategoricalTask) -> None:
    c3 = CategoricalTask("c3", ["d0", "d1", "d2"])
    table = [[0.6, 0.2, 0.2], [0.3, 0.3, 0.4], [0.5, 0.5, 0.0]]
    sub = Relatedness(task_a, c3, table).restrict_target(CategoricalTask("c2", ["d0", "d1"]))
    # rows [0.6, 0.2] / 0.8, [0.3, 0.3] / 0.6, [0.5, 0.5] / 1.0
    close(sub.table, [[0.75, 0.25], [0.5, 0.5], [0.5, 0.5]], 1e-6)
    with pytest.raises(SpecError, match=r"unknown classes: d9"):
        Relatedness(task_a, c3, table).restrict_target(CategoricalTask("c2", ["d0", "d9"]))


# ---- CSV ----------------------------------------------------------------------------------------


def test_csv_round_trip(tmp_path: Path, edge_ab: Relatedness, edge_ac: Relatedness) -> None:
    for edge in (edge_ab, edge_ac):
        path = tmp_path / f"{edge.target.name}.csv"
        edge.to_csv(path)
        back = Relatedness.from_csv(path, edge.source, edge.target)
        assert back.name == edge.name
        assert torch.equal(back.table, edge.table)
    assert (tmp_path / "b.csv").read_text().splitlines() == [
        "a,u,v",
        "x,0.9,0.1",
        "y,0.5,0.5",
        "z,0.2,0.8",
    ]
    # random values survive to float32 precision
    g = torch.Generator().manual_seed(0)
    edge = Relatedness(edge_ab.source, edge_ab.target, torch.rand(3, 2, generator=g))
    edge.to_csv(tmp_path / "r.csv")
    back = Relatedness.from_csv(tmp_path / "r.csv", edge.source, edge.target)
    torch.testing.assert_close(back.table, edge.table, rtol=1e-5, atol=1e-6)


def test_csv_in_another_order(
    tmp_path: Path, task_a: CategoricalTask, task_b: BinarySetTask
) -> None:
    path = tmp_path / "t.csv"
    # columns v, u; rows z, x, y; spaces around names; a blank line
    path.write_text("expression , v , u\n\nz , 0.8, 0.2\nx,0.1,0.9\ny,0.5,0.5\n")
    table = Relatedness.from_csv(path, task_a, task_b).table
    close(table, [list(r) for r in R_BINARY], 1e-7)


def _bad_csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # unknown + missing column
        (
            "a,u,w\nx,1,0\ny,1,0\nz,1,0\n",
            r"columns must be exactly the names of task 'b'; "
            r"unknown names \['w'\]; missing names \['v'\]",
        ),
        # duplicated column
        ("a,u,v,u\nx,1,0,1\ny,1,0,1\nz,1,0,1\n", r"columns .*duplicated names \['u'\]"),
        # missing row
        (
            "a,u,v\nx,1,0\nz,1,0\n",
            r"rows must be exactly the names of task 'a'; missing names \['y'\]",
        ),
        # unknown row
        ("a,u,v\nx,1,0\ny,1,0\nz,1,0\nw,1,0\nq,0,0\n", r"rows .*unknown names \['w', 'q'\]"),
        # duplicated row
        ("a,u,v\nx,1,0\ny,1,0\nz,1,0\ny,0,0\n", r"rows .*duplicated names \['y'\]"),
        # wrong field count
        ("a,u,v\nx,1,0\ny,1\nz,1,0\n", r"bad.csv, line 3: expected 3 fields, got 2"),
        # non-numeric cell: file, line (blank lines counted), column
        (
            "a,u,v\n\nx,0.9,0.1\ny,0.5,abc\nz,0.2,0.8\n",
            r"bad.csv, line 4, column 'v': expected a probability, got 'abc'",
        ),
        (
            "a,u,v\nx,0.9,\ny,0.5,0.5\nz,0.2,0.8\n",
            r"bad.csv, line 2, column 'v': expected a probability, got ''",
        ),
        # values the table rejects, with the file named
        (
            "a,u,v\nx,0.9,0.1\ny,1.5,0.5\nz,0.2,0.8\n",
            r"bad.csv: edge a->b: value 1.5 at row 'y', column 'u' is outside \[0, 1\]",
        ),
        (
            "a,u,v\nx,0.9,0.1\ny,nan,0.5\nz,0.2,0.8\n",
            r"bad.csv: edge a->b: NaN at row 'y', column 'u'",
        ),
        ("\n\n", r"bad.csv: empty relatedness table"),
    ],
)
def test_bad_csv(
    tmp_path: Path, task_a: CategoricalTask, task_b: BinarySetTask, text: str, message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        Relatedness.from_csv(_bad_csv(tmp_path, text), task_a, task_b)


def test_csv_categorical_rows_and_missing_file(
    tmp_path: Path, task_a: CategoricalTask, task_c: CategoricalTask
) -> None:
    path = _bad_csv(tmp_path, "a,d0,d1\nx,0.8,0.2\ny,0.3,0.3\nz,0.5,0.5\n")
    with pytest.raises(SpecError, match=r"bad.csv: edge a->c: row 'y' sums to 0.600000"):
        Relatedness.from_csv(path, task_a, task_c)
    with pytest.raises(SpecError, match=r"nope.csv: relatedness table file not found"):
        Relatedness.from_csv(tmp_path / "nope.csv", task_a, task_c)
