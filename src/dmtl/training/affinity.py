"""Measured task affinity over a short run, and the branches ``architecture: branch, auto``
chooses from it.

:func:`measure_affinity` trains the config's shared model (``architecture: shared``) for a
few epochs on the training split and, every ``every`` steps before the optimiser's step,
measures the lookahead affinity :math:`Z_{i \\to j}` of :mod:`dmtl.core.affinity` on that
batch: over every trunk parameter (``all``) and over each stage of the trunk
(``stage0``..), from the tasks' supervised losses on their labelled rows. The lookahead
step is the optimiser's learning rate. Nothing is written and no validation or test row
is read.

:func:`choose_branches` turns the averages into branches: the partition of the tasks
with the best TAG score (:func:`~dmtl.core.affinity.best_partition` on ``all``); every
group but the largest leaves the trunk at the stage from which its cross affinity with
the other tasks is no longer positive (:func:`~dmtl.core.affinity.branch_point`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.func import functional_call

from dmtl.build import ModelSpec, edge_to_dict
from dmtl.build.data import Experiment
from dmtl.build.loaders import train_loader
from dmtl.config import Config
from dmtl.core.affinity import (
    ALL_PARAMETERS,
    AffinityAverage,
    AffinityMatrix,
    best_partition,
    branch_point,
    lookahead_affinity,
)
from dmtl.core.stages import split_stages
from dmtl.data.batching import Batch
from dmtl.errors import ConfigError
from dmtl.training.module import MultiTaskModule
from dmtl.training.quiet import quiet_lightning
from dmtl.training.threads import set_threads


@dataclass(frozen=True)
class AffinityResult:
    """Mean :math:`Z` per parameter group (``all``, ``stage0``..), the steps measured, the
    wall time of the short run and the branches chosen from it."""

    matrices: dict[str, AffinityMatrix]
    steps: int
    wall_s: float
    branches: list[dict[str, Any]]

    def rows(self) -> list[dict[str, Any]]:
        """One row per (group, source, target): ``z`` and ``z_relative`` = :math:`Z_{i\\to j}
        / Z_{j\\to j}` (how much a step for ``i`` does for ``j`` next to ``j``'s own step)."""
        out = []
        for group, matrix in self.matrices.items():
            for i, source in enumerate(matrix.tasks):
                for j, target in enumerate(matrix.tasks):
                    z = float(matrix.values[i, j])
                    own = float(matrix.values[j, j])
                    out.append({"group": group, "source": source, "target": target, "z": z,
                                "z_relative": z / own if own > 0 else float("nan")})
        return out

    def relative(self, group: str = ALL_PARAMETERS) -> tuple[list[str], list[list[float]]]:
        """The tasks and the matrix ``z_relative[i][j]`` of ``group`` (row: step on ``i``)."""
        matrix = self.matrices[group]
        tasks = list(matrix.tasks)
        values = {(r["source"], r["target"]): float(r["z_relative"]) for r in self.rows()
                  if r["group"] == group}
        return tasks, [[values[i, j] for j in tasks] for i in tasks]


def write_affinity(result: AffinityResult, table: Path, heat_map: Path) -> None:
    """The table (every row of :meth:`AffinityResult.rows`) as CSV and the heat map of
    ``z_relative`` over all trunk parameters as PNG."""
    import pandas as pd

    from dmtl.knowledge.heatmap import plot_relatedness

    pd.DataFrame(result.rows()).to_csv(table, index=False)
    tasks, relative = result.relative()
    plot_relatedness(relative, tasks, tasks, heat_map, title="Z[i->j] / Z[j->j]",
                     row_label="i: the step on this task's loss",
                     col_label="j: the loss of this task")


class AffinityCallback(pl.Callback):
    """Measures the lookahead affinity on every ``every``-th training batch, before its step."""

    def __init__(self, every: int, stage_groups: Mapping[str, list[str]]) -> None:
        self.every = every
        self.stage_groups = dict(stage_groups)
        self.average = AffinityAverage()
        self.steps = 0

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if batch_idx % self.every:
            return
        assert isinstance(pl_module, MultiTaskModule)
        self.average.add(batch_affinity(pl_module, batch, self.stage_groups))
        self.steps += 1


def batch_affinity(
    module: MultiTaskModule, batch: Batch, stage_groups: Mapping[str, list[str]]
) -> dict[str, AffinityMatrix]:
    """:math:`Z` on one batch, over the trunk (``all``) and each of ``stage_groups``."""
    model = module.model
    params = {f"backbone.{n}": p for n, p in model.backbone.named_parameters() if p.requires_grad}
    labels = batch.labels
    tasks = {name: t for name, t in module.task_map.items()
             if name in labels and bool(labels[name].mask.any())}

    def losses(overrides: Mapping[str, Tensor]) -> dict[str, Tensor]:
        logits = functional_call(model, dict(overrides), (batch.x,), strict=False)
        return {name: task.loss(logits[name], labels[name]) for name, task in tasks.items()}

    groups = {ALL_PARAMETERS: list(params), **stage_groups}
    return lookahead_affinity(losses, params, module.optim.lr, groups)


def stage_parameter_groups(module: MultiTaskModule, example: Tensor) -> dict[str, list[str]]:
    """``{"stage<k>": parameter names}`` of the trunk's stages (``{}`` when it has one)."""
    backbone = module.model.backbone
    name = module.config.backbone.name
    try:
        stages = split_stages(backbone, name, example)
    except Exception:  # a backbone without stages: the whole trunk only
        return {}
    by_id = {id(p): f"backbone.{n}" for n, p in backbone.named_parameters() if p.requires_grad}
    return {
        f"stage{k}": [by_id[id(p)] for p in stage.parameters() if id(p) in by_id]
        for k, stage in enumerate(stages)
    }


def measure_affinity(experiment: Experiment, epochs: int = 2, every: int = 4) -> AffinityResult:
    """Train the shared model ``epochs`` epochs, measuring :math:`Z` every ``every`` steps."""
    config = _shared(experiment.config, epochs)
    experiment = dataclasses.replace(experiment, config=config)
    if not config.method.distribution_matching:
        experiment = experiment.without_unlabelled()
    pl.seed_everything(experiment.seed, workers=True, verbose=False)
    set_threads(config.trainer.num_threads, processes=1)
    loader = train_loader(experiment, None, rank=0, world_size=1)
    spec = ModelSpec(
        config=config.model_dump(mode="json"), tasks=[t.to_dict() for t in experiment.tasks],
        edges=[edge_to_dict(e) for e in experiment.edges],
        input_shape=list(experiment.input_shape), priors=experiment.priors(),
    )  # as training.run.model_spec (which imports this module)
    module = MultiTaskModule.from_spec(spec, steps_per_epoch=len(loader))
    example = torch.zeros((2, *experiment.input_shape))
    callback = AffinityCallback(every, stage_parameter_groups(module, example))
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator=config.trainer.accelerator, devices=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[callback], limit_val_batches=0, num_sanity_val_steps=0,
    )
    start = time.perf_counter()
    with quiet_lightning():
        trainer.fit(module, train_dataloaders=loader)
    wall = time.perf_counter() - start
    matrices = callback.average.mean()
    return AffinityResult(matrices, callback.steps, wall, choose_branches(matrices))


def _shared(config: Config, epochs: int) -> Config:
    trainer = config.trainer.model_copy(update={"max_epochs": epochs, "early_stopping":
                                                 config.trainer.early_stopping.model_copy(
                                                     update={"enabled": False})})
    architecture = config.architecture.model_copy(update={"name": "shared", "options": {}})
    return config.model_copy(update={"trainer": trainer, "architecture": architecture})


def choose_branches(
    matrices: Mapping[str, AffinityMatrix], max_groups: int | None = None
) -> list[dict[str, Any]]:
    """``[{"tasks": [...], "at": stage}]``: the groups of the best partition of ``all`` but
    the largest (first on a tie), each with its branch point from the per-stage matrices
    (the last stage when there are none)."""
    overall = matrices[ALL_PARAMETERS]
    partition = best_partition(overall, max_groups)
    if len(partition) < 2:
        return []
    stages = [matrices[k] for k in sorted(
        (k for k in matrices if k.startswith("stage")), key=lambda k: int(k[5:]))]
    keep = max(range(len(partition)), key=lambda i: (len(partition[i]), -i))
    branches = []
    for i, group in enumerate(partition):
        if i == keep:
            continue
        others = [t for t in overall.tasks if t not in group]
        at = branch_point(stages, group, others) if stages else 0
        branches.append({"tasks": list(group), "at": at})
    return branches


def resolve_architecture(experiment: Experiment) -> Experiment:
    """The experiment with ``architecture: branch, auto`` resolved into explicit branches
    (measured on its training data); any other experiment as it is. When the best
    partition keeps every task together, the architecture becomes ``shared``."""
    config = experiment.config
    architecture = config.architecture
    if architecture.name != "branch":
        return experiment
    options = architecture.typed_options()
    if not options.auto or options.branches:
        return experiment
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError([("architecture.options.auto", (
            "is not measured under several processes (each would choose on its own); run "
            "`dmtl affinity CONFIG` and give its branches in architecture.options.branches")
        )])
    result = measure_affinity(experiment, options.affinity_epochs, options.affinity_every)
    branches = choose_branches(result.matrices, options.max_groups)
    if not branches:
        resolved = config.architecture.model_copy(update={"name": "shared", "options": {}})
    else:
        resolved = architecture.model_copy(
            update={"options": {**architecture.options, "branches": branches}}
        )
    resolved_config = config.model_copy(update={"architecture": resolved})
    return dataclasses.replace(experiment, config=resolved_config)


__all__ = [
    "AffinityCallback",
    "AffinityResult",
    "batch_affinity",
    "choose_branches",
    "measure_affinity",
    "resolve_architecture",
    "stage_parameter_groups",
    "write_affinity",
]
