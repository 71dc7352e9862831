r"""Task relatedness: an edge ``A -> B`` from a categorical task A to a task B with a table R.

- B binary set:  ``R[c, j] = p(b_j = 1 | a = c)``, shape ``C_A x K_B``, values in [0, 1];
- B categorical: ``R[c, d] = p(b = d | a = c)``, shape ``C_A x C_B``, rows summing to 1.

An edge maps A's predictions forward to B (``q_B = p_A R``) and B's labels or
predictions back to A by Bayes' rule; the formulas are in :mod:`dmtl.core.maps`, and
the target task's kind says which inverse applies. Tables are read and written as CSV
(:meth:`Relatedness.to_csv`, :meth:`Relatedness.from_csv`).

>>> from dmtl.core.tasks import BinarySetTask, CategoricalTask
>>> edge = Relatedness(
...     CategoricalTask("digit", ["0", "1"]), BinarySetTask("attr", ["even"]),
...     torch.tensor([[0.9], [0.2]]))
>>> edge.forward_map(torch.tensor([[0.5, 0.5]]))
tensor([[0.5500]])
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from dmtl._textfile import read_text
from dmtl.core.maps import (
    ROW_SUM_TOLERANCE,
    categorical_posterior,
    check_eps_tau,
    check_prior,
    forward_map,
    frequency_prior,
    inverse_binary_log_posterior,
    inverse_categorical_map,
)
from dmtl.core.tasks import CategoricalTask, Task
from dmtl.errors import SpecError


class Relatedness:
    """An edge ``source -> target`` with its validated table ``R`` (``C_source x K_target``).

    The source is a categorical task; the target is any task kind that can be an edge's
    target (``task.can_be_edge_target``): the target's kind checks the table, inverts it
    and says how its head learns from a soft target.
    """

    def __init__(self, source: Task, target: Task, table: Tensor | Sequence) -> None:
        names = f"{getattr(source, 'name', source)!r} -> {getattr(target, 'name', target)!r}"
        if not getattr(source, "can_be_edge_source", False):
            kind = getattr(source, "kind", type(source).__name__)
            raise SpecError(
                f"edge {names}: the source of a relatedness edge must be a categorical task, "
                f"not a {kind} task"
            )
        if source.name == target.name:
            raise SpecError(f"edge {names}: links a task to itself")
        self.source: CategoricalTask = source  # type: ignore[assignment]
        self.target = target
        if not target.can_be_edge_target:
            target.check_table(torch.empty(0), self)  # raises: no such edge type
        self.table = self._validated(torch.as_tensor(table, dtype=torch.float32))

    @property
    def name(self) -> str:
        return f"{self.source.name}->{self.target.name}"

    def _validated(self, table: Tensor) -> Tensor:
        expected = (self.source.num_classes, self.target.num_outputs)
        if tuple(table.shape) != expected:
            raise SpecError(
                f"edge {self.name}: table shape {tuple(table.shape)} does not match the tasks; "
                f"expected {expected} ({self.source.name} classes x {self.target.name} "
                f"{self.target.output_words})"
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
        self.target.check_table(table, self)
        return table

    # ---- maps -------------------------------------------------------------------------------

    def forward_map(self, p_source: Tensor) -> Tensor:
        """``q_B = p_A @ R`` (see :mod:`dmtl.core.maps`)."""
        return forward_map(p_source, self.table)

    def inverse_log_posterior(
        self,
        evidence: Tensor,
        observed: Tensor | None = None,
        prior: Tensor | None = None,
        eps: float = 0.05,
        tau: float = 1.0,
    ) -> Tensor:
        """``log q_A(c|x)`` from B's evidence: labels or p_B,j (binary), ``p_B`` (categorical)."""
        return self.target.inverse_log_posterior(  # type: ignore[attr-defined]
            evidence, self.table, observed, prior, eps, tau
        )

    def inverse_map(
        self,
        evidence: Tensor,
        observed: Tensor | None = None,
        prior: Tensor | None = None,
        eps: float = 0.05,
        tau: float = 1.0,
    ) -> Tensor:
        """``q_A(c|x)`` as probabilities (see :meth:`inverse_log_posterior`)."""
        return self.target.inverse_posterior(  # type: ignore[attr-defined]
            evidence, self.table, observed, prior, eps, tau
        )

    # ---- restriction and io -----------------------------------------------------------------

    def restrict_target(self, target: Task) -> Relatedness:
        """The same edge onto a task with a subset of B's labels (e.g. one dataset's AU set)."""
        missing = [n for n in target.names if n not in self.target.names]
        if missing or target.kind != self.target.kind:
            raise SpecError(
                f"edge {self.name}: cannot restrict to {target.name!r}; unknown "
                f"{self.target.output_words}: {', '.join(missing) or '(another kind of task)'}"
            )
        columns = [self.target.index(n) for n in target.names]
        table = target.restrict_table(self.table[:, columns])  # type: ignore[attr-defined]
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
        text = read_text(path, "relatedness table", SpecError)
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            # Keep the physical line number of each row (blank lines are skipped).
            numbered = [(reader.line_num, r) for r in reader if r and any(c.strip() for c in r)]
        except csv.Error as error:
            raise SpecError(f"{path}, line {reader.line_num}: not a CSV table ({error})") from None
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


__all__ = [
    "ROW_SUM_TOLERANCE",
    "Relatedness",
    "categorical_posterior",
    "check_eps_tau",
    "check_prior",
    "forward_map",
    "frequency_prior",
    "inverse_binary_log_posterior",
    "inverse_categorical_map",
    "uniform_prior",
]
