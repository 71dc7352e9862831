"""CelebA: identities and 40 binary attributes.

Official layout (Google Drive release; the flat layout torchvision uses is also accepted)::

    <root>/Anno/list_attr_celeba.txt       (or <root>/list_attr_celeba.txt)
    <root>/Anno/identity_CelebA.txt        (or <root>/identity_CelebA.txt)
    <root>/Eval/list_eval_partition.txt    (or <root>/list_eval_partition.txt)
    <root>/Img/img_align_celeba/000001.jpg (or <root>/img_align_celeba/000001.jpg)

``list_attr_celeba.txt``: a count line, a header line with the 40 attribute
names, then ``<file> <40 values>`` with values ``-1``/``1`` aligned by runs of
spaces. ``identity_CelebA.txt``: ``<file> <identity number>`` (no header).
``list_eval_partition.txt``: ``<file> <0|1|2>`` = train / val / test.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dmtl.core.tasks import BinarySetTask, CategoricalTask, Task
from dmtl.data.crops import CropRecipe
from dmtl.data.readers.base import (
    ReaderResult,
    find_file,
    head_lines,
    parse_count_line,
    register_reader,
)
from dmtl.data.readers.columns import build_manifest, drop_unlabelled, label_block
from dmtl.data.readers.tables import Table, read_table
from dmtl.errors import DataError, DatasetLayoutError

PARTITIONS = {0: "train", 1: "val", 2: "test"}


def _image_dir(root: Path, image_dir: str | None) -> str:
    if image_dir is not None:
        return image_dir.strip("/")
    if not (root / "img_align_celeba").is_dir() and (root / "Img").is_dir():
        return "Img/img_align_celeba"
    return "img_align_celeba"


def _unique_files(table: Table) -> pd.Series:
    """The table's ``file`` column; an image listed twice is an error naming its line."""
    files = table.frame["file"].astype(str)
    bad = table.first_bad(files.duplicated().to_numpy())
    if bad is not None:
        raise table.error(bad, "image listed twice", files.iloc[bad])
    return files


def _partition(root: Path) -> pd.Series:
    """``split`` of each image of ``list_eval_partition.txt``, indexed by file name."""
    path = find_file(
        root, ["Eval/list_eval_partition.txt", "list_eval_partition.txt"], "CelebA partition list"
    )
    table = read_table(path, ("file", "partition"), ints=("partition",))
    table.check_codes("partition", PARTITIONS, "partition code (expected 0, 1 or 2)")
    files = _unique_files(table)
    split = table.frame["partition"].map(PARTITIONS).to_numpy(dtype=object)
    return pd.Series(split, index=pd.Index(files.to_numpy(dtype=object), name="file"))


def _identities(
    root: Path, files: pd.Index, dropped: dict[str, int]
) -> tuple[CategoricalTask, np.ndarray]:
    """The identity task (classes = identity numbers present) and each file's identity."""
    path = find_file(root, ["Anno/identity_CelebA.txt", "identity_CelebA.txt"], "CelebA identities")
    table = read_table(path, ("file", "identity"), ints=("identity",))
    numbers = table.frame["identity"]
    bad = table.first_bad((numbers < 1).to_numpy())
    if bad is not None:
        raise table.error(bad, "identity numbers are positive", numbers.iloc[bad])
    listed = _unique_files(table)
    dropped["not_in_partition"] += int((files.get_indexer(pd.Index(listed)) < 0).sum())
    task = CategoricalTask("identity", [str(n) for n in np.sort(numbers.unique())])
    names = pd.Series(numbers.astype(str).to_numpy(dtype=object), index=listed.to_numpy())
    return task, names.reindex(files).to_numpy(dtype=object)


def _attributes(
    root: Path, files: pd.Index, dropped: dict[str, int]
) -> tuple[list[str], np.ndarray]:
    """The 40 attribute names and each file's labels (``-1`` -> 0, ``1`` -> 1, NaN if unlisted)."""
    candidates = ["Anno/list_attr_celeba.txt", "list_attr_celeba.txt"]
    path = find_file(root, candidates, "CelebA attributes")
    count_line, header = head_lines(path, 2)
    expected = parse_count_line(path, count_line)
    names = header.split()
    if not names:
        raise DatasetLayoutError(path, "expected the attribute names", line=2)
    if len(set(names)) != len(names):
        raise DatasetLayoutError(path, "duplicated attribute name in header", line=2)
    table = read_table(path, ["file", *names], skiprows=2, ints=names, compact=np.int8)
    values = table.frame[names].to_numpy()
    bad = table.first_bad(~np.isin(values, (-1, 1)).all(axis=1))
    if bad is not None:
        odd = next(v for v in values[bad] if v not in (-1, 1))
        raise table.error(bad, "attribute values must be -1 or 1", int(odd))
    if len(values) != expected:
        raise DatasetLayoutError(
            path, f"count line says {expected} images but {len(values)} rows follow", line=1
        )
    listed = _unique_files(table)
    dropped["not_in_partition"] += int((files.get_indexer(pd.Index(listed)) < 0).sum())
    labels = pd.DataFrame((values.astype(np.float32) + 1.0) / 2.0, index=listed.to_numpy())
    return names, labels.reindex(files).to_numpy(np.float32)


ALIGNED_CROP = CropRecipe(
    kind="eye_aligned",
    size=(178, 218),
    left_eye=(0.388, 0.509),
    right_eye=(0.607, 0.509),
    note="CelebA img_align_celeba: 178 x 218, the eyes at fixed places",
)
"""How CelebA's ``img_align_celeba`` images were cut (its mean eye positions)."""


@register_reader("celeba", crop=ALIGNED_CROP)
def read_celeba(
    root: Path,
    *,
    tasks: Sequence[str] = ("identity", "attributes"),
    image_dir: str | None = None,
) -> ReaderResult:
    """Read CelebA's identities (classes named by identity number) and 40 attributes.

    The ``identity`` task has one class per identity number present in
    ``identity_CelebA.txt`` (all 10,177 in the official file), sorted
    numerically. ``tasks`` chooses ``identity`` and/or ``attributes``.
    ``image_dir`` overrides the image folder (default ``img_align_celeba``,
    or ``Img/img_align_celeba`` when the root has an ``Img`` folder).
    """
    unknown = sorted(set(tasks) - {"identity", "attributes"})
    if unknown or not tasks:
        raise DataError(f"option tasks={list(tasks)!r}: choose from 'identity', 'attributes'")
    split = _partition(root)
    task_list: list[Task] = []
    categorical: dict[str, np.ndarray] = {}
    blocks = []
    dropped = {"not_in_partition": 0, "unlabelled": 0}
    notes: list[str] = []
    if "identity" in tasks:
        identity_task, categorical["identity"] = _identities(root, split.index, dropped)
        task_list.append(identity_task)
        notes.append(f"identity: {identity_task.num_classes} identities present")
    if "attributes" in tasks:
        names, values = _attributes(root, split.index, dropped)
        task_list.append(BinarySetTask("attributes", names))
        blocks.append(label_block("attributes", names, values))
    prefix = _image_dir(root, image_dir)
    manifest = build_manifest(
        split.index.to_numpy(dtype=object),
        (f"{prefix}/" if prefix else "") + pd.Series(split.index, dtype=object),
        split=split.to_numpy(dtype=object),
        categorical=categorical,
        blocks=blocks,
    )
    manifest, dropped["unlabelled"] = drop_unlabelled(manifest, task_list)
    if dropped["not_in_partition"]:
        notes.append("label rows for images missing from list_eval_partition.txt were ignored")
    notes.append(f"images under {prefix}/")
    return ReaderResult(manifest, task_list, root, dropped, notes)
