r"""Task heads with their own capacity: ``HeadSpec`` is a ``head_factory`` for ``MultiTaskModel``.

A head maps the shared features ``(N, D)`` to the task's logits ``(N, num_outputs)``:

.. math::

    h_0 = x, \qquad h_{i} = \operatorname{Dropout}_p(\operatorname{ReLU}(W_i h_{i-1} + b_i))
    \quad (i = 1..k), \qquad z = W_{k+1} h_k + b_{k+1},

one ``Linear -> ReLU (-> Dropout)`` per hidden width ``(w_1, ..., w_k)``, then
``Linear(w_k, num_outputs)``. With no hidden width the head is exactly
``nn.Linear(D, num_outputs)``, the default head of :class:`~dmtl.core.model.MultiTaskModel`
(same module, same initialisation from the same seed, same state-dict keys).

Widths are global (``hidden``) or per task (``per_task`` overrides ``hidden`` for the
tasks it names; ``()`` makes that task's head linear). A head with hidden layers has
state-dict keys ``heads.<task>.<index>.weight``: a checkpoint can only be loaded into a
model built with the same ``HeadSpec``.

>>> from dmtl.core.tasks import BinarySetTask, CategoricalTask
>>> spec = HeadSpec(hidden=(16,), per_task={"au": (32, 16)}, dropout=0.1)
>>> spec(8, CategoricalTask("expression", ["neutral", "happy", "sad"]))
Sequential(
  (0): Linear(in_features=8, out_features=16, bias=True)
  (1): ReLU()
  (2): Dropout(p=0.1, inplace=False)
  (3): Linear(in_features=16, out_features=3, bias=True)
)
>>> spec.widths("au")
(32, 16)
>>> HeadSpec()(8, BinarySetTask("au", ["AU1", "AU2"]))
Linear(in_features=8, out_features=2, bias=True)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from torch import nn

from dmtl.core.tasks import Task
from dmtl.errors import SpecError


def _check_widths(widths: Sequence[int], where: str) -> tuple[int, ...]:
    if isinstance(widths, str | bytes) or not isinstance(widths, Sequence):
        raise SpecError(f"{where}: expected a list of layer widths, got {widths!r}")
    for width in widths:
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise SpecError(f"{where}: layer widths must be positive integers, got {width!r}")
    return tuple(widths)


def mlp_head(
    feature_dim: int, num_outputs: int, hidden: Sequence[int] = (), dropout: float = 0.0
) -> nn.Module:
    """``Linear -> ReLU (-> Dropout)`` per width in ``hidden``, then ``Linear(num_outputs)``.

    ``hidden=()`` returns ``nn.Linear(feature_dim, num_outputs)`` itself.

    >>> mlp_head(4, 2)
    Linear(in_features=4, out_features=2, bias=True)
    >>> len(mlp_head(4, 2, (8, 8)))       # 2 x (Linear, ReLU) + Linear
    5
    """
    if not hidden:
        return nn.Linear(feature_dim, num_outputs)
    layers: list[nn.Module] = []
    width_in = feature_dim
    for width in hidden:
        layers += [nn.Linear(width_in, width), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width_in = width
    layers.append(nn.Linear(width_in, num_outputs))
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class HeadSpec:
    """Hidden widths of the task heads; callable as ``(feature_dim, task) -> head``.

    Args:
        hidden: widths of the hidden layers of every head (``()``: linear heads).
        per_task: ``{task name: widths}`` overriding ``hidden`` for those tasks.
        dropout: probability of the ``nn.Dropout`` after each hidden ReLU (0: none).
    """

    hidden: tuple[int, ...] = ()
    per_task: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    dropout: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", _check_widths(self.hidden, "heads.hidden"))
        if not isinstance(self.per_task, Mapping):
            raise SpecError(f"heads.per_task: expected a mapping, got {self.per_task!r}")
        per_task = {}
        for name, widths in self.per_task.items():
            if not isinstance(name, str) or not name:
                raise SpecError(f"heads.per_task: task names must be non-empty, got {name!r}")
            per_task[name] = _check_widths(widths, f"heads.per_task.{name}")
        object.__setattr__(self, "per_task", per_task)
        dropout = self.dropout
        if isinstance(dropout, bool) or not isinstance(dropout, int | float):
            raise SpecError(f"heads.dropout: expected a number, got {dropout!r}")
        if not (math.isfinite(dropout) and 0.0 <= dropout < 1.0):
            raise SpecError(f"heads.dropout: must lie in [0, 1), got {dropout}")

    def __hash__(self) -> int:
        return hash((self.hidden, tuple(sorted(self.per_task.items())), self.dropout))

    def widths(self, task_name: str) -> tuple[int, ...]:
        """Hidden widths of the head of ``task_name``."""
        return self.per_task.get(task_name, self.hidden)

    def check_tasks(self, task_names: Iterable[str]) -> None:
        """Raise :class:`~dmtl.errors.SpecError` if ``per_task`` names a task not in
        ``task_names`` (the model's factory only sees the tasks it has, so a misspelt
        name would otherwise be ignored)."""
        unknown = sorted(set(self.per_task) - set(task_names))
        if unknown:
            raise SpecError(f"heads.per_task names unknown tasks: {', '.join(unknown)}")

    def __call__(self, feature_dim: int, task: Task) -> nn.Module:
        """The head of ``task`` over features of dimension ``feature_dim``."""
        return mlp_head(feature_dim, task.num_outputs, self.widths(task.name), self.dropout)


__all__ = ["HeadSpec", "mlp_head"]
