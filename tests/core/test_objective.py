"""The multi-task objective: composition of the terms, switches, dtype moves, validation."""

from __future__ import annotations

import math

import pytest
import torch

from dmtl.core.coannotation import co_annotation_losses
from dmtl.core.labels import PartialLabels, TaskLabels, collate_labels, empty_labels
from dmtl.core.losses import (
    masked_binary_cross_entropy,
    masked_cross_entropy,
)
from dmtl.core.matching import distribution_matching_losses
from dmtl.core.objective import Objective, as_float
from dmtl.core.relatedness import Relatedness
from dmtl.core.tasks import BinarySetTask, CategoricalTask
from dmtl.errors import SpecError

SAMPLES = [
    {"a": "x"},
    {"a": "z", "b": {"u": 1}},
    {"b": [1, 0], "c": "d1"},
    {"b": {"v": 1}},
    {"a": "y", "b": [0, 1], "c": "d0"},
    {"c": "d0"},
    {},
]
ALL_TERMS = [
    "ca/a->b", "ca/a->c", "ca/b->a", "ca/c->a",
    "dm/a->b", "dm/a->c", "dm/b->a", "dm/c->a",
    "sup/a", "sup/b", "sup/c",
]  # fmt: skip
PRIOR = torch.tensor([0.2, 0.3, 0.5])
POS_WEIGHT = torch.tensor([2.0, 0.5])


@pytest.fixture
def tasks(task_a: CategoricalTask, task_b: BinarySetTask, task_c: CategoricalTask) -> list:
    return [task_a, task_b, task_c]


@pytest.fixture
def labels(tasks: list) -> PartialLabels:
    return collate_labels(tasks, SAMPLES)


def make_logits(n: int = len(SAMPLES), dtype: torch.dtype = torch.float32, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "a": torch.randn(n, 3, generator=g, dtype=dtype).requires_grad_(),
        "b": torch.randn(n, 2, generator=g, dtype=dtype).requires_grad_(),
        "c": torch.randn(n, 2, generator=g, dtype=dtype).requires_grad_(),
    }


def full_objective(tasks: list, edge_ab: Relatedness, edge_ac: Relatedness, **kwargs) -> Objective:  # type: ignore[no-untyped-def]
    options = {
        "co_annotation": "soft",
        "distribution_matching": True,
        "task_weights": {"a": 2.0, "b": 0.5},
        "lambda_ca": 0.3,
        "lambda_dm": 0.7,
        "priors": {"a": PRIOR},
        "ca_eps": 0.1,
        "ca_tau": 1.5,
        "dm_eps": 0.02,
        "dm_tau": 4.0,
    } | kwargs
    # The positive weights of b are a task option (equality, hence the edges, ignore it).
    weighted = [
        t.with_options(pos_weight=POS_WEIGHT.tolist()) if t.name == "b" else t for t in tasks
    ]
    return Objective(weighted, [edge_ab, edge_ac], **options)


def test_term_names(tasks, labels, edge_ab, edge_ac) -> None:  # type: ignore[no-untyped-def]
    _, terms = full_objective(tasks, edge_ab, edge_ac)(make_logits(), labels)
    assert sorted(terms) == ALL_TERMS


@pytest.mark.parametrize("dm_scale", [1.0, 0.25, 0.0])
def test_total_is_the_weighted_sum_of_the_terms(tasks, labels, edge_ab, edge_ac, dm_scale) -> None:  # type: ignore[no-untyped-def]
    objective = full_objective(tasks, edge_ab, edge_ac)
    total, terms = objective(make_logits(), labels, dm_scale=dm_scale)
    # L = sum_t w_t L_t + lambda_ca sum L_CA + lambda_dm * dm_scale * sum L_DM,
    # with w = {a: 2, b: 0.5, c: 1}, lambda_ca = 0.3, lambda_dm = 0.7
    weights = {"sup/a": 2.0, "sup/b": 0.5, "sup/c": 1.0}
    expected = sum(
        v * (weights[k] if k.startswith("sup/") else 0.3 if k.startswith("ca/") else 0.7 * dm_scale)
        for k, v in terms.items()
    )
    torch.testing.assert_close(total, expected)
    assert all(v.item() > 0 for v in terms.values())


def test_terms_are_the_loss_functions(tasks, labels, edge_ab, edge_ac) -> None:  # type: ignore[no-untyped-def]
    """Each term is the corresponding loss with the objective's options (eps, tau, prior, ...)."""
    logits = make_logits()
    _, terms = full_objective(tasks, edge_ab, edge_ac)(logits, labels)
    torch.testing.assert_close(terms["sup/a"], masked_cross_entropy(logits["a"], labels["a"]))
    torch.testing.assert_close(
        terms["sup/b"],
        masked_binary_cross_entropy(logits["b"], labels["b"].target, labels["b"].mask, POS_WEIGHT),
    )
    for edge, t in ((edge_ab, "b"), (edge_ac, "c")):
        ca = co_annotation_losses(edge, logits, labels, "soft", PRIOR, eps=0.1, tau=1.5)
        dm = distribution_matching_losses(edge, logits, PRIOR, eps=0.02, tau=4.0)
        for name in (f"a->{t}", f"{t}->a"):
            torch.testing.assert_close(terms[f"ca/{name}"], ca[name])
            torch.testing.assert_close(terms[f"dm/{name}"], dm[name])
    # ... and the prior/eps/tau do matter:
    other = distribution_matching_losses(edge_ab, logits, None, eps=0.02, tau=4.0)["b->a"]
    assert abs(other.item() - terms["dm/b->a"].item()) > 1e-4


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"co_annotation": "off"}, [t for t in ALL_TERMS if not t.startswith("ca/")]),
        ({"lambda_ca": 0.0}, [t for t in ALL_TERMS if not t.startswith("ca/")]),
        ({"distribution_matching": False}, [t for t in ALL_TERMS if not t.startswith("dm/")]),
        ({"lambda_dm": 0.0}, [t for t in ALL_TERMS if not t.startswith("dm/")]),
        ({"dm_forward": False}, [t for t in ALL_TERMS if t not in ("dm/a->b", "dm/a->c")]),
        ({"dm_inverse": False}, [t for t in ALL_TERMS if t not in ("dm/b->a", "dm/c->a")]),
        ({"co_annotation": "off", "distribution_matching": False}, ["sup/a", "sup/b", "sup/c"]),
    ],
)
def test_switches_remove_terms(tasks, labels, edge_ab, edge_ac, kwargs, expected) -> None:  # type: ignore[no-untyped-def]
    logits = make_logits()
    total, terms = full_objective(tasks, edge_ab, edge_ac, **kwargs)(logits, labels)
    assert sorted(terms) == expected
    _, all_terms = full_objective(tasks, edge_ab, edge_ac)(logits, labels)
    for name, value in terms.items():  # the remaining terms are unchanged
        torch.testing.assert_close(value, all_terms[name])
    weights = {"sup/a": 2.0, "sup/b": 0.5, "sup/c": 1.0}
    expected_total = sum(
        v * (weights[k] if k.startswith("sup/") else 0.3 if k.startswith("ca/") else 0.7)
        for k, v in terms.items()
    )
    torch.testing.assert_close(total, expected_total)


def test_default_objective_is_plain_mtl(tasks, labels, edge_ab, edge_ac) -> None:  # type: ignore[no-untyped-def]
    logits = make_logits()
    total, terms = Objective(tasks, [edge_ab, edge_ac])(logits, labels)
    assert sorted(terms) == ["sup/a", "sup/b", "sup/c"]
    torch.testing.assert_close(total, sum(terms.values()))
    assert as_float(terms) == {k: v.item() for k, v in terms.items()}


def test_hard_co_annotation(tasks, labels, edge_ab, edge_ac) -> None:  # type: ignore[no-untyped-def]
    logits = make_logits()
    _, terms = full_objective(tasks, edge_ab, edge_ac, co_annotation="hard", hard_threshold=0.4)(
        logits, labels
    )
    expected = co_annotation_losses(edge_ac, logits, labels, "hard", PRIOR, 0.1, 1.5, 0.4)
    torch.testing.assert_close(terms["ca/c->a"], expected["c->a"])


def test_double_moves_tables_priors_and_weights(tasks, labels, edge_ab, edge_ac) -> None:  # type: ignore[no-untyped-def]
    # gradient through the DM targets too, so that the total is a proper function to gradcheck
    objective = full_objective(tasks, edge_ab, edge_ac, stop_gradient=False)
    logits32 = make_logits()
    total32, _ = objective(logits32, labels)
    assert objective.double() is objective
    assert edge_ab.table.dtype == edge_ac.table.dtype == torch.float64
    assert objective.prior("a").dtype == torch.float64
    logits64 = {k: v.detach().double().requires_grad_() for k, v in logits32.items()}
    total64, terms64 = objective(logits64, labels)
    assert total64.dtype == torch.float64 and all(
        v.dtype == torch.float64 for v in terms64.values()
    )
    assert total64.item() == pytest.approx(total32.item(), rel=1e-5)
    names = list(logits64)

    def f(*zs: torch.Tensor) -> torch.Tensor:
        return objective(dict(zip(names, zs, strict=True)), labels)[0]

    assert torch.autograd.gradcheck(f, tuple(logits64.values()), fast_mode=True)
    objective.float()
    assert edge_ab.table.dtype == torch.float32 and objective.prior("a").dtype == torch.float32


def test_nothing_labelled_gives_exact_zero(tasks, edge_ab, edge_ac) -> None:  # type: ignore[no-untyped-def]
    objective = full_objective(tasks, edge_ab, edge_ac, distribution_matching=False)
    for n in (0, 5):
        logits = make_logits(n)
        for labels in (empty_labels(tasks, n), PartialLabels(tasks, {})):
            total, terms = objective(logits, labels)
            assert total.item() == 0.0 and all(v.item() == 0.0 for v in terms.values())
            grads = torch.autograd.grad(total, list(logits.values()))
            for g, z in zip(grads, logits.values(), strict=True):
                assert g.shape == z.shape and g.abs().sum().item() == 0.0
    # An empty batch is 0 with distribution matching too.
    logits = make_logits(0)
    total, terms = full_objective(tasks, edge_ab, edge_ac)(logits, empty_labels(tasks, 0))
    assert total.item() == 0.0 and sorted(terms) == ALL_TERMS


def test_labels_missing_a_task(tasks, edge_ab, edge_ac) -> None:  # type: ignore[no-untyped-def]
    labels = PartialLabels(
        tasks, {"a": TaskLabels(torch.tensor([0, 1]), torch.tensor([True, True]))}
    )
    logits = make_logits(2)
    total, terms = full_objective(tasks, edge_ab, edge_ac, distribution_matching=False)(
        logits, labels
    )
    assert terms["sup/b"].item() == 0.0 and terms["sup/c"].item() == 0.0
    assert terms["ca/a->b"].item() > 0 and terms["ca/a->c"].item() > 0  # A's labels teach B and C
    total.backward()
    assert logits["b"].grad is not None and logits["b"].grad.abs().sum().item() > 0


def test_missing_logits(tasks, labels, edge_ab, edge_ac) -> None:  # type: ignore[no-untyped-def]
    logits = make_logits()
    del logits["c"]
    with pytest.raises(SpecError, match="no logits for tasks: c"):
        Objective(tasks, [edge_ab, edge_ac])(logits, labels)


def test_task_names_with_dots(edge_ab) -> None:  # type: ignore[no-untyped-def]
    """Regression: priors/pos_weights used to be buffers named after the task ('.' refused)."""
    a, b = CategoricalTask("expr.affectnet", ["x", "y", "z"]), BinarySetTask("au.disfa", ["u", "v"])
    edge = Relatedness(a, b, edge_ab.table)
    objective = Objective(
        [a, b.with_options(pos_weight=POS_WEIGHT.tolist())],
        [edge],
        priors={a.name: PRIOR},
        distribution_matching=True,
    )
    torch.testing.assert_close(objective.prior(a.name), PRIOR)
    logits = {a.name: torch.zeros(1, 3), b.name: torch.zeros(1, 2)}
    total, _ = objective(logits, collate_labels([a, b], [{b.name: [1, 0]}]))
    assert math.isfinite(total.item())


# ---- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"priors": {"a": torch.tensor([0.5, 0.5])}},
            SpecError,
            r"priors\['a'\]: expected shape \(3,\), got \(2,\)",
        ),
        (
            {"priors": {"a": torch.tensor([0.0, 0.5, 0.5])}},
            SpecError,
            r"priors\['a'\]: every class needs a positive prior",
        ),
        (
            {"priors": {"a": torch.tensor([-0.5, 1.0, 0.5])}},
            SpecError,
            r"every class needs a positive prior",
        ),
        (
            {"priors": {"a": torch.tensor([0.2, 0.2, 0.2])}},
            SpecError,
            r"priors\['a'\]: must sum to 1, sums to 0.600000",
        ),
        (
            {"priors": {"b": torch.tensor([0.5, 0.5])}},
            ValueError,
            r"priors: 'b' is not a categorical task",
        ),
        (
            {"priors": {"q": torch.tensor([0.5, 0.5])}},
            ValueError,
            r"priors: 'q' is not a categorical task",
        ),
        ({"task_weights": {"q": 1.0, "a": 2.0}}, ValueError, r"task_weights name unknown tasks: q"),
        (
            {"co_annotation": "sometimes"},
            ValueError,
            r"co_annotation must be 'off', 'soft' or 'hard', got 'sometimes'",
        ),
        ({"lambda_ca": -1.0}, ValueError, r"lambda_ca must be >= 0, got -1.0"),
        ({"lambda_dm": -0.1}, ValueError, r"lambda_dm must be >= 0, got -0.1"),
        ({"ca_eps": 0.0}, SpecError, r"co-annotation: eps must lie in \(0, 0.5\), got 0.0"),
        ({"ca_eps": 0.5}, SpecError, r"co-annotation: eps must lie in \(0, 0.5\), got 0.5"),
        (
            {"ca_tau": 0.0},
            SpecError,
            r"co-annotation: tau must be a positive finite number, got 0.0",
        ),
        ({"dm_eps": -0.05}, SpecError, r"distribution matching: eps must lie in \(0, 0.5\)"),
        ({"dm_eps": 0.6}, SpecError, r"distribution matching: eps must lie in \(0, 0.5\)"),
        (
            {"dm_tau": -3.0},
            SpecError,
            r"distribution matching: tau must be a positive finite number",
        ),
    ],
)
def test_validation(tasks, edge_ab, edge_ac, kwargs, error, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=message):
        Objective(tasks, [edge_ab, edge_ac], **kwargs)


def test_edges_must_link_the_objective_tasks(task_a, task_b, task_c, edge_ab) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(
        SpecError, match=r"edge a->b: task 'b' is not one of the objective's tasks"
    ):
        Objective([task_a, task_c], [edge_ab])
    other_b = BinarySetTask("b", ["u", "w"])
    with pytest.raises(
        SpecError, match=r"task 'b' is not one of the objective's tasks \(or has different"
    ):
        Objective([task_a, other_b], [edge_ab])
    with pytest.raises(ValueError, match="two tasks are named 'a'"):
        Objective([task_a, CategoricalTask("a", ["p", "q"])])


@pytest.mark.parametrize("stop", [True, False])
def test_stop_gradient_option_reaches_the_dm_terms(tasks, labels, edge_ab, edge_ac, stop) -> None:  # type: ignore[no-untyped-def]
    objective = full_objective(tasks, edge_ab, edge_ac, stop_gradient=stop)
    logits = make_logits()
    _, terms = objective(logits, labels)
    (g_a,) = torch.autograd.grad(
        terms["dm/a->b"], logits["a"], allow_unused=True, materialize_grads=True
    )
    assert (g_a.abs().sum().item() == 0.0) is stop
