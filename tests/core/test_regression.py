"""The regression task kind: encoding, parsing, losses (MSE, 1 - CCC), metrics, no edges."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dmtl.core.labels import PartialLabels, TaskLabels, collate_labels
from dmtl.core.losses import concordance_loss, masked_squared_error
from dmtl.core.metrics import MultiTaskMetrics, regression_metrics
from dmtl.core.relatedness import Relatedness
from dmtl.core.tasks import CategoricalTask, LabelCellError, RegressionTask, task_from_dict
from dmtl.errors import DataError, SpecError

VA = RegressionTask("va", ["valence", "arousal"], low=-1.0, high=1.0, loss="ccc")


def test_encoded_form_and_manifest_cells() -> None:
    values = VA.parse_columns(
        {"va/valence": np.array(["0.5", "", "-1"], dtype=object), "va/arousal": np.array(
            [0.25, np.nan, 1.0])}, 3
    )
    np.testing.assert_array_equal(values, [[0.5, 0.25], [np.nan, np.nan], [-1.0, 1.0]])
    assert VA.labelled_rows(values).tolist() == [True, False, True]
    decoded = VA.decode(values)
    assert list(decoded) == ["va/valence", "va/arousal"]
    with pytest.raises(LabelCellError, match=r"expected a number in \[-1, 1\]"):
        VA.parse_columns({"va/valence": np.array([0.5, 1.5])}, 2)
    with pytest.raises(LabelCellError, match="'x'"):
        VA.parse_columns({"va/arousal": np.array(["x"], dtype=object)}, 1)
    with pytest.raises(DataError, match=r"expected a number in \[-1, 1\] \(or NaN\)"):
        VA.check_encoded(np.array([[2.0, 0.0]]), 1, "here")


def test_round_trip_and_identity() -> None:
    again = task_from_dict(VA.to_dict())
    assert again == VA and again.loss_name == "ccc"  # type: ignore[attr-defined]
    assert VA.with_options(loss="mse") == VA  # options are not identity
    assert RegressionTask("va", ["valence", "arousal"]) != VA  # the range is


def test_mse_against_hand_values() -> None:
    z = torch.tensor([[0.5, 0.0], [0.0, 2.0]])
    y = torch.tensor([[1.0, 9.0], [1.0, 0.0]])
    mask = torch.tensor([[True, False], [True, True]])
    # (0.5^2 + 1^2 + 2^2) / 3
    assert float(masked_squared_error(z, y, mask)) == pytest.approx((0.25 + 1.0 + 4.0) / 3)


def test_concordance_loss_against_hand_values() -> None:
    z = torch.tensor([[0.0], [1.0]])
    y = torch.tensor([[0.0], [0.5]])
    # means 0.5, 0.25; variances 0.25, 0.0625; covariance 0.125
    ccc = 2 * 0.125 / (0.25 + 0.0625 + 0.0625)
    loss = concordance_loss(z, y, torch.ones(2, 1, dtype=torch.bool))
    assert float(loss) == pytest.approx(1 - ccc)
    # a dimension with fewer than 2 observed entries is left out; nothing at all gives 0
    mask = torch.tensor([[True, True], [True, False]])
    two = torch.cat([z, z], dim=1)
    assert float(concordance_loss(two, torch.cat([y, y], 1), mask)) == pytest.approx(1 - ccc)
    empty = concordance_loss(two.requires_grad_(), two, torch.zeros(2, 2, dtype=torch.bool))
    empty.backward()
    assert float(empty.detach()) == 0.0


def test_concordance_gradient_in_float64() -> None:
    y = torch.randn(6, 2, dtype=torch.float64)
    mask = torch.rand(6, 2) > 0.2
    mask[:3] = True
    z = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: concordance_loss(p, y, mask), (z,))
    assert torch.autograd.gradcheck(lambda p: masked_squared_error(p, y, mask), (z,))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1, 1), min_size=3, max_size=12), st.floats(0.1, 3.0), st.floats(-1, 1))
def test_concordance_is_one_only_for_equal_values(values: list[float], scale: float,
                                                   shift: float) -> None:
    y = torch.tensor(values, dtype=torch.float64)[:, None]
    if float(y.std()) < 1e-3:
        return
    mask = torch.ones_like(y, dtype=torch.bool)
    assert float(concordance_loss(y, y, mask)) == pytest.approx(0.0, abs=1e-9)
    other = float(concordance_loss(scale * y + shift, y, mask))
    assert 0.0 <= other <= 2.0
    if abs(scale - 1) > 1e-3 or abs(shift) > 1e-3:
        assert other > 0.0


def test_metric_accumulates_like_one_batch() -> None:
    torch.manual_seed(0)
    z, y = torch.randn(10, 2), torch.randn(10, 2)
    mask = torch.rand(10, 2) > 0.3
    whole = regression_metrics(z, TaskLabels(y, mask), VA)
    metric = VA.metric()
    metric.update(z[:4], TaskLabels(y[:4], mask[:4]))
    metric.update(z[4:], TaskLabels(y[4:], mask[4:]))
    parts = metric.compute()
    for key, value in whole.items():
        assert parts[key] == pytest.approx(value)
    # the same CCC as computed by hand, per target
    for j, name in enumerate(VA.targets):
        a, b = z[mask[:, j], j].double(), y[mask[:, j], j].double()
        ccc = 2 * ((a - a.mean()) * (b - b.mean())).mean() / (
            a.var(unbiased=False) + b.var(unbiased=False) + (a.mean() - b.mean()) ** 2
        )
        assert whole[f"ccc/{name}"] == pytest.approx(float(ccc))


def test_regression_in_multi_task_metrics_and_labels() -> None:
    digit = CategoricalTask("d", ["0", "1"])
    labels = collate_labels([digit, VA], [{"d": 1}, {"va": {"valence": 0.3}}, {"va": [0.1, 0.2]}])
    assert labels["va"].mask.tolist() == [[False, False], [True, False], [True, True]]
    metrics = MultiTaskMetrics([digit, VA])
    metrics.update({"d": torch.zeros(3, 2), "va": torch.zeros(3, 2)}, labels)
    flat = metrics.compute_flat()
    assert flat["va/num_labelled"] == 2
    assert flat["va/mse"] == pytest.approx((0.09 + 0.01 + 0.04) / 3)
    assert metrics.primary_names()["va"] == "va/ccc_mean"
    with pytest.raises(SpecError, match="not a number in"):
        PartialLabels([VA], {"va": TaskLabels(torch.tensor([[3.0, 0.0]]),
                                              torch.tensor([[True, False]]))})


def test_a_regression_task_takes_part_in_no_edge() -> None:
    digit = CategoricalTask("d", ["0", "1"])
    with pytest.raises(SpecError, match="regression tasks take part in no relatedness edge"):
        Relatedness(digit, VA, torch.full((2, 2), 0.5))
    with pytest.raises(SpecError, match="must be a categorical task"):
        Relatedness(VA, digit, torch.full((2, 2), 0.5))  # type: ignore[arg-type]


def test_decisions_are_the_values_clipped_to_the_range() -> None:
    out = VA.decide(torch.tensor([[1.5, -0.2]]))
    assert out.tolist() == [[1.0, pytest.approx(-0.2)]]
    assert math.isclose(float(VA.predict(torch.tensor([[0.3, 0.0]]))[0, 0]), 0.3, rel_tol=1e-6)
