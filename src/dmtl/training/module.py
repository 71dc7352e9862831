"""The LightningModule: a multi-task model trained with :class:`~dmtl.core.objective.Objective`.

The module takes built objects (model, objective, optimiser settings); what is needed
to rebuild it (:class:`~dmtl.build.ModelSpec`: config, tasks, relatedness tables, input
shape) is plain data saved in every checkpoint, and :func:`load_module` rebuilds the
module from the checkpoint alone, reading it with ``weights_only=True``.

Logged names: ``train/loss_step`` and ``train/<term>_step`` (``sup/<task>``, ``ca/<a>-><b>``,
``dm/<a>-><b>``) every ``trainer.log_every_n_steps`` steps, and their epoch means
``train/loss_epoch``, ``train/<term>_epoch``; ``val/<task>/<metric>`` and
``test/<task>/<metric>`` per epoch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from dmtl.build import (
    ModelSpec,
    build_gradient_aggregator,
    build_guard,
    build_loss_weighting,
    build_model,
    build_objective,
)
from dmtl.build.checkpoint import SPEC_KEY, read_checkpoint
from dmtl.config import Config, OptimConfig
from dmtl.core.aggregation import Aggregator, backward_tasks
from dmtl.core.guard import RelatednessGuard, gradient_cosines
from dmtl.core.metrics import MAX_PER_OUTPUT_METRICS, MultiTaskMetrics
from dmtl.core.model import MultiTaskModel, predictions
from dmtl.core.objective import Objective, group_by_task
from dmtl.core.tasks import Task
from dmtl.core.weighting import LossWeighting
from dmtl.data.batching import Batch
from dmtl.errors import NonFiniteLossError, RunError

EPOCH_SUMS_KEY = "dmtl_epoch_sums"
"""Where a checkpoint keeps the running sums of the epoch it was saved in."""

SELECTION_KEY = "dmtl_selection"
"""Where a checkpoint keeps the best validation selection score so far and its step."""

GUARD_KEY = "dmtl_guard"
"""Where a checkpoint keeps the relatedness guard's term weights."""


class MultiTaskModule(pl.LightningModule):
    """A built model and objective, trained by Lightning; logs every term and metric.

    Args:
        model: the network (``{task: logits}``).
        objective: the loss over the model's tasks.
        optim: optimiser, learning rate, weight decay and schedule.
        dm_warmup_epochs: linear warm-up of the distribution-matching weight.
        log_every_n_steps: how often the per-step terms are logged.
        steps_per_epoch: the training loader's length (for the warm-up).
        source_names: the training strata, named in messages about a batch.
        spec: the model's recipe as plain data; saved in every checkpoint, so that
            :func:`load_module` rebuilds the module from the file alone.
        weighting: combines the per-task losses (``Objective.task_losses``) into the
            total; ``None``: the objective's own weighted sum.
        aggregator: combines the per-task gradients at the shared features (TorchJD,
            :func:`~dmtl.core.aggregation.backward_tasks`); the module then optimises
            manually. ``None``: one backward of the total.
        guard: adapts the weight of each relatedness term from validation
            (:class:`~dmtl.core.guard.RelatednessGuard`), after every validation.
        gradient_clip_val: gradient norm clipping under manual optimisation (with an
            aggregator; otherwise the trainer clips).

    Validation logs ``val/selection``: the mean over tasks of their primary metric
    (tasks without a validation label left out), the number models are selected on.
    """

    def __init__(
        self,
        model: MultiTaskModel,
        objective: Objective,
        optim: OptimConfig,
        *,
        dm_warmup_epochs: float = 0.0,
        log_every_n_steps: int = 10,
        steps_per_epoch: int = 1,
        source_names: list[str] | None = None,
        spec: ModelSpec | None = None,
        weighting: LossWeighting | None = None,
        aggregator: Aggregator | None = None,
        guard: RelatednessGuard | None = None,
        gradient_clip_val: float | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.objective = objective
        self.tasks: list[Task] = list(objective.tasks)
        self.edges = list(objective.edges)
        self.optim = optim
        self.dm_warmup_epochs = dm_warmup_epochs
        self.log_every_n_steps = log_every_n_steps
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.source_names = source_names or []
        self.spec = spec
        self.weighting = weighting
        self.aggregator = aggregator
        self.guard = guard
        self.gradient_clip_val = gradient_clip_val
        self.automatic_optimization = aggregator is None
        self._last_batch: Batch | None = None
        self.best_selection: float | None = None
        self.best_step: int | None = None
        self.val_metrics = MultiTaskMetrics(self.tasks, per_output=MAX_PER_OUTPUT_METRICS)
        self.test_metrics = MultiTaskMetrics(self.tasks, per_output=MAX_PER_OUTPUT_METRICS)
        # Epoch sums start here too: a run resumed mid-epoch (from interrupted.ckpt) does not
        # call on_train_epoch_start for the epoch it resumes.
        self._epoch_sums: dict[str, Tensor | float] = {}
        self._epoch_steps = 0

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets the running hook's name about fifty times per step; torch's
        # Module.__setattr__ spends ~6 us a call on checks a string attribute does not need.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    @classmethod
    def from_spec(cls, spec: ModelSpec, steps_per_epoch: int = 1) -> MultiTaskModule:
        """Build model and objective from a :class:`~dmtl.build.ModelSpec`."""
        config = spec.build_config()
        tasks = spec.build_tasks()
        model = build_model(config, tasks, spec.input_shape, initial_weights=not spec.trained)
        objective = build_objective(config, tasks, spec.build_edges(tasks), spec.priors)
        method = config.method
        return cls(
            model,
            objective,
            config.optim,
            dm_warmup_epochs=method.dm_warmup_epochs,
            log_every_n_steps=config.trainer.log_every_n_steps,
            steps_per_epoch=steps_per_epoch,
            source_names=spec.source_names,
            spec=spec,
            weighting=build_loss_weighting(config, tasks),
            aggregator=build_gradient_aggregator(config),
            guard=build_guard(config, objective),
            gradient_clip_val=config.trainer.gradient_clip_val,
        )

    @property
    def config(self) -> Config:
        """The resolved config the model was built from (from its spec)."""
        if self.spec is None:
            raise RunError("this module was built without a model spec, so it has no config")
        return self.spec.build_config()

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One input's shape, as trained."""
        if self.spec is None:
            raise RunError("this module was built without a model spec")
        return tuple(self.spec.input_shape)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.spec is not None:
            checkpoint[SPEC_KEY] = self.spec.to_dict()
        # the epoch's running sums: a run resumed mid-epoch logs the same epoch means
        checkpoint[EPOCH_SUMS_KEY] = {
            "steps": self._epoch_steps,
            "sums": {k: torch.as_tensor(v).detach().cpu() for k, v in self._epoch_sums.items()},
        }
        # what selection and the guard have learnt so far, so a resumed run decides the same
        checkpoint[SELECTION_KEY] = {"best": self.best_selection, "step": self.best_step}
        if self.guard is not None:
            checkpoint[GUARD_KEY] = self.guard.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get(EPOCH_SUMS_KEY)
        if saved:
            self._epoch_steps = int(saved["steps"])
            self._epoch_sums = {k: v.to(self.device) for k, v in saved["sums"].items()}
        selection = checkpoint.get(SELECTION_KEY)
        if selection:
            self.best_selection, self.best_step = selection["best"], selection["step"]
        if self.guard is not None and GUARD_KEY in checkpoint:
            self.guard.load_state_dict(checkpoint[GUARD_KEY])
            self.objective.term_scales = dict(self.guard.weights)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.model(x)

    def dm_scale(self) -> float:
        """Linear warm-up of ``lambda_dm`` over ``method.dm_warmup_epochs`` epochs."""
        warmup = self.dm_warmup_epochs
        if warmup <= 0:
            return 1.0
        return min(1.0, (self.global_step + 1) / (warmup * self.steps_per_epoch))

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        dm_scale = self.dm_scale()
        if self.weighting is None and self.aggregator is None:
            logits = self.model(batch.x)
            loss, terms = self.objective(logits, batch.labels, dm_scale=dm_scale)
        else:
            features = self.model.features(batch.x)
            term_list = self.objective.terms(
                self.model.heads_forward(features), batch.labels, dm_scale
            )
            terms = {term.name: term.value for term in term_list}
            task_losses = group_by_task(term_list)
            if self.weighting is not None:
                loss, _ = self.weighting(task_losses)
            else:
                loss = torch.stack(list(task_losses.values())).sum()
        self._check_finite({**terms, "loss": loss}, batch, batch_idx)
        self._accumulate({"loss": loss, **terms})
        if self.guard is not None:
            self._last_batch = batch
        self._log_step({"loss": loss, **terms})
        if self.aggregator is not None:
            self._aggregated_step(task_losses, features)
        return loss

    def _aggregated_step(self, task_losses: dict[str, Tensor], features: Tensor) -> None:
        """One manual optimiser step: per-task gradients aggregated at the shared features."""
        assert self.aggregator is not None
        optimizer = self.optimizers()
        assert isinstance(optimizer, pl.core.optimizer.LightningOptimizer)
        optimizer.zero_grad()
        precision = self.trainer.precision_plugin
        scaled = {name: precision.pre_backward(loss, self) for name, loss in task_losses.items()}
        backward_tasks(
            scaled, features, self.aggregator, self.model.backbone,
            self.model.task_side_parameters(),
        )
        if self.gradient_clip_val:
            self.clip_gradients(optimizer, self.gradient_clip_val, "norm")  # type: ignore[arg-type]
        optimizer.step()
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()  # type: ignore[union-attr]

    def _log_step(self, terms: dict[str, Tensor]) -> None:
        """``train/<term>_step`` of this step, every ``log_every_n_steps`` steps, first rank.

        Straight to the loggers, with one device-to-host copy for all terms: Lightning's
        ``self.log`` costs about a millisecond per value, more than a small model's step.
        """
        step = self.global_step
        if step % self.log_every_n_steps or not self.loggers or not self.trainer.is_global_zero:
            return
        values = torch.stack([v.detach().float() for v in terms.values()]).tolist()
        metrics: dict[str, float] = {
            f"train/{name}_step": value for name, value in zip(terms, values, strict=True)
        }
        metrics["epoch"] = self.current_epoch
        for logger in self.loggers:
            logger.log_metrics(metrics, step=step)

    def _check_finite(self, terms: dict[str, Tensor], batch: Batch, batch_idx: int) -> None:
        """Stop on a NaN/inf term, naming it (terms before their total), the step and sources.

        One device-to-host synchronisation per step. Without a loss weighting the total is
        the objective's sum of weighted terms, which is finite only if every term is
        (``0 * inf`` is NaN), so it alone is checked; else all terms are, at once.
        """
        if self.weighting is None:
            checked = terms["loss"].detach()
        else:
            checked = torch.stack([v.detach().float() for v in terms.values()])
        if bool(torch.isfinite(checked).all()):
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
        if self.weighting is not None:
            strategy = self.trainer.strategy
            self.weighting.end_epoch(reduce=lambda t: strategy.reduce(t, reduce_op="sum"))
        if self.guard is not None and self._last_batch is not None:
            self._update_guard(self._last_batch)

    def _update_guard(self, batch: Batch) -> None:
        """One guard update (:mod:`dmtl.core.guard`) from a training batch and validation."""
        assert self.guard is not None
        validation = self._first_validation_batch()
        if validation is None:
            return
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.enable_grad():
                cosines = self._guard_cosines(batch, validation)
        finally:
            self.model.train(was_training)
        names = sorted(cosines)
        if self.trainer.world_size > 1:  # one decision for every process
            values = torch.tensor(
                [float("nan") if cosines[n] is None else cosines[n] for n in names],
                device=self.device,
            )
            gathered = self.trainer.strategy.all_gather(values)
            averaged = torch.nanmean(gathered.reshape(-1, len(names)), dim=0).tolist()
            cosines = {n: None if v != v else v for n, v in zip(names, averaged, strict=True)}
        self.objective.term_scales = self.guard.update(cosines)
        self.log_dict(
            {f"guard/{name}": weight for name, weight in self.objective.term_scales.items()},
            on_step=False,
            on_epoch=True,
        )

    def _first_validation_batch(self) -> Batch | None:
        loaders = self.trainer.val_dataloaders
        loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
        if loader is None:
            return None
        for batch in loader:
            moved: Batch = batch.to(self.device)
            return moved
        return None

    def _guard_cosines(self, batch: Batch, validation: Batch) -> dict[str, float | None]:
        assert self.guard is not None
        terms = self.objective.terms(self.model(batch.x), batch.labels, self.dm_scale())
        guarded = {t.name: t.value for t in terms if t.name in self.guard.targets}
        logits = self.model(validation.x)
        by_name = self.task_map
        targets = set(self.guard.targets.values())
        validation_losses = {
            name: by_name[name].loss(logits[name], validation.labels[name])
            for name in targets
            if name in validation.labels and bool(validation.labels[name].mask.any())
        }
        trunk = [p for p in self.model.backbone.parameters() if p.requires_grad]
        params = {name: trunk + list(self.model.heads[name].parameters()) for name in targets}
        return gradient_cosines(guarded, self.guard.targets, validation_losses, params)

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
        primaries = [
            self.last_val_metrics.get(name) for name in self.val_metrics.primary_names().values()
        ]
        defined = [float(v) for v in primaries if v is not None]
        if defined:
            selection = sum(defined) / len(defined)
            self.log("val/selection", selection, on_epoch=True, sync_dist=False)
            if not self.trainer.sanity_checking and (
                self.best_selection is None or selection > self.best_selection
            ):
                self.best_selection, self.best_step = selection, int(self.global_step)

    def on_test_epoch_end(self) -> None:
        self.last_test_metrics = self._log_metrics(self.test_metrics, "test")

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        return predictions(self.model(batch.x), self.tasks)

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The optimiser's parameter groups: the trunk at ``lr * optim.backbone_lr_scale``,
        everything else (heads, learnt loss weights) at ``lr``.

        One group when the scale is 1. With a scale of 0 the trunk is frozen: its
        parameters stop requiring gradients and are left out of the optimiser. Learnt loss
        weights (uncertainty weighting) get a group of their own, without weight decay.
        """
        optim = self.optim
        scale = optim.backbone_lr_scale
        own = [] if self.weighting is None else list(self.weighting.parameters())
        weights = [{"params": own, "lr": optim.lr, "weight_decay": 0.0, "name": "loss_weights"}]
        extra = weights if own else []
        skip = {id(p) for p in own}
        trunk = [p for p in self.model.backbone.parameters() if id(p) not in skip]
        if scale == 1.0:
            everything = [p for p in self.parameters() if id(p) not in skip]
            return [{"params": everything, "lr": optim.lr, "name": "all"}, *extra]
        skip |= {id(p) for p in trunk}
        rest = [p for p in self.parameters() if id(p) not in skip]
        groups = [{"params": rest, "lr": optim.lr, "name": "heads"}]
        if scale == 0.0:
            for parameter in trunk:
                parameter.requires_grad_(False)
        else:
            groups.insert(0, {"params": trunk, "lr": optim.lr * scale, "name": "backbone"})
        return [*groups, *extra]

    def configure_optimizers(self) -> Any:
        optim = self.optim
        params = self.parameter_groups()
        optimizer: torch.optim.Optimizer
        if optim.name == "sgd":
            optimizer = torch.optim.SGD(
                params, lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay
            )
        elif optim.name == "adam":  # fused: one kernel for every parameter, not a few each
            optimizer = torch.optim.Adam(
                params, lr=optim.lr, weight_decay=optim.weight_decay, fused=True
            )
        else:
            optimizer = torch.optim.AdamW(
                params, lr=optim.lr, weight_decay=optim.weight_decay, fused=True
            )
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
    """A trained :class:`MultiTaskModule` from its checkpoint, on the CPU.

    The file is read with ``torch.load(weights_only=True)``: tensors and plain data
    only, so nothing in it can execute code; the module is rebuilt from its spec.
    """
    checkpoint, spec = read_checkpoint(path)
    module = MultiTaskModule.from_spec(spec)
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except (KeyError, RuntimeError) as error:
        raise RunError(f"{path}: the weights do not fit the model ({error})") from None
    return module
