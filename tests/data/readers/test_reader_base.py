"""Registry, errors and the table parser shared by all readers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dmtl.data.readers import READERS, read_dataset
from dmtl.data.readers.base import (
    au_number,
    get_reader,
    read_table,
    reader_options,
    unique_names,
)
from dmtl.errors import DataError, DatasetLayoutError

PAPER_READERS = {
    "affectnet",
    "affwild2",
    "bp4d",
    "celeba",
    "cub",
    "deepfashion",
    "disfa",
    "rafdb",
    "ut_zappos",
}


def test_every_reader_is_registered() -> None:
    assert set(READERS) == PAPER_READERS
    assert "emotionet" not in READERS


def test_unknown_reader_lists_the_known_ones() -> None:
    with pytest.raises(DataError, match=r"unknown dataset reader 'celebA'.*celeba, cub"):
        get_reader("celebA")


def test_unknown_option_lists_the_options(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no option 'contemp'.*contempt"):
        read_dataset("affectnet", tmp_path, contemp=True)


def test_missing_root_is_a_layout_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="nowhere: dataset root folder"):
        read_dataset("rafdb", tmp_path / "nowhere")


def test_reader_options_have_defaults() -> None:
    assert reader_options("disfa")["threshold"] == 2
    assert reader_options("affectnet")["contempt"] is False


def test_error_message_names_file_line_and_value() -> None:
    error = DatasetLayoutError("a/b.txt", "unknown code", line=7, value=np.int64(11))
    assert str(error) == "a/b.txt, line 7: unknown code: 11"
    assert (error.path, error.line, error.value) == (Path("a/b.txt"), 7, 11)


def test_table_line_numbers_skip_header_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("2\nname value\na 1\n\nb x\n")
    with pytest.raises(DatasetLayoutError, match=r"t\.txt, line 5: expected an integer.*'x'"):
        read_table(path, ("name", "value"), skiprows=2, ints=("value",))


def test_table_truncated_and_overlong_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("a 1 2\nb 3\n")
    with pytest.raises(DatasetLayoutError, match=r"line 2: truncated.*expected 3 fields, found 2"):
        read_table(path, ("n", "x", "y"), ints=("x", "y"))
    path.write_text("a 1 2\nb 3 4 5\n")
    with pytest.raises(DatasetLayoutError, match=r"line 2: too many fields"):
        read_table(path, ("n", "x", "y"), ints=("x", "y"))


def test_table_compact_ints_diagnose_bad_values(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("a 1 -1\nb 1 300\n")
    with pytest.raises(DatasetLayoutError, match=r"line 2: value out of range.*'300'"):
        read_table(path, ("n", "x", "y"), ints=("x", "y"), compact=np.int8)
    path.write_text("a 1 -1\nb 1\n")
    with pytest.raises(DatasetLayoutError, match=r"line 2: truncated"):
        read_table(path, ("n", "x", "y"), ints=("x", "y"), compact=np.int8)


def test_table_extra_fields_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("a 1\nb 2 extra more\nc 3\n")
    table = read_table(path, ("n", "x"), ints=("x",), extra=2)
    assert table.extra_rows == 1
    assert table.frame["x"].tolist() == [1, 2, 3]
    assert list(table.frame.columns) == ["n", "x"]


def test_dense_table_rejects_blank_lines_inside(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("h\n1\n\n2\n\n")
    with pytest.raises(DatasetLayoutError, match=r"line 3: truncated"):
        read_table(path, ("x",), sep=",", skiprows=1, ints=("x",), blank_lines="error")
    path.write_text("h\n1\n2\n\n")
    assert read_table(path, ("x",), sep=",", skiprows=1, ints=("x",), blank_lines="error").frame[
        "x"
    ].tolist() == [1, 2]


def test_au_names_and_unique_names() -> None:
    assert [au_number(n) for n in ("AU1", "AU 12", "au04", "Neutral")] == [1, 12, 4, None]
    assert unique_names(["a", "knit", "knit"], [1, 2, 5]) == (["a", "knit#2", "knit#5"], 1)
    assert unique_names(["x", "x"]) == (["x", "x#2"], 1)
