"""CUB-200-2011: 200 bird species and 312 binary attributes, with class-level knowledge.

Official layout (``CUB_200_2011.tgz``)::

    <root>/images.txt                    <image_id> <image_name>
    <root>/image_class_labels.txt        <image_id> <class_id>
    <root>/train_test_split.txt          <image_id> <is_training_image>  (1 train, 0 test)
    <root>/classes.txt                   <class_id> <class_name>
    <root>/attributes/image_attribute_labels.txt
            <image_id> <attribute_id> <is_present> <certainty_id> <time>
    <root>/attributes/certainties.txt    1 not visible, 2 guessing, 3 probably, 4 definitely
    <root>/attributes/class_attribute_labels_continuous.txt
                                         200 rows x 312 percentages (0-100)
    <root>/images/<image_name>

``attributes.txt`` (``<attribute_id> <attribute_name>``) is documented in the
README as ``attributes/attributes.txt`` but the archive puts it next to the
``CUB_200_2011`` folder; the reader looks in ``attributes/``, the root and the
root's parent. ``<root>`` may also be the folder that contains ``CUB_200_2011``.
A few lines of ``image_attribute_labels.txt`` carry undocumented extra
fields; only the first four fields (image, attribute, presence, certainty)
are read and checked, the rest is ignored and the lines are counted in the
notes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dmtl.core.relatedness import Relatedness
from dmtl.core.tasks import BinarySetTask, CategoricalTask, Task
from dmtl.data.readers.base import ReaderResult, register_reader
from dmtl.data.readers.columns import build_manifest, label_block
from dmtl.data.readers.tables import Table, read_table
from dmtl.errors import DataError, DatasetLayoutError

CERTAINTIES = {1: "not visible", 2: "guessing", 3: "probably", 4: "definitely"}


def _dataset_dir(root: Path) -> Path:
    if (root / "images.txt").is_file():
        return root
    if (root / "CUB_200_2011" / "images.txt").is_file():
        return root / "CUB_200_2011"
    raise DatasetLayoutError(root / "images.txt", "CUB-200-2011 image list not found")


def _file(base: Path, name: str, what: str) -> Path:
    path = base / name
    if not path.is_file():
        raise DatasetLayoutError(path, f"CUB-200-2011 {what} not found")
    return path


def _id_name_list(path: Path, what: str) -> Table:
    table = read_table(path, ("id", "name"), ints=("id",))
    ids = table.frame["id"]
    bad = table.first_bad(ids.duplicated().to_numpy())
    if bad is not None:
        raise table.error(bad, f"{what} id listed twice", int(ids.iloc[bad]))
    return table


def _attribute_names(base: Path) -> pd.DataFrame:
    candidates = [base / "attributes" / "attributes.txt", base / "attributes.txt"]
    candidates.append(base.parent / "attributes.txt")
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise DatasetLayoutError(
            candidates[0],
            "CUB-200-2011 attribute names not found (also looked for "
            f"{candidates[1]} and {candidates[2]})",
        )
    table = _id_name_list(path, "attribute")
    return table.frame.sort_values("id").reset_index(drop=True)


def _lookup(table: Table, column: str, index: pd.Index, what: str) -> np.ndarray:
    """Positions of ``column``'s values in ``index``; error at the first unknown one."""
    positions = index.get_indexer(pd.Index(table.frame[column]))
    bad = table.first_bad(positions < 0)
    if bad is not None:
        raise table.error(bad, f"unknown {what}", table.frame[column].iloc[bad])
    return positions


def _species_and_split(
    base: Path, image_index: pd.Index
) -> tuple[CategoricalTask, np.ndarray, np.ndarray]:
    """The species task, each image's species (NaN if unlabelled) and split."""
    classes = _id_name_list(_file(base, "classes.txt", "class list"), "class").frame
    classes = classes.sort_values("id").reset_index(drop=True)
    labels = read_table(
        _file(base, "image_class_labels.txt", "class labels"),
        ("image", "label"),
        ints=("image", "label"),
    )
    label_rows = _lookup(labels, "image", image_index, "image id")
    label_classes = _lookup(labels, "label", pd.Index(classes["id"]), "class id")
    split_table = read_table(
        _file(base, "train_test_split.txt", "train/test split"),
        ("image", "is_training"),
        ints=("image", "is_training"),
    )
    split_table.check_codes("is_training", (0, 1), "is_training_image value (expected 0 or 1)")
    split_rows = _lookup(split_table, "image", image_index, "image id")
    task = CategoricalTask("species", classes["name"].astype(str).tolist())
    species = np.full(len(image_index), np.nan, dtype=object)
    species[label_rows] = np.asarray(task.classes, dtype=object)[label_classes]
    split = np.full(len(image_index), np.nan, dtype=object)
    split[split_rows] = np.where(split_table.frame["is_training"].to_numpy() == 1, "train", "test")
    unsplit = np.flatnonzero(pd.isna(split))
    if unsplit.size:
        raise DatasetLayoutError(
            split_table.path, "image has no line", value=int(image_index[unsplit[0]])
        )
    return task, species, split


def _image_attributes(
    base: Path,
    image_index: pd.Index,
    attr_index: pd.Index,
    min_certainty: int | None,
    dropped: dict[str, int],
    notes: list[str],
) -> np.ndarray:
    """``(images, attributes)`` 0/1/NaN: majority vote of the lines for each pair."""
    path = _file(base, "attributes/image_attribute_labels.txt", "image attribute labels")
    table = read_table(
        path,
        ("image", "attribute", "is_present", "certainty", "time"),
        ints=("image", "attribute", "is_present", "certainty"),
        required=4,
        extra=True,
    )
    table.check_codes("is_present", (0, 1), "is_present value (expected 0 or 1)")
    table.check_codes("certainty", CERTAINTIES, "certainty id (expected 1-4)")
    rows = _lookup(table, "image", image_index, "image id")
    cols = _lookup(table, "attribute", attr_index, "attribute id")
    present = table.frame["is_present"].to_numpy(np.float64)
    keep = np.ones(len(present), dtype=bool)
    if min_certainty is not None:
        keep = table.frame["certainty"].to_numpy() >= min_certainty
        dropped["low_certainty"] = int((~keep).sum())
    total = np.zeros((len(image_index), len(attr_index)))
    count = np.zeros_like(total)
    np.add.at(total, (rows[keep], cols[keep]), present[keep])
    np.add.at(count, (rows[keep], cols[keep]), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    values = np.where(mean > 0.5, 1.0, np.where(mean < 0.5, 0.0, np.nan))
    values[count == 0] = np.nan
    dropped["conflicting_votes"] = int(((count > 0) & (mean == 0.5)).sum())
    repeated = int((count > 1).sum())
    if repeated:
        notes.append(f"{repeated} image/attribute pair(s) labelled more than once: majority vote")
    if table.extra_rows:
        notes.append(
            f"{table.extra_rows} line(s) of {path.name} have extra fields; "
            "read the first four, ignored the rest"
        )
    return values.astype(np.float32)


@register_reader("cub")
def read_cub(
    root: Path,
    *,
    min_certainty: int | None = None,
    attributes: bool = True,
    knowledge: bool = True,
) -> ReaderResult:
    """Read CUB-200-2011: ``species`` (200 classes) and ``attributes`` (312 labels).

    ``min_certainty`` (1-4) treats attribute labels whose certainty is below it
    as missing (e.g. 3 keeps 'probably' and 'definitely'). When ``knowledge``,
    the class-level attribute percentages become a species -> attributes
    :class:`~dmtl.core.relatedness.Relatedness` (percent / 100) in
    ``ReaderResult.knowledge``.
    """
    if min_certainty is not None and min_certainty not in CERTAINTIES:
        raise DataError(f"option min_certainty={min_certainty!r} must be 1, 2, 3, 4 or None")
    base = _dataset_dir(root)
    prefix = "" if base == root else f"{base.relative_to(root).as_posix()}/"
    images = _id_name_list(_file(base, "images.txt", "image list"), "image")
    image_index = pd.Index(images.frame["id"])
    species_task, species, split = _species_and_split(base, image_index)
    tasks: list[Task] = [species_task]
    blocks: list[pd.DataFrame] = []
    dropped: dict[str, int] = {}
    notes: list[str] = []
    tables: list[Relatedness] = []
    if attributes or knowledge:
        names = _attribute_names(base)
        attr_task = BinarySetTask("attributes", names["name"].astype(str).tolist())
        attr_index = pd.Index(names["id"])
    if attributes:
        values = _image_attributes(base, image_index, attr_index, min_certainty, dropped, notes)
        tasks.append(attr_task)
        blocks.append(label_block("attributes", attr_task.labels, values))
    if knowledge:
        path = base / "attributes" / "class_attribute_labels_continuous.txt"
        if path.is_file():
            percent = _read_class_attributes(path, species_task.num_classes, len(attr_index))
            tables.append(Relatedness(species_task, attr_task, torch.as_tensor(percent / 100.0)))
        else:
            notes.append(f"{path.relative_to(root).as_posix()} not found: no knowledge table")
    manifest = _manifest(images, prefix, split, species, blocks)
    return ReaderResult(manifest, tasks, root, dropped, notes, tables)


def _manifest(
    images: Table, prefix: str, split: np.ndarray, species: np.ndarray, binary: list[pd.DataFrame]
) -> pd.DataFrame:
    names = images.frame["name"].astype(str)
    return build_manifest(
        names.to_numpy(dtype=object),
        (prefix + "images/" + names).to_numpy(dtype=object),
        split=split,
        categorical={"species": species},
        blocks=binary,
    )


def _read_class_attributes(path: Path, num_classes: int, num_attributes: int) -> np.ndarray:
    columns = [f"a{i}" for i in range(num_attributes)]
    table = read_table(path, columns)
    frame = table.frame
    values = frame.apply(pd.to_numeric, errors="coerce")
    bad = table.first_bad(values.isna().any(axis=1).to_numpy())
    if bad is not None:
        raise table.error(bad, "expected numbers (percentages)")
    array = values.to_numpy(np.float64)
    bad = table.first_bad(((array < 0) | (array > 100)).any(axis=1))
    if bad is not None:
        raise table.error(bad, "percentages must be between 0 and 100")
    if len(array) != num_classes:
        raise DatasetLayoutError(
            path, f"expected {num_classes} rows (one per class), found {len(array)}"
        )
    return array
