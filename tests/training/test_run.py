"""One training run from Python: outputs on disk, folder safety, NaN stop, resume, ranks."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from dmtl.config import validate_config
from dmtl.core.objective import Objective
from dmtl.core.relatedness import Relatedness
from dmtl.data.loaders import eval_loader, train_loader
from dmtl.data.pipeline import Experiment, build_experiment
from dmtl.errors import MissingDependencyError, NonFiniteLossError, OutputError
from dmtl.training.module import load_module
from dmtl.training.run import run_training
from dmtl.training.trainer import last_checkpoint, launch_rank, prepare_run_dir

MakeExperiment = Callable[..., Experiment]


@pytest.fixture
def make_experiment(tiny_data: Callable[..., dict[str, Any]]) -> MakeExperiment:
    """``make_experiment(**sections)``: the tiny digits experiment with sections updated."""

    def make(**sections: Any) -> Experiment:
        return build_experiment(validate_config(tiny_data(**sections)))

    return make


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]  # type: ignore[no-any-return]


def test_run_writes_every_output(make_experiment: MakeExperiment, tmp_path: Path) -> None:
    run = tmp_path / "run"
    experiment = make_experiment()
    result = run_training(experiment, run, quiet=True)
    assert result.run_dir == run and result.split == "test" and result.steps == 5
    assert result.checkpoint == run / "checkpoints" / "last.ckpt"
    for name in ("config.yaml", "regime.json", "metrics.json", "checkpoints/last.ckpt",
                 "logs/metrics.csv", "relatedness/digit__shape.csv"):
        assert (run / name).is_file(), name
    summary = json.loads((run / "metrics.json").read_text())
    assert set(summary) == {
        "split", "metrics", "steps", "epochs", "best_step", "stopped_early", "wall_s", "checkpoint"
    }
    assert summary["split"] == "test" and summary["steps"] == 5
    assert summary["checkpoint"] == str(run / "checkpoints" / "last.ckpt")
    metrics = summary["metrics"]
    assert metrics == pytest.approx(result.metrics)
    for key in ("digit/accuracy", "digit/f1_macro", "shape/f1_mean", "shape/accuracy",
                "ink/f1_mean", "digit/f1/0", "shape/f1/even"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["digit/num_labelled"] == 360
    # the resolved config reloads, the table is the edge used, the regime record is there
    assert validate_config(yaml.safe_load((run / "config.yaml").read_text())) == experiment.config
    table = Relatedness.from_csv(run / "relatedness" / "digit__shape.csv",
                                 *(experiment.task_map[t] for t in ("digit", "shape")))
    assert torch.allclose(table.table, experiment.edges[0].table)
    regime = json.loads((run / "regime.json").read_text())
    assert regime["digits"]["regime"]["regime"] == "scarce"
    # logs: every loss term, per step
    logs = pd.read_csv(run / "logs" / "metrics.csv")
    assert {"train/loss_step", "train/sup/digit_step", "train/loss_epoch"} <= set(logs.columns)
    # the checkpoint rebuilds the model on its own
    module = load_module(result.checkpoint)
    assert [t.name for t in module.tasks] == ["digit", "shape", "ink"]


def test_existing_folder_is_refused_then_overwritten(
    make_experiment: MakeExperiment, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("precious")
    refused = r"already exists and is not empty.*--resume.*--overwrite"
    with pytest.raises(OutputError, match=refused):
        run_training(make_experiment(), run, quiet=True)
    assert (run / "keep.txt").read_text() == "precious"
    # --overwrite never deletes files dmtl did not write, nor the current folder
    with pytest.raises(OutputError, match=r"holds files dmtl did not write \(keep.txt\)"):
        run_training(make_experiment(), run, overwrite=True, quiet=True)
    assert (run / "keep.txt").read_text() == "precious"
    (run / "keep.txt").unlink()
    (run / "report.md").write_text("an earlier result")
    run_training(make_experiment(), run, overwrite=True, quiet=True)
    assert not (run / "report.md").exists()
    assert (run / "metrics.json").is_file()


def test_overwrite_refuses_the_current_folder(
    make_experiment: MakeExperiment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "metrics.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputError, match="current folder or above it"):
        run_training(make_experiment(), Path("."), overwrite=True, quiet=True)
    assert (tmp_path / "metrics.json").exists()


def test_prepare_run_dir(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert prepare_run_dir(empty) == empty  # an empty folder is fine
    assert prepare_run_dir(tmp_path / "a" / "b").is_dir()
    (empty / "metrics.json").write_text("")
    with pytest.raises(OutputError):
        prepare_run_dir(empty)
    assert prepare_run_dir(empty, resume=True) == empty and (empty / "metrics.json").exists()
    prepare_run_dir(empty, overwrite=True)
    assert empty.is_dir() and not any(empty.iterdir())


def test_last_checkpoint_is_the_newer_of_last_and_interrupted(tmp_path: Path) -> None:
    assert last_checkpoint(tmp_path) is None
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    last, interrupted = folder / "last.ckpt", folder / "interrupted.ckpt"
    interrupted.write_text("")
    assert last_checkpoint(tmp_path) == interrupted
    last.write_text("")
    os.utime(last, ns=(1_000_000_000, 1_000_000_000))
    os.utime(interrupted, ns=(2_000_000_000, 2_000_000_000))
    assert last_checkpoint(tmp_path) == interrupted  # Ctrl-C after the last epoch's end
    os.utime(last, ns=(3_000_000_000, 3_000_000_000))
    assert last_checkpoint(tmp_path) == last  # the resumed run has saved again
    os.utime(interrupted, ns=(3_000_000_000, 3_000_000_000))
    assert last_checkpoint(tmp_path) == last  # ties: last.ckpt


class _CtrlC(pl.Callback):
    """Raises KeyboardInterrupt (as SIGINT does) before batch ``at`` of the second epoch."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        if trainer.current_epoch == 1 and batch_idx == self.at:
            raise KeyboardInterrupt


def test_interrupt_saves_a_checkpoint_that_resume_continues_from(
    make_experiment: MakeExperiment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    experiment = make_experiment(trainer={"max_epochs": 2, "steps_per_epoch": 6})
    run = tmp_path / "run"
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):  # Lightning exits after its graceful shutdown
            run_training(experiment, run, quiet=True, callbacks=[_CtrlC(at=2)])
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C
    interrupted = run / "checkpoints" / "interrupted.ckpt"
    assert interrupted.is_file()
    assert torch.load(interrupted, map_location="cpu", weights_only=False)["global_step"] == 8
    out = capsys.readouterr().out
    assert f"Interrupted at step 8 (epoch 1); checkpoint saved to {interrupted}." in out
    assert "Resume with --resume." in out
    assert last_checkpoint(run) == interrupted  # newer than last.ckpt of epoch 0
    result = run_training(experiment, run, resume=True, quiet=True)
    assert result.steps == 12
    assert (run / "metrics.json").is_file()


def test_nan_loss_stops_the_run_naming_term_step_and_sources(
    make_experiment: MakeExperiment, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    forward = Objective.forward
    calls = {"n": 0}

    def nan_at_step_3(self: Objective, *args: Any, **kwargs: Any) -> Any:
        loss, terms = forward(self, *args, **kwargs)
        calls["n"] += 1
        if self.training and calls["n"] == 4:
            terms["sup/ink"] = terms["sup/ink"] * float("nan")
        return loss + terms["sup/ink"] * 0, terms

    monkeypatch.setattr(Objective, "forward", nan_at_step_3)
    with pytest.raises(NonFiniteLossError) as error:
        run_training(make_experiment(), tmp_path / "run", quiet=True)
    message = str(error.value)
    assert "loss term 'sup/ink' is nan at step 3" in message
    assert "sources: digits[digit], digits[shape+ink]" in message
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_huge_learning_rate_gives_a_non_finite_loss(
    make_experiment: MakeExperiment, tmp_path: Path
) -> None:
    experiment = make_experiment(optim={"lr": 1e30}, trainer={"steps_per_epoch": 20})
    with pytest.raises(NonFiniteLossError, match=r"loss term '[a-z/>-]+' is (nan|inf|-inf) at step "
                                                 r"\d+ \(batch \d+, sources: digits\["):
        run_training(experiment, tmp_path / "run", quiet=True)


def test_missing_timm_says_how_to_install_it(
    make_experiment: MakeExperiment, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` raises ImportError
    experiment = make_experiment(backbone={"name": "timm:resnet18", "options": {}})
    with pytest.raises(MissingDependencyError, match=r"pip install 'dmtl\[vision\]'"):
        run_training(experiment, tmp_path / "run", quiet=True)


class _StopAfterFirstEpoch(pl.Callback):
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == 0:
            trainer.should_stop = True


def test_resume_gives_the_same_weights_as_a_straight_run(
    make_experiment: MakeExperiment, tmp_path: Path
) -> None:
    """CPU, deterministic, constant learning rate: 2 epochs straight == 1 epoch, stop, resume."""
    experiment = make_experiment(
        trainer={"max_epochs": 2, "deterministic": True, "steps_per_epoch": 6},
        optim={"schedule": "none"},
        method={"co_annotation": "soft", "distribution_matching": True},
    )
    straight = run_training(experiment, tmp_path / "straight", quiet=True)
    first = run_training(experiment, tmp_path / "resumed", quiet=True,
                         callbacks=[_StopAfterFirstEpoch()])
    assert first.steps == 6
    half = _state(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    resumed = run_training(experiment, tmp_path / "resumed", resume=True, quiet=True)
    assert straight.steps == resumed.steps == 12
    full, again = _state(tmp_path / "straight" / "checkpoints" / "last.ckpt"), _state(
        tmp_path / "resumed" / "checkpoints" / "last.ckpt"
    )
    assert full.keys() == again.keys()
    for key in full:
        assert torch.allclose(full[key], again[key], rtol=0, atol=1e-6), key
    assert any(not torch.equal(half[k], again[k]) for k in half)  # the second epoch did train
    assert resumed.metrics == pytest.approx(straight.metrics)


def test_resume_without_a_checkpoint_starts_afresh(
    make_experiment: MakeExperiment, tmp_path: Path
) -> None:
    result = run_training(make_experiment(), tmp_path / "new", resume=True, quiet=True)
    assert result.steps == 5


# ---- ranks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "rank"),
    [({}, 0), ({"RANK": "3"}, 3), ({"LOCAL_RANK": "1"}, 1), ({"SLURM_PROCID": "2"}, 2),
     ({"RANK": "0", "LOCAL_RANK": "1"}, 0)],
)
def test_launch_rank_reads_the_launchers_variables(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], rank: int
) -> None:
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert launch_rank() == rank


def test_a_non_zero_rank_leaves_the_folder_to_rank_zero(
    make_experiment: MakeExperiment, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Under DDP, rank 0 prepares the folder: another rank must not refuse or delete it."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "from_rank_0.txt").write_text("written by rank 0")
    monkeypatch.setattr("dmtl.training.run.launch_rank", lambda: 1)
    run_training(make_experiment(), run, overwrite=True, quiet=True)  # neither refused...
    assert (run / "from_rank_0.txt").is_file()  # ...nor deleted
    assert (run / "metrics.json").is_file()  # (one process is global zero all the same)


def test_train_loader_shards_every_global_batch(make_experiment: MakeExperiment) -> None:
    experiment = make_experiment()
    whole = list(train_loader(experiment).batch_sampler)  # type: ignore[arg-type]
    halves = [list(train_loader(experiment, rank=r, world_size=2).batch_sampler)  # type: ignore[arg-type]
              for r in range(2)]
    assert len(whole) == len(halves[0]) == len(halves[1]) == 5
    for step, batch in enumerate(whole):
        a, b = halves[0][step], halves[1][step]
        assert len(a) == len(b) == 16
        assert not set(a) & set(b)
        assert sorted(a + b) == sorted(batch)


@pytest.mark.parametrize("eval_batch_size", [512, 100, 7])
def test_eval_loader_gives_every_rank_a_batch_and_every_sample_once(
    make_experiment: MakeExperiment, eval_batch_size: int
) -> None:
    experiment = make_experiment(trainer={"eval_batch_size": eval_batch_size})
    seen: list[int] = []
    for rank in range(2):
        loader = eval_loader(experiment, "test", rank=rank, world_size=2)
        assert loader is not None
        batches = list(loader.batch_sampler)  # type: ignore[arg-type]
        assert batches, f"rank {rank} has no batch"
        seen += [i for b in batches for i in b]
    assert sorted(seen) == list(range(360))
    single = eval_loader(experiment, "test")
    assert single is not None
    assert len(single) == -(-360 // eval_batch_size)  # one process keeps the configured size
    assert eval_loader(experiment, "val") is None


def test_single_task_experiment_trains(make_experiment: MakeExperiment, tmp_path: Path) -> None:
    result = run_training(make_experiment().single_task("ink"), tmp_path / "ink", quiet=True)
    assert set(result.metrics) == {k for k in result.metrics if k.startswith("ink/")}
    assert not (tmp_path / "ink" / "relatedness").exists()


def test_validation_split_is_evaluated_when_there_is_no_test(
    make_experiment: MakeExperiment, tmp_path: Path
) -> None:
    experiment = make_experiment()
    data = experiment.config.model_dump()
    data["sources"][0]["val_fraction"] = 0.1
    data["sources"][0]["test_split"] = None
    no_test = build_experiment(validate_config(data))
    assert no_test.test == [] and len(no_test.val) == 1
    result = run_training(no_test, tmp_path / "val", quiet=True)
    assert result.split == "val"
    assert result.metrics["digit/num_labelled"] == int(
        np.sum(no_test.val[0].labels["digit"] >= 0)
    )
    logs = pd.read_csv(tmp_path / "val" / "logs" / "metrics.csv")
    assert "val/digit/accuracy" in logs.columns


def test_best_checkpoint_follows_the_monitor(
    make_experiment: MakeExperiment, tmp_path: Path
) -> None:
    experiment = make_experiment(trainer={"monitor": "val/loss", "max_epochs": 2})
    data = experiment.config.model_dump()
    data["sources"][0]["val_fraction"] = 0.1
    data["output"]["checkpoint"] = "best"
    result = run_training(build_experiment(validate_config(data)), tmp_path / "best", quiet=True)
    assert result.checkpoint is not None and result.checkpoint.name.startswith("best-")
    assert (tmp_path / "best" / "checkpoints" / "last.ckpt").is_file()


def test_run_result_is_a_dataclass(make_experiment: MakeExperiment, tmp_path: Path) -> None:
    result = run_training(make_experiment(), tmp_path / "r", quiet=True, steps_per_epoch=2)
    assert result.steps == 2
    assert dataclasses.asdict(result)["split"] == "test"
