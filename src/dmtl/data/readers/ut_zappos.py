"""UT-Zappos50K: shoe category and attributes from the metadata.

Official layout (``ut-zap50k-data.zip`` and ``ut-zap50k-images.zip``)::

    <root>/ut-zap50k-data/meta-data.csv      CID,Category,SubCategory,HeelHeight,Insole,
                                             Closure,Gender,Material,ToeStyle
    <root>/ut-zap50k-data/image-path.mat     relative image path of every meta-data row
    <root>/ut-zap50k-images/<Category>/<SubCategory>/<Brand>/<CID with '-' -> '.'>.jpg

The image path contains the brand, which ``meta-data.csv`` does not have, so
the paths come from ``image-path.mat`` (variable ``imagepath``, row-aligned
with ``meta-data.csv``). Multi-valued metadata fields separate their values
with ``;``. Folder names that end with ``.`` are stored as ``%2E`` on disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dmtl.core.tasks import BinarySetTask, CategoricalTask, Task
from dmtl.data.readers.base import (
    ReaderResult,
    check_choice,
    find_file,
    head_lines,
    register_reader,
)
from dmtl.data.readers.columns import build_manifest, label_block
from dmtl.data.readers.tables import Table, check_field_counts, read_table
from dmtl.errors import DataError, DatasetLayoutError

META_COLUMNS = (
    "CID",
    "Category",
    "SubCategory",
    "HeelHeight",
    "Insole",
    "Closure",
    "Gender",
    "Material",
    "ToeStyle",
)
ATTRIBUTE_COLUMNS = ("HeelHeight", "Insole", "Closure", "Gender", "Material", "ToeStyle")


def _cell_text(item: Any) -> str:
    """The text of one MATLAB cell as loaded by scipy (a string, char array or nested cell)."""
    array = np.asarray(item)
    if array.dtype == object:
        texts = [_cell_text(x) for x in array.ravel()]
        return texts[0] if len(texts) == 1 else "".join(texts)
    if array.dtype.kind == "S":
        return b"".join(array.ravel().tolist()).decode("utf-8", "replace")
    return "".join(str(v) for v in array.ravel())


def _strings(value: Any) -> list[str]:
    """One string per entry of a MATLAB cell array (or char matrix) loaded by scipy."""
    array = np.asarray(value)
    if array.dtype == object:
        return [_cell_text(item) for item in array.ravel()]
    return [str(v) for v in array.ravel()]


def _read_image_paths(path: Path) -> list[str]:
    try:
        from scipy.io import loadmat
    except ImportError:  # pragma: no cover - scipy comes with scikit-learn
        raise DatasetLayoutError(path, "reading .mat files needs scipy") from None
    try:
        content = loadmat(path)
    except Exception as error:  # scipy raises several types for malformed files
        raise DatasetLayoutError(path, f"not a readable MATLAB file ({error})") from None
    if "imagepath" not in content:
        keys = [k for k in content if not k.startswith("__")]
        raise DatasetLayoutError(path, f"no variable 'imagepath' (found: {', '.join(keys)})")
    return [p.strip() for p in _strings(content["imagepath"])]


def _escape(path: str) -> str:
    """``Brand./x.jpg`` -> ``Brand%2E/x.jpg`` for every folder name ending with a dot."""
    parts = path.split("/")
    return "/".join([p[:-1] + "%2E" if p.endswith(".") else p for p in parts[:-1]] + parts[-1:])


def _read_meta(root: Path, check_cid: bool) -> tuple[Table, list[str]]:
    """``meta-data.csv`` and the row-aligned paths of ``image-path.mat``, checked."""
    meta_path = find_file(
        root, ["ut-zap50k-data/meta-data.csv", "meta-data.csv"], "UT-Zappos50K metadata"
    )
    header = [h.strip().strip('"').lstrip("\ufeff") for h in head_lines(meta_path, 1)[0].split(",")]
    missing = [c for c in META_COLUMNS if c not in header]
    if missing:
        raise DatasetLayoutError(meta_path, f"header lacks {', '.join(missing)}", line=1)
    check_field_counts(meta_path, 1, len(header))
    table = read_table(meta_path, header, sep=",", skiprows=1, required=1)
    meta = table.frame
    mat_path = find_file(meta_path.parent, ["image-path.mat"], "UT-Zappos50K image path list")
    paths = _read_image_paths(mat_path)
    if len(paths) != len(meta):
        raise DatasetLayoutError(
            mat_path, f"has {len(paths)} image paths but {meta_path.name} has {len(meta)} rows"
        )
    meta["CID"] = meta["CID"].astype(str).str.strip()
    if check_cid:
        stems = pd.Series([p.rsplit("/", 1)[-1].rsplit(".", 1)[0] for p in paths])
        bad = table.first_bad((stems.str.replace(".", "-", regex=False) != meta["CID"]).to_numpy())
        if bad is not None:
            raise table.error(
                bad, f"CID does not match image-path.mat entry {paths[bad]!r}", meta["CID"][bad]
            )
    for column in ("Category", "SubCategory"):
        bad = table.first_bad(meta[column].isna().to_numpy())
        if bad is not None:
            raise table.error(bad, f"empty {column}")
    return table, paths


def _first_of_each_cid(
    table: Table, paths: list[str], dropped: dict[str, int], notes: list[str]
) -> tuple[pd.DataFrame, list[str]]:
    """One row per CID, the first in file order; the repeats are counted and described."""
    meta = table.frame
    repeated = meta["CID"].duplicated().to_numpy()
    dropped["duplicate_cid"] = int(repeated.sum())
    if not repeated.any():
        return meta, paths
    whole = meta.assign(_path=paths).fillna("").duplicated().to_numpy()
    notes.append(
        f"{int(repeated.sum())} row(s) repeat an earlier CID (first at line "
        f"{int(table.lines[repeated][0])}); kept the first row of each CID, "
        f"{int((repeated & ~whole).sum())} of the repeats differ from it"
    )
    kept = meta.loc[~repeated].reset_index(drop=True)
    return kept, [p for p, r in zip(paths, repeated, strict=True) if not r]


def _attributes(
    meta: pd.DataFrame, attribute_columns: Sequence[str], min_count: int, dropped: dict[str, int]
) -> tuple[list[str], np.ndarray]:
    """Label names ``<Column>.<value>`` and their 0/1/NaN values."""
    blocks = []
    label_names: list[str] = []
    for column in attribute_columns:
        field = meta[column]
        values = field.fillna("").astype(str).str.split(";")
        cleaned = values.map(lambda items: sorted({i.strip() for i in items if i.strip()}))
        dummies = pd.get_dummies(cleaned.explode()).groupby(level=0).max()
        dummies = dummies.reindex(range(len(meta)), fill_value=False)
        counts = dummies.sum(axis=0)
        rare = counts[counts < min_count].index
        dropped["rare_attribute_values"] += len(rare)
        dummies = dummies.drop(columns=rare)
        block = dummies.to_numpy(np.float32, copy=True)
        block[field.isna().to_numpy()] = np.nan
        blocks.append(block)
        label_names.extend(f"{column}.{value}" for value in dummies.columns)
    return label_names, np.concatenate(blocks, axis=1)


@register_reader("ut_zappos")
def read_ut_zappos(
    root: Path,
    *,
    category_level: str = "category",
    attribute_columns: Sequence[str] = ATTRIBUTE_COLUMNS,
    min_count: int = 1,
    image_dir: str = "ut-zap50k-images",
    escape_trailing_dots: bool = True,
    check_cid: bool = True,
) -> ReaderResult:
    """Read UT-Zappos50K: ``category`` + binary ``attributes`` from the metadata.

    ``category_level``: ``"category"`` (Shoes, Boots, Sandals, Slippers) or
    ``"subcategory"`` (classes ``<Category>:<SubCategory>``). Each value of the
    ``attribute_columns`` becomes a label ``<Column>.<value>``; a row with an
    empty field has that column's labels missing. Labels seen on fewer than
    ``min_count`` images are left out. ``check_cid`` verifies that each image
    file name matches its row's CID (the two files are aligned by row). A CID
    listed again keeps its first row (counted in ``dropped["duplicate_cid"]``).
    """
    check_choice("category_level", category_level, ("category", "subcategory"))
    unknown = sorted(set(attribute_columns) - set(ATTRIBUTE_COLUMNS))
    if unknown:
        raise DataError(
            f"option attribute_columns: unknown {unknown}; known {list(ATTRIBUTE_COLUMNS)}"
        )
    table, paths = _read_meta(root, check_cid)
    dropped: dict[str, int] = {"rare_attribute_values": 0}
    notes: list[str] = []
    meta, paths = _first_of_each_cid(table, paths, dropped, notes)
    labels = meta["Category"].astype(str).str.strip()
    if category_level == "subcategory":
        labels = labels + ":" + meta["SubCategory"].astype(str).str.strip()
    classes = sorted(labels.unique())
    tasks: list[Task] = [CategoricalTask("category", classes)]
    notes.insert(0, f"{len(meta)} images; categories: {', '.join(classes)}")
    blocks = []
    if attribute_columns:
        names, values = _attributes(meta, attribute_columns, min_count, dropped)
        tasks.append(BinarySetTask("attributes", names))
        blocks.append(label_block("attributes", names, values))
    prefix = f"{image_dir.strip('/')}/" if image_dir else ""
    rel = [(_escape(p) if escape_trailing_dots else p).lstrip("/") for p in paths]
    manifest = build_manifest(
        meta["CID"].to_numpy(dtype=object),
        [prefix + r for r in rel],
        categorical={"category": labels.to_numpy(dtype=object)},
        blocks=blocks,
    )
    return ReaderResult(manifest, tasks, root, dropped, notes)
