"""The LightningModule: a multi-task model trained with :class:`~dmtl.core.objective.Objective`.

Everything needed to rebuild the module (config, task specs, relatedness tables,
input shape) is saved as hyper-parameters, so ``MultiTaskModule.load_from_checkpoint``
works from the checkpoint alone.

Logged names: ``train/loss_step`` and ``train/<term>_step`` (``sup/<task>``, ``ca/<a>-><b>``,
``dm/<a>-><b>``) every ``trainer.log_every_n_steps`` steps, and their epoch means
``train/loss_epoch``, ``train/<term>_epoch``; ``val/<task>/<metric>`` and
``test/<task>/<metric>`` per epoch.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from dmtl.backbones import create_backbone
from dmtl.config import Config
from dmtl.core.metrics import MultiTaskMetrics
from dmtl.core.model import MultiTaskModel, predict_proba
from dmtl.core.objective import Objective
from dmtl.core.relatedness import Relatedness
from dmtl.core.tasks import BinarySetTask, CategoricalTask, Task
from dmtl.data.batching import Batch
from dmtl.errors import NonFiniteLossError, RunError

MAX_PER_OUTPUT_METRICS = 100
"""Per-class / per-label metrics are logged for tasks with at most this many outputs."""

NOT_OBJECTIVE_ARGUMENTS = {"dm_warmup_epochs", "prior", "pos_weight"}
"""Keys of ``method`` handled by the training loop and the experiment, not by the objective."""


def task_to_dict(task: Task) -> dict[str, Any]:
    if isinstance(task, CategoricalTask):
        return {
            "name": task.name,
            "type": "categorical",
            "classes": list(task.classes),
            "zero_shot": list(task.zero_shot),
        }
    return {"name": task.name, "type": "binary_set", "labels": list(task.names)}


def task_from_dict(spec: dict[str, Any]) -> Task:
    if spec["type"] == "categorical":
        return CategoricalTask(spec["name"], spec["classes"], spec.get("zero_shot", ()))
    return BinarySetTask(spec["name"], spec["labels"])


def edge_to_dict(edge: Relatedness) -> dict[str, Any]:
    return {"source": edge.source.name, "target": edge.target.name, "table": edge.table.tolist()}


def edge_from_dict(spec: dict[str, Any], tasks: dict[str, Task]) -> Relatedness:
    source = tasks[spec["source"]]
    assert isinstance(source, CategoricalTask)
    return Relatedness(source, tasks[spec["target"]], torch.tensor(spec["table"]))


class MultiTaskModule(pl.LightningModule):
    """Backbone + heads + objective; logs every loss term and every task metric."""

    def __init__(
        self,
        config: dict[str, Any],
        tasks: list[dict[str, Any]],
        edges: list[dict[str, Any]],
        input_shape: list[int],
        source_names: list[str] | None = None,
        priors: dict[str, list[float]] | None = None,
        pos_weights: dict[str, list[float]] | None = None,
        steps_per_epoch: int = 1,
    ) -> None:
        super().__init__()
        # In the checkpoint (so it rebuilds alone), not in the logs: tables can be large
        # (10,177 x 40 for CelebA); the run folder has config.yaml and relatedness/*.csv.
        self.save_hyperparameters(logger=False)
        self.config = Config.model_validate(config)
        self.tasks = [task_from_dict(t) for t in tasks]
        by_name = {t.name: t for t in self.tasks}
        self.edges = [edge_from_dict(e, by_name) for e in edges]
        self.source_names = source_names or []
        self.steps_per_epoch = max(1, steps_per_epoch)
        backbone_cfg = self.config.backbone
        in_channels = input_shape[0] if len(input_shape) == 3 else 1
        image_size = input_shape[-1] if len(input_shape) == 3 else None
        backbone, feature_dim = create_backbone(
            backbone_cfg.name,
            in_channels=in_channels,
            image_size=image_size,
            pretrained=backbone_cfg.pretrained,
            **backbone_cfg.options,
        )
        self.model = MultiTaskModel(
            backbone, self.tasks, feature_dim=feature_dim, dropout=backbone_cfg.dropout
        )
        method = self.config.method
        self.objective = Objective(
            self.tasks,
            self.edges,
            pos_weights={k: torch.tensor(v) for k, v in (pos_weights or {}).items()},
            priors={k: torch.tensor(v) for k, v in (priors or {}).items()},
            # The method section's names are the objective's keyword arguments.
            **method.model_dump(exclude=NOT_OBJECTIVE_ARGUMENTS),
        )
        self.val_metrics = MultiTaskMetrics(self.tasks, per_output=MAX_PER_OUTPUT_METRICS)
        self.test_metrics = MultiTaskMetrics(self.tasks, per_output=MAX_PER_OUTPUT_METRICS)
        # Epoch sums start here too: a run resumed mid-epoch (from interrupted.ckpt) does not
        # call on_train_epoch_start for the epoch it resumes.
        self._epoch_sums: dict[str, Tensor | float] = {}
        self._epoch_steps = 0

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.model(x)

    def dm_scale(self) -> float:
        """Linear warm-up of ``lambda_dm`` over ``method.dm_warmup_epochs`` epochs."""
        warmup = self.config.method.dm_warmup_epochs
        if warmup <= 0:
            return 1.0
        return min(1.0, (self.global_step + 1) / (warmup * self.steps_per_epoch))

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        logits = self.model(batch.x)
        loss, terms = self.objective(logits, batch.labels, dm_scale=self.dm_scale())
        self._check_finite({**terms, "loss": loss}, batch, batch_idx)
        self._accumulate({"loss": loss, **terms})
        if self.global_step % self.config.trainer.log_every_n_steps == 0:
            self.log_dict(
                {f"train/{k}_step": v.detach() for k, v in {"loss": loss, **terms}.items()},
                on_step=True,
                on_epoch=False,
                batch_size=batch.x.shape[0],
            )
        return loss

    def _check_finite(self, terms: dict[str, Tensor], batch: Batch, batch_idx: int) -> None:
        """Stop on a NaN/inf term, naming it (terms before their total), the step and sources.

        One device-to-host synchronisation per step: all terms are checked at once.
        """
        values = torch.stack([v.detach().float() for v in terms.values()])
        if bool(torch.isfinite(values).all()):
            return
        name, value = next((k, v) for k, v in terms.items() if not bool(torch.isfinite(v)))
        sources = sorted({self._source_name(int(s)) for s in batch.source.tolist()})
        raise NonFiniteLossError(
            f"loss term {name!r} is {float(value.detach())} at step {self.global_step} "
            f"(batch {batch_idx}, sources: {', '.join(sources)}); "
            "lower the learning rate or check the inputs of these sources"
        )

    def _accumulate(self, terms: dict[str, Tensor]) -> None:
        """Running sums of every term over the epoch (logged once, at the epoch's end)."""
        sums = self._epoch_sums
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + value.detach()
        self._epoch_steps += 1

    def on_train_epoch_start(self) -> None:
        self._epoch_sums = {}
        self._epoch_steps = 0

    def on_train_epoch_end(self) -> None:
        if self._epoch_steps:
            means = {
                f"train/{k}_epoch": torch.as_tensor(v / self._epoch_steps, device=self.device)
                for k, v in self._epoch_sums.items()
            }
            self.log_dict(means, on_step=False, on_epoch=True, sync_dist=True)

    def _source_name(self, index: int) -> str:
        return self.source_names[index] if 0 <= index < len(self.source_names) else str(index)

    def _evaluate(self, batch: Batch, metrics: MultiTaskMetrics, stage: str) -> None:
        logits = self.model(batch.x)
        loss, _ = self.objective(logits, batch.labels)
        self.log(
            f"{stage}/loss",
            loss.detach(),
            on_epoch=True,
            batch_size=batch.x.shape[0],
            sync_dist=True,
        )
        metrics.update(logits, batch.labels)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics, "test")

    def _log_metrics(self, metrics: MultiTaskMetrics, stage: str) -> dict[str, float | None]:
        values = metrics.compute_flat()
        metrics.reset()
        present = {f"{stage}/{k}": float(v) for k, v in values.items() if v is not None}
        if present:
            self.log_dict(present, on_epoch=True, sync_dist=False)
        return values

    def on_validation_epoch_end(self) -> None:
        self.last_val_metrics = self._log_metrics(self.val_metrics, "val")

    def on_test_epoch_end(self) -> None:
        self.last_test_metrics = self._log_metrics(self.test_metrics, "test")

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        return predict_proba(self.model(batch.x), self.tasks)

    def configure_optimizers(self) -> Any:
        optim = self.config.optim
        params = self.parameters()
        optimizer: torch.optim.Optimizer
        if optim.name == "sgd":
            optimizer = torch.optim.SGD(
                params, lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay
            )
        elif optim.name == "adam":
            optimizer = torch.optim.Adam(params, lr=optim.lr, weight_decay=optim.weight_decay)
        else:
            optimizer = torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay)
        if optim.schedule == "none":
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer else 1
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    @property
    def task_map(self) -> dict[str, Task]:
        return {t.name: t for t in self.tasks}


def load_module(path: str | Path) -> MultiTaskModule:
    """A trained :class:`MultiTaskModule` from its checkpoint, on the CPU."""
    try:
        return MultiTaskModule.load_from_checkpoint(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, KeyError, TypeError, EOFError, pickle.UnpicklingError) as error:
        raise RunError(
            f"{path}: not a dmtl checkpoint ({type(error).__name__}: {error})"
        ) from None
