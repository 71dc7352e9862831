r"""Task relatedness: an edge ``A -> B`` from a categorical task A to a task B with a table R.

- B binary set:  ``R[c, j] = p(b_j = 1 | a = c)``, shape ``C_A x K_B``, values in [0, 1];
- B categorical: ``R[c, d] = p(b = d | a = c)``, shape ``C_A x C_B``, rows summing to 1.

The two maps of method.md section 4, batched and differentiable:

**Forward** (A -> B, marginalising over A's classes)::

    q_B(x) = p_A(x) @ R            i.e.  q_B[j] = sum_c p_A(c|x) R[c, j]

**Inverse** (B -> A, Bayes' rule with a prior ``pi`` over A's classes):

- B binary set, soft evidence ``s_j`` in [0, 1], observation mask ``m_j``,
  ``R~ = clamp(R, eps, 1 - eps)``::

    log q_A(c|x) = log pi_c + (1/tau) sum_j m_j [s_j log R~[c,j] + (1 - s_j) log(1 - R~[c,j])]

  normalised over c by a log-softmax (never a product of probabilities);
- B categorical::

    q_A(c|x) = sum_d p_B(d|x) pi_c R[c,d] / sum_c' pi_c' R[c',d]

>>> from dmtl.core.tasks import BinarySetTask, CategoricalTask
>>> edge = Relatedness(
...     CategoricalTask("digit", ["0", "1"]), BinarySetTask("attr", ["even"]),
...     torch.tensor([[0.9], [0.2]]))
>>> edge.forward_map(torch.tensor([[0.5, 0.5]]))
tensor([[0.5500]])
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from dmtl.core.tasks import CategoricalTask, Task
from dmtl.errors import SpecError

ROW_SUM_TOLERANCE = 1e-4


def check_eps_tau(eps: float, tau: float, where: str = "") -> None:
    """``eps`` must lie in (0, 0.5) and ``tau`` be > 0."""
    prefix = f"{where}: " if where else ""
    if not (isinstance(eps, (int, float)) and 0.0 < eps < 0.5):
        raise SpecError(f"{prefix}eps must lie in (0, 0.5), got {eps!r}")
    if not (isinstance(tau, (int, float)) and tau > 0.0 and math.isfinite(tau)):
        raise SpecError(f"{prefix}tau must be a positive finite number, got {tau!r}")


def check_prior(prior: Tensor, num_classes: int, where: str = "prior") -> Tensor:
    """Validate a class prior: shape ``(C,)``, positive, summing to 1."""
    prior = torch.as_tensor(prior, dtype=torch.float64 if prior.dtype == torch.float64 else None)
    if prior.shape != (num_classes,):
        raise SpecError(
            f"{where}: expected shape ({num_classes},), got {tuple(prior.shape)}"
        )
    if bool(torch.isnan(prior).any()) or bool((prior <= 0).any()):
        raise SpecError(f"{where}: every class needs a positive prior probability")
    if abs(float(prior.sum()) - 1.0) > ROW_SUM_TOLERANCE:
        raise SpecError(f"{where}: must sum to 1, sums to {float(prior.sum()):.6f}")
    return prior


def forward_map(p_source: Tensor, table: Tensor) -> Tensor:
    """``q_B = p_A @ R``: what A's class distribution says about B. Shapes ``(N, C) -> (N, K)``.

    Clamped to [0, 1]: in float32 a softmax may sum to ``1 + ulp``, and a target above 1
    would make a binary cross-entropy against it negative.
    """
    return (p_source @ table.to(p_source.dtype)).clamp(0.0, 1.0)


def inverse_binary_log_posterior(
    evidence: Tensor,
    table: Tensor,
    observed: Tensor | None = None,
    log_prior: Tensor | None = None,
    eps: float = 0.05,
    tau: float = 1.0,
) -> Tensor:
    """``log q_A(c|x)`` from binary-set evidence ``s`` (``(N, K)``, in [0, 1]); returns ``(N, C)``.

    ``log q_A(c) ∝ log pi_c + (1/tau) sum_j m_j [s_j log R~[c,j] + (1-s_j) log(1-R~[c,j])]``,
    with ``R~ = clamp(R, eps, 1-eps)``; only observed labels (``m_j = 1``) enter the sum.
    """
    check_eps_tau(eps, tau, "inverse map")
    table = table.to(evidence.dtype).clamp(eps, 1.0 - eps)
    if observed is None:
        weight = torch.ones_like(evidence)
    else:
        weight = observed.to(evidence.dtype)
        # Unobserved entries may hold any filler (NaN in the encoded form): never read them.
        evidence = torch.where(weight != 0, evidence, torch.zeros_like(evidence))
    log_r, log_not_r = table.log(), (1.0 - table).log()
    log_likelihood = (evidence * weight) @ log_r.T + ((1.0 - evidence) * weight) @ log_not_r.T
    logits = log_likelihood / tau
    if log_prior is not None:
        logits = logits + log_prior.to(evidence.dtype)
    return torch.log_softmax(logits, dim=-1)


def categorical_posterior(table: Tensor, prior: Tensor | None = None) -> Tensor:
    """``P[d, c] = pi_c R[c,d] / sum_c' pi_c' R[c',d]``, shape ``(C_B, C_A)``.

    A B-class that no A-class leads to (an all-zero column) gets the prior as its row.
    """
    num_a = table.shape[0]
    pi = torch.full((num_a,), 1.0 / num_a, dtype=table.dtype) if prior is None else prior
    pi = pi.to(table.dtype)
    joint = pi[:, None] * table  # (C_A, C_B)
    total = joint.sum(dim=0)  # (C_B,)
    safe = torch.where(total > 0, total, torch.ones_like(total))
    posterior = torch.where(total[None, :] > 0, joint / safe, pi[:, None].expand_as(joint))
    return posterior.T


def inverse_categorical_map(p_target: Tensor, table: Tensor, prior: Tensor | None = None) -> Tensor:
    """``q_A(c|x) = sum_d p_B(d|x) P[d, c]`` (:func:`categorical_posterior`); ``(N, C_A)``."""
    return p_target @ categorical_posterior(table.to(p_target.dtype), prior)


class Relatedness:
    """An edge ``source -> target`` with its validated table ``R`` (``C_source x K_target``)."""

    def __init__(self, source: CategoricalTask, target: Task, table: Tensor | Sequence) -> None:
        if not isinstance(source, CategoricalTask):
            raise SpecError(
                f"edge {getattr(source, 'name', source)!r} -> {getattr(target, 'name', target)!r}: "
                "the source of a relatedness edge must be a categorical task"
            )
        if source.name == target.name:
            raise SpecError(
                f"edge {source.name!r} -> {target.name!r}: links a task to itself"
            )
        self.source = source
        self.target = target
        self.table = self._validated(torch.as_tensor(table, dtype=torch.float32))

    @property
    def name(self) -> str:
        return f"{self.source.name}->{self.target.name}"

    @property
    def target_is_categorical(self) -> bool:
        return isinstance(self.target, CategoricalTask)

    def _validated(self, table: Tensor) -> Tensor:
        expected = (self.source.num_classes, self.target.num_outputs)
        if tuple(table.shape) != expected:
            raise SpecError(
                f"edge {self.name}: table shape {tuple(table.shape)} does not match the tasks; "
                f"expected {expected} ({self.source.name} classes x {self.target.name} "
                f"{'classes' if self.target_is_categorical else 'labels'})"
            )
        if bool(torch.isnan(table).any()):
            row, col = (int(i) for i in torch.nonzero(torch.isnan(table))[0])
            raise SpecError(
                f"edge {self.name}: NaN at row {self.source.names[row]!r}, "
                f"column {self.target.names[col]!r}"
            )
        bad = (table < 0) | (table > 1)
        if bool(bad.any()):
            row, col = (int(i) for i in torch.nonzero(bad)[0])
            raise SpecError(
                f"edge {self.name}: value {float(table[row, col])} at row "
                f"{self.source.names[row]!r}, column {self.target.names[col]!r} is outside [0, 1]"
            )
        if self.target_is_categorical:
            sums = table.sum(dim=1)
            off = (sums - 1.0).abs() > ROW_SUM_TOLERANCE
            if bool(off.any()):
                row = int(torch.nonzero(off)[0])
                raise SpecError(
                    f"edge {self.name}: row {self.source.names[row]!r} sums to "
                    f"{float(sums[row]):.6f}; rows must sum to 1 when the target is categorical"
                )
        return table

    # ---- maps -------------------------------------------------------------------------------

    def forward_map(self, p_source: Tensor) -> Tensor:
        """``q_B = p_A @ R`` (see module docstring)."""
        return forward_map(p_source, self.table.to(p_source.device))

    def inverse_log_posterior(
        self,
        evidence: Tensor,
        observed: Tensor | None = None,
        prior: Tensor | None = None,
        eps: float = 0.05,
        tau: float = 1.0,
    ) -> Tensor:
        """``log q_A(c|x)`` from B's evidence: labels or p_B,j (binary), ``p_B`` (categorical)."""
        table = self.table.to(evidence.device)
        if self.target_is_categorical:
            q = inverse_categorical_map(
                evidence, table, None if prior is None else prior.to(evidence.device)
            )
            return q.clamp_min(torch.finfo(q.dtype).tiny).log()
        log_prior = None if prior is None else prior.to(evidence.device, evidence.dtype).log()
        return inverse_binary_log_posterior(evidence, table, observed, log_prior, eps, tau)

    def inverse_map(
        self,
        evidence: Tensor,
        observed: Tensor | None = None,
        prior: Tensor | None = None,
        eps: float = 0.05,
        tau: float = 1.0,
    ) -> Tensor:
        """``q_A(c|x)`` as probabilities (see :meth:`inverse_log_posterior`)."""
        if self.target_is_categorical:
            table = self.table.to(evidence.device)
            return inverse_categorical_map(
                evidence, table, None if prior is None else prior.to(evidence.device)
            )
        return self.inverse_log_posterior(evidence, observed, prior, eps, tau).exp()

    # ---- restriction and io -----------------------------------------------------------------

    def restrict_target(self, target: Task) -> Relatedness:
        """The same edge onto a task with a subset of B's labels (e.g. one dataset's AU set)."""
        missing = [n for n in target.names if n not in self.target.names]
        if missing:
            raise SpecError(
                f"edge {self.name}: cannot restrict to {target.name!r}; unknown "
                f"{'classes' if self.target_is_categorical else 'labels'}: {', '.join(missing)}"
            )
        columns = [self.target.index(n) for n in target.names]
        table = self.table[:, columns]
        if isinstance(target, CategoricalTask):
            table = table / table.sum(dim=1, keepdim=True).clamp_min(1e-12)
        return Relatedness(self.source, target, table)

    def to_csv(self, path: str | Path) -> None:
        """Write the table: header ``<source task>,<B names...>``, one row per A class."""
        path = Path(path)
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow([self.source.name, *self.target.names])
            for name, row in zip(self.source.names, self.table.tolist(), strict=True):
                writer.writerow([name, *(f"{v:.6g}" for v in row)])

    @classmethod
    def from_csv(cls, path: str | Path, source: CategoricalTask, target: Task) -> Relatedness:
        """Read a table written by :meth:`to_csv` (or by hand); rows and columns matched by name."""
        path = Path(path)
        if not path.is_file():
            raise SpecError(f"{path}: relatedness table file not found")
        with path.open(newline="") as handle:
            reader = csv.reader(handle)
            # Keep the physical line number of each row (blank lines are skipped).
            numbered = [(reader.line_num, r) for r in reader if r and any(c.strip() for c in r)]
        if not numbered:
            raise SpecError(f"{path}: empty relatedness table")
        rows = [r for _, r in numbered]
        header = [c.strip() for c in rows[0][1:]]
        _check_names_match(path, "columns", header, target.names, target.name)
        row_names = [r[0].strip() for r in rows[1:]]
        _check_names_match(path, "rows", row_names, source.names, source.name)
        values = torch.zeros(source.num_classes, target.num_outputs)
        for line, row in numbered[1:]:
            if len(row) != len(header) + 1:
                raise SpecError(
                    f"{path}, line {line}: expected {len(header) + 1} fields, got {len(row)}"
                )
            i = source.index(row[0].strip())
            for name, cell in zip(header, row[1:], strict=True):
                try:
                    value = float(cell)
                except ValueError:
                    raise SpecError(
                        f"{path}, line {line}, column {name!r}: "
                        f"expected a probability, got {cell!r}"
                    ) from None
                values[i, target.index(name)] = value
        try:
            return cls(source, target, values)
        except SpecError as error:
            raise SpecError(f"{path}: {error}") from None

    def __repr__(self) -> str:
        return f"Relatedness({self.name}, table {tuple(self.table.shape)})"


def _check_names_match(
    path: Path, what: str, found: Sequence[str], expected: Sequence[str], task: str
) -> None:
    duplicated = sorted({n for n in found if list(found).count(n) > 1})
    unknown = [n for n in found if n not in expected]
    missing = [n for n in expected if n not in found]
    problems = []
    if unknown:
        problems.append(f"unknown names {unknown}")
    if missing:
        problems.append(f"missing names {missing}")
    if duplicated:
        problems.append(f"duplicated names {duplicated}")
    if problems:
        raise SpecError(
            f"{path}: {what} must be exactly the names of task {task!r}; " + "; ".join(problems)
        )


def uniform_prior(task: CategoricalTask) -> Tensor:
    """``pi_c = 1/C``."""
    return torch.full((task.num_classes,), 1.0 / task.num_classes)


def frequency_prior(counts: Tensor, smoothing: float = 1.0) -> Tensor:
    """``pi_c = (n_c + smoothing) / (N + C * smoothing)``: A's label frequencies, kept positive."""
    counts = counts.to(torch.float32) + smoothing
    return counts / counts.sum()


__all__ = [
    "Relatedness",
    "SpecError",
    "categorical_posterior",
    "check_eps_tau",
    "check_prior",
    "forward_map",
    "frequency_prior",
    "inverse_binary_log_posterior",
    "inverse_categorical_map",
    "uniform_prior",
]
