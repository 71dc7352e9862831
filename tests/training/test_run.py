"""One training run from Python: outputs on disk, folder safety, NaN stop, Ctrl-C and exact
resume, ranks."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from dmtl.build.data import Experiment, build_experiment
from dmtl.build.loaders import eval_loader, train_loader
from dmtl.config import dump_config, validate_config
from dmtl.core.objective import Objective
from dmtl.core.relatedness import Relatedness
from dmtl.errors import MissingDependencyError, NonFiniteLossError, OutputError, RunError
from dmtl.training.interrupt import TrainingInterrupted
from dmtl.training.module import load_module
from dmtl.training.run import RunResult, run_training
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
        "split", "metrics", "steps", "epochs", "best_step", "stopped_early", "wall_s", "checkpoint",
        "val_metrics",
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


def test_last_checkpoint_is_the_later_step_of_last_and_interrupted(tmp_path: Path) -> None:
    assert last_checkpoint(tmp_path) is None
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    last, interrupted = folder / "last.ckpt", folder / "interrupted.ckpt"
    torch.save({"global_step": 8}, interrupted)
    assert last_checkpoint(tmp_path) == interrupted
    torch.save({"global_step": 6}, last)
    os.utime(last, ns=(3_000_000_000, 3_000_000_000))  # file times do not decide
    os.utime(interrupted, ns=(1_000_000_000, 1_000_000_000))
    assert last_checkpoint(tmp_path) == interrupted  # Ctrl-C mid-epoch, after epoch 0's end
    torch.save({"global_step": 12}, last)
    assert last_checkpoint(tmp_path) == last  # the resumed run has saved again
    torch.save({"global_step": 12}, interrupted)
    assert last_checkpoint(tmp_path) == last  # the same step: last.ckpt
    interrupted.write_bytes(b"not a checkpoint")
    assert last_checkpoint(tmp_path) == interrupted  # so that the resume says what is wrong


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


# ---- Ctrl-C and resume ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _sigint_handler_restored() -> Iterator[None]:
    """Whatever a test does to SIGINT, the next test finds Python's own handler."""
    handler = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, handler)


class _CtrlC(pl.Callback):
    """Sends SIGINT to this process, as Ctrl-C does, in ``hook`` at ``trainer.global_step == step``.

    The signal arrives where it is sent: inside the step (``on_before_backward``, before
    the optimiser's step), between steps, or during validation.
    """

    def __init__(self, hook: str, step: int) -> None:
        self.hook, self.step, self.sent = hook, step, False

    def _maybe(self, hook: str, trainer: pl.Trainer) -> None:
        if hook == self.hook and trainer.global_step == self.step and not self.sent:
            self.sent = True
            signal.raise_signal(signal.SIGINT)

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self._maybe("on_train_batch_start", trainer)

    def on_before_backward(self, trainer: pl.Trainer, *args: Any) -> None:
        self._maybe("on_before_backward", trainer)

    def on_before_optimizer_step(self, trainer: pl.Trainer, *args: Any) -> None:
        self._maybe("on_before_optimizer_step", trainer)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self._maybe("on_train_batch_end", trainer)

    def on_validation_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self._maybe("on_validation_batch_start", trainer)


def _exact_experiment(tiny_data: Callable[..., dict[str, Any]], epochs: int) -> Experiment:
    """Deterministic, on the CPU, with everything a step draws or schedules: dropout, a
    cosine schedule, co-annotation and distribution matching, and a validation split."""
    data = tiny_data(
        trainer={"max_epochs": epochs, "steps_per_epoch": 6, "deterministic": True},
        optim={"name": "adamw", "lr": 0.01, "schedule": "cosine"},
        backbone={"name": "mlp", "options": {"hidden": [32]}, "dropout": 0.3},
        method={"co_annotation": "soft", "distribution_matching": True},
    )
    data["sources"][0]["val_fraction"] = 0.1
    return build_experiment(validate_config(data))


def _assert_same_weights(expected: Path, got: Path) -> None:
    want, have = (_state(run / "checkpoints" / "last.ckpt") for run in (expected, got))
    assert want.keys() == have.keys()
    different = [key for key in want if not torch.equal(want[key], have[key])]
    assert not different, f"weights differ: {different}"


def _assert_same_logs(expected: Path, got: Path) -> None:
    want, have = (pd.read_csv(run / "logs" / "metrics.csv") for run in (expected, got))
    assert sorted(want.columns) == sorted(have.columns)
    columns = sorted(want.columns)
    pd.testing.assert_frame_equal(want[columns], have[columns], check_exact=True)


def test_ctrl_c_mid_epoch_saves_at_the_steps_end_and_resume_is_exact(
    tiny_data: Callable[..., dict[str, Any]], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    experiment = _exact_experiment(tiny_data, epochs=2)
    straight = run_training(experiment, tmp_path / "straight", quiet=True)
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted) as stopped:
        run_training(experiment, run, quiet=True, callbacks=[_CtrlC("on_before_backward", 8)])
    interrupted = run / "checkpoints" / "interrupted.ckpt"
    assert stopped.value.checkpoint == interrupted
    assert stopped.value.message == (
        f"Interrupted at step 9 (epoch 1); checkpoint saved to {interrupted}. Resume with --resume."
    )
    assert "Ctrl-C: stopping after this step" in capfd.readouterr().err  # at once, on stderr
    saved = torch.load(interrupted, map_location="cpu", weights_only=True)
    assert saved["global_step"] == 9  # the step Ctrl-C came in finished, then it saved
    loader_state = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]
    assert (loader_state["epoch"], loader_state["served"]) == (1, 3)
    assert not (run / "metrics.json").exists()
    logged = pd.read_csv(run / "logs" / "metrics.csv")
    assert sorted(logged["step"].dropna().unique())[-1] == 8  # every row up to the stop
    assert last_checkpoint(run) == interrupted
    resumed = run_training(experiment, run, resume=True, quiet=True)
    assert resumed.steps == straight.steps == 12
    _assert_same_weights(tmp_path / "straight", run)
    _assert_same_logs(tmp_path / "straight", run)  # the rows before the stop are all kept
    assert resumed.metrics == straight.metrics


@pytest.fixture(scope="module")
def straight_exact_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_data: Callable[..., dict[str, Any]]
) -> tuple[Experiment, Path, RunResult]:
    experiment = _exact_experiment(tiny_data, epochs=3)
    run = tmp_path_factory.mktemp("exact") / "straight"
    return experiment, run, run_training(experiment, run, quiet=True)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("interruptions", "resumes_from"),
    [
        ([("on_before_backward", 0)], "interrupted"),  # during the very first step
        ([("on_train_batch_start", 3)], "interrupted"),  # mid-epoch, before the step
        ([("on_before_optimizer_step", 6)], "interrupted"),  # first step of an epoch
        ([("on_train_batch_end", 6)], "last"),  # the epoch's last step: its end comes first
        ([("on_validation_batch_start", 6)], "last"),  # during validation
        ([("on_train_batch_start", 17)], "last"),  # the last step: before the evaluation
        ([("on_train_batch_start", 2), ("on_before_backward", 9)], "interrupted"),  # twice
    ],
)
def test_ctrl_c_anywhere_then_resume_gives_the_uninterrupted_weights_and_logs(
    straight_exact_run: tuple[Experiment, Path, RunResult],
    tmp_path: Path,
    interruptions: list[tuple[str, int]],
    resumes_from: str,
) -> None:
    experiment, straight_dir, straight = straight_exact_run
    run = tmp_path / "run"
    for i, (hook, step) in enumerate(interruptions):
        with pytest.raises(TrainingInterrupted) as stopped:
            run_training(experiment, run, resume=i > 0, quiet=True, callbacks=[_CtrlC(hook, step)])
    assert stopped.value.checkpoint == run / "checkpoints" / f"{resumes_from}.ckpt"
    assert last_checkpoint(run) == stopped.value.checkpoint
    resumed = run_training(experiment, run, resume=True, quiet=True)
    assert resumed.steps == straight.steps == 18
    _assert_same_weights(straight_dir, run)
    _assert_same_logs(straight_dir, run)
    assert resumed.metrics == straight.metrics


def test_a_keyboard_interrupt_raised_by_code_saves_nothing_and_names_the_last_checkpoint(
    make_experiment: MakeExperiment, tmp_path: Path
) -> None:
    """Not a Ctrl-C (which finishes its step): the step may be half done, so nothing is saved."""

    class RaiseInStep(pl.Callback):
        def on_before_optimizer_step(self, trainer: pl.Trainer, *args: Any) -> None:
            if trainer.global_step == 8:
                raise KeyboardInterrupt

    experiment = make_experiment(trainer={"max_epochs": 2, "steps_per_epoch": 6})
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted) as stopped:
        run_training(experiment, run, quiet=True, callbacks=[RaiseInStep()])
    last = run / "checkpoints" / "last.ckpt"
    assert stopped.value.checkpoint == last
    assert stopped.value.message == (
        "Interrupted at step 8 (epoch 1) in the middle of a step: nothing was saved there. "
        f"Resume with --resume, from {last}."
    )
    assert not (run / "checkpoints" / "interrupted.ckpt").exists()
    assert run_training(experiment, run, resume=True, quiet=True).steps == 12


def test_ctrl_c_before_the_first_step_stops_before_training(
    make_experiment: MakeExperiment, tmp_path: Path
) -> None:
    class CtrlCAtStart(pl.Callback):
        def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            signal.raise_signal(signal.SIGINT)

    experiment = make_experiment()
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted) as stopped:
        run_training(experiment, run, quiet=True, callbacks=[CtrlCAtStart()])
    assert stopped.value.checkpoint is None
    assert stopped.value.message == (
        "Interrupted at step 0 (epoch 0), before any checkpoint; --resume starts the run from "
        "the beginning."
    )
    assert not (run / "checkpoints").exists()
    assert run_training(experiment, run, resume=True, quiet=True).steps == 5


class _StopAfterFirstEpoch(pl.Callback):
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == 0:
            trainer.should_stop = True


def test_resume_at_an_epoch_boundary_gives_the_same_weights_as_a_straight_run(
    make_experiment: MakeExperiment, tmp_path: Path
) -> None:
    """CPU, deterministic: 2 epochs straight == 1 epoch, stop, resume (bit for bit)."""
    experiment = make_experiment(
        trainer={"max_epochs": 2, "deterministic": True, "steps_per_epoch": 6},
        optim={"schedule": "cosine"},
        method={"co_annotation": "soft", "distribution_matching": True},
    )
    straight = run_training(experiment, tmp_path / "straight", quiet=True)
    first = run_training(experiment, tmp_path / "resumed", quiet=True,
                         callbacks=[_StopAfterFirstEpoch()])
    assert first.steps == 6
    half = _state(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    (tmp_path / "resumed" / "metrics.json").unlink()  # as if it had stopped there
    resumed = run_training(experiment, tmp_path / "resumed", resume=True, quiet=True)
    assert straight.steps == resumed.steps == 12
    _assert_same_weights(tmp_path / "straight", tmp_path / "resumed")
    again = _state(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert any(not torch.equal(half[k], again[k]) for k in half)  # the second epoch did train
    assert resumed.metrics == straight.metrics


def test_resume_refuses_a_missing_folder_an_empty_one_and_overwrite(
    make_experiment: MakeExperiment, tmp_path: Path
) -> None:
    experiment = make_experiment()
    with pytest.raises(OutputError, match=r"cannot resume .*new: no such folder \(start the run "
                                          r"without --resume\)"):
        run_training(experiment, tmp_path / "new", resume=True, quiet=True)
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(OutputError, match=r"empty: it holds no run \(no config.yaml\)"):
        run_training(experiment, tmp_path / "empty", resume=True, quiet=True)
    run_training(experiment, tmp_path / "run", quiet=True)
    with pytest.raises(OutputError, match="--resume and --overwrite cannot be combined"):
        run_training(experiment, tmp_path / "run", resume=True, overwrite=True, quiet=True)
    assert (tmp_path / "run" / "metrics.json").is_file()  # nothing was deleted


def test_resume_of_a_run_stopped_before_its_first_checkpoint_trains_from_the_start(
    make_experiment: MakeExperiment, tmp_path: Path
) -> None:
    experiment = make_experiment()
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(experiment.config))
    assert run_training(experiment, run, resume=True, quiet=True).steps == 5


def test_resume_of_a_finished_run_trains_nothing(
    make_experiment: MakeExperiment, tmp_path: Path
) -> None:
    experiment = make_experiment()
    run = tmp_path / "run"
    first = run_training(experiment, run, quiet=True)
    stamps = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    again = run_training(experiment, run, resume=True, quiet=True)
    assert again.finished_before and not first.finished_before
    assert (again.metrics, again.steps, again.split) == (first.metrics, first.steps, first.split)
    assert again.checkpoint == first.checkpoint
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == stamps


def test_resume_refuses_a_changed_config_listing_every_difference(
    make_experiment: MakeExperiment, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    run_training(make_experiment(optim={"schedule": "cosine"}), run, quiet=True)
    before = json.loads((run / "metrics.json").read_text())
    changed = make_experiment(optim={"schedule": "cosine", "lr": 0.001},
                              trainer={"max_epochs": 2, "progress_bar": True})
    with pytest.raises(OutputError) as refused:
        run_training(changed, run, resume=True, quiet=True, progress_bar=False)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"cannot resume {run}: the config differs from the run's (")
    assert ("optim.lr: 0.01 -> 0.001; trainer.max_epochs: 1 -> 2 (it sets the length of the "
            "cosine learning-rate schedule))") in message
    assert "progress_bar" not in message  # how progress is shown may change freely
    assert "pass --allow-config-change to go on with the new one" in message
    assert json.loads((run / "metrics.json").read_text()) == before  # nothing touched
    # allowed: training goes on for the second epoch, and the change is recorded
    result = run_training(changed, run, resume=True, allow_config_change=True, quiet=True,
                          progress_bar=False)
    assert result.steps == 10 and not result.finished_before
    history = json.loads((run / "config_changes.json").read_text())
    assert len(history) == 1
    assert history[0]["resumed_from"] == str(run / "checkpoints" / "last.ckpt")
    assert history[0]["changes"] == [
        {"path": "optim.lr", "old": 0.01, "new": 0.001},
        {"path": "trainer.max_epochs", "old": 1, "new": 2},
    ]
    assert history[0]["metrics_before"] == before  # the first result is kept there
    assert validate_config(yaml.safe_load((run / "config.yaml").read_text())) == changed.config
    assert json.loads((run / "metrics.json").read_text())["steps"] == 10


def test_resume_with_a_changed_architecture_is_one_clear_error(
    make_experiment: MakeExperiment, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    run_training(make_experiment(), run, quiet=True)
    wider = make_experiment(backbone={"name": "mlp", "options": {"hidden": [48]}})
    with pytest.raises(OutputError, match=r"backbone.options.hidden.0: 32 -> 48"):
        run_training(wider, run, resume=True, quiet=True)
    with pytest.raises(RunError) as refused:
        run_training(wider, run, resume=True, allow_config_change=True, quiet=True)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"cannot resume from {run / 'checkpoints' / 'last.ckpt'}: its "
                              "weights do not fit the model this config builds (")
    assert "model.backbone.1.weight is [32, 64] in the checkpoint, [48, 64] now" in message
    assert message.endswith("the architecture (backbone, heads, tasks) cannot change on "
                            "resume: start a new run")


def test_an_unreadable_checkpoint_is_one_clear_error(
    make_experiment: MakeExperiment, tmp_path: Path
) -> None:
    experiment = make_experiment()
    run = tmp_path / "run"
    run_training(experiment, run, quiet=True)
    (run / "metrics.json").unlink()
    broken = run / "checkpoints" / "interrupted.ckpt"
    broken.write_bytes((run / "checkpoints" / "last.ckpt").read_bytes()[:1000])
    with pytest.raises(RunError, match=rf"cannot resume from {broken}: not a readable checkpoint "
                                       r"\(.*\); delete it to resume from the one before"):
        run_training(experiment, run, resume=True, quiet=True)
    broken.unlink()
    assert run_training(experiment, run, resume=True, quiet=True).steps == 5


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


def test_workers_start_from_a_fork_server_under_ddp_only(
    make_experiment: MakeExperiment,
) -> None:
    """Under DDP a forked worker could inherit a lock held by a communication thread."""
    experiment = make_experiment(trainer={"num_workers": 1})
    ddp = [train_loader(experiment, rank=0, world_size=2),
           eval_loader(experiment, "test", rank=0, world_size=2)]
    alone = [train_loader(experiment), eval_loader(experiment, "test")]
    assert all(loader is not None and isinstance(
        loader.multiprocessing_context, type(multiprocessing.get_context("forkserver")))
        for loader in ddp)
    assert all(loader is not None and loader.multiprocessing_context is None
               for loader in alone)


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


def test_resume_keeps_the_guards_weights_and_the_best_selection(
    tiny_data: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    """With the guard, early stopping on val/selection and the best checkpoint: stop after
    epoch 1, resume, and end where a straight run ends (weights, guard, best step)."""
    data = tiny_data(
        trainer={"max_epochs": 3, "steps_per_epoch": 6, "deterministic": True,
                 "monitor": "val/selection", "early_stopping": {"enabled": True, "patience": 5}},
        method={"co_annotation": "soft", "distribution_matching": True, "guard": True},
        output={"checkpoint": "best"},
    )
    data["sources"][0]["val_fraction"] = 0.2
    experiment = build_experiment(validate_config(data))
    straight = run_training(experiment, tmp_path / "straight", quiet=True)
    run_training(experiment, tmp_path / "resumed", quiet=True, callbacks=[_StopAfterFirstEpoch()])
    (tmp_path / "resumed" / "metrics.json").unlink()
    resumed = run_training(experiment, tmp_path / "resumed", resume=True, quiet=True)
    _assert_same_weights(tmp_path / "straight", tmp_path / "resumed")
    assert resumed.best_step == straight.best_step is not None
    saved = [
        torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
        for run in (tmp_path / "straight", tmp_path / "resumed")
    ]
    assert saved[0]["dmtl_guard"] == saved[1]["dmtl_guard"]
    assert set(saved[0]["dmtl_guard"]) == {
        name for name in saved[0]["dmtl_guard"] if name.startswith(("ca", "dm"))
    } != set()
    assert saved[0]["dmtl_selection"] == saved[1]["dmtl_selection"]
    assert resumed.metrics == straight.metrics
