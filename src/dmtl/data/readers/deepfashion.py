"""DeepFashion, Category and Attribute Prediction Benchmark.

Official layout::

    <root>/Anno/list_category_cloth.txt   (or Anno_coarse/, the later release)
    <root>/Anno/list_category_img.txt
    <root>/Anno/list_attr_cloth.txt
    <root>/Anno/list_attr_img.txt
    <root>/Eval/list_eval_partition.txt
    <root>/img/<item folder>/img_00000001.jpg   (or <root>/Img/img/...)

Every list starts with a count line and a header line (entry names).
``list_category_cloth.txt``: ``<category name> <category type>`` (50
categories; type 1 upper, 2 lower, 3 full body). ``list_category_img.txt``:
``<image name> <category label>`` (1-based index into the category list).
``list_attr_cloth.txt``: ``<attribute name> <attribute type>`` (1,000
attributes; names may contain spaces; type 1 texture, 2 fabric, 3 shape,
4 part, 5 style). ``list_attr_img.txt``: ``<image name> <1,000 labels>`` with
``1`` positive, ``-1`` negative, ``0`` unknown (per the benchmark README).
``list_eval_partition.txt``: ``<image name> <train|val|test>``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dmtl.core.tasks import BinarySetTask, CategoricalTask, Task
from dmtl.data.readers.base import (
    ReaderResult,
    check_choice,
    find_file,
    head_lines,
    parse_count_line,
    register_reader,
)
from dmtl.data.readers.columns import build_manifest, label_block, unique_names
from dmtl.data.readers.tables import Table, parse_name_list, read_table
from dmtl.errors import DatasetLayoutError

ANNO_DIRS = ("Anno", "Anno_coarse")
SPLITS = ("train", "val", "test")


def _anno(root: Path, name: str, what: str) -> Path:
    return find_file(root, [f"{d}/{name}" for d in ANNO_DIRS], what)


def _check_header(path: Path, first_entry: str) -> int:
    """Validate the count and header lines; returns the announced count."""
    count_line, header = head_lines(path, 2)
    count = parse_count_line(path, count_line)
    entries = header.split()
    if not entries or entries[0] != first_entry:
        raise DatasetLayoutError(
            path, f"expected a header line starting with {first_entry!r}", line=2, value=header
        )
    return count


def _check_count(table: Table, expected: int) -> None:
    if len(table.frame) != expected:
        raise DatasetLayoutError(
            table.path,
            f"count line says {expected} rows but {len(table.frame)} follow (truncated file?)",
            line=1,
        )


def _name_list(path: Path, first_entry: str, what: str) -> list[tuple[str, int]]:
    expected = _check_header(path, first_entry)
    rows = parse_name_list(path, 2, what)
    if len(rows) != expected:
        raise DatasetLayoutError(
            path, f"count line says {expected} {what}s but {len(rows)} follow", line=1
        )
    return rows


def _image_list(path: Path, second: str, *, ints: bool) -> Table:
    expected = _check_header(path, "image_name")
    table = read_table(path, ("image", second), skiprows=2, ints=(second,) if ints else ())
    _check_count(table, expected)
    images = table.frame["image"]
    bad = table.first_bad(images.duplicated().to_numpy())
    if bad is not None:
        raise table.error(bad, "image listed twice", images.iloc[bad])
    return table


def _categories(root: Path) -> tuple[list[str], pd.Series, np.ndarray, pd.Series]:
    """Category names, the listed images, each image's category name and split."""
    cloth_path = _anno(root, "list_category_cloth.txt", "category names")
    names = [name for name, _ in _name_list(cloth_path, "category_name", "category")]
    if len(set(names)) != len(names):
        raise DatasetLayoutError(cloth_path, "duplicated category name")
    categories = _image_list(
        _anno(root, "list_category_img.txt", "image categories"), "label", ints=True
    )
    categories.check_codes("label", range(1, len(names) + 1), "category label")
    partition = _image_list(
        find_file(root, ["Eval/list_eval_partition.txt"], "evaluation partition"),
        "status",
        ints=False,
    )
    partition.check_codes("status", SPLITS, "evaluation status (expected train, val or test)")
    images = categories.frame["image"].astype(str)
    split = pd.Series(
        partition.frame["status"].to_numpy(dtype=object), index=partition.frame["image"].to_numpy()
    ).reindex(images.to_numpy())
    if bool(split.isna().any()):
        missing = images[split.isna().to_numpy()].iloc[0]
        raise DatasetLayoutError(
            partition.path, "image of list_category_img.txt has no evaluation status", value=missing
        )
    labels = np.asarray(names, dtype=object)[categories.frame["label"].to_numpy() - 1]
    return names, images, labels, split


def _attributes(
    root: Path, images: pd.Series, zero_as: str, dropped: dict[str, int], notes: list[str]
) -> tuple[list[str], np.ndarray]:
    """Attribute names and the ``(images, attributes)`` labels 1 / 0 / NaN, in ``images`` order."""
    attr_rows = _name_list(
        _anno(root, "list_attr_cloth.txt", "attribute names"), "attribute_name", "attribute"
    )
    names, duplicated = unique_names([n for n, _ in attr_rows], [k for _, k in attr_rows])
    if duplicated:
        notes.append(f"{duplicated} attribute name(s) occur more than once; suffixed '#<type>'")
    path = _anno(root, "list_attr_img.txt", "image attributes")
    expected = _check_header(path, "image_name")
    columns = [f"a{i}" for i in range(len(names))]
    table = read_table(path, ["image", *columns], skiprows=2, ints=columns, compact=np.int8)
    _check_count(table, expected)
    values = table.frame[columns].to_numpy()
    bad = table.first_bad(((values < -1) | (values > 1)).any(axis=1))
    if bad is not None:
        odd = next(v for v in values[bad] if v not in (-1, 0, 1))
        raise table.error(bad, "attribute labels must be -1, 0 or 1", int(odd))
    decoded = values.astype(np.float32)
    decoded[values == -1] = 0.0
    if zero_as == "missing":
        decoded[values == 0] = np.nan
        dropped["unknown_attribute_labels"] = int((values == 0).sum())
        if dropped["unknown_attribute_labels"] and not bool((values == -1).any()):
            notes.append(
                "the attribute file has 0s but no -1s: 0 may mean negative here "
                "(zero_as='negative')"
            )
    del values
    listed = table.frame["image"].astype(str)
    bad = table.first_bad(listed.duplicated().to_numpy())
    if bad is not None:
        raise table.error(bad, "image listed twice", listed.iloc[bad])
    if listed.reset_index(drop=True).equals(images.reset_index(drop=True)):
        return names, decoded
    positions = pd.Index(listed).get_indexer(pd.Index(images))
    unlisted = int((positions < 0).sum())
    if unlisted:
        notes.append(f"{unlisted} image(s) have no line in {path.name}")
    extra = len(listed) - (len(images) - unlisted)
    if extra:
        notes.append(f"{extra} line(s) of {path.name} name images without a category")
    padded = np.vstack([decoded, np.full((1, decoded.shape[1]), np.nan, np.float32)])
    return names, padded[np.where(positions < 0, len(decoded), positions)]


@register_reader("deepfashion")
def read_deepfashion(
    root: Path,
    *,
    attributes: bool = True,
    zero_as: str = "missing",
    image_prefix: str | None = None,
    drop_empty_categories: bool = False,
) -> ReaderResult:
    """Read the DeepFashion category and attribute benchmark.

    ``category`` has the 50 categories of ``list_category_cloth.txt`` (also
    those without images, unless ``drop_empty_categories``); ``attributes`` the
    1,000 attributes (skip the 289k x 1000 file with ``attributes=False``).
    ``zero_as``: how a ``0`` attribute label is read, ``"missing"`` (the README's
    'unknown') or ``"negative"``. ``image_prefix`` is prepended to the listed
    image names (default ``""``, or ``"Img/"`` when the root has an ``Img``
    folder and no ``img`` folder).
    """
    check_choice("zero_as", zero_as, ("missing", "negative"))
    category_names, images, labels, split = _categories(root)
    present = set(labels.tolist())
    empty = [n for n in category_names if n not in present]
    classes = [n for n in category_names if n in present or not drop_empty_categories]
    tasks: list[Task] = [CategoricalTask("category", classes)]
    notes = [f"{len(empty)} categor(y/ies) without images: {', '.join(empty) or '-'}"]
    dropped = {"unknown_attribute_labels": 0}
    blocks = []
    if attributes:
        names, values = _attributes(root, images, zero_as, dropped, notes)
        tasks.append(BinarySetTask("attributes", names))
        blocks.append(label_block("attributes", names, values))
    if image_prefix is None:
        image_prefix = "Img/" if (root / "Img").is_dir() and not (root / "img").is_dir() else ""
    manifest = build_manifest(
        images.to_numpy(dtype=object),
        (image_prefix + images).to_numpy(dtype=object),
        split=split.to_numpy(dtype=object),
        categorical={"category": labels},
        blocks=blocks,
    )
    return ReaderResult(manifest, tasks, root, dropped, notes)
