"""Lightning ``Trainer`` construction from a :class:`~dmtl.config.Config`.

Outputs of a run folder::

    <run>/config.yaml            the resolved config
    <run>/checkpoints/last.ckpt  (and best-*.ckpt when a monitor is set)
    <run>/checkpoints/interrupted.ckpt  where Ctrl-C stopped training
    <run>/logs/metrics.csv       every loss term and metric (CSVLogger; a resume appends)
    <run>/config_changes.json    the config changes a resume was allowed to make
    <run>/logs/events.*          TensorBoard, when output.tensorboard is on
    <run>/relatedness/*.csv      the tables used, one per edge
    <run>/regime.json            what the label-hiding regime hid
    <run>/metrics.json           final evaluation
"""

from __future__ import annotations

import csv
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from dmtl.config import Config
from dmtl.errors import OutputError, RunError
from dmtl.training.interrupt import GracefulStop, StopSignal
from dmtl.training.resume import CHANGES_FILE, ExactResume


def launch_rank() -> int:
    """This process's global rank as its launcher set it (torchrun, SLURM, Lightning), else 0.

    Known before any process group exists: the variables Lightning itself reads
    (``RANK``, ``LOCAL_RANK``, ``SLURM_PROCID``, ``JSM_NAMESPACE_RANK``), first one set.
    """
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        value = os.environ.get(key)
        if value is not None and value.strip().isdigit():
            return int(value)
    return 0


OUTPUT_NAMES = frozenset(
    {"config.yaml", "checkpoints", "logs", "metrics.json", "regime.json", "relatedness",
     "results.json", "report.md", "runs", "lightning_logs", CHANGES_FILE}
)
"""What dmtl writes in a run or study folder (plus ``*.png`` plots and hidden temp files)."""


def _foreign_entries(run_dir: Path) -> list[str]:
    """Entries of ``run_dir`` that dmtl did not write."""
    return sorted(
        p.name for p in run_dir.iterdir()
        if p.name not in OUTPUT_NAMES and p.suffix != ".png" and not p.name.startswith(".")
    )


def prepare_run_dir(run_dir: Path, resume: bool = False, overwrite: bool = False) -> Path:
    """Refuse to reuse a non-empty output folder unless ``resume`` or ``overwrite`` is given.

    ``resume`` needs the folder to exist (see :func:`~dmtl.training.resume.check_resume`
    for the rest of what it needs) and cannot be combined with ``overwrite``.
    ``overwrite`` deletes only a folder that holds dmtl's outputs and nothing else, and
    never the current folder or one above it.
    """
    run_dir = Path(run_dir)
    refuse_resume_with_overwrite(run_dir, resume, overwrite)
    if resume and not run_dir.is_dir():
        raise OutputError(
            f"cannot resume {run_dir}: no such folder (start the run without --resume)"
        )
    if run_dir.exists() and any(run_dir.iterdir()):
        if overwrite:
            _delete_outputs(run_dir)
        elif not resume:
            raise OutputError(
                f"output folder {run_dir} already exists and is not empty; pass --resume to "
                "continue it or --overwrite to replace it (its results will be deleted)"
            )
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def refuse_resume_with_overwrite(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """:class:`~dmtl.errors.OutputError` if both are asked for (they contradict each other)."""
    if resume and overwrite:
        raise OutputError(
            "--resume and --overwrite cannot be combined: --resume continues the run in "
            f"{run_dir}, --overwrite deletes it; choose one"
        )


def _delete_outputs(run_dir: Path) -> None:
    resolved, here = run_dir.resolve(), Path.cwd().resolve()
    if resolved == here or resolved in here.parents:
        raise OutputError(
            f"output folder {run_dir} is the current folder or above it; "
            "refusing to delete it (choose another output.dir)"
        )
    foreign = _foreign_entries(run_dir)
    if foreign:
        raise OutputError(
            f"output folder {run_dir} holds files dmtl did not write "
            f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}); "
            "refusing to delete it with --overwrite (choose another output.dir)"
        )
    shutil.rmtree(run_dir)


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
    loggers: list[Logger] = [AppendingCSVLogger(save_dir=str(run_dir), name="", version="logs")]
    if config.output.tensorboard:
        try:
            from lightning.pytorch.loggers import TensorBoardLogger

            loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="", version="logs"))
        except ModuleNotFoundError as error:  # pragma: no cover - depends on the extra
            raise ModuleNotFoundError(
                "TensorBoard logging needs tensorboard: pip install 'dmtl[tensorboard]'"
            ) from error
    monitor = cfg.monitor if has_validation else None
    callbacks: list[Callback] = [
        ModelCheckpoint(
            dirpath=str(run_dir / "checkpoints"),
            save_last=True,
            monitor=monitor,
            mode="min" if monitor and monitor.endswith("loss") else "max",
            filename="best-{epoch}-{step}" if monitor else "epoch-{epoch}",
            save_top_k=1,
            auto_insert_metric_name=False,
        ),
        ExactResume(),
    ]
    if cfg.early_stopping.enabled and monitor:
        callbacks.append(
            EarlyStopping(
                monitor=monitor,
                patience=cfg.early_stopping.patience,
                mode="min" if monitor.endswith("loss") else "max",
            )
        )
    progress = cfg.progress_bar if enable_progress_bar is None else enable_progress_bar
    if progress:
        callbacks.append(RichProgressBar(leave=False))
    callbacks.extend(extra_callbacks or [])
    # last: it saves at a step's end, after the other callbacks' on_train_batch_end
    callbacks.append(GracefulStop(run_dir, stop or StopSignal()))
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
