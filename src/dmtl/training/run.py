"""One training run: experiment -> LightningModule -> fit -> evaluate, with its outputs on disk."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from dmtl.build import ModelSpec, edge_to_dict
from dmtl.build.data import Experiment
from dmtl.build.loaders import eval_loader, train_loader
from dmtl.config import Config, dump_config
from dmtl.errors import RunError
from dmtl.training.affinity import resolve_architecture
from dmtl.training.interrupt import (
    GracefulStop,
    StopSignal,
    StopTraining,
    TrainingInterrupted,
    stop_message,
)
from dmtl.training.module import MultiTaskModule
from dmtl.training.resume import (
    ConfigChange,
    check_checkpoint_fits,
    check_resume,
    finished_summary,
    record_config_changes,
)
from dmtl.training.threads import set_threads
from dmtl.training.trainer import (
    build_trainer,
    last_checkpoint,
    launch_rank,
    prepare_run_dir,
    refuse_resume_with_overwrite,
)


@dataclasses.dataclass
class RunResult:
    """What a finished run reports."""

    run_dir: Path
    metrics: dict[str, float | None]
    split: str
    steps: int
    wall_s: float
    checkpoint: Path | None
    epochs: int | None = None
    """Epochs trained (including an incomplete last one)."""
    best_step: int | None = None
    """The step of the best validation selection metric (``val/selection``), if validated."""
    stopped_early: bool | None = None
    """Whether early stopping ended the run before its budget (``None``: no early stopping)."""
    finished_before: bool = False
    """True when a resume found the run already finished (nothing was trained)."""
    val_metrics: dict[str, float | None] = dataclasses.field(default_factory=dict)
    """The evaluated checkpoint's metrics on the validation split (``{}`` without one; the
    same as ``metrics`` when validation is the split evaluated)."""


def model_spec(experiment: Experiment) -> ModelSpec:
    """The plain-data recipe of the model an experiment trains (stored in checkpoints)."""
    return ModelSpec(
        config=experiment.config.model_dump(mode="json"),
        tasks=[t.to_dict() for t in experiment.tasks],
        edges=[edge_to_dict(e) for e in experiment.edges],
        input_shape=list(experiment.input_shape),
        priors=experiment.priors(),
        source_names=[s.name for s in experiment.train],
        validated=experiment.config,  # validated once, when the run read it
    )


def make_module(experiment: Experiment, steps_per_epoch: int) -> MultiTaskModule:
    """The Lightning module of an experiment, built through the factories."""
    return MultiTaskModule.from_spec(model_spec(experiment), steps_per_epoch=steps_per_epoch)


def write_run_files(experiment: Experiment, run_dir: Path) -> None:
    """The resolved config, the relatedness tables and the regime records beside the outputs."""
    # whole or not at all: under DDP the other ranks read it to check a resume
    temporary = run_dir / ".config.yaml.tmp"
    temporary.write_text(dump_config(experiment.config))
    temporary.replace(run_dir / "config.yaml")
    (run_dir / "regime.json").write_text(json.dumps(experiment.records, indent=2, default=str))
    if experiment.edges:
        folder = run_dir / "relatedness"
        folder.mkdir(exist_ok=True)
        for edge in experiment.edges:
            edge.to_csv(folder / f"{edge.source.name}__{edge.target.name}.csv")


def run_training(
    experiment: Experiment,
    run_dir: Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    allow_config_change: bool = False,
    steps_per_epoch: int | None = None,
    quiet: bool = False,
    progress_bar: bool | None = None,
    callbacks: list[pl.Callback] | None = None,
) -> RunResult:
    """Train on ``experiment``, evaluate on its test split (else validation), write the outputs.

    ``resume``: continue the run in ``run_dir`` from its latest checkpoint, exactly where it
    stopped (the folder must hold that run, configured as ``experiment.config`` unless
    ``allow_config_change``; see :func:`~dmtl.training.resume.check_resume`). A run that
    had finished is not trained again: its result is returned with ``finished_before``.
    ``overwrite``: replace the outputs in ``run_dir``. On Ctrl-C, raises
    :class:`~dmtl.training.interrupt.TrainingInterrupted` once the checkpoint is saved.
    """
    experiment = resolve_architecture(experiment)  # architecture: branch, auto
    config: Config = experiment.config
    if not config.method.distribution_matching:
        experiment = experiment.without_unlabelled()  # nothing else learns from them
    run_dir = Path(run_dir)
    changes = _check_resume(run_dir, config, resume, overwrite, allow_config_change)
    if resume and not changes and (finished := finished_summary(run_dir)) is not None:
        return _finished_result(run_dir, finished)
    _prepare_process(experiment, run_dir, resume, overwrite)
    # The Trainer first: it knows this process's rank and the world size before the process
    # group exists, and the samplers must shard each global batch with them.
    stop = StopSignal()
    trainer = build_trainer(
        _trainer_config(config),
        run_dir,
        has_validation=bool(experiment.val),
        extra_callbacks=callbacks,
        enable_progress_bar=progress_bar,
        quiet=quiet,
        stop=stop,
    )
    set_threads(config.trainer.num_threads, processes=trainer.num_devices)
    ranks = {"rank": trainer.global_rank, "world_size": trainer.world_size}
    loader = train_loader(experiment, steps_per_epoch, **ranks)
    module = make_module(experiment, steps_per_epoch=len(loader))
    ckpt = last_checkpoint(run_dir) if resume else None
    if ckpt is not None:
        check_checkpoint_fits(module, ckpt)
    if trainer.global_rank == 0:
        if changes:
            record_config_changes(run_dir, changes, ckpt)
        write_run_files(experiment, run_dir)
    val_loader = eval_loader(experiment, "val", **ranks)
    with stop:
        start = time.perf_counter()
        _fit(trainer, module, loader, val_loader, ckpt)
        wall = time.perf_counter() - start
        checkpoint = _chosen_checkpoint(trainer, config)
        split = "test" if experiment.test else "val"
        metrics = _evaluate(trainer, module, experiment, split, checkpoint)
        val_metrics = metrics if split == "val" else (
            _evaluate(trainer, module, experiment, "val", checkpoint) if experiment.val else {}
        )
    result = _run_result(run_dir, trainer, module, metrics, split, wall, checkpoint)
    result = dataclasses.replace(result, val_metrics=val_metrics)
    if trainer.is_global_zero:
        _write_summary(result)
    return result


def _run_result(
    run_dir: Path,
    trainer: pl.Trainer,
    module: MultiTaskModule,
    metrics: dict[str, float | None],
    split: str,
    wall: float,
    checkpoint: Path | None,
) -> RunResult:
    """What the run gives back: its test metrics, the steps and epochs it took, the step it
    was selected at and whether early stopping ended it."""
    stopper = trainer.early_stopping_callback
    return RunResult(
        run_dir,
        metrics,
        split,
        int(trainer.global_step),
        wall,
        checkpoint,
        epochs=int(trainer.current_epoch),
        best_step=module.best_step,
        stopped_early=None if stopper is None else bool(stopper.stopped_epoch > 0),
    )


def _trainer_config(config: Config) -> Config:
    """The config the trainer sees: with a gradient aggregator the module optimises by hand
    and clips itself, and Lightning refuses to clip under manual optimisation."""
    if config.method.aggregator == "sum" or config.trainer.gradient_clip_val is None:
        return config
    trainer = config.trainer.model_copy(update={"gradient_clip_val": None})
    return config.model_copy(update={"trainer": trainer})


def _prepare_process(
    experiment: Experiment, run_dir: Path, resume: bool, overwrite: bool
) -> None:
    """The output folder (on the first rank), the seed and determinism."""
    config = experiment.config
    # Under DDP every rank runs this function; only the first one prepares and writes the
    # folder (another rank would find it non-empty, or delete it, as it is being written).
    if launch_rank() == 0:
        prepare_run_dir(run_dir, resume=resume, overwrite=overwrite)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(experiment.seed, workers=True, verbose=False)
    if config.trainer.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def _write_summary(result: RunResult) -> None:
    """``metrics.json``: the final evaluation; its presence marks the run as finished."""
    summary: dict[str, Any] = {
        "split": result.split,
        "metrics": result.metrics,
        "val_metrics": result.val_metrics,
        "steps": result.steps,
        "epochs": result.epochs,
        "best_step": result.best_step,
        "stopped_early": result.stopped_early,
        "wall_s": result.wall_s,
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
    }
    (result.run_dir / "metrics.json").write_text(json.dumps(summary, indent=2))


def _check_resume(
    run_dir: Path, config: Config, resume: bool, overwrite: bool, allow_config_change: bool
) -> list[ConfigChange]:
    """The checks of a resume, made on every rank (they only read): the changes allowed."""
    refuse_resume_with_overwrite(run_dir, resume, overwrite)
    return check_resume(run_dir, config, allow_config_change) if resume else []


def _finished_result(run_dir: Path, summary: dict[str, Any]) -> RunResult:
    checkpoint = summary.get("checkpoint")
    return RunResult(
        run_dir,
        dict(summary["metrics"]),
        str(summary["split"]),
        int(summary["steps"]),
        float(summary["wall_s"]),
        Path(checkpoint) if checkpoint else None,
        epochs=summary.get("epochs"),
        best_step=summary.get("best_step"),
        stopped_early=summary.get("stopped_early"),
        finished_before=True,
        val_metrics=dict(summary.get("val_metrics") or {}),
    )


def _fit(
    trainer: pl.Trainer,
    module: MultiTaskModule,
    loader: DataLoader,
    val_loader: DataLoader | None,
    ckpt: Path | None,
) -> None:
    """``trainer.fit``; a stop on Ctrl-C becomes :class:`TrainingInterrupted` with its message."""
    stop = _graceful_stop(trainer)
    try:
        trainer.fit(module, train_dataloaders=loader, val_dataloaders=val_loader,
                    ckpt_path=ckpt, weights_only=True)
    except StopTraining as stopped:
        raise TrainingInterrupted(
            stop_message(stopped.checkpoint, trainer, after_training=False), stopped.checkpoint
        ) from None
    except SystemExit:
        if not stop.raw_interrupt:
            raise
        # Lightning's answer to a KeyboardInterrupt raised by code: the last checkpoint stands
        last = last_checkpoint(Path(stop.run_dir))
        message = stop_message(last, trainer, after_training=False, saved_now=False)
        raise TrainingInterrupted(message, last) from None
    if stop.stopped_after_training:
        last = _chosen_checkpoint(trainer, module.config)
        raise TrainingInterrupted(stop_message(last, trainer, after_training=True), last)


def _evaluate(
    trainer: pl.Trainer, module: MultiTaskModule, experiment: Experiment, split: str,
    checkpoint: Path | None,
) -> dict[str, float | None]:
    try:
        return evaluate_module(trainer, module, experiment, split, checkpoint)
    except StopTraining:
        raise TrainingInterrupted(
            stop_message(checkpoint, trainer, after_training=True), checkpoint
        ) from None


def _graceful_stop(trainer: pl.Trainer) -> GracefulStop:
    found = [c for c in trainer.callbacks if isinstance(c, GracefulStop)]  # type: ignore[attr-defined]
    if not found:
        raise RunError("the trainer has no GracefulStop callback (build it with build_trainer)")
    return found[0]


def _chosen_checkpoint(trainer: pl.Trainer, config: Config) -> Path | None:
    callback = trainer.checkpoint_callback
    if callback is None:
        return None
    best = getattr(callback, "best_model_path", "")
    last = getattr(callback, "last_model_path", "")
    chosen = best if config.output.checkpoint == "best" and best else last
    return Path(chosen) if chosen else None


def evaluate_module(
    trainer: pl.Trainer,
    module: MultiTaskModule,
    experiment: Experiment,
    split: str,
    checkpoint: Path | None = None,
) -> dict[str, float | None]:
    """Metrics of ``module`` (or of ``checkpoint``) on a split, as a flat dict."""
    loader = eval_loader(experiment, split, rank=trainer.global_rank, world_size=trainer.world_size)
    if loader is None:
        return {}
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        module.load_state_dict(state["state_dict"])
    trainer.test(module, dataloaders=loader, verbose=False)
    return dict(getattr(module, "last_test_metrics", {}))
