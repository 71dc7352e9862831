"""Manifest columns: AU names, unique label names, label blocks, the manifest itself.

A manifest holds ``id``, ``image``, optionally ``split``, one column per
categorical task (class names as strings, missing = NaN) and one
``task/name`` column per binary label or regression target (``float32``,
missing = NaN); :func:`build_manifest` checks that it is so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from dmtl.core.tasks import Task
from dmtl.errors import DataError


def au_name(number: int) -> str:
    """``AU<n>`` (no zero padding); unlike ``au_label``, any number (files code non-FACS ones)."""
    return f"AU{int(number)}"


def au_number(name: str) -> int | None:
    """``12`` for ``"AU12"``/``"AU 12"``/``"au12"``; ``None`` if ``name`` is not an AU name."""
    match = re.fullmatch(r"\s*AU\s*0*(\d+)\s*", name, flags=re.IGNORECASE)
    return int(match.group(1)) if match else None


def unique_names(names: Sequence[str], kinds: Sequence[int] | None = None) -> tuple[list[str], int]:
    """Make label names unique: duplicates get ``#<type>`` then ``#<k>`` suffixes."""
    counts = pd.Series(list(names)).value_counts()
    duplicated = set(counts[counts > 1].index)
    out: list[str] = []
    seen: set[str] = set()
    for i, name in enumerate(names):
        candidate = name
        if name in duplicated and kinds is not None:
            candidate = f"{name}#{kinds[i]}"
        k = 2
        base = candidate
        while candidate in seen:
            candidate = f"{base}#{k}"
            k += 1
        seen.add(candidate)
        out.append(candidate)
    return out, len(duplicated)


def label_block(task: str, names: Sequence[str], values: np.ndarray) -> pd.DataFrame:
    """``task/name`` columns (``float32``, NaN = missing) from an ``(N, K)`` array.

    Binary-set labels hold 0/1, regression targets their values.
    """
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2 or values.shape[1] != len(names):
        raise ValueError(f"expected an (N, {len(names)}) array, got shape {values.shape}")
    return pd.DataFrame(values, columns=[f"{task}/{name}" for name in names], copy=False)


def build_manifest(
    ids: Sequence[str] | pd.Series | np.ndarray,
    images: Sequence[str] | pd.Series | np.ndarray,
    *,
    split: Sequence[Any] | pd.Series | np.ndarray | None = None,
    categorical: Mapping[str, Sequence[Any] | pd.Series | np.ndarray] | None = None,
    blocks: Sequence[pd.DataFrame] = (),
) -> pd.DataFrame:
    """Assemble a manifest in the column order ``id, image, split, tasks...``.

    ``categorical`` maps a task to its class names (strings; None/NaN = missing);
    ``blocks`` are :func:`label_block` frames (binary-set labels, regression targets).
    """
    parts: dict[str, Any] = {
        "id": pd.Series(np.asarray(ids, dtype=object), dtype=object),
        "image": pd.Series(np.asarray(images, dtype=object), dtype=object),
    }
    if split is not None:
        parts["split"] = pd.Series(np.asarray(split, dtype=object), dtype=object)
    for name, values in (categorical or {}).items():
        column = pd.Series(np.asarray(values, dtype=object), dtype=object)
        column = column.where(column.notna(), np.nan)
        if pd.api.types.infer_dtype(column, skipna=True) not in ("string", "empty"):  # bug guard
            raise TypeError(f"categorical column {name!r} must hold class names (str)")
        parts[name] = column
    head = pd.DataFrame(parts)
    for block in blocks:
        if not all(dtype == np.float32 for dtype in block.dtypes):
            raise TypeError("label blocks must be float32 (use label_block)")
    manifest = pd.concat([head, *(b.reset_index(drop=True) for b in blocks)], axis=1)
    duplicated = manifest["id"].duplicated()
    if bool(duplicated.any()):
        first = manifest.loc[duplicated, "id"].iloc[0]
        raise ValueError(f"duplicate sample id {first!r} in manifest")  # reader bug guard
    return manifest


def drop_unlabelled(manifest: pd.DataFrame, tasks: Sequence[Task]) -> tuple[pd.DataFrame, int]:
    """Remove rows with no label for any task; returns the manifest and how many went."""
    labelled = np.zeros(len(manifest), dtype=bool)
    for task in tasks:
        labelled |= manifest[task.manifest_columns()].notna().any(axis=1).to_numpy()
    removed = int((~labelled).sum())
    if removed:
        manifest = manifest.loc[labelled].reset_index(drop=True)
    return manifest, removed


def subject_splits(
    subjects: Sequence[str] | pd.Series | np.ndarray,
    val_subjects: Sequence[str],
    test_subjects: Sequence[str],
) -> np.ndarray | None:
    """``split`` per row from subject lists (others train); ``None`` when both lists are empty."""
    if not val_subjects and not test_subjects:
        return None
    overlap = sorted(set(val_subjects) & set(test_subjects))
    if overlap:
        raise DataError(f"subjects in both val_subjects and test_subjects: {overlap}")
    values = np.asarray(subjects, dtype=object)
    split = np.full(len(values), "train", dtype=object)
    split[np.isin(values, list(val_subjects))] = "val"
    split[np.isin(values, list(test_subjects))] = "test"
    return split


def au_frames_manifest(
    rows: pd.DataFrame,
    ids: pd.Series,
    images: Sequence[str],
    au_columns: Sequence[str],
    val_subjects: Sequence[str],
    test_subjects: Sequence[str],
) -> pd.DataFrame:
    """Manifest of per-frame AU codes (DISFA, BP4D): the ``au`` task, split by ``subject``."""
    return build_manifest(
        ids.to_numpy(dtype=object),
        images,
        split=subject_splits(rows["subject"], list(val_subjects), list(test_subjects)),
        blocks=[label_block("au", au_columns, rows[list(au_columns)].to_numpy(np.float32))],
    )


__all__ = [
    "au_frames_manifest",
    "au_name",
    "au_number",
    "build_manifest",
    "drop_unlabelled",
    "label_block",
    "subject_splits",
    "unique_names",
]
