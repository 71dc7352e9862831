"""Shared machinery of the dataset readers: errors, result type, registry, parsing helpers.

A *reader* turns one dataset's official folder layout into a dmtl manifest
(see ``docs/manifest.md``): a :class:`pandas.DataFrame` with ``id``, ``image``
(relative to the dataset root), optionally ``split``, one column per
categorical task (class names, missing = NaN) and one ``task/label`` column
per binary label (``float32`` 0/1, missing = NaN).

Readers never open or stat image files; the data layer does that. They do
build the exact relative image paths of the official layout.

>>> sorted(READERS) == sorted(set(READERS))
True
"""

from __future__ import annotations

import csv
import inspect
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
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
    lines: list[str] = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            lines.append(line.rstrip("\r\n"))
            if len(lines) == count:
                return lines
    raise DatasetLayoutError(
        path, f"file has {len(lines)} line(s); expected at least {count}", line=len(lines) + 1
    )


def parse_count_line(path: Path, text: str, line: int = 1) -> int:
    """The number on a count line (CelebA, DeepFashion); error otherwise."""
    try:
        return int(text.strip())
    except ValueError:
        raise DatasetLayoutError(
            path, "expected a count line (number of rows)", line=line, value=text
        ) from None


# ---- reading tables ----------------------------------------------------------------------------


def _split_fields(line: str, sep: str) -> list[str]:
    if sep == WHITESPACE:
        return line.split()
    return next(csv.reader([line], delimiter=sep))


def _data_lines(path: Path, skiprows: int) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of the non-blank lines after the first ``skiprows`` lines."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if number <= skiprows:
                continue
            text = line.rstrip("\r\n")
            if text.strip():
                yield number, text


@dataclass
class Table:
    """A parsed annotation file: its rows as a DataFrame, plus how to name a row's line."""

    frame: pd.DataFrame
    path: Path
    skiprows: int
    dense: bool = False
    """Whether every line after ``skiprows`` is a row (no blank lines were skipped)."""
    extra_rows: int = 0
    """Rows that carried more fields than the named columns (see ``read_table(extra=...)``)."""

    def line(self, row: int) -> int:
        """File line number of row position ``row`` (blank lines are skipped by the parser)."""
        if self.dense:
            return self.skiprows + 1 + row
        for position, (number, _) in enumerate(_data_lines(self.path, self.skiprows)):
            if position == row:
                return number
        raise IndexError(row)  # pragma: no cover - rows come from this file

    def error(self, row: int, message: str, value: Any = _UNSET) -> DatasetLayoutError:
        """A :class:`DatasetLayoutError` pointing at row position ``row``."""
        return DatasetLayoutError(self.path, message, line=self.line(row), value=value)

    def first_bad(self, bad: Any) -> int | None:
        """Position of the first ``True`` in ``bad`` or ``None``."""
        flags = np.asarray(bad, dtype=bool)
        hits = np.flatnonzero(flags)
        return int(hits[0]) if hits.size else None

    def check_codes(
        self, column: str, allowed: Collection[int] | Collection[str], what: str
    ) -> None:
        """Error at the first row whose ``column`` value is not in ``allowed``."""
        values = self.frame[column]
        bad = self.first_bad(~values.isin(list(allowed)).to_numpy())
        if bad is not None:
            raise self.error(bad, f"unknown {what}", values.iloc[bad])


def _describe_fields(minimum: int, maximum: int) -> str:
    return f"{minimum}" if minimum == maximum else f"{minimum} to {maximum}"


def _scan(
    path: Path,
    skiprows: int,
    sep: str,
    minimum: int,
    maximum: int,
    columns: Sequence[str],
    ints: Collection[str],
    bounds: tuple[int, int] | None,
) -> DatasetLayoutError | None:
    """Slow exact diagnosis after a fast parse failed: the first malformed line."""
    int_positions = [i for i, c in enumerate(columns) if c in ints]
    for number, text in _data_lines(path, skiprows):
        fields = _split_fields(text, sep)
        if not minimum <= len(fields) <= maximum:
            kind = "truncated or malformed line" if len(fields) < minimum else "too many fields"
            return DatasetLayoutError(
                path,
                f"{kind}: expected {_describe_fields(minimum, maximum)} fields, "
                f"found {len(fields)}",
                line=number,
                value=text if len(text) <= 200 else text[:200] + "...",
            )
        for i in int_positions:
            if i >= len(fields):
                continue
            try:
                value = int(fields[i])
            except ValueError:
                return DatasetLayoutError(
                    path,
                    f"expected an integer in field {columns[i]!r}",
                    line=number,
                    value=fields[i],
                )
            if bounds is not None and not bounds[0] <= value <= bounds[1]:
                return DatasetLayoutError(
                    path,
                    f"value out of range in field {columns[i]!r}",
                    line=number,
                    value=fields[i],
                )
    return None


_CHUNK_ROWS = 20_000


def _read_compact(path: Path, options: dict[str, Any], int_columns: list[str]) -> pd.DataFrame:
    """Read in chunks, stacking the integer columns into one small-dtype block.

    Keeps the peak memory near the size of the result on huge tables (pandas'
    one-shot parse of 289k x 1000 fields needs several times more).
    """
    blocks: list[np.ndarray] = []
    others: list[pd.DataFrame] = []
    int_kept: list[str] = []
    for chunk in pd.read_csv(path, chunksize=_CHUNK_ROWS, **options):
        int_kept = [c for c in chunk.columns if c in int_columns]
        blocks.append(chunk[int_kept].to_numpy())
        others.append(chunk.drop(columns=int_kept))
    if not others:
        raise pd.errors.EmptyDataError("no data rows")
    head = pd.concat(others, ignore_index=True)
    block = pd.DataFrame(np.concatenate(blocks), columns=int_kept, copy=False)
    return pd.concat([head, block], axis=1)


def read_table(
    path: Path,
    columns: Sequence[str],
    *,
    sep: str = WHITESPACE,
    skiprows: int = 0,
    ints: Collection[str] = (),
    compact: type[np.integer[Any]] | None = None,
    required: int | None = None,
    extra: int = 0,
    usecols: Sequence[str] | None = None,
    blank_lines: str = "skip",
) -> Table:
    """Parse a delimited annotation file fast (pandas), with exact line numbers on errors.

    ``columns`` name the fields; rows need at least ``required`` of them (default
    all) and may carry up to ``extra`` more, which are ignored. ``ints`` must be
    integers; with ``compact`` (e.g. ``np.int8``) they are parsed straight into that
    dtype to save memory on huge files. ``usecols`` restricts what is kept (field
    counts are then not checked beyond the last used column). With
    ``blank_lines="error"`` a blank line inside the data is a malformed line, so
    that row ``i`` is always line ``skiprows + 1 + i`` (per-frame files).
    """
    columns = list(columns)
    required = len(columns) if required is None else required
    names = columns + [f"_extra{i}" for i in range(extra)]
    quoting = csv.QUOTE_NONE if sep == WHITESPACE else csv.QUOTE_MINIMAL
    dtype: dict[str, Any] = {c: str for c in names if c not in ints}
    if compact is not None:
        dtype.update({c: compact for c in ints})
    bounds = None
    if compact is not None:
        info = np.iinfo(compact)
        bounds = (int(info.min), int(info.max))

    def diagnose(error: Exception) -> DatasetLayoutError:
        found = _scan(path, skiprows, sep, required, len(names), columns, ints, bounds)
        return found or DatasetLayoutError(path, f"could not be parsed ({error})")

    options: dict[str, Any] = {
        "sep": sep,
        "header": None,
        "names": names,
        "skiprows": skiprows,
        "dtype": dtype,
        "quoting": quoting,
        "keep_default_na": False,
        "na_values": [""],
        "usecols": list(usecols) if usecols is not None else None,
        "skip_blank_lines": blank_lines != "error",
        "engine": "c",
    }
    try:
        if compact is None:
            frame = pd.read_csv(path, **options)
        else:
            frame = _read_compact(path, options, [c for c in names if c in ints])
    except pd.errors.EmptyDataError:
        kept_names = list(usecols) if usecols is not None else names
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in kept_names})
    except (pd.errors.ParserError, ValueError, OverflowError) as error:
        raise diagnose(error) from None
    except FileNotFoundError:
        raise DatasetLayoutError(path, "file not found") from None
    table = Table(frame, path, skiprows, blank_lines == "error")
    kept = list(frame.columns)
    if table.dense and len(frame):
        filled = np.flatnonzero(frame.notna().any(axis=1).to_numpy())
        end = int(filled[-1]) + 1 if filled.size else 0
        if end < len(frame):  # trailing blank lines at the end of the file are harmless
            frame = table.frame = frame.iloc[:end]
    needed = [c for c in columns[:required] if c in kept]
    if needed:
        bad = table.first_bad(frame[needed].isna().any(axis=1).to_numpy())
        if bad is not None:
            found = _scan(path, skiprows, sep, required, len(names), columns, ints, bounds)
            raise found or table.error(bad, f"truncated line: expected {required} fields")
    for column in ints:
        if column not in kept:
            continue
        series = frame[column]
        if pd.api.types.is_integer_dtype(series.dtype):
            continue
        numbers = pd.to_numeric(series, errors="coerce")
        fractional = numbers.notna() & (numbers.fillna(0) % 1 != 0)
        bad = table.first_bad(((numbers.isna() & series.notna()) | fractional).to_numpy())
        if bad is not None:
            raise table.error(bad, f"expected an integer in field {column!r}", series.iloc[bad])
        frame[column] = numbers.astype("Int64" if numbers.isna().any() else np.int64)
    if extra:
        extra_columns = [c for c in kept if c.startswith("_extra")]
        table.extra_rows = int(frame[extra_columns].notna().any(axis=1).sum())
        frame.drop(columns=extra_columns, inplace=True)
    return table


def check_field_counts(path: Path, skiprows: int, expected: int, sep: str = ",") -> None:
    """Error at the first data line whose number of fields is not ``expected``.

    For delimited files whose fields may legitimately be empty: the fast parser
    cannot tell an empty trailing field from a missing one.
    """
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        for number, fields in enumerate(csv.reader(handle, delimiter=sep), start=1):
            if number <= skiprows or not fields or not any(f.strip() for f in fields):
                continue
            if len(fields) != expected:
                kind = (
                    "truncated or malformed line" if len(fields) < expected else "too many fields"
                )
                raise DatasetLayoutError(
                    path,
                    f"{kind}: expected {expected} fields, found {len(fields)}",
                    line=number,
                    value=sep.join(fields),
                )


def parse_name_list(
    path: Path, skiprows: int, what: str, *, with_type: bool = True
) -> list[tuple[str, int]]:
    """Rows ``<name possibly with spaces> <integer type>`` (DeepFashion cloth lists)."""
    out: list[tuple[str, int]] = []
    for number, text in _data_lines(path, skiprows):
        if not with_type:
            out.append((text.strip(), 0))
            continue
        match = re.fullmatch(r"(.*\S)\s+(-?\d+)", text.strip())
        if match is None:
            raise DatasetLayoutError(
                path, f"expected '<{what} name> <{what} type>'", line=number, value=text
            )
        out.append((match.group(1), int(match.group(2))))
    return out


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


def binary_block(task: str, labels: Sequence[str], values: np.ndarray) -> pd.DataFrame:
    """``task/label`` columns from an ``(N, K)`` array of 0/1/NaN (stored as ``float32``)."""
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2 or values.shape[1] != len(labels):
        raise ValueError(f"expected an (N, {len(labels)}) array, got shape {values.shape}")
    return pd.DataFrame(values, columns=[f"{task}/{label}" for label in labels], copy=False)


def build_manifest(
    ids: Sequence[str] | pd.Series | np.ndarray,
    images: Sequence[str] | pd.Series | np.ndarray,
    *,
    split: Sequence[Any] | pd.Series | np.ndarray | None = None,
    categorical: Mapping[str, Sequence[Any] | pd.Series | np.ndarray] | None = None,
    binary: Sequence[pd.DataFrame] = (),
) -> pd.DataFrame:
    """Assemble a manifest in the column order ``id, image, split, tasks...``."""
    parts: dict[str, Any] = {
        "id": pd.Series(np.asarray(ids, dtype=object), dtype=object),
        "image": pd.Series(np.asarray(images, dtype=object), dtype=object),
    }
    if split is not None:
        parts["split"] = pd.Series(np.asarray(split, dtype=object), dtype=object)
    for name, values in (categorical or {}).items():
        parts[name] = pd.Series(np.asarray(values, dtype=object), dtype=object)
    head = pd.DataFrame(parts)
    blocks = [b.reset_index(drop=True) for b in binary]
    manifest = pd.concat([head, *blocks], axis=1) if blocks else head
    for column in head.columns:
        if column not in ("id", "image", "split"):
            manifest[column] = manifest[column].where(manifest[column].notna(), np.nan)
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
            columns = [f"{task.name}/{label}" for label in task.names]
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
        binary=[binary_block("au", au_columns, rows[list(au_columns)].to_numpy(np.float32))],
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
    "binary_block",
    "build_manifest",
    "check_choice",
    "check_field_counts",
    "drop_unlabelled",
    "expression_task",
    "find_dir",
    "find_file",
    "get_reader",
    "head_lines",
    "parse_count_line",
    "parse_name_list",
    "read_dataset",
    "read_table",
    "reader_options",
    "register_reader",
    "subject_splits",
    "unique_names",
]
