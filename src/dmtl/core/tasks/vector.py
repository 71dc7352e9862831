"""Kinds whose sample label is a vector of ``K`` entries, each observed or not.

Binary sets and regression share the encoded form ``float32 (N, K)`` with ``NaN`` for
an entry not observed, batch labels ``target (N, K)`` with ``mask (N, K)``, and one
manifest column ``<task>/<name>`` per entry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dmtl.core.labels import TaskLabels
from dmtl.core.tasks.base import LabelCellError, Task, is_missing
from dmtl.errors import DataError, SpecError


@dataclass(frozen=True, repr=False)
class VectorTask(Task):
    """A task whose label is ``K`` independently observed entries (``float32``, NaN = unseen)."""

    manifest_dtype = "float32"

    # ---- encoded labels ---------------------------------------------------------------------

    def unlabelled(self, n: int) -> np.ndarray:
        return np.full((n, self.num_outputs), np.nan, dtype=np.float32)

    def observed(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(~np.isnan(values), dtype=bool)

    def check_encoded(self, values: Any, n: int, where: str) -> np.ndarray:
        values = np.asarray(values)
        if values.shape != (n, self.num_outputs):
            raise DataError(
                f"{where}: task {self.name!r}: expected labels of shape ({n}, "
                f"{self.num_outputs}), got {values.shape}"
            )
        if values.dtype.kind not in "fiub":
            raise DataError(
                f"{where}: task {self.name!r}: expected numbers (NaN = not observed), "
                f"got dtype {values.dtype}"
            )
        values = values.astype(np.float32)
        bad = ~np.isnan(values) & ~self._valid_entries(values)
        if bad.any():
            i, j = (int(v[0]) for v in np.nonzero(bad))
            raise DataError(
                f"{where}: task {self.name!r}, sample {i}, {self.output_word} "
                f"{self.names[j]!r}: expected {self._expected()} (or NaN), got {values[i, j]}"
            )
        return values

    def _valid_entries(self, values: np.ndarray) -> np.ndarray:
        """Boolean mask of the valid observed values (NaN entries are ignored)."""
        raise NotImplementedError

    def _expected(self) -> str:
        """What a valid observed value is, for messages."""
        raise NotImplementedError

    def _valid_targets(self, values: np.ndarray) -> np.ndarray:
        """Valid observed targets of a batch (binary sets also take soft targets in [0, 1])."""
        return self._valid_entries(values)

    def _targets_expected(self) -> str:
        return f"not {self._expected()}"

    def manifest_columns(self) -> list[str]:
        return [f"{self.name}/{name}" for name in self.names]

    def parse_columns(self, columns: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        out = self.unlabelled(n)
        for j, column in enumerate(self.manifest_columns()):
            if column in columns:
                out[:, j] = self._parse_column(column, columns[column])
        return out

    def _parse_column(self, column: str, cells: np.ndarray) -> np.ndarray:
        if cells.dtype.kind in "fiub":
            values = cells.astype(np.float64)
        else:
            values = np.full(len(cells), np.nan)
            for position in np.flatnonzero(cells != ""):
                try:
                    values[position] = float(cells[position])
                except ValueError:
                    values[position] = np.inf  # never valid: reported below
                if np.isnan(values[position]):  # the text "nan": only an empty cell is unseen
                    values[position] = np.inf
        bad = np.flatnonzero(~np.isnan(values) & ~self._valid_entries(values))
        if len(bad):
            raise LabelCellError(
                column,
                bad,
                f"expected {self._expected()} (or empty) for {self.output_word} "
                f"{column.split('/', 1)[1]!r} of task {self.name!r}, got {cells[bad[0]]!r}",
            )
        return values.astype(np.float32)

    def decode(self, values: np.ndarray) -> dict[str, np.ndarray]:
        return {column: values[:, j] for j, column in enumerate(self.manifest_columns())}

    def encode_value(self, value: Any) -> Tensor:
        encoded = torch.full((self.num_outputs,), math.nan)
        if value is None:
            return encoded
        if isinstance(value, Mapping):
            items = [(self.index(name), name, v) for name, v in value.items()]
        else:
            if isinstance(value, Tensor):
                value = value.reshape(-1).tolist()
            values = list(value)
            if len(values) != self.num_outputs:
                raise SpecError(
                    f"task {self.name!r}: expected {self.num_outputs} {self.output_word} values, "
                    f"got {len(values)}"
                )
            items = [(j, self.names[j], v) for j, v in enumerate(values)]
        for j, name, v in items:
            if not is_missing(v):
                number = float(v)
                if not bool(self._valid_entries(np.asarray([number]))[0]):
                    raise SpecError(
                        f"task {self.name!r}, {self.output_word} {name!r}: expected "
                        f"{self._expected()}, got {v!r}"
                    )
                encoded[j] = number
        return encoded

    # ---- batch labels -----------------------------------------------------------------------

    def batch_labels(self, encoded: Tensor) -> TaskLabels:
        values = encoded.float()
        mask = ~torch.isnan(values)
        return TaskLabels(torch.nan_to_num(values, nan=0.0), mask)

    def encode_batch(self, labels: TaskLabels) -> Tensor:
        return torch.where(labels.mask, labels.target, math.nan)

    def empty_batch_labels(self, n: int, device: torch.device | None = None) -> TaskLabels:
        shape = (n, self.num_outputs)
        return TaskLabels(
            torch.zeros(shape, device=device), torch.zeros(shape, dtype=torch.bool, device=device)
        )

    def check_batch(self, labels: TaskLabels) -> None:
        super().check_batch(labels)
        target, mask = labels.target, labels.mask
        if target.dim() != 2 or target.shape[1] != self.num_outputs:
            raise SpecError(
                f"task {self.name!r}: {self.kind.replace('_', '-')} targets must have shape "
                f"(N, {self.num_outputs}), got {tuple(target.shape)}"
            )
        observed = target[mask].detach().cpu().double().numpy()
        bad = np.isnan(observed) | ~self._valid_targets(observed)
        if bad.any():
            rows, cols = torch.nonzero(mask, as_tuple=True)
            first = int(np.flatnonzero(bad)[0])
            row, col = int(rows[first]), int(cols[first])
            raise SpecError(
                f"task {self.name!r}, row {row}, {self.output_word} {self.names[col]!r}: value "
                f"{float(target[row, col])} {self._targets_expected()}"
            )


__all__ = ["VectorTask"]
