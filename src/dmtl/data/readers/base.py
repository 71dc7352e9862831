"""Shared machinery of the dataset readers: result type, registry, table reading, manifests.

A *reader* turns one dataset's official folder layout into a dmtl manifest
(see ``docs/manifest.md``): a :class:`pandas.DataFrame` with ``id``, ``image``
(relative to the dataset root), optionally ``split``, one column per
categorical task (class names as strings, missing = NaN) and one
``task/name`` column per binary label or regression target (``float32``;
binary 0/1, regression the value; missing = NaN).

Readers never open or stat image files; the data layer does that. They do
build the exact relative image paths of the official layout.

Annotation files are parsed by pandas' C parser (:func:`read_table`), which
keeps blank lines as empty rows so that every row knows its file line: an
error names the exact line without a second pass over the file.

>>> sorted(READERS) == sorted(set(READERS))
True
"""

from __future__ import annotations

import csv
import inspect
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from dmtl.core.relatedness import Relatedness
from dmtl.core.tasks import CategoricalTask, Task
from dmtl.errors import DataError, DatasetLayoutError
from dmtl.knowledge.affect import CONTEMPT, EXPRESSIONS, au_task, expression_task

WHITESPACE = r"\s+"
"""Separator of the space-aligned annotation files (runs of spaces or tabs)."""

_UNSET: Any = object()


@dataclass
class ReaderResult:
    """What a reader returns: the manifest, its tasks and an account of what was dropped."""

    manifest: pd.DataFrame
    tasks: list[Task]
    root: Path
    dropped: dict[str, int] = field(default_factory=dict)
    """Counts of labels or rows left out, by reason (see ``docs/datasets.md``)."""
    notes: list[str] = field(default_factory=list)
    """Human-readable remarks: layout variants detected, quirks handled."""
    knowledge: list[Relatedness] = field(default_factory=list)
    """Domain-knowledge relatedness tables shipped with the dataset (e.g. CUB)."""

    def task(self, name: str) -> Task:
        """The task called ``name``."""
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(f"no task {name!r}; tasks: {', '.join(t.name for t in self.tasks)}")

    def summary(self) -> str:
        """One line per fact: rows, tasks, drops and notes."""
        lines = [f"{len(self.manifest)} samples from {self.root}"]
        if "split" in self.manifest.columns:
            counts = self.manifest["split"].value_counts(dropna=False)
            lines.append("splits: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
        for task in self.tasks:
            lines.append(f"task {task.name} ({task.kind}, {task.num_outputs} outputs)")
        for reason, count in self.dropped.items():
            lines.append(f"dropped {reason}: {count}")
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)


Reader = Callable[..., ReaderResult]
"""A reader: ``reader(root: Path, **options) -> ReaderResult``."""

READERS: dict[str, Reader] = {}
"""Registered readers by name."""

R = TypeVar("R", bound=Reader)


def register_reader(name: str) -> Callable[[R], R]:
    """Register ``reader`` under ``name`` (decorator)."""

    def decorate(reader: R) -> R:
        if name in READERS and READERS[name] is not reader:
            raise DataError(f"a reader named {name!r} is already registered")
        READERS[name] = reader
        return reader

    return decorate


def get_reader(name: str) -> Reader:
    """The reader registered as ``name``; the error lists the known ones."""
    try:
        return READERS[name]
    except KeyError:
        known = ", ".join(sorted(READERS)) or "(none)"
        raise DataError(f"unknown dataset reader {name!r}; known readers: {known}") from None


def reader_options(name: str) -> dict[str, Any]:
    """Options of a reader with their defaults."""
    signature = inspect.signature(get_reader(name))
    return {
        p.name: p.default
        for p in list(signature.parameters.values())[1:]
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def read_dataset(name: str, root: str | Path, **options: Any) -> ReaderResult:
    """Read dataset ``name`` from its folder ``root`` with reader ``options``."""
    reader = get_reader(name)
    known = reader_options(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise DataError(
            f"reader {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"options: {', '.join(known) or '(none)'}"
        )
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(root, f"dataset root folder for {name!r} not found")
    return reader(root, **options)


# ---- locating files ----------------------------------------------------------------------------


def find_file(root: Path, candidates: Sequence[str], what: str) -> Path:
    """First of ``root/candidate`` that is a file; otherwise an error naming the expected path."""
    for candidate in candidates:
        path = root / candidate
        if path.is_file():
            return path
    also = "" if len(candidates) < 2 else f" (also looked for {', '.join(candidates[1:])})"
    raise DatasetLayoutError(root / candidates[0], f"{what} not found{also}")


def find_dir(root: Path, candidates: Sequence[str], what: str) -> Path:
    """First of ``root/candidate`` that is a folder; otherwise an error naming the expected path."""
    for candidate in candidates:
        path = root / candidate
        if path.is_dir():
            return path
    also = "" if len(candidates) < 2 else f" (also looked for {', '.join(candidates[1:])})"
    raise DatasetLayoutError(root / candidates[0], f"{what} not found{also}")


def head_lines(path: Path, count: int) -> list[str]:
    """The first ``count`` lines of a file (without line ends); error if it has fewer."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        lines = [line.rstrip("\r\n") for line in islice(handle, count)]
    if len(lines) < count:
        raise DatasetLayoutError(
            path, f"file has {len(lines)} line(s); expected at least {count}", line=len(lines) + 1
        )
    return lines


def parse_count_line(path: Path, text: str, line: int = 1) -> int:
    """The number on a count line (CelebA, DeepFashion); error otherwise."""
    try:
        return int(text.strip())
    except ValueError:
        raise DatasetLayoutError(
            path, "expected a count line (number of rows)", line=line, value=text
        ) from None


# ---- reading tables ----------------------------------------------------------------------------


@dataclass
class Table:
    """A parsed annotation file: its rows (blank lines left out) and the file line of each."""

    frame: pd.DataFrame
    path: Path
    lines: np.ndarray
    """1-based file line of each row of ``frame`` (every line counts, header and blank ones)."""
    extra_rows: int = 0
    """Rows that carried more fields than the named columns (``read_table(extra=True)``)."""

    def error(self, row: int, message: str, value: Any = _UNSET) -> DatasetLayoutError:
        """A :class:`DatasetLayoutError` pointing at row position ``row``."""
        return DatasetLayoutError(self.path, message, line=int(self.lines[row]), value=value)

    @staticmethod
    def first_bad(bad: Any) -> int | None:
        """Position of the first ``True`` in ``bad`` or ``None``."""
        hits = np.flatnonzero(np.asarray(bad, dtype=bool))
        return int(hits[0]) if hits.size else None

    def check_codes(
        self, column: str, allowed: Collection[int] | Collection[str], what: str
    ) -> None:
        """Error at the first row whose ``column`` value is not in ``allowed``."""
        values = self.frame[column]
        bad = self.first_bad(~values.isin(list(allowed)).to_numpy())
        if bad is not None:
            raise self.error(bad, f"unknown {what}", values.iloc[bad])


_MORE = "_more"
"""Prefix of the columns that catch fields beyond the named ones (``_more0``, ``_more1``, ...)."""

_TOO_MANY = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
"""pandas' C parser message for a line with more fields than columns."""

_CHUNK_ROWS = 50_000


@dataclass
class _Layout:
    """How :func:`read_table` parses one file (see its parameters)."""

    path: Path
    columns: list[str]
    sep: str
    skiprows: int
    ints: list[str]
    compact: type[np.integer[Any]] | None
    required: int
    extra: bool
    usecols: list[str] | None
    dense: bool
    more: int = 1
    """Number of catch-all columns after the named ones (grows when ``extra`` lines are longer)."""
    nullable: bool = False
    """Parse integers as nullable integers (numpy integers cannot hold the NaN of a blank line)."""

    @property
    def names(self) -> list[str]:
        if self.usecols is not None:  # pandas' usecols ignores the fields after the named ones
            return self.columns
        return self.columns + [f"{_MORE}{i}" for i in range(self.more)]

    @property
    def required_names(self) -> list[str]:
        needed = self.columns[: self.required]
        return needed if self.usecols is None else [c for c in needed if c in self.usecols]

    def expected(self) -> str:
        low, high = self.required, len(self.columns)
        if self.extra:
            return f"at least {low}"
        return f"{low}" if low == high else f"{low} to {high}"

    def options(self, typed: bool) -> dict[str, Any]:
        """``pandas.read_csv`` options; ``typed`` parses the integer fields as integers."""
        dtype: dict[str, Any] = {name: str for name in self.names}
        if typed:
            numpy_dtype = np.dtype(self.compact or np.int64)
            kind = f"Int{numpy_dtype.itemsize * 8}" if self.nullable else numpy_dtype
            dtype.update({name: kind for name in self.ints})
        return {
            "sep": self.sep,
            "header": None,
            "names": self.names,
            "usecols": self.usecols,
            "skiprows": self.skiprows,
            "dtype": dtype,
            "quoting": csv.QUOTE_NONE if self.sep == WHITESPACE else csv.QUOTE_MINIMAL,
            "keep_default_na": False,
            "na_values": [""],
            "skip_blank_lines": False,  # blank lines stay as empty rows: row i is line skiprows+1+i
            "engine": "c",
            "chunksize": _CHUNK_ROWS if self.compact is not None else None,  # bounds memory
            "encoding_errors": "replace",
        }

    def field_error(self, line: int, kind: str) -> DatasetLayoutError:
        """A wrong number of fields on ``line`` (counted again from the line's text)."""
        text = _line(self.path, line)
        if self.sep == WHITESPACE:
            found = len(text.split())
        else:
            found = len(next(csv.reader([text], delimiter=self.sep), []))
        return DatasetLayoutError(
            self.path,
            f"{kind}: expected {self.expected()} fields, found {found}",
            line=line,
            value=_shorten(text),
        )


def read_table(
    path: Path,
    columns: Sequence[str],
    *,
    sep: str = WHITESPACE,
    skiprows: int = 0,
    ints: Collection[str] = (),
    compact: type[np.integer[Any]] | None = None,
    required: int | None = None,
    extra: bool = False,
    usecols: Sequence[str] | None = None,
    blank_lines: str = "skip",
) -> Table:
    """Parse a delimited annotation file with pandas, with exact line numbers on errors.

    ``columns`` name the fields; rows need at least ``required`` of them (default
    all). With ``extra``, rows may carry any number of further fields: they are
    ignored and such rows counted in :attr:`Table.extra_rows`; otherwise a
    further field is an error. ``ints`` must be integers (``int64``, or the
    ``compact`` dtype such as ``np.int8`` to save memory on huge files; compact
    fields must be required ones). ``usecols`` restricts what is kept (fields
    after the named columns are then not checked). Blank lines are skipped; with
    ``blank_lines="error"`` a blank line before the last data line is an error
    (per-frame files, where a row's position is its frame number).
    """
    if not path.is_file():
        raise DatasetLayoutError(path, "file not found")
    layout = _Layout(
        path=path,
        columns=list(columns),
        sep=sep,
        skiprows=skiprows,
        ints=[c for c in columns if c in ints and (usecols is None or c in usecols)],
        compact=compact,
        required=len(columns) if required is None else required,
        extra=extra,
        usecols=list(usecols) if usecols is not None else None,
        dense=blank_lines == "error",
    )
    while True:
        try:
            parts = list(_checked_chunks(layout))
            break
        except DatasetLayoutError:
            raise
        except pd.errors.EmptyDataError:
            parts = []
            break
        except pd.errors.ParserError as error:
            _widen_or_raise(layout, error)
        except (ValueError, TypeError, OverflowError) as error:  # a blank line or a bad integer
            if not layout.nullable:
                layout.nullable = True
                continue
            raise _bad_integer(layout) or DatasetLayoutError(
                path, f"could not be parsed ({error})"
            ) from None
    return _assemble(layout, parts)


def _widen_or_raise(layout: _Layout, error: pd.errors.ParserError) -> None:
    """After a parser error: read again with more columns where that helps, else raise."""
    found = _TOO_MANY.search(str(error))
    if found is not None and layout.extra:
        layout.more = int(found.group(3)) - len(layout.columns)
    elif found is not None:
        raise layout.field_error(int(found.group(2)), "too many fields") from None
    elif layout.usecols is not None:  # pandas' usecols fails on files of short lines
        layout.usecols = None
    else:
        raise DatasetLayoutError(layout.path, f"could not be parsed ({error})") from None


_Chunk = tuple[pd.DataFrame, "np.ndarray | None", np.ndarray, int]
"""``(rows, compact integer block or None, file lines, rows with extra fields)``."""


def _checked_chunks(layout: _Layout) -> Iterator[_Chunk]:
    """The file's non-blank rows chunk by chunk, with their lines; field counts checked."""
    start, pending_blank = layout.skiprows + 1, 0
    for chunk in _chunks(layout, typed=True):
        lines = start + np.arange(len(chunk))
        start += len(chunk)
        filled = chunk.notna().any(axis=1).to_numpy()
        problems = []
        if layout.dense:
            inside, pending_blank = _blank_inside(lines, filled, pending_blank)
            if inside:
                problems.append((inside, "truncated or malformed line"))
        if not filled.all():
            chunk, lines = chunk.loc[filled], lines[filled]
        short = Table.first_bad(chunk[layout.required_names].isna().any(axis=1).to_numpy())
        if short is not None:
            problems.append((int(lines[short]), "truncated or malformed line"))
        more = [c for c in chunk.columns if c.startswith(_MORE)]
        beyond = chunk[more].notna().any(axis=1).to_numpy()
        if not layout.extra and beyond.any():
            problems.append((int(lines[np.flatnonzero(beyond)[0]]), "too many fields"))
        if problems:
            raise layout.field_error(*min(problems))
        chunk = chunk.drop(columns=more)
        block = None
        if layout.compact is not None:
            block = chunk[layout.ints].to_numpy(dtype=layout.compact)
            chunk = chunk.drop(columns=layout.ints)
        yield chunk, block, lines, int(beyond.sum())


def _chunks(layout: _Layout, typed: bool) -> Iterator[pd.DataFrame]:
    """The file's rows, in chunks for compact (huge) tables, else in one frame."""
    result = pd.read_csv(layout.path, **layout.options(typed))
    return iter([result]) if isinstance(result, pd.DataFrame) else iter(result)


def _blank_inside(lines: np.ndarray, filled: np.ndarray, pending: int) -> tuple[int, int]:
    """``(first blank line before a data line or 0, first blank line after the last data line)``.

    ``pending`` is the second value of the previous chunk (blank lines at its end).
    """
    blank = lines[~filled]
    if not filled.any():
        return 0, pending or (int(blank[0]) if blank.size else 0)
    last = lines[filled][-1]
    inside = blank[blank < last]
    after = blank[blank > last]
    return pending or (int(inside[0]) if inside.size else 0), int(after[0]) if after.size else 0


def _assemble(layout: _Layout, parts: list[_Chunk]) -> Table:
    """One :class:`Table` from the checked chunks (integers converted to numpy dtypes)."""
    kept = [c for c in layout.columns if layout.usecols is None or c in layout.usecols]
    if not parts:
        empty = pd.DataFrame({c: pd.Series(dtype=object) for c in kept})
        return Table(empty, layout.path, np.zeros(0, dtype=np.int64))
    frame = pd.concat([part[0] for part in parts], ignore_index=True)
    lines = np.concatenate([part[2] for part in parts])
    if layout.compact is not None:
        blocks = [part[1] for part in parts if part[1] is not None]
        block = pd.DataFrame(np.concatenate(blocks), columns=layout.ints, copy=False)
        frame = pd.concat([frame, block], axis=1)
    else:
        for column in layout.ints:
            if not frame[column].isna().any():
                frame[column] = frame[column].to_numpy(dtype=np.int64)
    return Table(frame, layout.path, lines, sum(part[3] for part in parts))


def _bad_integer(layout: _Layout) -> DatasetLayoutError | None:
    """The first integer field that is not an integer or out of range (after a failed parse)."""
    info = np.iinfo(layout.compact or np.int64)
    start = layout.skiprows + 1
    try:
        for chunk in _chunks(layout, typed=False):
            lines, start = start + np.arange(len(chunk)), start + len(chunk)
            found = []
            for column in layout.ints:
                text = chunk[column]
                numbers = pd.to_numeric(text, errors="coerce")
                invalid = text.notna() & (numbers.isna() | (numbers % 1 != 0))
                outside = (numbers < info.min) | (numbers > info.max)
                row = Table.first_bad((invalid | outside).to_numpy())
                if row is not None:
                    kind = "expected an integer" if invalid.iloc[row] else "value out of range"
                    found.append((int(lines[row]), f"{kind} in field {column!r}", text.iloc[row]))
            if found:
                line, message, value = min(found)
                return DatasetLayoutError(layout.path, message, line=line, value=value)
    except (pd.errors.ParserError, ValueError):
        return None
    return None


def _line(path: Path, number: int) -> str:
    """Line ``number`` (1-based) of a file, without its line end."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        return next(islice(handle, number - 1, None), "").rstrip("\r\n")


def _shorten(text: str) -> str:
    return text if len(text) <= 200 else text[:200] + "..."


def read_lines(path: Path, skiprows: int = 0) -> Table:
    """The non-blank lines after the first ``skiprows`` as a one-column table ``text``."""
    if not path.is_file():
        raise DatasetLayoutError(path, "file not found")
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()[skiprows:]
    series = pd.Series(text, dtype=object)
    filled = series.str.strip().astype(bool).to_numpy()
    lines = skiprows + 1 + np.flatnonzero(filled)
    frame = pd.DataFrame({"text": series[filled].to_numpy(dtype=object)})
    return Table(frame, path, lines)


def check_field_counts(path: Path, skiprows: int, expected: int, sep: str = ",") -> None:
    """Error at the first data line whose number of fields is not ``expected``.

    pandas cannot tell an empty trailing field (``a,b,``) from a missing one
    (``a,b``); the standard ``csv`` module counts them (only UT-Zappos needs it).
    """
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        rows = enumerate(csv.reader(handle, delimiter=sep), start=1)
        for number, fields in islice(rows, skiprows, None):
            if any(f.strip() for f in fields) and len(fields) != expected:
                short = len(fields) < expected
                kind = "truncated or malformed line" if short else "too many fields"
                raise DatasetLayoutError(
                    path,
                    f"{kind}: expected {expected} fields, found {len(fields)}",
                    line=number,
                    value=sep.join(fields),
                )


def parse_name_list(path: Path, skiprows: int, what: str) -> list[tuple[str, int]]:
    """Rows ``<name possibly with spaces> <integer type>`` (DeepFashion cloth lists)."""
    table = read_lines(path, skiprows)
    parts = table.frame["text"].str.extract(r"^\s*(.*\S)\s+(-?\d+)\s*$")
    bad = table.first_bad(parts[0].isna().to_numpy())
    if bad is not None:
        raise table.error(
            bad, f"expected '<{what} name> <{what} type>'", table.frame["text"].iloc[bad]
        )
    return list(zip(parts[0].tolist(), parts[1].astype(int).tolist(), strict=True))


# ---- building manifests ------------------------------------------------------------------------


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
        if isinstance(task, CategoricalTask):
            labelled |= manifest[task.name].notna().to_numpy()
        else:
            columns = [f"{task.name}/{name}" for name in task.names]
            labelled |= manifest[columns].notna().any(axis=1).to_numpy()
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


def check_choice(option: str, value: Any, choices: Collection[Any]) -> None:
    """Reject an option value outside ``choices``."""
    if value not in choices:
        raise DataError(
            f"option {option}={value!r} is not one of {', '.join(map(repr, choices))}"
        )


__all__ = [
    "CONTEMPT",
    "EXPRESSIONS",
    "READERS",
    "WHITESPACE",
    "DataError",
    "DatasetLayoutError",
    "Reader",
    "ReaderResult",
    "Table",
    "au_name",
    "au_number",
    "au_task",
    "build_manifest",
    "check_choice",
    "check_field_counts",
    "drop_unlabelled",
    "expression_task",
    "find_dir",
    "find_file",
    "get_reader",
    "head_lines",
    "label_block",
    "parse_count_line",
    "parse_name_list",
    "read_dataset",
    "read_lines",
    "read_table",
    "reader_options",
    "register_reader",
    "subject_splits",
    "unique_names",
]
