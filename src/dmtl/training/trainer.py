"""Lightning ``Trainer`` construction from a :class:`~dmtl.config.Config`.

Outputs of a run folder::

    <run>/config.yaml            the resolved config
    <run>/checkpoints/last.ckpt  (and best-*.ckpt when a monitor is set)
    <run>/checkpoints/interrupted.ckpt  where Ctrl-C stopped training
    <run>/logs/metrics.csv       every loss term and metric (CSVLogger, always; a resume appends)
    <run>/logs/events.*          TensorBoard, with output.loggers: [tensorboard]
    <run>/logs/tracking.json     the MLflow run id / W&B run id (a resumed run continues them)
    <run>/wandb/                 W&B's local files, with output.loggers: [wandb]
    <run>/config_changes.json    the config changes a resume was allowed to make
    <run>/relatedness/*.csv      the tables used, one per edge
    <run>/regime.json            what the label-hiding regime hid
    <run>/metrics.json           final evaluation
"""

from __future__ import annotations

import csv
import difflib
import json
import os
import pickle
import re
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from dmtl.config import Config
from dmtl.core.metrics import MAX_PER_OUTPUT_METRICS
from dmtl.core.tasks import Task
from dmtl.errors import ConfigError, MissingDependencyError, RunError
from dmtl.training.callbacks import CheapCudaChecks, EarlyStoppingAfter
from dmtl.training.interrupt import GracefulStop, StopSignal
from dmtl.training.resume import ExactResume
from dmtl.training.rundir import (  # re-exported; they live where no torch is imported
    launch_rank as launch_rank,
)
from dmtl.training.rundir import (
    prepare_run_dir as prepare_run_dir,
)
from dmtl.training.rundir import (
    refuse_resume_with_overwrite as refuse_resume_with_overwrite,
)


def monitor_names(tasks: Sequence[Task]) -> list[str]:
    """Every name ``trainer.monitor`` may take: ``val/loss``, ``val/selection`` (the mean over
    tasks of their primary metric) and each ``val/<task>/<metric>`` the module logs
    (per-output metrics for tasks of at most ``MAX_PER_OUTPUT_METRICS``)."""
    names = ["val/loss", "val/selection"]
    for task in tasks:
        per_output = task.num_outputs <= MAX_PER_OUTPUT_METRICS
        names += [f"val/{task.name}/{metric}" for metric in task.metric_names(per_output)]
    return names


def monitor_mode(monitor: str) -> str:
    """``min`` for a loss or an error (``.../mse``), ``max`` for a score."""
    return "min" if monitor.endswith(("loss", "/mse")) else "max"


def check_monitor(config: Config, tasks: Sequence[Task]) -> None:
    """Refuse a ``trainer.monitor`` that names no logged metric, before any training
    (Lightning finds out only at the end of the first epoch)."""
    monitor = config.trainer.monitor
    if monitor is None:
        return
    names = monitor_names(tasks)
    if monitor in names:
        return
    close = difflib.get_close_matches(monitor, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    shown = ["val/loss"]
    for task in tasks:
        shown += [f"val/{task.name}/{m}" for m in task.metric_names(per_output=False)]
        per = sorted(set(task.metric_names(per_output=True)) - set(task.metric_names(False)))
        if per and task.num_outputs <= MAX_PER_OUTPUT_METRICS:
            shown.append(f"val/{task.name}/{per[0].split('/')[0]}/<{task.output_word}>")
    raise ConfigError(
        [("trainer.monitor", f"{monitor!r} is not a logged metric{hint}; valid: "
          f"{', '.join(shown)}")]
    )


def last_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint to resume from: the later of ``last.ckpt`` and ``interrupted.ckpt``.

    Later by the training step each holds (not by file time, which a coarse file system
    may give both alike); at the same step, ``last.ckpt``. An unreadable one comes first,
    so that resuming says what is wrong with it.
    """
    found = [
        path
        for path in (Path(run_dir) / "checkpoints" / n for n in ("last.ckpt", "interrupted.ckpt"))
        if path.is_file()
    ]
    if not found:
        return None

    def order(path: Path) -> tuple[bool, int, bool]:
        step = _global_step(path)
        return step is None, step or 0, path.name == "last.ckpt"

    return max(found, key=order)


def _global_step(path: Path) -> int | None:
    """The training step a checkpoint was saved at, or None if it cannot be read."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(checkpoint["global_step"])
    except (OSError, RuntimeError, EOFError, KeyError, TypeError, ValueError,
            pickle.UnpicklingError):  # the resume that reads it says what is wrong
        return None


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, except that an existing ``metrics.csv`` is continued.

    Lightning's writer deletes the file it finds (every row logged before a resume would
    be lost); this one keeps it, takes its header, and appends. A new column rewrites the
    file with the wider header, old rows kept (Lightning's own mechanism).
    """

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as file:
                self.metrics_keys = next(csv.reader(file), [])

    def _check_log_dir_exists(self) -> None:
        """Lightning deletes ``metrics.csv`` here; a resumed run keeps it."""


class AppendingCSVLogger(CSVLogger):
    """:class:`~lightning.pytorch.loggers.CSVLogger` that appends to an existing ``metrics.csv``."""

    @property
    def experiment(self) -> ExperimentWriter:
        if not isinstance(self._experiment, ExperimentWriter):
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def build_trainer(
    config: Config,
    run_dir: Path,
    has_validation: bool,
    extra_callbacks: list[Callback] | None = None,
    enable_progress_bar: bool | None = None,
    quiet: bool = False,
    stop: StopSignal | None = None,
) -> pl.Trainer:
    """A Lightning ``Trainer`` logging to ``run_dir``; last/best checkpoints, exact resume,
    Ctrl-C safety.

    ``stop``: the Ctrl-C flag :class:`~dmtl.training.interrupt.GracefulStop` watches (a new
    one if not given; hold it with ``with stop:`` around ``fit``).
    """
    cfg = config.trainer
    loggers = build_loggers(config, run_dir)
    monitor = cfg.monitor if has_validation else None
    progress = cfg.progress_bar if enable_progress_bar is None else enable_progress_bar
    callbacks = _callbacks(config, run_dir, monitor, progress, extra_callbacks, stop)
    kwargs: dict[str, Any] = {
        "accelerator": cfg.accelerator,
        "devices": cfg.devices,
        "num_nodes": cfg.num_nodes,
        "strategy": cfg.strategy,
        "precision": cfg.precision,
        "deterministic": cfg.deterministic,
        "max_epochs": cfg.max_epochs,
        "logger": loggers,
        "callbacks": callbacks,
        "enable_progress_bar": progress,
        "enable_model_summary": not quiet,
        "log_every_n_steps": cfg.log_every_n_steps,
        "gradient_clip_val": cfg.gradient_clip_val,
        "num_sanity_val_steps": 0,
        "use_distributed_sampler": False,  # the multi-source sampler shards by rank itself
        "default_root_dir": str(run_dir),
    }
    if not has_validation:
        kwargs["limit_val_batches"] = 0
    try:
        return pl.Trainer(**kwargs)
    except (MisconfigurationException, ValueError, RuntimeError) as error:
        raise RunError(
            f"trainer: {error} (check trainer.accelerator={cfg.accelerator!r}, "
            f"devices={cfg.devices!r}, num_nodes={cfg.num_nodes}, strategy={cfg.strategy!r}, "
            f"precision={cfg.precision!r})"
        ) from None


def _callbacks(
    config: Config,
    run_dir: Path,
    monitor: str | None,
    progress: bool,
    extra_callbacks: list[Callback] | None,
    stop: StopSignal | None,
) -> list[Callback]:
    """Checkpoints (last and best by ``monitor``), exact resume, early stopping, the progress
    bar, the caller's callbacks, and Ctrl-C safety last (it saves at a step's end, after the
    other callbacks' ``on_train_batch_end``)."""
    callbacks: list[Callback] = [
        ModelCheckpoint(
            dirpath=str(run_dir / "checkpoints"),
            save_last=True,
            monitor=monitor,
            mode=monitor_mode(monitor) if monitor else "max",
            filename="best-{epoch}-{step}" if monitor else "epoch-{epoch}",
            save_top_k=1,
            auto_insert_metric_name=False,
        ),
        ExactResume(),
        CheapCudaChecks(),
    ]
    early_stopping = config.trainer.early_stopping
    if early_stopping.enabled and monitor:
        callbacks.append(
            EarlyStoppingAfter(
                monitor=monitor,
                patience=early_stopping.patience,
                mode=monitor_mode(monitor),
                min_epochs=early_stopping.min_epochs,
            )
        )
    if progress:
        callbacks.append(RichProgressBar(leave=False))
    callbacks.extend(extra_callbacks or [])
    callbacks.append(GracefulStop(run_dir, stop or StopSignal()))
    return callbacks


# ---- experiment tracking -------------------------------------------------------------------------

TRACKING_FILE = "tracking.json"
"""``<run>/logs/tracking.json``: tracker run ids, so that a resumed run logs to the same runs."""

_EXTRAS = {
    "tensorboard": ("tensorboard", "pip install 'dmtl[tensorboard]'"),
    "mlflow": ("mlflow", "pip install 'dmtl[mlflow]'"),
    "wandb": ("wandb", "pip install 'dmtl[wandb]'"),
}


def run_name(run_dir: Path) -> str:
    """A run's name for trackers: its path below a study's ``runs/`` folder (``seed0/mtl``),
    else the folder's name."""
    parts = Path(run_dir).parts
    if "runs" in parts[:-1]:
        below = len(parts) - 1 - parts[::-1].index("runs")
        return "/".join(parts[below + 1 :])
    return Path(run_dir).name


def build_loggers(config: Config, run_dir: Path) -> list[Logger]:
    """Lightning loggers of ``output.loggers``: CSV always, then TensorBoard, MLflow, W&B.

    MLflow and W&B runs are named by :func:`run_name` and get the resolved config as their
    parameters; their ids are kept in ``logs/tracking.json``, so that a resumed run logs to
    the same tracker runs.
    """
    run_dir = Path(run_dir)
    loggers: list[Logger] = [AppendingCSVLogger(save_dir=str(run_dir), name="", version="logs")]
    ids_file = run_dir / "logs" / TRACKING_FILE
    ids: dict[str, str] = json.loads(ids_file.read_text()) if ids_file.is_file() else {}
    new_trackers: list[Logger] = []
    for name in config.output.loggers:
        if name == "tensorboard":
            loggers.append(
                _logger("tensorboard", "TensorBoardLogger", save_dir=str(run_dir), name="",
                        version="logs")
            )
            continue
        if name not in ("mlflow", "wandb"):
            continue
        resumed = name in ids
        tracker = _mlflow_logger(config, run_dir, ids) if name == "mlflow" else _wandb_logger(
            config, run_dir, ids
        )
        loggers.append(tracker)
        if not resumed:
            new_trackers.append(tracker)
    if ids and launch_rank() == 0:
        ids_file.parent.mkdir(parents=True, exist_ok=True)
        ids_file.write_text(json.dumps(ids, indent=2))
    if new_trackers:
        hyperparameters = _flat(config.model_dump(mode="json"))
        for tracker in new_trackers:
            tracker.log_hyperparams(hyperparameters)
    return loggers


def _logger(tracker: str, class_name: str, **kwargs: Any) -> Logger:
    """``lightning.pytorch.loggers.<class_name>(**kwargs)``, or how to install its package."""
    from lightning.pytorch import loggers as pl_loggers

    package, extra = _EXTRAS[tracker]
    try:
        logger: Logger = getattr(pl_loggers, class_name)(**kwargs)
    except ModuleNotFoundError as error:
        raise MissingDependencyError(
            f"output.loggers: {tracker} needs the {package} package, which is not installed; "
            f"{extra}"
        ) from error
    return logger


def _mlflow_logger(config: Config, run_dir: Path, ids: dict[str, str]) -> Logger:
    settings = config.output.mlflow
    kwargs: dict[str, Any] = {
        "experiment_name": settings.experiment or config.name,
        "run_name": run_name(run_dir),
        "run_id": ids.get("mlflow"),
    }
    uri = settings.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        kwargs["tracking_uri"] = uri
    try:
        logger = _logger("mlflow", "MLFlowLogger", **kwargs)
        run_id = logger.run_id  # type: ignore[attr-defined]  # starts the run: errors show now
    except Exception as error:  # MlflowException and the stores' own errors
        if not type(error).__module__.startswith("mlflow"):
            raise
        first = re.split(r"(?<=\.)\s", " ".join(str(error).split()))[0][:200].rstrip(".")
        raise RunError(
            f"output.loggers: mlflow cannot start a run at {uri or './mlruns'} ({first}); set "
            "output.mlflow.tracking_uri to a server (http://host:5000) or, with the full mlflow "
            "package, sqlite:///mlflow.db; or MLFLOW_ALLOW_FILE_STORE=true for ./mlruns"
        ) from None
    if run_id:
        ids["mlflow"] = str(run_id)
    return logger


def _wandb_logger(config: Config, run_dir: Path, ids: dict[str, str]) -> Logger:
    """A W&B logger for this run. A W&B run still open in this process (the previous run of
    a study) is finished first: Lightning would otherwise log this run into it."""
    settings = config.output.wandb
    ids.setdefault("wandb", uuid.uuid4().hex[:12])
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()
    kwargs: dict[str, Any] = {
        "project": settings.project or config.name,
        "name": run_name(run_dir),
        "save_dir": str(run_dir),
        "id": ids["wandb"],
        "offline": settings.mode == "offline",
    }
    if settings.entity:
        kwargs["entity"] = settings.entity
    if settings.mode == "online":
        kwargs["mode"] = "online"
    return _logger("wandb", "WandbLogger", **kwargs)


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"trainer.max_epochs": 20, ...}`` from nested mappings (lists as they are)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
