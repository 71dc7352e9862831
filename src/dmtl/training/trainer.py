"""Lightning ``Trainer`` construction from a :class:`~dmtl.config.Config`.

Outputs of a run folder::

    <run>/config.yaml            the resolved config
    <run>/checkpoints/last.ckpt  (and best-*.ckpt when a monitor is set)
    <run>/logs/metrics.csv       every loss term and metric (CSVLogger)
    <run>/logs/events.*          TensorBoard, when output.tensorboard is on
    <run>/relatedness/*.csv      the tables used, one per edge
    <run>/regime.json            what the label-hiding regime hid
    <run>/metrics.json           final evaluation
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger

from dmtl.config import Config
from dmtl.errors import OutputError, RunError


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
     "results.json", "report.md", "runs", "lightning_logs"}
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

    ``overwrite`` deletes only a folder that holds dmtl's outputs and nothing else, and never
    the current folder or one above it.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        if overwrite:
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
        elif not resume:
            raise OutputError(
                f"output folder {run_dir} already exists and is not empty; pass --resume to "
                "continue it or --overwrite to replace it (its results will be deleted)"
            )
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def last_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint to resume from: the newer of ``last.ckpt`` and ``interrupted.ckpt``.

    After Ctrl-C both exist, and ``interrupted.ckpt`` (mid-epoch) is the later state; once
    the resumed run has saved ``last.ckpt`` again, that one is. Ties go to ``last.ckpt``.
    """
    found = [
        path
        for path in (Path(run_dir) / "checkpoints" / n for n in ("last.ckpt", "interrupted.ckpt"))
        if path.is_file()
    ]
    if not found:
        return None
    return max(found, key=lambda path: path.stat().st_mtime_ns)  # first of equals: last.ckpt


class SaveOnInterrupt(Callback):
    """On Ctrl-C (SIGINT), save ``checkpoints/interrupted.ckpt`` and say how to resume."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, KeyboardInterrupt):
            return
        path = self.run_dir / "checkpoints" / "interrupted.ckpt"
        path.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(path)
        if trainer.is_global_zero:
            print(
                f"\nInterrupted at step {trainer.global_step} (epoch {trainer.current_epoch}); "
                f"checkpoint saved to {path}. Resume with --resume."
            )


def build_trainer(
    config: Config,
    run_dir: Path,
    has_validation: bool,
    extra_callbacks: list[Callback] | None = None,
    enable_progress_bar: bool | None = None,
    quiet: bool = False,
) -> pl.Trainer:
    """A Lightning ``Trainer`` logging to ``run_dir``; last/best checkpoints, Ctrl-C safety."""
    cfg = config.trainer
    loggers: list[Logger] = [CSVLogger(save_dir=str(run_dir), name="", version="logs")]
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
        SaveOnInterrupt(run_dir),
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
