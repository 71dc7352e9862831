"""Factories: where a config becomes the objects the layers take.

- :func:`build_model`: the backbone (``backbone.name``) and one head per task;
- :func:`build_objective`: the objective with the method's switches and weights;
- :func:`build_loss_weighting`, :func:`build_gradient_aggregator`, :func:`build_guard`:
  how the per-task losses become one update (``method.weighting``, ``method.aggregator``,
  ``method.guard``);
- :class:`ModelSpec`: everything needed to rebuild a trained model, as plain data
  (config, tasks, relatedness tables, input shape, priors). It is what a checkpoint
  stores besides the weights, so a checkpoint loads without unpickling any object
  (``torch.load(..., weights_only=True)``).

The Lightning module, the benchmarks and the tests all build through these, so the
wiring exists once.

>>> from dmtl.config import Config, saved_config
>>> from dmtl.core.tasks import CategoricalTask
>>> config = Config.model_validate({"sources": [{"name": "d", "builtin": "digits"}]})
>>> model = build_model(config, [CategoricalTask("digit", list("0123456789"))], (1, 8, 8))
>>> tuple(model(torch.zeros(2, 1, 8, 8))["digit"].shape)
(2, 10)
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from dmtl._version import __version__
from dmtl.backbones import create_backbone
from dmtl.build.architecture import build_architecture
from dmtl.config import Config, saved_config
from dmtl.core.guard import RelatednessGuard
from dmtl.core.heads import HeadSpec
from dmtl.core.model import MultiTaskModel
from dmtl.core.objective import Objective
from dmtl.core.relatedness import Relatedness
from dmtl.core.tasks import Task, task_from_dict
from dmtl.core.weighting import LossWeighting, build_weighting
from dmtl.errors import RunError, SpecError
from dmtl.registry import AGGREGATORS, WEIGHTINGS, GuardOptions, Registry

if TYPE_CHECKING:  # TorchJD (with scipy.optimize) is imported only when a run aggregates
    from dmtl.core.aggregation import Aggregator

SPEC_FORMAT = 1
"""Version of the :class:`ModelSpec` layout stored in checkpoints."""

_NOT_STORED = ("trained", "validated")
"""Fields of :class:`ModelSpec` that a checkpoint does not hold."""


def build_model(
    config: Config,
    tasks: Sequence[Task],
    input_shape: Sequence[int],
    initial_weights: bool = True,
) -> MultiTaskModel:
    """The backbone of ``config.backbone`` with one linear head per task.

    ``input_shape``: one sample's shape, ``(C, H, W)`` for images or ``(D,)`` for vectors.
    ``initial_weights``: read ``backbone.weights`` or download ``pretrained`` ones; off
    for a model whose trained weights are loaded next (a checkpoint: nothing is read or
    downloaded that the checkpoint replaces).
    """
    spec = config.backbone
    in_channels = input_shape[0] if len(input_shape) == 3 else 1
    image_size = input_shape[-1] if len(input_shape) == 3 else None
    backbone, feature_dim = create_backbone(
        spec.name,
        in_channels=in_channels,
        image_size=image_size,
        pretrained=spec.pretrained and initial_weights,
        weights=spec.weights if initial_weights else None,
        **spec.options,
    )
    heads = config.heads
    head_factory = HeadSpec(
        tuple(heads.hidden), {k: tuple(v) for k, v in heads.per_task.items()}, heads.dropout
    )
    trunk, neck = build_architecture(
        config, backbone, feature_dim, [t.name for t in tasks], input_shape
    )
    return MultiTaskModel(
        trunk, tasks, feature_dim=feature_dim, dropout=spec.dropout, head_factory=head_factory,
        neck=neck,
    )


def build_objective(
    config: Config,
    tasks: Sequence[Task],
    edges: Sequence[Relatedness],
    priors: Mapping[str, Sequence[float]] | None = None,
) -> Objective:
    """The objective of ``config.method`` over ``tasks`` and ``edges``.

    ``priors``: class priors of the edges' source tasks (``method.prior: frequency``).
    """
    method = config.method
    return Objective(
        tasks,
        edges,
        task_weights=method.task_weights,
        co_annotation=method.co_annotation,
        lambda_ca=method.lambda_ca,
        ca_eps=method.ca_eps,
        ca_tau=method.ca_tau,
        hard_threshold=method.hard_threshold,
        distribution_matching=method.distribution_matching,
        dm_forward=method.dm_forward,
        dm_inverse=method.dm_inverse,
        lambda_dm=method.lambda_dm,
        dm_eps=method.dm_eps,
        dm_tau=method.dm_tau,
        stop_gradient=method.stop_gradient,
        priors={name: torch.tensor(p) for name, p in (priors or {}).items()},
    )


def build_loss_weighting(config: Config, tasks: Sequence[Task]) -> LossWeighting | None:
    """``method.weighting`` over the tasks; ``None`` for ``fixed`` (the objective's own sum,
    with ``method.task_weights``)."""
    method = config.method
    if method.weighting == "fixed":
        return None
    options = _checked(WEIGHTINGS, method.weighting, method.weighting_options)
    return build_weighting(method.weighting, [t.name for t in tasks], **options)


def build_gradient_aggregator(config: Config) -> Aggregator | None:
    """``method.aggregator`` (TorchJD); ``None`` for ``sum`` (one plain backward)."""
    method = config.method
    if method.aggregator == "sum" and not method.aggregator_options:
        return None
    options = _checked(AGGREGATORS, method.aggregator, method.aggregator_options)
    from dmtl.core.aggregation import build_aggregator

    return build_aggregator(method.aggregator, **options)


def build_guard(config: Config, objective: Objective) -> RelatednessGuard | None:
    """``method.guard`` over the objective's relatedness terms; ``None`` when off or when
    the objective has no relatedness term to guard."""
    targets = objective.relatedness_terms()
    if not config.method.guard or not targets:
        return None
    options = GuardOptions.model_validate(config.method.guard_options)
    return RelatednessGuard(targets, **options.model_dump(exclude_unset=True))


def _checked(registry: Registry, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` typed by ``name``'s model in ``registry`` (a config built in code, not
    read from a file, is checked here too)."""
    try:
        return registry.validate(name, options)
    except ValueError as error:
        raise SpecError(str(error)) from None


def edge_to_dict(edge: Relatedness) -> dict[str, Any]:
    """An edge as plain data (task names and the table as nested lists)."""
    return {"source": edge.source.name, "target": edge.target.name, "table": edge.table.tolist()}


def edge_from_dict(spec: Mapping[str, Any], tasks: Mapping[str, Task]) -> Relatedness:
    """The edge :func:`edge_to_dict` described, between ``tasks``."""
    return Relatedness(tasks[spec["source"]], tasks[spec["target"]], torch.tensor(spec["table"]))


@dataclass
class ModelSpec:
    """A trained model's recipe as plain data: what a checkpoint stores beside the weights.

    ``config`` is the resolved config (JSON form); ``tasks`` and ``edges`` are
    :meth:`Task.to_dict` and :func:`edge_to_dict` outputs; ``source_names`` names the
    training strata (for messages).
    """

    config: dict[str, Any]
    tasks: list[dict[str, Any]]
    edges: list[dict[str, Any]]
    input_shape: list[int]
    priors: dict[str, list[float]] = field(default_factory=dict)
    source_names: list[str] = field(default_factory=list)
    format: int = SPEC_FORMAT
    dmtl_version: str = __version__
    trained: bool = field(default=False, compare=False)
    """Read from a checkpoint (:meth:`from_dict`): its weights replace the initial ones."""
    validated: Config | None = field(default=None, compare=False, repr=False)
    """``config`` as the validated object: given by a run that has it (so the config is not
    validated again), else made by the first :meth:`build_config`. Not stored."""

    def to_dict(self) -> dict[str, Any]:
        return {
            key: copy.deepcopy(getattr(self, key))
            for key in self.__dataclass_fields__
            if key not in _NOT_STORED
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "checkpoint") -> ModelSpec:
        """Read a spec; an unknown format or a missing key is one clear error."""
        if not isinstance(data, Mapping) or data.get("format") != SPEC_FORMAT:
            found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise RunError(f"{where}: model spec format {found!r} is not {SPEC_FORMAT}")
        fields = [key for key in cls.__dataclass_fields__ if key not in _NOT_STORED]
        try:
            return cls(**{key: data[key] for key in fields if key in data}, trained=True)
        except TypeError as error:
            raise RunError(f"{where}: incomplete model spec ({error})") from None

    def build_config(self) -> Config:
        """The config object, validated once per spec (``config`` may come from a checkpoint
        of an older dmtl version: :func:`dmtl.config.saved_config`)."""
        if self.validated is None:
            self.validated = saved_config(self.config)
        return self.validated

    def build_tasks(self) -> list[Task]:
        return [task_from_dict(t) for t in self.tasks]

    def build_edges(self, tasks: Sequence[Task]) -> list[Relatedness]:
        by_name = {t.name: t for t in tasks}
        return [edge_from_dict(e, by_name) for e in self.edges]


__all__ = [
    "SPEC_FORMAT",
    "ModelSpec",
    "build_gradient_aggregator",
    "build_guard",
    "build_loss_weighting",
    "build_model",
    "build_objective",
    "edge_from_dict",
    "edge_to_dict",
]
