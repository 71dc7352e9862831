"""Shared helpers for the reader tests: fixture trees, corrupting copies, manifest checks."""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

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
    """The manifest passes dmtl's own manifest validation with the reader's tasks."""
    return Manifest.from_frame(result.manifest, result.tasks, result.root)
