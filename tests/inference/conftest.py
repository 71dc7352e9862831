"""Fixtures: one tiny digits model trained per session (small CNN, normalised inputs), and a
hand-built model with a zero-shot class and the relatedness edge that scores it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from dmtl.build.data import build_experiment
from dmtl.config import validate_config
from dmtl.core.model import MultiTaskModel
from dmtl.core.relatedness import Relatedness
from dmtl.core.tasks import BinarySetTask, CategoricalTask
from dmtl.inference.card import ModelCard
from dmtl.training.run import run_training

MEAN, STD = 0.3, 0.4


@pytest.fixture(scope="session")
def trained_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_data: Callable[..., dict[str, Any]]
) -> Path:
    """A run folder (``checkpoints/last.ckpt``): a small CNN on 8x8 digits, inputs normalised
    with ``(x - 0.3) / 0.4`` (read it, don't change it)."""
    data = tiny_data(
        backbone={"name": "small_cnn", "options": {"channels": [4], "feature_dim": 8}}
    )
    data["sources"][0]["input"] = {"mean": [MEAN], "std": [STD]}
    run = tmp_path_factory.mktemp("inference") / "run"
    run_training(build_experiment(validate_config(data)), run, quiet=True)
    return run


EXPRESSIONS = ["neutral", "happiness", "surprise", "happily_surprised"]
AUS = ["AU2", "AU12", "AU25"]
PROFILES = [
    [0.05, 0.05, 0.1],  # neutral
    [0.05, 0.95, 0.9],  # happiness
    [0.9, 0.05, 0.9],  # surprise
    [0.9, 0.9, 0.95],  # happily surprised (zero-shot: no training images)
]


@pytest.fixture(scope="session")
def zero_shot_model() -> tuple[MultiTaskModel, ModelCard]:
    """An untrained expression + AU model on ``(1, 4, 4)`` inputs, with its card: the
    expression task has a zero-shot class scored through the ``expression -> au`` table."""
    torch.manual_seed(0)
    expression = CategoricalTask("expression", EXPRESSIONS, zero_shot=["happily_surprised"])
    au = BinarySetTask("au", AUS)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh())
    model = MultiTaskModel(backbone, [expression, au], feature_dim=8).eval()
    card = ModelCard(
        name="zero-shot",
        tasks=(expression, au),
        input_shape=(1, 4, 4),
        thresholds={"au": (0.5, 0.3, 0.7)},
        edges=(Relatedness(expression, au, torch.tensor(PROFILES)),),
    )
    return model, card
