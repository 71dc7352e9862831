"""Loss weightings: fixed, uncertainty (Kendall et al.) and DWA (Liu et al.), hand-worked.

Uncertainty weighting, ``L = sum_t exp(-s_t) L_t + s_t``, with ``L = (2, 0.5)`` and
``s = (0, ln 2)``::

    L = 1 * 2 + 0  +  0.5 * 0.5 + ln 2 = 2.25 + ln 2
    dL/ds_a = 1 - exp(-0) * 2     = -1
    dL/ds_b = 1 - exp(-ln 2) * 0.5 = 0.75
    dL/dL_a = 1,  dL/dL_b = 0.5

DWA with ``T = 2`` and epoch averages ``(2, 1, 4)`` then ``(1, 1, 2)``: ``r = (0.5, 1, 0.5)``,
``w = 3 softmax(r / 2) = 3 (e^0.25, e^0.5, e^0.25) / (2 e^0.25 + e^0.5)``.
"""

from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings
from torch.func import functional_call

from dmtl.core.weighting import (
    DynamicWeightAverage,
    FixedWeighting,
    LossWeighting,
    UncertaintyWeighting,
    build_weighting,
    dwa_weights,
)
from dmtl.errors import SpecError

F64 = torch.float64
FAST = settings(max_examples=40, deadline=None, database=None)


def losses(**values: float) -> dict[str, torch.Tensor]:
    return {
        name: torch.tensor(value, dtype=F64, requires_grad=True) for name, value in values.items()
    }


# --- fixed -------------------------------------------------------------------------------


def test_fixed_default_is_the_plain_sum_with_its_gradient() -> None:
    task_losses = losses(a=2.0, b=0.5, c=0.0)
    total, weights = FixedWeighting(["a", "b", "c"])(task_losses)
    assert total.item() == 2.5
    assert weights == {"a": 1.0, "b": 1.0, "c": 1.0}
    total.backward()
    assert [task_losses[n].grad.item() for n in "abc"] == [1.0, 1.0, 1.0]


def test_fixed_weights_and_an_explicitly_absent_task() -> None:
    weighting = FixedWeighting(["a", "b"], {"a": 0.5})
    total, weights = weighting(losses(a=2.0, b=3.0), present={"b": False})
    assert total.item() == 1.0  # 0.5 * 2; b is left out although its loss is 3
    assert weights == {"a": 0.5, "b": 1.0}


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"z": 1.0}, "unknown tasks: z"),
        ({"a": -1.0}, "finite and >= 0"),
        ({"a": math.inf}, "finite and >= 0"),
        ({"a": "1"}, "must be a number"),
    ],
)
def test_fixed_rejects_bad_weights(weights: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        FixedWeighting(["a", "b"], weights)


# --- uncertainty -------------------------------------------------------------------------


def test_uncertainty_total_and_gradients_by_hand() -> None:
    weighting = UncertaintyWeighting(["a", "b"]).double()
    with torch.no_grad():
        weighting.log_variance[1] = math.log(2.0)  # set in float64
    task_losses = losses(a=2.0, b=0.5)
    total, weights = weighting(task_losses)
    assert total.item() == pytest.approx(2.25 + math.log(2.0), abs=1e-12)
    assert weights == pytest.approx({"a": 1.0, "b": 0.5}, abs=1e-12)
    total.backward()
    assert weighting.log_variance.grad.tolist() == pytest.approx([-1.0, 0.75], abs=1e-12)
    assert task_losses["a"].grad.item() == pytest.approx(1.0, abs=1e-12)
    assert task_losses["b"].grad.item() == pytest.approx(0.5, abs=1e-12)


def test_uncertainty_at_zero_log_variance_is_the_plain_sum() -> None:
    total, weights = UncertaintyWeighting(["a", "b"])(losses(a=2.0, b=0.5))
    assert total.item() == 2.5
    assert weights == {"a": 1.0, "b": 1.0}


def test_uncertainty_does_not_push_the_log_variance_of_a_task_without_labels() -> None:
    weighting = UncertaintyWeighting(["a", "b"]).double()
    logits = torch.zeros(3, 2, dtype=F64, requires_grad=True)
    # b has no labelled sample: its loss is an exact 0 that still carries a zero gradient.
    task_losses = {"a": torch.tensor(2.0, dtype=F64), "b": logits.sum() * 0.0}
    total, _ = weighting(task_losses)
    total.backward()
    assert total.item() == 2.0
    assert weighting.log_variance.grad.tolist() == [-1.0, 0.0]
    assert torch.equal(logits.grad, torch.zeros_like(logits))
    assert torch.isfinite(logits.grad).all()


def test_uncertainty_present_mask_overrides_a_nonzero_loss() -> None:
    weighting = UncertaintyWeighting(["a", "b"]).double()
    total, _ = weighting(losses(a=2.0, b=0.7), present={"b": False})
    total.backward()
    assert total.item() == 2.0
    assert weighting.log_variance.grad.tolist() == [-1.0, 0.0]


def test_uncertainty_gradcheck_in_float64() -> None:
    weighting = UncertaintyWeighting(["a", "b", "c"]).double()

    def total(values: torch.Tensor, log_variance: torch.Tensor) -> torch.Tensor:
        task_losses = dict(zip("abc", values, strict=True))
        out, _ = functional_call(weighting, {"log_variance": log_variance}, (task_losses,))
        return out

    values = torch.tensor([2.0, 0.5, 1.3], dtype=F64, requires_grad=True)
    log_variance = torch.tensor([0.1, -0.4, 0.7], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(total, (values, log_variance))


@FAST
@given(
    values=st.lists(st.floats(0.0, 1e4), min_size=1, max_size=5),
    log_variance=st.lists(st.floats(-20.0, 20.0), min_size=5, max_size=5),
)
def test_uncertainty_total_is_finite(values: list[float], log_variance: list[float]) -> None:
    names = [f"t{i}" for i in range(len(values))]
    init = dict(zip(names, log_variance, strict=False))
    weighting = UncertaintyWeighting(names, init).double()
    task_losses = {n: torch.tensor(v, dtype=F64) for n, v in zip(names, values, strict=True)}
    total, weights = weighting(task_losses)
    total.backward()
    assert math.isfinite(total.item())
    assert torch.isfinite(weighting.log_variance.grad).all()
    assert all(w > 0 for w in weights.values())


# --- DWA ---------------------------------------------------------------------------------


def run_epoch(dwa: DynamicWeightAverage, batches: list[dict[str, float]]) -> list[dict[str, float]]:
    seen = []
    for batch in batches:
        _, weights = dwa({n: torch.tensor(v) for n, v in batch.items()})
        seen.append(weights)
    dwa.end_epoch()
    return seen


def test_dwa_weights_by_hand() -> None:
    dwa = DynamicWeightAverage(["a", "b", "c"], temperature=2.0)
    first = run_epoch(dwa, [{"a": 2.0, "b": 1.0, "c": 4.0}])
    second = run_epoch(dwa, [{"a": 1.5, "b": 0.5, "c": 3.0}, {"a": 0.5, "b": 1.5, "c": 1.0}])
    assert first + second == [dict.fromkeys("abc", 1.0)] * 3  # epochs 1 and 2: weights 1
    e1, e2 = math.exp(0.25), math.exp(0.5)
    expected = [3 * e1 / (2 * e1 + e2), 3 * e2 / (2 * e1 + e2), 3 * e1 / (2 * e1 + e2)]
    assert list(dwa.weights().values()) == pytest.approx(expected, abs=1e-12)
    total, weights = dwa({"a": torch.tensor(1.0), "b": torch.tensor(1.0), "c": torch.tensor(0.0)})
    assert total.item() == pytest.approx(expected[0] + expected[1], abs=1e-6)
    assert list(weights.values()) == pytest.approx(expected, abs=1e-12)


def test_dwa_averages_only_the_batches_where_a_task_is_present() -> None:
    dwa = DynamicWeightAverage(["a", "b"])
    run_epoch(dwa, [{"a": 2.0, "b": 1.0}, {"a": 4.0, "b": 0.0}, {"a": 0.0, "b": 1.0}])
    assert dwa.epoch_averages[1].tolist() == [3.0, 1.0]  # not (2, 2/3)


def test_dwa_task_absent_for_a_whole_epoch_keeps_ratio_one() -> None:
    dwa = DynamicWeightAverage(["a", "b"], temperature=1.0)
    run_epoch(dwa, [{"a": 2.0, "b": 0.0}])  # b never labelled in epoch 1
    run_epoch(dwa, [{"a": 1.0, "b": 3.0}])
    e = math.exp
    expected = [2 * e(0.5) / (e(0.5) + e(1.0)), 2 * e(1.0) / (e(0.5) + e(1.0))]
    assert list(dwa.weights().values()) == pytest.approx(expected, abs=1e-12)


def test_dwa_eval_mode_calls_are_not_counted() -> None:
    dwa = DynamicWeightAverage(["a"])
    dwa.eval()
    dwa({"a": torch.tensor(5.0)})
    assert dwa.epoch_totals.tolist() == [[0.0], [0.0]]
    dwa.train()
    dwa({"a": torch.tensor(5.0)})
    assert dwa.epoch_totals.tolist() == [[5.0], [1.0]]


def test_dwa_state_dict_resumes_the_schedule() -> None:
    dwa = DynamicWeightAverage(["a", "b"])
    run_epoch(dwa, [{"a": 2.0, "b": 1.0}])
    run_epoch(dwa, [{"a": 1.0, "b": 1.0}])
    dwa({"a": torch.tensor(1.0), "b": torch.tensor(2.0)})
    resumed = DynamicWeightAverage(["a", "b"])
    resumed.weights()  # fill the cache before loading: loading must clear it
    resumed.load_state_dict(dwa.state_dict())
    assert resumed.weights() == dwa.weights()
    assert int(resumed.epochs_done) == 2
    assert torch.equal(resumed.epoch_totals, dwa.epoch_totals)


def test_dwa_end_epoch_reduces_sums_and_counts_across_processes() -> None:
    dwa = DynamicWeightAverage(["a"])
    dwa({"a": torch.tensor(2.0)})
    other_process = torch.tensor([[6.0], [1.0]], dtype=F64)  # one batch with loss 6
    dwa.end_epoch(reduce=lambda totals: totals + other_process)
    assert dwa.epoch_averages[1].tolist() == [4.0]


EPOCH_LOSS = st.one_of(st.floats(1e-3, 1e3), st.just(math.nan), st.just(0.0))


@FAST
@given(
    histories=st.lists(
        st.tuples(EPOCH_LOSS, st.floats(1e-2, 1e2), st.booleans()), min_size=1, max_size=6
    ),
    temperature=st.floats(0.5, 20.0),
)
def test_dwa_weights_are_positive_and_sum_to_the_number_of_tasks(
    histories: list[tuple[float, float, bool]], temperature: float
) -> None:
    """Epoch losses in [1e-3, 1e3], 0 or unknown (NaN), changing by a factor in [0.01, 100]
    (or unknown) between epochs; beyond ``|r_i - r_j| / T`` of ~700 a float64 softmax
    underflows to an exact 0, which no real schedule reaches."""
    before_last = torch.tensor([h[0] for h in histories], dtype=F64)
    ratio = torch.tensor([h[1] if h[2] else math.nan for h in histories], dtype=F64)
    weights = dwa_weights(before_last * ratio, before_last, temperature)
    assert torch.isfinite(weights).all()
    assert (weights > 0).all()
    assert weights.sum().item() == pytest.approx(len(histories), rel=1e-9)


def test_dwa_rejects_a_bad_temperature() -> None:
    for bad in (0.0, -1.0, math.nan, True):
        with pytest.raises(SpecError, match="temperature"):
            DynamicWeightAverage(["a"], temperature=bad)


# --- interface and factory ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["fixed", "uncertainty", "dwa"])
def test_every_weighting_survives_a_task_without_labels(name: str) -> None:
    weighting = build_weighting(name, ["a", "b"])
    logits = torch.zeros(4, 3, requires_grad=True)
    task_losses = {"a": logits.logsumexp(dim=1).mean(), "b": logits.sum() * 0.0}
    total, weights = weighting(task_losses)
    total.backward()
    assert torch.isfinite(total)
    assert torch.isfinite(logits.grad).all()
    assert set(weights) == {"a", "b"}
    weighting.end_epoch()


def test_build_weighting_passes_options() -> None:
    weighting = build_weighting("fixed", ["a", "b"], weights={"a": 2.0})
    assert isinstance(weighting, FixedWeighting)
    assert weighting.weights == {"a": 2.0, "b": 1.0}
    assert isinstance(build_weighting("uncertainty", ["a"]), UncertaintyWeighting)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("gradnorm", {}, "unknown loss weighting 'gradnorm'; expected one of: fixed"),
        ("dwa", {"temp": 2.0}, "'dwa' has no option 'temp'; options: temperature"),
        ("fixed", {"weights": {"x": 1.0}}, "unknown tasks: x"),
    ],
)
def test_build_weighting_errors(name: str, options: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        build_weighting(name, ["a", "b"], **options)


@pytest.mark.parametrize(
    ("task_losses", "message"),
    [
        ({"a": torch.tensor(1.0)}, "missing b"),
        ({"a": torch.tensor(1.0), "b": torch.tensor(1.0), "z": torch.tensor(1.0)}, "unknown z"),
        ({"a": torch.tensor(1.0), "b": torch.ones(2)}, "task 'b' must be a scalar tensor"),
    ],
)
def test_task_losses_are_checked(task_losses: dict, message: str) -> None:
    weighting: LossWeighting = FixedWeighting(["a", "b"])
    with pytest.raises(SpecError, match=message):
        weighting(task_losses)


def test_present_naming_an_unknown_task_is_refused() -> None:
    with pytest.raises(SpecError, match="present names unknown tasks: z"):
        FixedWeighting(["a"])({"a": torch.tensor(1.0)}, present={"z": True})


@pytest.mark.parametrize("names", [[], ["a", "a"], [""]])
def test_task_names_are_checked(names: list[str]) -> None:
    with pytest.raises(SpecError):
        FixedWeighting(names)
