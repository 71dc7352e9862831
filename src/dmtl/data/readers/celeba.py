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
from dmtl.data.readers.base import (
    ReaderResult,
    find_file,
    head_lines,
    parse_count_line,
    register_reader,
)
from dmtl.data.readers.columns import build_manifest, drop_unlabelled, label_block
from dmtl.data.readers.tables import read_table
from dmtl.errors import DataError, DatasetLayoutError

PARTITIONS = {0: "train", 1: "val", 2: "test"}


def _image_dir(root: Path, image_dir: str | None) -> str:
    if image_dir is not None:
        return image_dir.strip("/")
    if not (root / "img_align_celeba").is_dir() and (root / "Img").is_dir():
        return "Img/img_align_celeba"
    return "img_align_celeba"


def _read_attributes(path: Path) -> tuple[list[str], pd.DataFrame]:
    count_line, header = head_lines(path, 2)
    expected = parse_count_line(path, count_line)
    names = header.split()
    if not names:
        raise DatasetLayoutError(path, "expected the attribute names", line=2)
    if len(set(names)) != len(names):
        raise DatasetLayoutError(path, "duplicated attribute name in header", line=2)
    table = read_table(path, ["file", *names], skiprows=2, ints=names, compact=np.int8)
    frame = table.frame
    values = frame[names].to_numpy()
    bad = table.first_bad(~np.isin(values, (-1, 1)).all(axis=1))
    if bad is not None:
        odd = next(v for v in values[bad] if v not in (-1, 1))
        raise table.error(bad, "attribute values must be -1 or 1", int(odd))
    if len(frame) != expected:
        raise DatasetLayoutError(
            path, f"count line says {expected} images but {len(frame)} rows follow", line=1
        )
    return names, frame


@register_reader("celeba")
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
    partition_path = find_file(
        root, ["Eval/list_eval_partition.txt", "list_eval_partition.txt"], "CelebA partition list"
    )
    partition = read_table(partition_path, ("file", "partition"), ints=("partition",))
    partition.check_codes("partition", PARTITIONS, "partition code (expected 0, 1 or 2)")
    files = partition.frame["file"].astype(str)
    bad = partition.first_bad(files.duplicated().to_numpy())
    if bad is not None:
        raise partition.error(bad, "image listed twice", files.iloc[bad])
    rows = pd.DataFrame({"split": partition.frame["partition"].map(PARTITIONS).to_numpy()})
    rows.index = pd.Index(files.to_numpy(dtype=object), name="file")
    task_list: list[Task] = []
    categorical: dict[str, np.ndarray] = {}
    binary = []
    dropped = {"not_in_partition": 0, "unlabelled": 0}
    notes: list[str] = []
    if "identity" in tasks:
        path = find_file(
            root, ["Anno/identity_CelebA.txt", "identity_CelebA.txt"], "CelebA identities"
        )
        identity = read_table(path, ("file", "identity"), ints=("identity",))
        frame = identity.frame
        bad = identity.first_bad((frame["identity"] < 1).to_numpy())
        if bad is not None:
            raise identity.error(bad, "identity numbers are positive", frame["identity"].iloc[bad])
        bad = identity.first_bad(frame["file"].duplicated().to_numpy())
        if bad is not None:
            raise identity.error(bad, "image listed twice", frame["file"].iloc[bad])
        known = rows.index.get_indexer(pd.Index(frame["file"])) >= 0
        dropped["not_in_partition"] += int((~known).sum())
        numbers = np.sort(frame["identity"].unique())
        task_list.append(CategoricalTask("identity", [str(n) for n in numbers]))
        series = pd.Series(frame["identity"].astype(str).to_numpy(), index=frame["file"].to_numpy())
        categorical["identity"] = series.reindex(rows.index).to_numpy(dtype=object)
        notes.append(f"identity: {len(numbers)} identities present")
    if "attributes" in tasks:
        path = find_file(
            root, ["Anno/list_attr_celeba.txt", "list_attr_celeba.txt"], "CelebA attributes"
        )
        names, frame = _read_attributes(path)
        bad_rows = frame["file"].duplicated()
        if bool(bad_rows.any()):
            raise DatasetLayoutError(
                path, "image listed twice", value=frame["file"][bad_rows].iloc[0]
            )
        known = rows.index.get_indexer(pd.Index(frame["file"])) >= 0
        dropped["not_in_partition"] += int((~known).sum())
        values = (frame[names].to_numpy(np.float32) + 1.0) / 2.0
        aligned = pd.DataFrame(values, index=frame["file"].to_numpy()).reindex(rows.index)
        task_list.append(BinarySetTask("attributes", names))
        binary.append(label_block("attributes", names, aligned.to_numpy(np.float32)))
    prefix = _image_dir(root, image_dir)
    manifest = build_manifest(
        rows.index.to_numpy(dtype=object),
        (f"{prefix}/" if prefix else "") + pd.Series(rows.index, dtype=object),
        split=rows["split"].to_numpy(dtype=object),
        categorical=categorical,
        blocks=binary,
    )
    manifest, unlabelled = drop_unlabelled(manifest, task_list)
    dropped["unlabelled"] = unlabelled
    if dropped["not_in_partition"]:
        notes.append("label rows for images missing from list_eval_partition.txt were ignored")
    notes.append(f"images under {prefix}/")
    return ReaderResult(manifest, task_list, root, dropped, notes)
