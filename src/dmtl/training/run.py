"""One training run: experiment -> LightningModule -> fit -> evaluate, with its outputs on disk."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from dmtl.build import ModelSpec, edge_to_dict
from dmtl.config import Config, dump_config
from dmtl.data.loaders import eval_loader, train_loader
from dmtl.data.pipeline import Experiment
from dmtl.training.module import MultiTaskModule
from dmtl.training.threads import set_threads
from dmtl.training.trainer import build_trainer, last_checkpoint, launch_rank, prepare_run_dir


@dataclass
class RunResult:
    """What a finished run reports."""

    run_dir: Path
    metrics: dict[str, float | None]
    split: str
    steps: int
    wall_s: float
    checkpoint: Path | None


def model_spec(experiment: Experiment) -> ModelSpec:
    """The plain-data recipe of the model an experiment trains (stored in checkpoints)."""
    return ModelSpec(
        config=experiment.config.model_dump(mode="json"),
        tasks=[t.to_dict() for t in experiment.tasks],
        edges=[edge_to_dict(e) for e in experiment.edges],
        input_shape=list(experiment.input_shape),
        priors=experiment.priors(),
        source_names=[s.name for s in experiment.train],
    )


def make_module(experiment: Experiment, steps_per_epoch: int) -> MultiTaskModule:
    """The Lightning module of an experiment, built through the factories."""
    return MultiTaskModule.from_spec(model_spec(experiment), steps_per_epoch=steps_per_epoch)


def write_run_files(experiment: Experiment, run_dir: Path) -> None:
    """The resolved config, the relatedness tables and the regime records beside the outputs."""
    (run_dir / "config.yaml").write_text(dump_config(experiment.config))
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
    steps_per_epoch: int | None = None,
    quiet: bool = False,
    progress_bar: bool | None = None,
    callbacks: list[pl.Callback] | None = None,
) -> RunResult:
    """Train on ``experiment``, evaluate on its test split (else validation), write the outputs."""
    config: Config = experiment.config
    # Under DDP every rank runs this function; only the first one prepares and writes the
    # folder (another rank would find it non-empty, or delete it, as it is being written).
    if launch_rank() == 0:
        run_dir = prepare_run_dir(Path(run_dir), resume=resume, overwrite=overwrite)
    else:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(experiment.seed, workers=True, verbose=False)
    if config.trainer.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    # The Trainer first: it knows this process's rank and the world size before the process
    # group exists, and the samplers must shard each global batch with them.
    trainer = build_trainer(
        config,
        run_dir,
        has_validation=bool(experiment.val),
        extra_callbacks=callbacks,
        enable_progress_bar=progress_bar,
        quiet=quiet,
    )
    set_threads(config.trainer.num_threads, processes=trainer.num_devices)
    ranks = {"rank": trainer.global_rank, "world_size": trainer.world_size}
    loader = train_loader(experiment, steps_per_epoch, **ranks)
    module = make_module(experiment, steps_per_epoch=len(loader))
    if trainer.global_rank == 0:
        write_run_files(experiment, run_dir)
    val_loader = eval_loader(experiment, "val", **ranks)
    ckpt = last_checkpoint(run_dir) if resume else None
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=val_loader, ckpt_path=ckpt)
    wall = time.perf_counter() - start
    checkpoint = _chosen_checkpoint(trainer, config)
    split = "test" if experiment.test else "val"
    metrics = evaluate_module(trainer, module, experiment, split, checkpoint)
    result = RunResult(run_dir, metrics, split, int(trainer.global_step), wall, checkpoint)
    summary: dict[str, Any] = {
        "split": split,
        "metrics": metrics,
        "steps": result.steps,
        "wall_s": wall,
        "checkpoint": str(checkpoint) if checkpoint else None,
    }
    if trainer.is_global_zero:
        (run_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    return result


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
