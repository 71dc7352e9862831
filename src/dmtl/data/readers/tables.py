"""Annotation files parsed by pandas, with the exact file line of every row.

pandas' C parser reads each file with blank lines kept as empty rows, so row
``i`` is line ``skiprows + 1 + i``: an error names the exact line (counting
every line of the file) without a second pass. Integers are parsed straight
into numpy dtypes; only when that fails is the file read again to find the
offending field. Huge integer tables (CelebA's attributes, DeepFashion's
289k x 1000 labels) are read in chunks into a compact dtype such as ``int8``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dmtl.errors import DatasetLayoutError

WHITESPACE = r"\s+"
"""Separator of the space-aligned annotation files (runs of spaces or tabs)."""

_UNSET: Any = object()


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
"""Rows per chunk of a compact table (bounds the peak memory on huge files)."""


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
    more: int = 1
    """Catch-all columns after the named ones (more when ``extra`` lines are longer)."""
    nullable: bool = False
    """Parse integers as nullable integers (numpy ones cannot hold a blank line's NaN)."""

    @property
    def names(self) -> list[str]:
        if self.usecols is not None:  # pandas' usecols ignores the fields after the named ones
            return self.columns
        return self.columns + [f"{_MORE}{i}" for i in range(self.more)]

    @property
    def kept(self) -> list[str]:
        return [c for c in self.columns if self.usecols is None or c in self.usecols]

    def expected(self) -> str:
        low, high = self.required, len(self.columns)
        if self.extra:
            return f"at least {low}"
        return f"{low}" if low == high else f"{low} to {high}"

    def options(self, typed: bool) -> dict[str, Any]:
        """``pandas.read_csv`` options; ``typed`` parses the integer fields as integers."""
        integer = np.dtype(self.compact or np.int64)
        dtype: dict[str, Any] = {name: str for name in self.names}
        if typed:
            kind = f"Int{integer.itemsize * 8}" if self.nullable else integer
            dtype.update(dict.fromkeys(self.ints, kind))
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
            "skipinitialspace": True,  # also makes a line of spaces an empty row
            "engine": "c",
            "chunksize": _CHUNK_ROWS if self.compact is not None else None,
            "encoding_errors": "replace",
        }

    def field_error(self, line: int, kind: str) -> DatasetLayoutError:
        """A wrong number of fields on ``line`` (counted again from the line's text)."""
        text = _line(self.path, line)
        if self.sep == WHITESPACE:
            found = len(text.split())
        else:
            found = len(next(csv.reader([text], delimiter=self.sep), []))
        message = f"{kind}: expected {self.expected()} fields, found {found}"
        return DatasetLayoutError(self.path, message, line=line, value=_shorten(text))


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
    ``compact`` dtype such as ``np.int8``, read in chunks to bound the memory on
    huge files). ``usecols`` restricts what is kept (fields after the named
    columns are then not checked). Blank lines are skipped; with
    ``blank_lines="error"`` a blank line before the last data line is an error
    (per-frame files, where a row's position is its frame number).
    """
    if not path.is_file():
        raise DatasetLayoutError(path, "file not found")
    layout = _Layout(
        path, list(columns), sep, skiprows,
        ints=[c for c in columns if c in ints and (usecols is None or c in usecols)],
        compact=compact,
        required=len(columns) if required is None else required,
        extra=extra,
        usecols=list(usecols) if usecols is not None else None,
    )
    while True:
        try:
            table = _parse(layout)
            break
        except DatasetLayoutError:
            raise
        except pd.errors.ParserError as error:
            _widen_or_raise(layout, error)
        except (ValueError, TypeError, OverflowError) as error:  # a blank line or a bad integer
            if layout.nullable:
                raise _bad_integer(layout) or DatasetLayoutError(
                    path, f"could not be parsed ({error})"
                ) from None
            layout.nullable = True
    gap = table.first_bad(table.lines != skiprows + 1 + np.arange(len(table.lines)))
    if blank_lines == "error" and gap is not None:
        raise layout.field_error(skiprows + 1 + gap, "truncated or malformed line")
    return table


def _widen_or_raise(layout: _Layout, error: pd.errors.ParserError) -> None:
    """After a parser error: read again with more columns where that helps, else raise."""
    found = _TOO_MANY.search(str(error))
    if found is not None and layout.extra and int(found.group(3)) > len(layout.names):
        layout.more = int(found.group(3)) - len(layout.columns)
    elif found is not None:
        raise layout.field_error(int(found.group(2)), "too many fields") from None
    elif layout.usecols is not None:  # pandas' usecols fails on files of short lines
        layout.usecols = None
    else:
        raise DatasetLayoutError(layout.path, f"could not be parsed ({error})") from None


def _parse(layout: _Layout) -> Table:
    """The file's non-blank rows with their lines; field counts checked, integers as numpy."""
    frames, lines, extra_rows = [], [], 0
    start = layout.skiprows + 1
    required = [c for c in layout.columns[: layout.required] if c in layout.kept]
    try:
        chunks = _chunks(layout, typed=True)
    except pd.errors.EmptyDataError:
        chunks = iter(())
    for chunk in chunks:
        numbers = start + np.arange(len(chunk))
        start += len(chunk)
        filled = chunk.notna().any(axis=1).to_numpy()
        if not filled.all():
            chunk, numbers = chunk.loc[filled], numbers[filled]
        more = [c for c in chunk.columns if c.startswith(_MORE)]
        beyond = chunk[more].notna().any(axis=1).to_numpy()
        short = chunk[required].isna().any(axis=1).to_numpy()
        problems = [(int(numbers[short][0]), "truncated or malformed line")] if short.any() else []
        if beyond.any() and not layout.extra:
            problems.append((int(numbers[beyond][0]), "too many fields"))
        if problems:
            raise layout.field_error(*min(problems))
        frames.append(chunk.drop(columns=more))
        lines.append(numbers)
        extra_rows += int(beyond.sum())
    if not frames:
        empty = pd.DataFrame(columns=layout.kept, dtype=object)
        return Table(empty, layout.path, np.zeros(0, dtype=np.int64))
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    frame.index = pd.RangeIndex(len(frame))
    for column in layout.ints:  # nullable integers (after blank lines) back to numpy ones
        values = frame[column]
        if isinstance(values.dtype, pd.api.extensions.ExtensionDtype) and not values.isna().any():
            frame[column] = values.to_numpy(dtype=np.dtype(layout.compact or np.int64))
    return Table(frame, layout.path, np.concatenate(lines), extra_rows)


def _chunks(layout: _Layout, typed: bool) -> Iterator[pd.DataFrame]:
    """The file's rows: in chunks for compact (huge) tables, else in one frame."""
    result = pd.read_csv(layout.path, **layout.options(typed))
    return iter([result]) if isinstance(result, pd.DataFrame) else iter(result)


def _bad_integer(layout: _Layout) -> DatasetLayoutError | None:
    """The first integer field that is not an integer or out of range (after a failed parse)."""
    info = np.iinfo(layout.compact or np.int64)
    start = layout.skiprows + 1
    for chunk in _chunks(layout, typed=False):
        lines, start = start + np.arange(len(chunk)), start + len(chunk)
        found = []
        for column in layout.ints:
            text = chunk[column]
            numbers = pd.to_numeric(text, errors="coerce")
            invalid = text.notna() & (numbers.isna() | (numbers % 1 != 0))
            row = Table.first_bad(invalid | (numbers < info.min) | (numbers > info.max))
            if row is not None:
                kind = "expected an integer" if invalid.iloc[row] else "value out of range"
                found.append((int(lines[row]), f"{kind} in field {column!r}", text.iloc[row]))
        if found:
            line, message, value = min(found)
            return DatasetLayoutError(layout.path, message, line=line, value=value)
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
    with path.open(encoding="utf-8", errors="replace") as handle:
        text = [line.rstrip("\r\n") for line in islice(handle, skiprows, None)]
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


__all__ = [
    "WHITESPACE",
    "Table",
    "check_field_counts",
    "parse_name_list",
    "read_lines",
    "read_table",
]
