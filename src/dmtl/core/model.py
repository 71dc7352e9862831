"""``MultiTaskModel``: any backbone yielding features ``(N, D)`` plus one head per task.

``forward(x)`` returns ``{task name: logits}`` with logits ``(N, num_outputs)``:
``z_t = head_t(dropout(backbone(x)))``. The default head is ``nn.Linear(D, num_outputs)``;
pass ``head_factory(feature_dim, task) -> nn.Module`` for anything else. The
method only adds losses, so nothing here depends on it ("network agnostic").

>>> from dmtl.core.tasks import BinarySetTask, CategoricalTask
>>> tasks = [CategoricalTask("digit", ["0", "1", "2"]), BinarySetTask("attr", ["even", "big"])]
>>> backbone = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU())
>>> model = MultiTaskModel(backbone, tasks, input_shape=(1, 4, 4))
>>> model.feature_dim
8
>>> {name: tuple(z.shape) for name, z in model(torch.zeros(5, 1, 4, 4)).items()}
{'digit': (5, 3), 'attr': (5, 2)}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from dmtl.core.tasks import Task, check_unique_task_names

HeadFactory = Callable[[int, Task], nn.Module]
"""``(feature_dim, task) -> head``, mapping features ``(N, D)`` to logits ``(N, num_outputs)``."""


def linear_head(feature_dim: int, task: Task) -> nn.Module:
    """The default head: ``nn.Linear(feature_dim, task.num_outputs)``."""
    return nn.Linear(feature_dim, task.num_outputs)


def _module_device(module: nn.Module) -> torch.device:
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def infer_feature_dim(module: nn.Module, input_shape: Sequence[int], batch_size: int = 2) -> int:
    """``D`` of a module mapping ``(N, *input_shape)`` to ``(N, D)``, by one dummy forward.

    The forward runs in eval mode without gradients (batch-norm statistics
    stay untouched) and the module's mode is restored afterwards.

    >>> infer_feature_dim(nn.Sequential(nn.Flatten(), nn.Linear(12, 7)), (3, 2, 2))
    7
    """
    was_training = module.training
    dummy = torch.zeros((batch_size, *input_shape), device=_module_device(module))
    try:
        module.eval()
        with torch.no_grad():
            features = module(dummy)
    except Exception as error:
        raise ValueError(
            f"cannot infer the feature dimension: a dummy forward of shape "
            f"{tuple(dummy.shape)} through {type(module).__name__} failed ({error})"
        ) from error
    finally:
        module.train(was_training)
    if not isinstance(features, Tensor):
        raise ValueError(
            f"{type(module).__name__} returned {type(features).__name__}, not a tensor of features"
        )
    if features.dim() != 2 or features.shape[0] != batch_size:
        raise ValueError(
            f"{type(module).__name__} must map (N, *input_shape) to features (N, D); "
            f"got shape {tuple(features.shape)} for input {tuple(dummy.shape)}"
        )
    return int(features.shape[1])


def _check_module_key(name: str) -> None:
    if "." in name or hasattr(nn.ModuleDict(), name):
        raise ValueError(
            f"task {name!r} cannot name a head module: task names used by MultiTaskModel "
            "may not contain '.' or shadow an nn.Module attribute (e.g. 'type', 'train'); "
            "rename the task"
        )


class MultiTaskModel(nn.Module):
    """Shared ``backbone`` (``(N, ...) -> (N, D)``) with ``heads[task.name]`` per task.

    ``feature_dim``: ``D``; if not given, inferred by a dummy forward of shape
    ``(2, *input_shape)`` when ``input_shape`` is given, else read from the
    backbone's ``feature_dim`` or ``num_features`` attribute. ``dropout``: probability of
    ``nn.Dropout`` applied to the features before every head (0 = none).
    """

    def __init__(
        self,
        backbone: nn.Module,
        tasks: Sequence[Task],
        feature_dim: int | None = None,
        input_shape: Sequence[int] | None = None,
        head_factory: HeadFactory | None = None,
        dropout: float = 0.0,
        neck: nn.Module | None = None,
    ) -> None:
        super().__init__()
        by_name = check_unique_task_names(tasks)
        if not by_name:
            raise ValueError("MultiTaskModel needs at least one task")
        for name in by_name:
            _check_module_key(name)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.tasks: dict[str, Task] = by_name
        self.backbone = backbone
        self.neck = neck
        dims = self._task_feature_dims(backbone, feature_dim, input_shape, neck, by_name)
        self.feature_dim = max(dims.values())
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        factory = head_factory or linear_head
        self.heads = nn.ModuleDict({name: factory(dims[name], t) for name, t in by_name.items()})
        for name, task in by_name.items():
            self._check_head(self.heads[name], task, dims[name])

    def _task_feature_dims(
        self,
        backbone: nn.Module,
        feature_dim: int | None,
        input_shape: Sequence[int] | None,
        neck: nn.Module | None,
        tasks: Mapping[str, Task],
    ) -> dict[str, int]:
        """Each head's input width: ``D`` of the backbone, or the neck's ``feature_dims``."""
        if neck is None:
            dim = self._resolve_feature_dim(backbone, feature_dim, input_shape)
            return dict.fromkeys(tasks, dim)
        dims = dict(getattr(neck, "feature_dims", {}))
        missing = sorted(set(tasks) - set(dims))
        if missing:
            raise ValueError(f"the neck gives no features for tasks: {', '.join(missing)}")
        return {name: int(dims[name]) for name in tasks}

    @staticmethod
    def _resolve_feature_dim(
        backbone: nn.Module, feature_dim: int | None, input_shape: Sequence[int] | None
    ) -> int:
        if feature_dim is None and input_shape is not None:
            feature_dim = infer_feature_dim(backbone, input_shape)
        if feature_dim is None:
            for attribute in ("feature_dim", "num_features"):
                value = getattr(backbone, attribute, None)
                if isinstance(value, int) and not isinstance(value, bool):
                    feature_dim = value
                    break
        if feature_dim is None:
            raise ValueError(
                "MultiTaskModel: give feature_dim, or input_shape (one sample's shape, "
                "e.g. (1, 28, 28)) to infer it by a dummy forward"
            )
        if not isinstance(feature_dim, int) or isinstance(feature_dim, bool) or feature_dim < 1:
            raise ValueError(f"feature_dim must be a positive int, got {feature_dim!r}")
        return feature_dim

    def _check_head(self, head: nn.Module, task: Task, feature_dim: int) -> None:
        was_training = head.training
        dummy = torch.zeros(2, feature_dim, device=_module_device(head))
        try:
            head.eval()
            with torch.no_grad():
                out = head(dummy)
        finally:
            head.train(was_training)
        if not isinstance(out, Tensor) or tuple(out.shape) != (2, task.num_outputs):
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"head of task {task.name!r} must map (N, {feature_dim}) to "
                f"(N, {task.num_outputs}); got {shape}"
            )

    def features(self, x: Tensor) -> Tensor:
        """Shared features ``(N, D)`` (before dropout); with a neck, the output of the shared
        trunk the neck reads (the last tensor every task depends on)."""
        return self.backbone(x)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """``{task: head_task(dropout(backbone(x)))}``, logits of shape ``(N, num_outputs)``."""
        return self.heads_forward(self.features(x))

    def heads_forward(self, features: Tensor) -> dict[str, Tensor]:
        """``{task: head_task(dropout(features))}`` from shared features (see :meth:`features`);
        with a neck, ``{task: head_task(dropout(neck(features)[task]))}``."""
        if self.neck is not None:
            per_task = self.neck(features)
            return {name: head(self.dropout(per_task[name])) for name, head in self.heads.items()}
        features = self.dropout(features)
        return {name: head(features) for name, head in self.heads.items()}

    def task_side_parameters(self) -> list[nn.Parameter]:
        """Every parameter after :meth:`features`: the neck's (if any) and the heads'. A
        gradient aggregator treats them as the heads (the plain sum of the tasks' gradients)."""
        neck = [] if self.neck is None else list(self.neck.parameters())
        return [*neck, *self.heads.parameters()]

    def predict(self, x: Tensor) -> dict[str, Tensor]:
        """What every task predicts (see :func:`predictions`)."""
        return predictions(self(x), list(self.tasks.values()))


def predictions(logits: Mapping[str, Tensor], tasks: Sequence[Task]) -> dict[str, Tensor]:
    """Each task's prediction from its logits (``task.predict``): class probabilities
    (softmax), label probabilities (sigmoid) or values (regression).

    >>> from dmtl.core.tasks import BinarySetTask, CategoricalTask
    >>> tasks = [CategoricalTask("digit", ["0", "1"]), BinarySetTask("attr", ["even"])]
    >>> probs = predictions({"digit": torch.zeros(1, 2), "attr": torch.zeros(1, 1)}, tasks)
    >>> probs["digit"].tolist(), probs["attr"].tolist()
    ([[0.5, 0.5]], [[0.5]])
    """
    by_name = {t.name: t for t in tasks}
    unknown = sorted(set(logits) - set(by_name))
    if unknown:
        raise KeyError(f"logits given for tasks without a specification: {', '.join(unknown)}")
    return {name: by_name[name].predict(z) for name, z in logits.items()}


__all__ = ["HeadFactory", "MultiTaskModel", "infer_feature_dim", "linear_head", "predictions"]
