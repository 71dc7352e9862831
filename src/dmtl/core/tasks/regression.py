r"""Regression tasks: ``K`` real-valued targets per sample, e.g. valence and arousal in [-1, 1].

- prediction: the head's output itself, ``y^_j(x) = z_j``;
- encoded label: ``float32 (K,)`` with ``NaN`` for a target not annotated; batch labels
  ``target (N, K)`` with ``mask (N, K)``;
- manifest: one column ``<task>/<target>`` per target holding a number or nothing;
  values outside ``[low, high]`` (when given) are errors;
- loss: ``mse``, ``sum_ij m_ij (z_ij - y_ij)^2 / sum_ij m_ij``, or ``ccc``,
  ``mean_j (1 - CCC_j)`` over the batch (:func:`~dmtl.core.losses.concordance_loss`);
- metrics: concordance correlation coefficient per target and their mean (primary),
  mean squared error;
- relatedness: none yet. A regression task is neither the source nor the target of an
  edge; a config asking for one gets a clear error.

>>> va = RegressionTask("va", ["valence", "arousal"], low=-1.0, high=1.0)
>>> va.parse_columns({"va/arousal": np.array([0.5, np.nan])}, 2).tolist()
[[nan, 0.5], [nan, nan]]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from torch import Tensor

from dmtl.core.labels import TaskLabels
from dmtl.core.losses import concordance_loss, masked_squared_error
from dmtl.core.tasks.base import check_names, check_task_name, register_task_kind
from dmtl.core.tasks.vector import VectorTask
from dmtl.errors import SpecError

if TYPE_CHECKING:
    from torchmetrics import Metric

    from dmtl.core.metrics import MetricKernel

RegressionLoss = Literal["mse", "ccc"]


@register_task_kind
@dataclass(frozen=True, repr=False)
class RegressionTask(VectorTask):
    """Real-valued targets; ``low``/``high`` bound valid labels (``None``: unbounded).

    Training option (not part of the task's identity): ``loss``, ``"mse"`` or ``"ccc"``.
    """

    low: float | None = None
    high: float | None = None
    loss_name: RegressionLoss = field(default="mse", compare=False)

    kind = "regression"
    output_word = "target"
    output_words = "targets"
    primary_metric = "ccc_mean"

    def __init__(
        self,
        name: str,
        targets: Iterable[str],
        low: float | None = None,
        high: float | None = None,
        loss: RegressionLoss = "mse",
    ) -> None:
        object.__setattr__(self, "name", check_task_name(name))
        object.__setattr__(self, "names", check_names(name, "targets", targets, 1))
        if low is not None and high is not None and not float(low) < float(high):
            raise SpecError(f"task {name!r}: the range needs low < high, got [{low}, {high}]")
        object.__setattr__(self, "low", None if low is None else float(low))
        object.__setattr__(self, "high", None if high is None else float(high))
        if loss not in ("mse", "ccc"):
            raise SpecError(f"task {name!r}: loss must be 'mse' or 'ccc', got {loss!r}")
        object.__setattr__(self, "loss_name", loss)

    @property
    def targets(self) -> tuple[str, ...]:
        """Target names, in output order."""
        return self.names

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.kind,
            "targets": list(self.names),
            "low": self.low,
            "high": self.high,
            "loss": self.loss_name,
        }

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> RegressionTask:
        return cls(
            spec["name"], spec["targets"], spec.get("low"), spec.get("high"),
            spec.get("loss", "mse"),
        )

    # ---- encoded labels ---------------------------------------------------------------------

    def _valid_entries(self, values: np.ndarray) -> np.ndarray:
        valid = np.isfinite(values)
        if self.low is not None:
            valid &= values >= self.low
        if self.high is not None:
            valid &= values <= self.high
        return valid

    def _expected(self) -> str:
        if self.low is None and self.high is None:
            return "a finite number"
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"a number in [{low}, {high}]"

    def count_labels(self, values: np.ndarray) -> list[tuple[str, int, int | None]]:
        observed = ~np.isnan(values)
        return [(name, int(observed[:, j].sum()), None) for j, name in enumerate(self.names)]

    # ---- learning ---------------------------------------------------------------------------

    def loss(self, logits: Tensor, labels: TaskLabels) -> Tensor:
        if self.loss_name == "ccc":
            return concordance_loss(logits, labels.target, labels.mask)
        return masked_squared_error(logits, labels.target, labels.mask)

    def predict(self, logits: Tensor) -> Tensor:
        return logits

    def decide(self, outputs: Tensor, thresholds: Sequence[float] | None = None) -> np.ndarray:
        """The predicted values, clipped to ``[low, high]`` when a range is given."""
        values = outputs.detach().float().cpu().numpy()
        if self.low is None and self.high is None:
            return values
        return np.clip(values, self.low, self.high)

    def metric(self, per_output: bool = True, **kwargs: Any) -> Metric:
        from dmtl.core.synced_metrics import RegressionMetrics

        return RegressionMetrics(self, per_output=per_output, **kwargs)

    def metric_kernel(self, per_output: bool = True, **kwargs: Any) -> MetricKernel:
        from dmtl.core.metrics import RegressionKernel

        return RegressionKernel(self, per_output=per_output, **kwargs)

    def metric_names(self, per_output: bool = True) -> list[str]:
        per = [f"ccc/{name}" for name in self.names] if per_output else []
        return ["ccc_mean", "mse", *per, "num_labelled"]


__all__ = ["RegressionLoss", "RegressionTask"]
