"""Resuming a study: what it may change, and an interrupted run going on from its checkpoint."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from dmtl.build.data import Experiment
from dmtl.config import Config, validate_config
from dmtl.errors import OutputError
from dmtl.study.results import load_results
from dmtl.study.study import run_study
from dmtl.training.interrupt import TrainingInterrupted
from dmtl.training.run import RunResult

HELPERS = Path(__file__).resolve().parents[1] / "helpers"


@pytest.fixture
def fake_training(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """``run_training`` replaced by a stand-in that records the keyword arguments of each call."""
    calls: list[dict[str, Any]] = []

    def fake(experiment: Experiment, run_dir: Path, **kwargs: Any) -> RunResult:
        calls.append(kwargs)
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        metrics: dict[str, float | None] = {f"{t.name}/accuracy": 0.5 for t in experiment.tasks}
        return RunResult(Path(run_dir), metrics, "test", 5, 0.1, None)

    monkeypatch.setattr("dmtl.study.study.run_training", fake)
    return calls


def _config(tiny_data: Callable[..., dict[str, Any]], **sections: Any) -> Config:
    study = {"seeds": 1, "variants": ["mtl"], "affinity": False}  # runs only: faults count steps
    return validate_config(tiny_data(study=study, **sections))


@pytest.mark.slow
def test_a_resumed_study_may_add_seeds_and_variants_but_not_change_the_training(
    tiny_data: Callable[..., dict[str, Any]], fake_training: list[dict[str, Any]], tmp_path: Path
) -> None:
    out = tmp_path / "study"
    with pytest.raises(OutputError, match="no such folder"):
        run_study(_config(tiny_data), out, resume=True)
    run_study(_config(tiny_data), out)
    assert fake_training[-1]["overwrite"] and not fake_training[-1]["resume"]
    changed = _config(tiny_data, optim={"name": "adamw", "lr": 0.001, "schedule": "none"})
    with pytest.raises(OutputError) as refused:
        run_study(changed, out, resume=True)
    assert "the config differs from the run's (optim.lr: 0.01 -> 0.001)" in str(refused.value)
    with pytest.raises(OutputError, match="--resume and --overwrite cannot be combined"):
        run_study(_config(tiny_data), out, resume=True, overwrite=True)
    assert len(fake_training) == 1
    # more seeds and another variant: a resume as designed
    more = validate_config(tiny_data(study={"seeds": 1, "variants": ["mtl", "mtl+dm"]}))
    results = run_study(more, out, seeds=2, resume=True)
    assert len(results.runs) == 4 and len(fake_training) == 4
    # a change that is allowed is recorded, and the study's config is the new one
    run_study(changed, out, resume=True, allow_config_change=True)
    history = json.loads((out / "config_changes.json").read_text())
    assert history[-1]["changes"] == [{"path": "optim.lr", "old": 0.01, "new": 0.001}]
    assert yaml.safe_load((out / "config.yaml").read_text())["optim"]["lr"] == 0.001


@pytest.fixture
def _sigint_handler_restored() -> Iterator[None]:
    handler = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, handler)


@pytest.mark.slow
@pytest.mark.usefixtures("_sigint_handler_restored")
def test_an_interrupted_run_of_a_study_goes_on_from_its_checkpoint(
    tiny_data: Callable[..., dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(HELPERS))

    def config(at: int) -> Config:  # Ctrl-C at the at-th training step of this process
        return _config(
            tiny_data,
            trainer={"max_epochs": 2, "steps_per_epoch": 5, "deterministic": True},
            backbone={"name": "dmtl_test_faults:send_sigint", "dropout": 0.2,
                      "options": {"hidden": [32], "at": at}},
        )

    out = tmp_path / "study"
    with pytest.raises(TrainingInterrupted):
        run_study(config(at=7), out)
    run_dir = out / "runs" / "seed0" / "mtl"
    assert load_results(out / "results.json").runs == []  # not finished, not recorded
    assert (run_dir / "checkpoints" / "interrupted.ckpt").is_file()
    messages: list[str] = []
    results = run_study(config(at=7), out, resume=True, progress=messages.append)
    assert "resume mtl seed 0" in messages
    assert [(r.variant, r.status, r.steps) for r in results.runs] == [("mtl", "done", 10)]
    # the same as a study that was never interrupted
    run_study(config(at=1000), tmp_path / "straight")
    want, have = (
        torch.load(folder / "runs" / "seed0" / "mtl" / "checkpoints" / "last.ckpt",
                   map_location="cpu", weights_only=True)["state_dict"]
        for folder in (tmp_path / "straight", out)
    )
    assert all(torch.equal(want[k], have[k]) for k in want)
