"""Loaders of an experiment: every source in every training batch, DDP-aware evaluation.

The last step of the data pipeline (load -> split -> regime -> strata -> loaders): the
training loader mixes the strata of :class:`~dmtl.build.data.Experiment` in the
proportions of their weights (:class:`~dmtl.data.batching.MultiSourceBatchSampler`);
evaluation loaders read each source in order.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import DataLoader

from dmtl.build.data import Experiment
from dmtl.data.batching import build_eval_loader, build_train_loader, rank_and_world


def train_loader(
    experiment: Experiment,
    steps_per_epoch: int | None = None,
    *,
    rank: int | None = None,
    world_size: int | None = None,
) -> DataLoader:
    """The training loader; ``batch_size`` is global, each rank gets its slice of every batch.

    Pass ``rank``/``world_size`` (the Trainer's) when the loader is built before the
    process group exists, as :func:`run_training` does; otherwise they come from
    ``torch.distributed`` when initialised, else 0/1.
    """
    cfg = experiment.config.trainer
    return build_train_loader(
        experiment.train,
        batch_size=cfg.batch_size,
        proportions=experiment.train_weights,
        seed=experiment.seed,
        num_workers=cfg.num_workers,
        num_batches=steps_per_epoch or cfg.steps_per_epoch,
        rank=rank,
        world_size=world_size,
        pin_memory=_pin_memory(experiment),
        worker_start=_worker_start(world_size),
    )


def _worker_start(world_size: int | None) -> str | None:
    """``forkserver`` under DDP, else the platform's default (``fork`` on Linux).

    Under DDP the loaders' workers start after the process group, whose communication
    threads are running: a worker forked then can inherit a lock another thread held and
    hang on it (pytorch/pytorch#130610). A fork server forks from a clean process instead.
    """
    import multiprocessing

    _, world = rank_and_world(None, world_size)
    if world > 1 and "forkserver" in multiprocessing.get_all_start_methods():
        return "forkserver"
    return None


def _pin_memory(experiment: Experiment) -> bool:
    """Page-locked batches when they go to a CUDA device (faster host-to-device copies)."""
    accelerator = experiment.config.trainer.accelerator
    return torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")


def eval_loader(
    experiment: Experiment,
    split: str,
    *,
    rank: int | None = None,
    world_size: int | None = None,
) -> DataLoader | None:
    """Evaluation batches of a split (``val``/``test``), dealt round-robin across ranks.

    With several ranks the batch size is lowered, if needed, so that every rank gets at
    least one batch (Lightning refuses an empty loader on any rank).
    """
    sources = experiment.val if split == "val" else experiment.test
    if not sources:
        return None
    cfg = experiment.config.trainer
    batch_size = cfg.eval_batch_size
    world = world_size or 1
    if world > 1:
        largest = max(len(s) for s in sources)
        batch_size = max(1, min(batch_size, math.ceil(largest / world)))
    return build_eval_loader(
        sources,
        batch_size=batch_size,
        num_workers=cfg.num_workers,
        pin_memory=_pin_memory(experiment),
        rank=rank,
        world_size=world_size,
        worker_start=_worker_start(world_size),
    )


__all__ = ["eval_loader", "train_loader"]
