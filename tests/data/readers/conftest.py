"""Shared helpers for the reader tests: fixture trees, corrupting copies, manifest checks."""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dmtl.core.tasks import CategoricalTask, RegressionTask
from dmtl.data.manifest import Manifest
from dmtl.data.readers import ReaderResult

FIXTURES = Path(__file__).parent / "fixtures"

CopyFixture = Callable[[str], Path]


@pytest.fixture
def copy_fixture(tmp_path: Path) -> CopyFixture:
    """Copy ``fixtures/<name>`` into ``tmp_path`` (to corrupt it) and return the copy's root."""

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(FIXTURES / name, target)
        return target

    return copy


def edit_line(path: Path, number: int, text: str | None) -> None:
    """Replace line ``number`` (1-based) by ``text``; ``None`` deletes it."""
    lines = path.read_text().splitlines()
    if text is None:
        del lines[number - 1]
    else:
        lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


def row(result: ReaderResult, sample_id: str) -> pd.Series:
    """The manifest row with ``id == sample_id``."""
    hits = result.manifest.loc[result.manifest["id"] == sample_id]
    assert len(hits) == 1, f"{sample_id!r} found {len(hits)} times"
    return hits.iloc[0]


def labels(result: ReaderResult, sample_id: str, task: str) -> list[float | None]:
    """Binary labels of one sample as a list with ``None`` for missing."""
    names = result.task(task).names
    values = row(result, sample_id)[[f"{task}/{n}" for n in names]].to_numpy(np.float64)
    return [None if math.isnan(v) else v for v in values]


def on(result: ReaderResult, sample_id: str, task: str) -> list[str]:
    """Names of the labels equal to 1."""
    names = result.task(task).names
    return [n for n, v in zip(names, labels(result, sample_id, task), strict=True) if v == 1.0]


def check_manifest(result: ReaderResult) -> Manifest:
    """The manifest passes dmtl's manifest validation with the reader's tasks.

    Label columns hold numbers (``float32``), categorical columns class names.
    Regression tasks are checked here (``float32`` within the task's bounds or
    NaN) and left out of :class:`Manifest` until it encodes them.
    """
    frame = result.manifest
    regression = [t for t in result.tasks if isinstance(t, RegressionTask)]
    for task in result.tasks:
        if isinstance(task, CategoricalTask):
            kind = pd.api.types.infer_dtype(frame[task.name], skipna=True)
            assert kind in ("string", "empty"), f"{task.name}: class names must be str"
            continue
        columns = [f"{task.name}/{name}" for name in task.names]
        assert (frame[columns].dtypes == np.float32).all(), f"{task.name}: not float32"
    for task in regression:
        columns = [f"{task.name}/{name}" for name in task.names]
        values = frame[columns].to_numpy()
        inside = (values >= (task.low or -np.inf)) & (values <= (task.high or np.inf))
        assert (np.isnan(values) | inside).all(), f"{task.name}: values outside the bounds"
        frame = frame.drop(columns=columns)
    others = [t for t in result.tasks if t not in regression]
    return Manifest.from_frame(frame, others, result.root, require_labels=bool(others))
