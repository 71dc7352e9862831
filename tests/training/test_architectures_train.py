"""Branches, MMoE and CGC/PLE train end to end from a config (tiny digits, a few steps),
with the method's terms on the heads' outputs, a gradient aggregator, and auto branches."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from dmtl.build.data import build_experiment
from dmtl.config import validate_config
from dmtl.training.module import load_module
from dmtl.training.run import run_training

ARCHITECTURES = {
    "branch": {"name": "branch", "options": {"branches": [{"tasks": ["ink"], "at": 0},
                                                          {"tasks": ["shape"], "at": 1}]}},
    "mmoe": {"name": "mmoe", "options": {"shared_experts": 2}},
    "ple": {"name": "ple", "options": {"levels": 2, "width": 16}},
}
CA_DM = {"co_annotation": "soft", "distribution_matching": True}


def _train(tiny_data: Callable[..., dict[str, Any]], tmp_path: Path, **sections: Any):
    trainer = {"max_epochs": 1, "steps_per_epoch": 2}
    config = validate_config(tiny_data(trainer={**trainer, **sections.pop("trainer", {})},
                                       **sections))
    result = run_training(build_experiment(config), tmp_path / "run", quiet=True)
    assert result.steps == 2
    assert all(0.0 <= result.metrics[k] <= 1.0 for k in ("digit/accuracy", "ink/f1_mean"))
    return result


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
@pytest.mark.parametrize("backbone", [{"name": "mlp", "options": {"hidden": [32, 16]}},
                                      {"name": "small_cnn", "options": {"channels": [8]}}])
def test_trains_from_a_config_and_reloads(tiny_data, tmp_path, architecture, backbone) -> None:
    result = _train(tiny_data, tmp_path, backbone=backbone,
                    architecture=ARCHITECTURES[architecture], method=CA_DM)
    module = load_module(result.checkpoint)  # the checkpoint rebuilds the same architecture
    assert module.model.neck is not None
    assert module.config.architecture.name == architecture


@pytest.mark.slow
@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_trains_on_a_timm_resnet(tiny_data, tmp_path, architecture) -> None:
    pytest.importorskip("timm")
    _train(tiny_data, tmp_path, backbone={"name": "timm:resnet18", "options": {}},
           architecture=ARCHITECTURES[architecture], method=CA_DM)


def test_a_gradient_aggregator_works_over_a_neck(tiny_data, tmp_path) -> None:
    _train(tiny_data, tmp_path, architecture=ARCHITECTURES["ple"],
           method={**CA_DM, "aggregator": "upgrad"},
           backbone={"name": "mlp", "options": {"hidden": [32, 16]}})


def test_auto_branches_are_measured_and_recorded(tiny_data, tmp_path) -> None:
    auto = {"name": "branch", "options": {"auto": True, "affinity_epochs": 1,
                                          "affinity_every": 1}}
    result = _train(tiny_data, tmp_path, architecture=auto,
                    backbone={"name": "mlp", "options": {"hidden": [32, 16]}})
    saved = yaml.safe_load((result.run_dir / "config.yaml").read_text())["architecture"]
    # resolved before training: explicit branches, or the shared trunk when none helps
    assert saved["name"] == "shared" or saved["options"]["branches"]
