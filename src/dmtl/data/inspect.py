"""Label statistics of sources, as pandas DataFrames (rendering is left to the caller).

"Labelled for a task" means: a class is given (categorical), or at least one
label or target is observed (binary set, regression).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations_with_replacement

import numpy as np
import pandas as pd

from dmtl.core.tasks import Task
from dmtl.data.sources import Source
from dmtl.errors import DataError


def label_counts(source: Source) -> pd.DataFrame:
    """One row per (task, class or label): ``labelled`` samples and ``positives``.

    Categorical: ``labelled`` = samples labelled for the task, ``positives`` = those
    of this class. Binary set: ``labelled`` = samples where this label is observed,
    ``positives`` = those where it is 1.
    """
    rows = [
        {
            "source": source.name, "task": task.name, "kind": task.kind, "label": name,
            "labelled": labelled, "positives": positives,
        }
        for task in source.tasks
        for name, labelled, positives in task.count_labels(source.labels[task.name])
    ]
    return pd.DataFrame(
        rows, columns=["source", "task", "kind", "label", "labelled", "positives"]
    )


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
            name: order[name].labelled_rows(source.labels[name])
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
    """Balance of one task in one source, from the task's own label counts.

    Categorical: one row per class with ``count`` and ``fraction`` of the labelled
    samples. Binary set and regression: one row per label or target with ``observed``,
    ``positives``, ``negatives`` and ``positive_rate`` (of the observed; NaN if none, or
    for regression targets, which have no positives).
    """
    by_name = {t.name: t for t in source.tasks}
    if task not in by_name:
        raise DataError(
            f"source {source.name!r} has no task {task!r}; tasks: {', '.join(by_name)}"
        )
    spec = by_name[task]
    counts = spec.count_labels(source.labels[task])
    names = [name for name, _, _ in counts]
    if spec.strata(source.labels[task]) is not None:  # categorical: the labelled samples' classes
        per_class = np.array([positives or 0 for _, _, positives in counts], dtype=np.int64)
        total = per_class.sum()
        fraction = per_class / total if total else np.full(len(per_class), np.nan)
        return pd.DataFrame({"class": names, "count": per_class, "fraction": fraction})
    observed = np.array([labelled for _, labelled, _ in counts], dtype=np.int64)
    given = [p for _, _, p in counts]
    positives = (
        np.full(len(given), np.nan)
        if any(p is None for p in given)
        else np.array(given, dtype=np.int64)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(observed > 0, positives / np.maximum(observed, 1), np.nan)
    return pd.DataFrame(
        {
            "label": names,
            "observed": observed,
            "positives": positives,
            "negatives": observed - positives,
            "positive_rate": rate,
        }
    )
