"""Label statistics of sources, as pandas DataFrames (rendering is left to the caller).

"Labelled for a task" means: a class is given (categorical), or at least one
label is observed (binary set).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations_with_replacement

import numpy as np
import pandas as pd

from dmtl.core.labels import MISSING_CLASS
from dmtl.core.tasks import CategoricalTask, Task
from dmtl.data.manifest import labelled_mask
from dmtl.data.sources import Source
from dmtl.errors import DataError


def label_counts(source: Source) -> pd.DataFrame:
    """One row per (task, class or label): ``labelled`` samples and ``positives``.

    Categorical: ``labelled`` = samples labelled for the task, ``positives`` = those
    of this class. Binary set: ``labelled`` = samples where this label is observed,
    ``positives`` = those where it is 1.
    """
    rows: list[dict[str, object]] = []
    for task in source.tasks:
        values = source.labels[task.name]
        if isinstance(task, CategoricalTask):
            given = int((values != MISSING_CLASS).sum())
            per_class = np.bincount(values[values != MISSING_CLASS], minlength=task.num_classes)
            for c, name in enumerate(task.classes):
                rows.append(_row(source, task, name, given, int(per_class[c])))
        else:
            observed = ~np.isnan(values)
            for j, name in enumerate(task.names):
                labelled, positives = int(observed[:, j].sum()), int((values[:, j] == 1).sum())
                rows.append(_row(source, task, name, labelled, positives))
    return pd.DataFrame(
        rows, columns=["source", "task", "kind", "label", "labelled", "positives"]
    )


def _row(
    source: Source, task: Task, label: str, labelled: int, positives: int
) -> dict[str, object]:
    return {
        "source": source.name, "task": task.name, "kind": task.kind, "label": label,
        "labelled": labelled, "positives": positives,
    }


def task_overlap(sources: Sequence[Source]) -> pd.DataFrame:
    """For each pair of tasks (``task_a <= task_b`` in task order; the diagonal counts the
    task's labelled samples): samples labelled for both, per source and ``"total"``.

    Columns: ``source, task_a, task_b, both``.
    """
    if not sources:
        raise DataError("task_overlap: no sources given")
    order: dict[str, Task] = {}
    for source in sources:
        for task in source.tasks:
            order.setdefault(task.name, task)
    names = list(order)
    rows: list[dict[str, object]] = []
    totals: dict[tuple[str, str], int] = {}
    for source in sources:
        masks = {
            name: labelled_mask(order[name], source.labels[name])
            if name in source.labels
            else np.zeros(len(source), dtype=bool)
            for name in names
        }
        for a, b in combinations_with_replacement(names, 2):
            both = int((masks[a] & masks[b]).sum())
            totals[(a, b)] = totals.get((a, b), 0) + both
            rows.append({"source": source.name, "task_a": a, "task_b": b, "both": both})
    for (a, b), both in totals.items():
        rows.append({"source": "total", "task_a": a, "task_b": b, "both": both})
    return pd.DataFrame(rows, columns=["source", "task_a", "task_b", "both"])


def class_balance(source: Source, task: str) -> pd.DataFrame:
    """Balance of one task in one source.

    Categorical: one row per class with ``count`` and ``fraction`` of the labelled
    samples. Binary set: one row per label with ``observed``, ``positives``,
    ``negatives`` and ``positive_rate`` (of the observed; NaN if none).
    """
    by_name = {t.name: t for t in source.tasks}
    if task not in by_name:
        raise DataError(
            f"source {source.name!r} has no task {task!r}; tasks: {', '.join(by_name)}"
        )
    spec, values = by_name[task], source.labels[task]
    if isinstance(spec, CategoricalTask):
        counts = np.bincount(values[values != MISSING_CLASS], minlength=spec.num_classes)
        total = counts.sum()
        return pd.DataFrame(
            {
                "class": list(spec.classes),
                "count": counts.astype(np.int64),
                "fraction": counts / total if total else np.full(len(counts), np.nan),
            }
        )
    observed = (~np.isnan(values)).sum(axis=0)
    positives = (values == 1).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(observed > 0, positives / np.maximum(observed, 1), np.nan)
    return pd.DataFrame(
        {
            "label": list(spec.names),
            "observed": observed.astype(np.int64),
            "positives": positives.astype(np.int64),
            "negatives": (observed - positives).astype(np.int64),
            "positive_rate": rate,
        }
    )
