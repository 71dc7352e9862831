"""Manifests: one row per sample, read from CSV/Parquet (or a DataFrame) and validated.

The format is described in ``docs/manifest.md``. Columns:

- ``id`` (optional, unique), ``image`` *or* ``index`` (exactly one), ``split`` (optional:
  ``train``, ``val`` or ``test``);
- ``<task>`` for a categorical task: a class name or a class index, empty = not labelled;
- ``<task>/<label>`` for a binary-set task: ``0``, ``1`` or empty (= not observed);
- ``<task>/<target>`` for a regression task: a number or empty (= not annotated).

Only an empty cell is "not labelled": the text ``nan`` in a binary-set or regression cell
is an error naming its row (a numeric Parquet/DataFrame column's ``NaN`` is its empty cell).

What a cell may hold is the task kind's to say (``task.parse_columns``); numeric
columns (Parquet, DataFrames from a reader) are read as numbers, never as text.

A categorical cell is first matched against the class *names*; only if it is no
name is it read as a class *index* (so for classes ``"0".."9"`` both readings agree).
A task with no column at all is unlabelled in this source. Any other column is
an error, so that a typo never drops labels silently.

Rows are numbered from 1 (the first data row); for CSV files the line number
(header = line 1) is given as well. A CSV file is read as UTF-8 text (a byte that is
not is an error naming its line), comma-separated, with one field per column on every
row: a row with more or fewer fields than the header is an error naming its line, never
a row read as "not labelled". Blank lines are skipped.

>>> import pandas as pd
>>> from dmtl.core.tasks import BinarySetTask, CategoricalTask
>>> tasks = [CategoricalTask("digit", ["zero", "one"]), BinarySetTask("attr", ["even", "big"])]
>>> frame = pd.DataFrame({"image": ["a.png", "b.png"], "digit": ["one", ""], "attr/even": [0, 1]})
>>> m = Manifest.from_frame(frame, tasks)
>>> m.labels["digit"].tolist(), m.labels["attr"].tolist()
([1, -1], [[0.0, nan], [1.0, nan]])
"""

from __future__ import annotations

import csv as csv_module
import difflib
import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dmtl._textfile import not_a_file, read_text
from dmtl.core.tasks import LabelCellError, Task, check_unique_task_names
from dmtl.core.tasks.categorical import preview
from dmtl.errors import DataError

RESERVED_COLUMNS = ("id", "image", "index", "split")
"""Columns that name no task."""

SPLITS = ("train", "val", "test")
"""Allowed values of the ``split`` column."""

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")

_INTEGER = re.compile(r"^[+-]?\d+$")


class Manifest:
    """A validated manifest with its labels encoded.

    ``labels[task]`` is ``int64 (N,)`` with ``-1`` = not labelled (categorical) or
    ``float32 (N, K)`` with ``NaN`` = not observed (binary set); tasks missing from
    the given ``labels`` are filled as unlabelled. Exactly one of ``image``
    (relative paths) and ``index`` (rows of an array file) is given. ``ids``
    default to the image paths or the indices. ``origin`` names where the rows
    came from (a file path, or e.g. ``"<DataFrame>"``) and ``rows`` their 1-based
    row numbers there (default ``1..N``), so later errors (missing files, index
    out of range) can name them; ``lines`` are their line numbers in a CSV file (``csv``
    without ``lines``: row ``r`` is on line ``r + 1``), added to those messages.
    ``root`` is the folder image paths are relative to (for a file: its folder).
    """

    def __init__(
        self,
        tasks: Sequence[Task],
        labels: Mapping[str, np.ndarray],
        *,
        image: Sequence[str] | np.ndarray | None = None,
        index: Sequence[int] | np.ndarray | None = None,
        ids: Sequence[str] | np.ndarray | None = None,
        split: Sequence[str] | np.ndarray | None = None,
        origin: str = "<DataFrame>",
        root: str | Path | None = None,
        rows: Sequence[int] | np.ndarray | None = None,
        csv: bool = False,
        labels_checked: bool = False,
        lines: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        self.tasks: tuple[Task, ...] = tuple(tasks)
        check_unique_task_names(self.tasks)
        self.origin = origin
        self.csv = csv or lines is not None
        if (image is None) == (index is None):
            raise DataError(f"{origin}: give exactly one of 'image' and 'index'")
        self.image: np.ndarray | None = None if image is None else np.asarray(image, dtype=object)
        self.index: np.ndarray | None = None if index is None else np.asarray(index, np.int64)
        keys = self.image if self.image is not None else self.index
        assert keys is not None
        n = len(keys)
        self.ids: np.ndarray = np.asarray(keys.astype(str) if ids is None else ids, dtype=object)
        self.split: np.ndarray | None = None if split is None else np.asarray(split, dtype=object)
        self.rows: np.ndarray = np.asarray(
            np.arange(1, n + 1) if rows is None else rows, dtype=np.int64
        )
        self.root: Path | None = None if root is None else Path(root)
        self.lines: np.ndarray | None = (
            np.asarray(lines, dtype=np.int64) if lines is not None
            else self.rows + 1 if self.csv else None
        )
        for what, value in (
            ("ids", self.ids), ("split", self.split), ("rows", self.rows), ("lines", self.lines)
        ):
            if value is not None and len(value) != n:
                raise DataError(f"{origin}: {what} has {len(value)} entries, expected {n}")
        duplicated = pd.Series(self.ids).duplicated().to_numpy()
        if duplicated.any():
            raise DataError(f"{origin}: duplicated id {self.ids[duplicated][0]!r}")
        if self.split is not None and not np.isin(self.split, SPLITS).all():
            bad = self.split[~np.isin(self.split, SPLITS)][0]
            raise DataError(f"{origin}: split {bad!r} is not one of {', '.join(SPLITS)}")
        # Labels are validated once, where they enter: a parser (``labels_checked``) already did.
        self.labels: dict[str, np.ndarray] = (
            {t.name: labels.get(t.name, t.unlabelled(n)) for t in self.tasks}
            if labels_checked
            else check_encoded(self.tasks, labels, n, origin)
        )

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"Manifest({self.origin!r}, {len(self)} rows, {self.kind})"

    def with_root(self, root: str | Path) -> Manifest:
        """The same rows with another root folder."""
        return Manifest(
            self.tasks, self.labels, image=self.image, index=self.index, ids=self.ids,
            split=self.split, origin=self.origin, root=root, rows=self.rows, csv=self.csv,
            labels_checked=True, lines=self.lines,
        )

    @property
    def kind(self) -> str:
        """``"image"`` or ``"index"``: how inputs are found."""
        return "image" if self.image is not None else "index"

    def where(self, position: int, column: str | None = None) -> str:
        """Describe row ``position`` (0-based here) as ``file, row r (line l), column c``."""
        line = None if self.lines is None else int(self.lines[position])
        return _where(self.origin, self.row_number(position), column, line)

    def row_number(self, position: int) -> int:
        """1-based data row in :attr:`origin` of the row at 0-based ``position`` here."""
        return int(self.rows[position])

    def select(self, positions: np.ndarray | Sequence[int]) -> Manifest:
        """The manifest restricted to the given 0-based row positions (order kept as given)."""
        pos = np.asarray(positions, dtype=np.int64)

        def take(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[pos]

        return Manifest(
            self.tasks,
            {k: v[pos] for k, v in self.labels.items()},
            image=take(self.image),
            index=take(self.index),
            ids=take(self.ids),
            split=take(self.split),
            origin=self.origin,
            root=self.root,
            rows=self.rows[pos],
            csv=self.csv,
            labels_checked=True,
            lines=take(self.lines),
        )

    def to_frame(self) -> pd.DataFrame:
        """The manifest as a DataFrame in the standard format (class *names*, 0/1/empty)."""
        columns: dict[str, object] = {"id": self.ids}
        if self.image is not None:
            columns["image"] = self.image
        else:
            columns["index"] = self.index
        if self.split is not None:
            columns["split"] = self.split
        for task in self.tasks:
            columns.update(label_columns(task, self.labels[task.name]))
        return pd.DataFrame(columns)

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        tasks: Sequence[Task],
        root: str | Path | None = None,
        *,
        origin: str = "<DataFrame>",
        csv: bool = False,
        require_labels: bool = True,
    ) -> Manifest:
        """Validate and encode a DataFrame in the manifest format (its index is ignored).

        ``require_labels=False`` accepts a manifest without any task column (inputs
        to predict on); otherwise that is an error.
        """
        lines = np.arange(2, len(frame) + 2) if csv else None
        return _parse(frame, tuple(tasks), root, origin, lines, require_labels)

    @classmethod
    def read(
        cls,
        path: str | Path,
        tasks: Sequence[Task],
        root: str | Path | None = None,
        *,
        require_labels: bool = True,
    ) -> Manifest:
        """Read a CSV or Parquet manifest; ``root`` defaults to the file's folder."""
        path = Path(path)
        frame, lines = _read_table(path)
        return _parse(
            frame, tuple(tasks), path.parent if root is None else root, str(path), lines,
            require_labels,
        )


def read_manifest(
    manifest: str | Path | pd.DataFrame | Manifest,
    tasks: Sequence[Task],
    root: str | Path | None = None,
    *,
    require_labels: bool = True,
) -> Manifest:
    """A :class:`Manifest` from a file path, a DataFrame or a Manifest (returned as is)."""
    if isinstance(manifest, Manifest):
        if root is not None and manifest.root is None:
            return manifest.with_root(root)
        return manifest
    if isinstance(manifest, pd.DataFrame):
        return Manifest.from_frame(manifest, tasks, root, require_labels=require_labels)
    return Manifest.read(manifest, tasks, root, require_labels=require_labels)


def write_manifest(path: str | Path, manifest: Manifest) -> Path:
    """Write ``manifest`` as CSV or Parquet (chosen by the suffix); returns the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    frame = manifest.to_frame()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix in CSV_SUFFIXES:
        frame.to_csv(path, index=False)
    elif suffix in PARQUET_SUFFIXES:
        frame.to_parquet(path, index=False)
    else:
        raise DataError(
            f"{path}: unknown manifest suffix {suffix!r}; expected .csv, .parquet or .pq"
        )
    return path


def label_columns(task: Task, values: np.ndarray) -> dict[str, pd.Series]:
    """A task's encoded labels as manifest columns, in the kind's column dtype."""
    dtype: Any = task.manifest_dtype
    return {column: pd.Series(v).astype(dtype) for column, v in task.decode(values).items()}


def check_encoded(
    tasks: Sequence[Task], labels: Mapping[str, np.ndarray], n: int, where: str
) -> dict[str, np.ndarray]:
    """Validate encoded labels for ``n`` samples (each task checks its own); fill tasks
    without labels as unlabelled. Returns arrays in each kind's encoded dtype."""
    by_name = {t.name: t for t in tasks}
    unknown = sorted(set(labels) - set(by_name))
    if unknown:
        raise DataError(f"{where}: labels given for unknown tasks: {', '.join(unknown)}")
    return {
        task.name: task.check_encoded(labels[task.name], n, where)
        if task.name in labels
        else task.unlabelled(n)
        for task in tasks
    }


# --------------------------------------------------------------------------- parsing


def _where(origin: str, row: int, column: str | None, line: int | None) -> str:
    text = f"{origin}, row {row}"
    if line is not None:
        text += f" (line {line})"
    if column is not None:
        text += f", column {column!r}"
    return text


_OTHER_SEPARATORS = {";": "';'", "\t": "tab", "|": "'|'"}


def _read_table(path: Path) -> tuple[pd.DataFrame, np.ndarray | None]:
    """The manifest as text cells (CSV, with each row's line) or as read (Parquet)."""
    problem = not_a_file(path, "manifest file")
    if problem == "missing":
        raise DataError(f"{path}: manifest file not found")
    if problem is not None:
        raise DataError(f"{path}: {problem}")
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return _read_csv(path)
    if suffix in PARQUET_SUFFIXES:
        try:
            return pd.read_parquet(path), None
        except (OSError, ValueError, ImportError) as error:
            problem = " ".join(str(error).split())
            raise DataError(f"{path}: cannot read the Parquet manifest ({problem})") from None
    raise DataError(
        f"{path}: unknown manifest suffix {suffix!r}; expected .csv, .parquet or .pq"
    )


def _read_csv(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Every row of a CSV manifest with exactly one field per header column."""
    reader = csv_module.reader(io.StringIO(read_text(path, "manifest", DataError), newline=""))
    header: list[str] | None = None
    header_line = 0
    records: list[list[str]] = []
    lines: list[int] = []
    try:
        for record in reader:
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # a blank line
            if header is None:
                header, header_line = [c.strip() for c in record], reader.line_num
                _check_header(path, header, header_line)
            elif len(record) != len(header):
                raise DataError(
                    f"{path}, row {len(records) + 1} (line {reader.line_num}): {len(record)} "
                    f"field(s), but the header (line {header_line}) has {len(header)} "
                    "columns; give every row one field per column (an empty field: not "
                    "labelled; quote a field that holds a comma)"
                )
            else:
                records.append(record)
                lines.append(reader.line_num)
    except csv_module.Error as error:
        raise DataError(f"{path}, line {reader.line_num}: not a CSV file ({error})") from None
    if header is None:
        raise DataError(
            f"{path}: empty manifest (an empty file; expected a header line naming the columns, "
            "e.g. image,<task>)"
        )
    frame = pd.DataFrame(records, columns=header, dtype=object)
    return frame, np.asarray(lines, dtype=np.int64)


def _check_header(path: Path, header: list[str], line: int) -> None:
    """A header of one column that another separator would split: say so."""
    if len(header) != 1:
        return
    for separator, name in _OTHER_SEPARATORS.items():
        if separator in header[0]:
            raise DataError(
                f"{path}, line {line}: the header is one column {header[0]!r}; the file looks "
                f"{name}-separated, and a manifest is comma-separated (save it with ',' as "
                "the separator)"
            )


def _cells(series: pd.Series) -> np.ndarray:
    """Cell texts, stripped, with ``""`` for empty/missing cells; integral numbers as ints."""
    n = len(series)
    if pd.api.types.is_bool_dtype(series.dtype):
        missing = series.isna().to_numpy()
        flags = series.fillna(False).to_numpy(dtype=bool)
        return np.where(missing, "", np.where(flags, "1", "0")).astype(object)
    if pd.api.types.is_numeric_dtype(series.dtype):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        out = np.full(n, "", dtype=object)
        present = ~np.isnan(values)
        integral = present & np.isfinite(values) & (values == np.floor(values))
        out[integral] = values[integral].astype(np.int64).astype(str)
        other = present & ~integral
        out[other] = values[other].astype(str)
        return out
    return np.array([_text(v) for v in series.to_numpy(dtype=object)], dtype=object)


def _text(value: object) -> str:
    if type(value) is str:
        return value.strip()
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "1" if value else "0"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def _label_cells(series: pd.Series) -> np.ndarray:
    """A label column as numbers (``NaN`` = empty) when it holds numbers, else stripped text."""
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.array([_text(v) for v in series.to_numpy(dtype=object)], dtype=object)


def _bad_values(
    what: str, origin: str, rows: np.ndarray, lines: np.ndarray | None, column: str,
    bad: np.ndarray,
) -> DataError:
    """An error for the first bad cell, with the count of the others."""
    first = int(bad[0])
    line = None if lines is None else int(lines[first])
    message = f"{_where(origin, int(rows[first]), column, line)}: {what}"
    if len(bad) > 1:
        message += f" ({len(bad) - 1} more bad value(s) in this column)"
    return DataError(message)


_INPUT_LIKE = ("path", "file", "filename", "file_name", "img", "img_path", "image_path",
               "images", "picture", "idx", "row", "indices")


def _input_column(columns: Sequence[str], origin: str) -> str:
    """``"image"`` or ``"index"``: the one input column; else an error naming what is missing."""
    has_image, has_index = "image" in columns, "index" in columns
    if has_image and has_index:
        raise DataError(
            f"{origin}: the manifest has both an 'image' and an 'index' column; give exactly "
            "one (image paths, or row indices into an array file)"
        )
    if has_image or has_index:
        return "image" if has_image else "index"
    near = [c for c in columns if c.strip().lower() in ("image", "index", *_INPUT_LIKE)]
    hint = f"; rename {near[0]!r} to 'image' or 'index'?" if near else ""
    blank = [i + 1 for i, c in enumerate(columns) if not c.strip()]
    if blank:
        hint += f"; column {blank[0]} of the header has no name"
    raise DataError(
        f"{origin}: no 'image' column (image paths) and no 'index' column (rows of an array "
        f"file): the manifest needs one of them; its columns: {preview(list(columns))}{hint}"
    )


def _column_map(
    columns: Sequence[str], tasks: Sequence[Task], origin: str, require_labels: bool
) -> dict[str, Task]:
    """Map each task column to its task; reject unknown columns."""
    wanted = {column: task for task in tasks for column in task.manifest_columns()}
    unknown = [c for c in columns if c not in wanted and c not in RESERVED_COLUMNS]
    if unknown:
        described = []
        for c in unknown:
            close = difflib.get_close_matches(c, [*wanted, *RESERVED_COLUMNS], n=1)
            if c.startswith("Unnamed:"):
                described.append(f"{c!r} (a CSV written with its index? write it with index=False)")
            elif close:
                described.append(f"{c!r} (did you mean {close[0]!r}?)")
            else:
                described.append(repr(c))
        expected = preview(list(wanted))
        raise DataError(
            f"{origin}: {len(unknown)} column(s) match no task and are not reserved "
            f"({', '.join(RESERVED_COLUMNS)}): {', '.join(described)}. Task columns are "
            f"'<task>' (categorical) or '<task>/<name>' (binary set, regression); expected among: "
            f"{expected}"
        )
    found = {c: wanted[c] for c in columns if c in wanted}
    if not found and require_labels:
        raise DataError(
            f"{origin}: no column matches any task; expected among: {preview(list(wanted))}"
        )
    return found


def _parse(
    frame: pd.DataFrame,
    tasks: tuple[Task, ...],
    root: str | Path | None,
    origin: str,
    lines: np.ndarray | None,
    require_labels: bool,
) -> Manifest:
    check_unique_task_names(tasks)
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{origin}: expected a pandas DataFrame, got {type(frame).__name__}")
    frame = frame.reset_index(drop=True)
    frame.columns = [str(c) for c in frame.columns]
    columns = list(frame.columns)
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise DataError(f"{origin}: duplicated column(s): {', '.join(duplicated)}")
    key_column = _input_column(columns, origin)
    task_columns = _column_map(columns, tasks, origin, require_labels)
    n = len(frame)
    if n == 0:
        raise DataError(f"{origin}: empty manifest (a header, no rows)")
    rows = np.arange(1, n + 1)
    keys = _cells(frame[key_column])
    image = index = None
    if key_column == "image":
        bad = np.flatnonzero(keys == "")
        if len(bad):
            raise _bad_values("empty image path", origin, rows, lines, "image", bad)
        image = keys
    else:
        ok = np.array([bool(_INTEGER.match(k)) and int(k) >= 0 for k in keys], dtype=bool)
        bad = np.flatnonzero(~ok)
        if len(bad):
            what = f"expected a non-negative integer row index, got {keys[bad[0]]!r}"
            raise _bad_values(what, origin, rows, lines, "index", bad)
        index = keys.astype(np.int64)
    ids = _ids(frame, keys, key_column, origin, rows, lines)
    split = None
    if "split" in columns:
        split = _cells(frame["split"])
        bad = np.flatnonzero(~np.isin(split, SPLITS))
        if len(bad):
            what = f"expected a split among {', '.join(SPLITS)}, got {split[bad[0]]!r}"
            raise _bad_values(what, origin, rows, lines, "split", bad)
    labels: dict[str, np.ndarray] = {}
    for task in tasks:
        mine = {c: _label_cells(frame[c]) for c, t in task_columns.items() if t is task}
        if mine:
            try:
                labels[task.name] = task.parse_columns(mine, n)
            except LabelCellError as error:
                raise _bad_values(
                    error.message, origin, rows, lines, error.column, error.positions
                ) from None
    return Manifest(
        tasks, labels, image=image, index=index, ids=ids, split=split, origin=origin,
        root=None if root is None else Path(root), rows=rows, labels_checked=True, lines=lines,
    )


def _ids(
    frame: pd.DataFrame, keys: np.ndarray, key_column: str, origin: str, rows: np.ndarray,
    lines: np.ndarray | None,
) -> np.ndarray:
    """The ``id`` column (no empty one), else the input column; unique either way."""
    if "id" in frame.columns:
        ids = _cells(frame["id"])
        bad = np.flatnonzero(ids == "")
        if len(bad):
            raise _bad_values("empty id", origin, rows, lines, "id", bad)
        id_column, note = "id", ""
    else:
        ids = keys
        id_column, note = key_column, f" (ids default to the {key_column} column)"
    dup = pd.Series(ids).duplicated(keep=False).to_numpy()
    if dup.any():
        first = int(np.flatnonzero(dup)[0])
        same = np.flatnonzero(ids == ids[first])
        others = len(set(ids[dup])) - 1
        more = f"; {others} more duplicated id(s)" if others else ""
        raise DataError(
            f"{origin}, column {id_column!r}: id {ids[first]!r} is duplicated{note} in rows "
            f"{', '.join(str(int(rows[p])) for p in same[:5])}{more}"
        )
    return ids
