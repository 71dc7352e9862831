"""Loss weighting, gradient aggregation, the guard and model selection inside Lightning runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from dmtl.build.data import Experiment, build_experiment
from dmtl.config import validate_config
from dmtl.core.weighting import DynamicWeightAverage, UncertaintyWeighting
from dmtl.training.run import make_module, run_training

Make = Callable[..., Experiment]


@pytest.fixture
def make(tiny_data: Callable[..., dict[str, Any]]) -> Make:
    def build(method: dict[str, Any] | None = None, **sections: Any) -> Experiment:
        data = tiny_data(**sections)
        data["method"] = {"co_annotation": "soft", "distribution_matching": True} | (method or {})
        data["sources"][0]["val_fraction"] = 0.2
        return build_experiment(validate_config(data))

    return build


def _logged(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "logs" / "metrics.csv")


def test_aggregated_steps_train_under_manual_optimisation(make: Make, tmp_path: Path) -> None:
    experiment = make({"aggregator": "upgrad"}, trainer={"max_epochs": 2, "steps_per_epoch": 4})
    module = make_module(experiment, steps_per_epoch=4)
    assert module.automatic_optimization is False
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    result = run_training(experiment, tmp_path / "run", quiet=True, progress_bar=False)
    assert result.steps == 8 and result.epochs == 2
    after = torch.load(result.checkpoint, weights_only=True)["state_dict"]  # type: ignore[arg-type]
    changed = [k for k, v in before.items() if not torch.equal(v, after[f"model.{k}"])]
    assert any(k.startswith("backbone") for k in changed)
    assert any(k.startswith("heads") for k in changed)
    logged = _logged(tmp_path / "run")
    assert logged["train/loss_step"].notna().sum() == 8


def test_aggregator_with_gradient_clipping(make: Make, tmp_path: Path) -> None:
    experiment = make(
        {"aggregator": "mgda"},
        trainer={"max_epochs": 1, "steps_per_epoch": 3, "gradient_clip_val": 0.01},
    )
    result = run_training(experiment, tmp_path / "run", quiet=True, progress_bar=False)
    assert result.steps == 3


def test_uncertainty_weights_learn_without_weight_decay(make: Make, tmp_path: Path) -> None:
    experiment = make({"weighting": "uncertainty"}, trainer={"max_epochs": 1})
    module = make_module(experiment, steps_per_epoch=5)
    assert isinstance(module.weighting, UncertaintyWeighting)
    configured = module.configure_optimizers()
    optimizer = configured["optimizer"] if isinstance(configured, dict) else configured
    groups = optimizer.param_groups
    assert groups[1]["weight_decay"] == 0.0
    assert groups[1]["params"][0] is module.weighting.log_variance
    result = run_training(experiment, tmp_path / "run", quiet=True, progress_bar=False)
    state = torch.load(result.checkpoint, weights_only=True)["state_dict"]  # type: ignore[arg-type]
    assert not torch.equal(state["weighting.log_variance"], torch.zeros(3))


def test_dwa_weights_move_after_two_epochs(make: Make, tmp_path: Path) -> None:
    experiment = make({"weighting": "dwa"}, trainer={"max_epochs": 3, "steps_per_epoch": 3})
    result = run_training(experiment, tmp_path / "run", quiet=True, progress_bar=False)
    module = make_module(experiment, steps_per_epoch=3)
    state = torch.load(result.checkpoint, weights_only=True)["state_dict"]  # type: ignore[arg-type]
    module.load_state_dict(state)
    assert isinstance(module.weighting, DynamicWeightAverage)
    weights = module.weighting.weights()
    assert sum(weights.values()) == pytest.approx(3.0)
    assert any(abs(w - 1.0) > 1e-6 for w in weights.values())


def test_selection_metric_and_best_step(make: Make, tmp_path: Path) -> None:
    experiment = make(trainer={"max_epochs": 3, "steps_per_epoch": 2})
    run_dir = tmp_path / "run"
    result = run_training(experiment, run_dir, quiet=True, progress_bar=False)
    logged = _logged(run_dir).dropna(subset=["val/selection"])
    primaries = ["val/digit/accuracy", "val/shape/f1_mean", "val/ink/f1_mean"]
    expected = logged[primaries].mean(axis=1, skipna=True)
    assert logged["val/selection"].tolist() == pytest.approx(expected.tolist())
    best = logged.loc[logged["val/selection"].idxmax(), "step"]
    assert result.best_step == int(best) + 1 or result.best_step == int(best)


def test_guard_adapts_the_relatedness_terms_after_validation(make: Make, tmp_path: Path) -> None:
    experiment = make({"guard": True}, trainer={"max_epochs": 3, "steps_per_epoch": 4})
    module = make_module(experiment, steps_per_epoch=4)
    assert module.guard is not None
    assert set(module.guard.targets) == {
        "ca/digit->shape", "ca/shape->digit", "dm/digit->shape", "dm/shape->digit",
    }
    run_dir = tmp_path / "run"
    run_training(experiment, run_dir, quiet=True, progress_bar=False)
    logged = _logged(run_dir)
    columns = [c for c in logged.columns if c.startswith("guard/")]
    assert sorted(columns) == sorted(f"guard/{n}" for n in module.guard.targets)
    values = logged[columns].stack().dropna().unique()
    assert len(values)
    allowed = {1.0, 0.5, 0.25, 0.125, 0.0625}
    assert set(values.round(6)) <= allowed


def test_no_guard_without_relatedness_terms(make: Make) -> None:
    experiment = make({"guard": True, "co_annotation": "off", "distribution_matching": False})
    assert make_module(experiment, steps_per_epoch=2).guard is None


def test_heads_with_hidden_layers_from_the_config(make: Make) -> None:
    experiment = make(heads={"hidden": [16], "per_task": {"ink": [8, 4]}})
    heads = make_module(experiment, steps_per_epoch=2).model.heads
    assert [m.out_features for m in heads["digit"] if hasattr(m, "out_features")] == [16, 10]
    assert [m.out_features for m in heads["ink"] if hasattr(m, "out_features")] == [8, 4, 3]
