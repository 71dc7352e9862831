r"""Categorical tasks: exactly one of ``C`` classes per sample.

- prediction: ``p(c|x) = softmax(z)(c)``;
- encoded label: the class index, ``-1`` (:data:`~dmtl.core.labels.MISSING_CLASS`) when not
  labelled; batch labels ``target (N,)`` int64 with ``mask (N,)``;
- manifest: one column ``<task>`` holding a class name or a class index;
- loss: masked cross-entropy ``sum_i m_i w_{y_i} CE(z_i, y_i) / sum_i m_i w_{y_i}`` with
  optional class weights ``w`` and label smoothing;
- metrics: accuracy (primary), macro-F1, per-class F1;
- relatedness: the source of every edge, and the target of edges whose table rows are
  distributions over its classes (``R[c, d] = p(b = d | a = c)``, rows sum to 1).

>>> expr = CategoricalTask("expression", ("neutral", "happy", "sad"))
>>> expr.num_outputs, expr.index("sad")
(3, 2)
>>> expr.parse_columns({"expression": np.array(["happy", "", "2"], dtype=object)}, 3).tolist()
[1, -1, 2]
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dmtl.core.labels import MISSING_CLASS, TaskLabels
from dmtl.core.losses import masked_cross_entropy, soft_cross_entropy
from dmtl.core.maps import ROW_SUM_TOLERANCE, categorical_posterior, full_precision
from dmtl.core.tasks.base import (
    LabelCellError,
    Task,
    check_names,
    check_task_name,
    is_missing,
    register_task_kind,
)
from dmtl.errors import DataError, SpecError

if TYPE_CHECKING:
    from torchmetrics import Metric

    from dmtl.core.metrics import MetricKernel
    from dmtl.core.relatedness import Relatedness

_INTEGER = re.compile(r"^[+-]?\d+$")
_PREVIEW = 10


def preview(names: Iterable[str], limit: int = _PREVIEW) -> str:
    """The first names, quoted, and how many there are in all."""
    names = list(names)
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


@register_task_kind
@dataclass(frozen=True, repr=False)
class CategoricalTask(Task):
    """Multi-class task: exactly one of ``classes`` per sample.

    ``zero_shot`` names the classes that have no training images but can be scored
    through a relatedness table, e.g. compound expressions from their action units.
    Training options (not part of the task's identity): ``class_weight`` (one weight
    per class, e.g. from :meth:`balanced_weight`) and ``label_smoothing``.
    """

    zero_shot: tuple[str, ...] = ()
    class_weight: tuple[float, ...] | None = field(default=None, compare=False)
    label_smoothing: float = field(default=0.0, compare=False)

    kind = "categorical"
    output_word = "class"
    output_words = "classes"
    primary_metric = "accuracy"
    manifest_dtype = "object"
    can_be_edge_source = True
    can_be_edge_target = True

    def __init__(
        self,
        name: str,
        classes: Iterable[str],
        zero_shot: Iterable[str] = (),
        class_weight: Iterable[float] | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        object.__setattr__(self, "name", check_task_name(name))
        object.__setattr__(self, "names", check_names(name, "classes", classes, 2))
        zero_shot = tuple(zero_shot)
        unknown = [z for z in zero_shot if z not in self.names]
        if unknown:
            raise SpecError(f"task {name!r}: zero-shot classes {unknown} are not among its classes")
        object.__setattr__(self, "zero_shot", zero_shot)
        weights = None if class_weight is None else tuple(float(w) for w in class_weight)
        if weights is not None and (
            len(weights) != len(self.names) or not all(w > 0 for w in weights)
        ):
            raise SpecError(
                f"task {name!r}: class_weight needs {len(self.names)} positive numbers, "
                f"got {list(weights)}"
            )
        object.__setattr__(self, "class_weight", weights)
        if not 0.0 <= label_smoothing < 1.0:
            raise SpecError(f"task {name!r}: label_smoothing must lie in [0, 1)")
        object.__setattr__(self, "label_smoothing", float(label_smoothing))

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names, in logit order."""
        return self.names

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def trained_classes(self) -> tuple[str, ...]:
        """Classes that have training labels (all but the zero-shot ones)."""
        return tuple(c for c in self.names if c not in self.zero_shot)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.kind,
            "classes": list(self.names),
            "zero_shot": list(self.zero_shot),
            "class_weight": None if self.class_weight is None else list(self.class_weight),
            "label_smoothing": self.label_smoothing,
        }

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> CategoricalTask:
        return cls(
            spec["name"],
            spec["classes"],
            spec.get("zero_shot", ()),
            spec.get("class_weight"),
            spec.get("label_smoothing", 0.0),
        )

    # ---- encoded labels ---------------------------------------------------------------------

    def unlabelled(self, n: int) -> np.ndarray:
        return np.full(n, MISSING_CLASS, dtype=np.int64)

    def observed(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values != MISSING_CLASS)

    def check_encoded(self, values: Any, n: int, where: str) -> np.ndarray:
        values = np.asarray(values)
        if values.shape != (n,):
            raise DataError(
                f"{where}: task {self.name!r}: expected labels of shape ({n},), got {values.shape}"
            )
        if values.dtype.kind not in "iu":
            raise DataError(
                f"{where}: task {self.name!r}: expected integer class indices, "
                f"got dtype {values.dtype}"
            )
        values = values.astype(np.int64)
        bad = np.flatnonzero((values < MISSING_CLASS) | (values >= self.num_classes))
        if len(bad):
            raise DataError(
                f"{where}: task {self.name!r}, sample {int(bad[0])}: class index "
                f"{int(values[bad[0]])} out of range (expected -1..{self.num_classes - 1})"
            )
        return values

    def manifest_columns(self) -> list[str]:
        return [self.name]

    def parse_columns(self, columns: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        """Class names first; a cell that is no name is read as a class index."""
        if self.name not in columns:
            return self.unlabelled(n)
        cells = columns[self.name]
        if cells.dtype.kind in "fiub":
            return self._parse_indices(cells.astype(np.float64))
        lookup = {name: i for i, name in enumerate(self.names)}
        out = np.fromiter((lookup.get(t, -2) for t in cells), dtype=np.int64, count=len(cells))
        out[cells == ""] = MISSING_CLASS
        unmatched = np.flatnonzero(out == -2)
        for position in unmatched:
            value = cells[position]
            if _INTEGER.match(value) and 0 <= int(value) < self.num_classes:
                out[position] = int(value)
        bad = unmatched[out[unmatched] == -2]
        if len(bad):
            raise LabelCellError(self.name, bad, self._bad_cell(str(cells[bad[0]])))
        return out

    def _parse_indices(self, values: np.ndarray) -> np.ndarray:
        present = ~np.isnan(values)
        ok = ~present | ((values == np.floor(values)) & (values >= 0) & (values < self.num_classes))
        bad = np.flatnonzero(~ok)
        if len(bad):
            shown = values[bad[0]]
            text = str(int(shown)) if shown == np.floor(shown) else str(shown)
            raise LabelCellError(self.name, bad, self._bad_cell(text))
        return np.where(present, np.nan_to_num(values), MISSING_CLASS).astype(np.int64)

    def _bad_cell(self, value: str) -> str:
        if _INTEGER.match(value):
            return (
                f"class index {value} out of range for task {self.name!r} (expected "
                f"0..{self.num_classes - 1}; leave the cell empty for 'not labelled')"
            )
        close = difflib.get_close_matches(value, self.names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return (
            f"unknown class {value!r} for task {self.name!r}{hint}; expected a class name "
            f"({preview(self.names)}) or a class index 0..{self.num_classes - 1}"
        )

    def decode(self, values: np.ndarray) -> dict[str, np.ndarray]:
        names = np.asarray(self.names, dtype=object)
        decoded = names[np.clip(values, 0, None)]
        decoded[values == MISSING_CLASS] = None
        return {self.name: decoded}

    def encode_value(self, value: Any) -> Tensor:
        if is_missing(value):
            return torch.tensor(MISSING_CLASS)
        index = self.index(value) if isinstance(value, str) else int(value)
        if index != MISSING_CLASS and not 0 <= index < self.num_classes:
            raise SpecError(
                f"task {self.name!r}: class index {index} out of range [0, {self.num_classes - 1}]"
            )
        return torch.tensor(index)

    def count_labels(self, values: np.ndarray) -> list[tuple[str, int, int | None]]:
        given = values[values != MISSING_CLASS]
        per_class = np.bincount(given, minlength=self.num_classes)
        return [(name, len(given), int(per_class[c])) for c, name in enumerate(self.names)]

    def strata(self, values: np.ndarray) -> np.ndarray:
        """The class of each sample: subsamples keep every class's share."""
        return values

    def balanced_weight(self, values: np.ndarray) -> tuple[float, ...]:
        """``w_c = n / (C n_c)`` over the labelled samples (``n_c`` at least 1), as scikit-learn."""
        given = values[values != MISSING_CLASS]
        counts = np.maximum(np.bincount(given, minlength=self.num_classes), 1)
        return tuple(float(w) for w in max(len(given), 1) / (self.num_classes * counts))

    def class_counts(self, values: np.ndarray) -> np.ndarray:
        """Labelled samples per class."""
        return np.bincount(values[values != MISSING_CLASS], minlength=self.num_classes)

    # ---- batch labels -----------------------------------------------------------------------

    def batch_labels(self, encoded: Tensor) -> TaskLabels:
        values = encoded.long()
        mask = values != MISSING_CLASS
        return TaskLabels(torch.where(mask, values, 0), mask)

    def encode_batch(self, labels: TaskLabels) -> Tensor:
        return torch.where(labels.mask, labels.target, MISSING_CLASS)

    def empty_batch_labels(self, n: int, device: torch.device | None = None) -> TaskLabels:
        return TaskLabels(
            torch.zeros(n, dtype=torch.long, device=device),
            torch.zeros(n, dtype=torch.bool, device=device),
        )

    def check_batch(self, labels: TaskLabels) -> None:
        super().check_batch(labels)
        target, mask = labels.target, labels.mask
        if target.dim() != 1:
            raise SpecError(
                f"task {self.name!r}: categorical targets must have shape (N,), "
                f"got {tuple(target.shape)}"
            )
        if target.is_floating_point():
            raise SpecError(f"task {self.name!r}: class indices must be integers")
        bad = (target[mask] < 0) | (target[mask] >= self.num_classes)
        if bool(bad.any()):
            row = int(torch.nonzero(mask, as_tuple=True)[0][bad][0])
            raise SpecError(
                f"task {self.name!r}, row {row}: class index {int(target[row])} out of range "
                f"[0, {self.num_classes - 1}]"
            )

    # ---- learning ---------------------------------------------------------------------------

    def loss(self, logits: Tensor, labels: TaskLabels) -> Tensor:
        weight = None if self.class_weight is None else torch.tensor(self.class_weight)
        return masked_cross_entropy(logits, labels, weight, self.label_smoothing)

    def predict(self, logits: Tensor) -> Tensor:
        return torch.softmax(logits, dim=-1)

    def decide(self, outputs: Tensor, thresholds: Sequence[float] | None = None) -> np.ndarray:
        """The most probable class."""
        return outputs.argmax(dim=-1).cpu().numpy().astype(np.int64)

    def metric(self, per_output: bool = True, **kwargs: Any) -> Metric:
        from dmtl.core.synced_metrics import CategoricalMetrics

        return CategoricalMetrics(self, per_output=per_output, **kwargs)

    def metric_kernel(self, per_output: bool = True, **kwargs: Any) -> MetricKernel:
        from dmtl.core.metrics import CategoricalKernel

        return CategoricalKernel(self, per_output=per_output, **kwargs)

    def metric_names(self, per_output: bool = True) -> list[str]:
        per = [f"f1/{name}" for name in self.names] if per_output else []
        return ["accuracy", "f1_macro", *per, "num_labelled"]

    # ---- relatedness ------------------------------------------------------------------------

    def check_table(self, table: Tensor, edge: Relatedness) -> None:
        """Rows are distributions over this task's classes: each sums to 1."""
        sums = table.sum(dim=1)
        off = (sums - 1.0).abs() > ROW_SUM_TOLERANCE
        if bool(off.any()):
            row = int(torch.nonzero(off)[0])
            raise SpecError(
                f"edge {edge.name}: row {edge.source.names[row]!r} sums to "
                f"{float(sums[row]):.6f}; rows must sum to 1 when the target is categorical"
            )

    def restrict_table(self, table: Tensor) -> Tensor:
        """Renormalise the rows of a table restricted to a subset of the classes."""
        return table / table.sum(dim=1, keepdim=True).clamp_min(1e-12)

    def evidence(self, labels: TaskLabels, dtype: torch.dtype) -> tuple[Tensor, Tensor | None]:
        """Labels as evidence for an inverse map: one-hot classes, no per-entry mask."""
        return F.one_hot(labels.target, self.num_classes).to(dtype), None

    def indicator(self, labels: TaskLabels) -> tuple[Tensor, Tensor]:
        """``(values, observed)`` ``(N, C)`` for counting co-occurrences (one-hot, whole rows)."""
        one_hot = F.one_hot(labels.target, self.num_classes).double()
        return one_hot, labels.mask[:, None].double().expand_as(one_hot)

    @full_precision
    def inverse_posterior(
        self,
        evidence: Tensor,
        table: Tensor,
        observed: Tensor | None = None,
        prior: Tensor | None = None,
        eps: float = 0.05,
        tau: float = 1.0,
    ) -> Tensor:
        """``q_A(c|x) = sum_d p_B(d|x) pi_c R[c,d] / sum_c' pi_c' R[c',d]`` (eps, tau unused)."""
        table = table.to(evidence.device, evidence.dtype)
        prior = None if prior is None else prior.to(evidence.device)
        return evidence @ categorical_posterior(table, prior)

    def inverse_log_posterior(
        self,
        evidence: Tensor,
        table: Tensor,
        observed: Tensor | None = None,
        prior: Tensor | None = None,
        eps: float = 0.05,
        tau: float = 1.0,
    ) -> Tensor:
        """``log q_A(c|x)`` of :meth:`inverse_posterior`, clamped away from ``log 0``."""
        q = self.inverse_posterior(evidence, table, observed, prior, eps, tau)
        return q.clamp_min(torch.finfo(q.dtype).tiny).log()

    def learning_mask(self, source_labelled: Tensor, labels: TaskLabels) -> Tensor:
        """Samples labelled for the source but not for this task (co-annotation targets)."""
        return source_labelled & ~labels.mask

    def soft_target_loss(self, logits: Tensor, target: Tensor, weight: Tensor) -> Tensor:
        """``sum_i w_i CE(q_i, softmax(z_i)) / sum_i w_i`` against soft class distributions."""
        return soft_cross_entropy(logits, target, weight)

    @full_precision
    def harden(self, soft: Tensor, threshold: float = 0.5) -> tuple[Tensor, Tensor]:
        """One-hot arg-max of ``soft``, kept (mask ``(N,)``) where its probability ``>= threshold``.

        >>> task = CategoricalTask("t", ["a", "b"])
        >>> task.harden(torch.tensor([[0.3, 0.7], [0.55, 0.45]]), 0.6)
        (tensor([[0., 1.],
                [1., 0.]]), tensor([ True, False]))
        """
        best, index = soft.max(dim=-1)
        return F.one_hot(index, soft.shape[-1]).to(soft.dtype), best >= threshold


__all__ = ["CategoricalTask", "preview"]
