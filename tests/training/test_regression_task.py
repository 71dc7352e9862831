"""A regression task trains end to end from a config, in the same network and study."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dmtl.build.data import build_experiment
from dmtl.config import validate_config
from dmtl.errors import ConfigError
from dmtl.study.study import run_study
from dmtl.training.run import run_training


def _data(tiny_data: Callable[..., dict[str, Any]], **sections: Any) -> dict[str, Any]:
    data = tiny_data(**sections)
    data["sources"][0]["options"] = {"measures": True}
    data["tasks"] = [{"name": "measures", "type": "regression", "loss": "ccc"}]
    return data


def test_regression_trains_beside_the_other_tasks(
    tiny_data: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    data = _data(tiny_data, trainer={"max_epochs": 2, "steps_per_epoch": 5})
    experiment = build_experiment(validate_config(data))
    measures = experiment.task_map["measures"]
    assert measures.kind == "regression" and measures.loss_name == "ccc"  # type: ignore[attr-defined]
    # scarce digit: the regression targets are labelled with shape and ink, on the rest
    assert [s.name for s in experiment.train] == ["digits[shape+ink+measures]", "digits[digit]"]
    result = run_training(experiment, tmp_path / "run", quiet=True, progress_bar=False)
    metrics = result.metrics
    assert metrics["measures/num_labelled"] == 360
    assert metrics["measures/ccc_mean"] is not None and -1 <= metrics["measures/ccc_mean"] <= 1
    expected = {"measures/ccc/mass", "measures/ccc/slant", "measures/ccc/spread", "measures/mse"}
    assert expected <= set(metrics)


@pytest.mark.slow
def test_regression_in_a_study(tiny_data: Callable[..., dict[str, Any]], tmp_path: Path) -> None:
    data = _data(tiny_data, study={"seeds": 1, "variants": ["single_task", "mtl+ca+dm"],
                                   "budget_epochs": 2, "patience": 1})
    results = run_study(validate_config(data), tmp_path / "study", 1)
    assert all(r.status == "done" for r in results.runs)
    assert results.tasks["measures"].primary_metric == "ccc_mean"
    single = [r for r in results.runs if r.task == "measures"]
    assert len(single) == 1 and single[0].metrics["measures/ccc_mean"] is not None
    assert "measures" in (tmp_path / "study" / "report.md").read_text()


def test_an_edge_into_a_regression_task_is_a_clear_error(
    tiny_data: Callable[..., dict[str, Any]],
) -> None:
    edge = {"source": "digit", "target": "measures", "kind": "estimate"}
    data = _data(tiny_data, relatedness=[edge])
    with pytest.raises(ConfigError, match=r"relatedness\.0\.target: .*regression tasks take"):
        validate_config(data)  # declared in the config: caught before anything loads
    data.pop("tasks")  # brought by the built-in only: caught when the edges are built
    with pytest.raises(ConfigError, match=r"relatedness\.0: .*regression tasks take part in no"):
        build_experiment(validate_config(data))
