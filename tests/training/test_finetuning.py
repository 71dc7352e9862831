"""Fine-tuning and imbalance: the trunk's learning rate, class weights and label smoothing,
end to end from the config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dmtl.build.data import build_experiment
from dmtl.config import validate_config
from dmtl.core.labels import PartialLabels
from dmtl.training.module import MultiTaskModule, load_module
from dmtl.training.run import make_module, run_training


def _module(tiny_data: Any, **optim: Any) -> MultiTaskModule:
    data = tiny_data(optim={"name": "sgd", "lr": 0.1, "momentum": 0.0, "weight_decay": 0.0,
                            "schedule": "none", **optim})
    return make_module(build_experiment(validate_config(data)), steps_per_epoch=1)


def test_the_trunk_learns_at_lr_times_the_scale(tiny_data: Any) -> None:
    module = _module(tiny_data, backbone_lr_scale=0.25)
    optimizer = module.configure_optimizers()
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert groups["backbone"]["lr"] == pytest.approx(0.025)  # 0.1 * 0.25
    assert groups["heads"]["lr"] == pytest.approx(0.1)
    trunk = {id(p) for p in module.model.backbone.parameters()}
    assert {id(p) for p in groups["backbone"]["params"]} == trunk
    everything = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert sorted(everything) == sorted(id(p) for p in module.parameters())  # each once


def test_one_sgd_step_moves_each_group_by_its_own_rate(tiny_data: Any) -> None:
    """Plain SGD: w' = w - lr_group * grad, so the trunk moves by 0.025 * grad."""
    module = _module(tiny_data, backbone_lr_scale=0.25)
    optimizer = module.configure_optimizers()
    torch.manual_seed(0)
    x = torch.randn(4, 1, 8, 8)
    trunk_weight = module.model.backbone[1].weight
    head_weight = next(iter(module.model.heads.values())).weight
    before = [trunk_weight.detach().clone(), head_weight.detach().clone()]
    sum(z.sum() for z in module(x).values()).backward()
    grads = [trunk_weight.grad.clone(), head_weight.grad.clone()]
    optimizer.step()
    assert torch.allclose(trunk_weight, before[0] - 0.025 * grads[0])
    assert torch.allclose(head_weight, before[1] - 0.1 * grads[1])


def test_a_scale_of_zero_freezes_the_trunk(tiny_data: Any) -> None:
    module = _module(tiny_data, backbone_lr_scale=0.0)
    optimizer = module.configure_optimizers()
    assert [g["name"] for g in optimizer.param_groups] == ["heads"]
    assert not any(p.requires_grad for p in module.model.backbone.parameters())
    assert all(p.requires_grad for p in module.model.heads.parameters())


def test_the_default_is_one_group_at_lr(tiny_data: Any) -> None:
    optimizer = _module(tiny_data).configure_optimizers()
    assert len(optimizer.param_groups) == 1 and optimizer.param_groups[0]["lr"] == 0.1


def test_the_cosine_schedule_scales_both_groups(tiny_data: Any) -> None:
    module = _module(tiny_data, backbone_lr_scale=0.5, schedule="cosine")
    scheduler = module.configure_optimizers()["lr_scheduler"]["scheduler"]
    assert scheduler.base_lrs == pytest.approx([0.05, 0.1])


@pytest.mark.slow
def test_class_weights_and_label_smoothing_reach_the_trained_model(
    tiny_data: Any, tmp_path: Path
) -> None:
    """``class_weight: balanced`` is n / (C n_c) over the training labels; the checkpoint keeps
    it and the smoothing; the supervised loss is sum_i w_yi CE_eps(z_i, y_i) / sum_i w_yi."""
    data = tiny_data(tasks=[{"name": "digit", "type": "categorical", "class_weight": "balanced",
                             "label_smoothing": 0.1}])
    experiment = build_experiment(validate_config(data))
    values = experiment.train_values("digit")
    given = values[values >= 0]
    counts = np.bincount(given, minlength=10)
    expected = len(given) / (10 * counts)
    result = run_training(experiment, tmp_path / "run", quiet=True, progress_bar=False)
    module = load_module(result.checkpoint)  # type: ignore[arg-type]
    digit = module.task_map["digit"]
    assert digit.class_weight == pytest.approx(tuple(expected))  # type: ignore[attr-defined]
    assert digit.label_smoothing == 0.1  # type: ignore[attr-defined]

    torch.manual_seed(0)
    logits = torch.randn(3, 10, dtype=torch.float64)
    target = torch.tensor([0, 4, 9])
    labels = PartialLabels.from_encoded([digit], {"digit": target})
    log_p = torch.log_softmax(logits, dim=-1)
    per_sample = -(0.9 * log_p[torch.arange(3), target] + 0.1 * log_p.mean(dim=-1))
    weight = torch.tensor(expected, dtype=torch.float64)[target]
    by_hand = (weight * per_sample).sum() / weight.sum()
    assert torch.allclose(digit.loss(logits, labels["digit"]), by_hand)
