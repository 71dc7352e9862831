"""Registry, errors, the table parser and the manifest columns shared by all readers."""

from __future__ import annotations

from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings

from dmtl.data.readers import READERS, read_dataset, tables
from dmtl.data.readers.base import get_reader, reader_options
from dmtl.data.readers.columns import au_number, build_manifest, label_block, unique_names
from dmtl.data.readers.tables import parse_name_list, read_table
from dmtl.errors import DataError, DatasetLayoutError

PAPER_READERS = {
    "affectnet",
    "affwild2",
    "bp4d",
    "celeba",
    "cub",
    "deepfashion",
    "disfa",
    "emotionet",
    "rafdb",
    "ut_zappos",
}


def test_every_reader_is_registered() -> None:
    assert set(READERS) == PAPER_READERS


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
    path.write_text("a 1\nb 2 extra more\nc 3\nd 4 1 2 3 4 5 6 7 8 9 10\ne 5 x\n")
    table = read_table(path, ("n", "x"), ints=("x",), extra=True)
    assert table.extra_rows == 3
    assert table.frame["x"].tolist() == [1, 2, 3, 4, 5]
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


def test_table_rows_know_their_file_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("count\nheader\na 1\n\n   \nb 2\n\n\n")
    table = read_table(path, ("n", "x"), skiprows=2, ints=("x",))
    assert table.lines.tolist() == [3, 6]
    assert table.frame["x"].dtype == np.int64
    assert str(table.error(1, "bad", "b")) == f"{path}, line 6: bad: 'b'"


def test_csv_lines_of_spaces_are_blank_and_fields_may_start_with_spaces(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("h\n1,2\n   \n3, 4\n")
    table = read_table(path, ("a", "b"), sep=",", skiprows=1, ints=("a", "b"))
    assert table.frame.to_dict("list") == {"a": [1, 3], "b": [2, 4]}
    assert table.lines.tolist() == [2, 4]


def test_table_too_many_fields_names_the_count(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("h\na,1\n\nb,2,3,4,5\n")
    too_many = r"line 4: too many fields: expected 2 fields, found 5"
    with pytest.raises(DatasetLayoutError, match=too_many):
        read_table(path, ("n", "x"), sep=",", skiprows=1)
    path.write_text("a,1\nb\n")  # pandas' usecols fails on such files: read again in full
    truncated = r"line 2: truncated or malformed line: expected 2 to 3 fields, found 1: 'b'"
    with pytest.raises(DatasetLayoutError, match=truncated):
        read_table(path, ("n", "x", "y"), sep=",", required=2, usecols=("n", "x"))


def test_table_integers_out_of_int64_and_fractions(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("a 1\nb 99999999999999999999\n")
    with pytest.raises(DatasetLayoutError, match=r"line 2: value out of range in field 'x'"):
        read_table(path, ("n", "x"), ints=("x",))
    path.write_text("a 1.0\nb 1.5\n")
    with pytest.raises(DatasetLayoutError, match=r"line 2: expected an integer in field 'x'"):
        read_table(path, ("n", "x"), ints=("x",))


def test_table_empty_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("header only\n")
    table = read_table(path, ("n", "x"), skiprows=1, ints=("x",))
    assert len(table.frame) == 0 and list(table.frame.columns) == ["n", "x"]
    with pytest.raises(DatasetLayoutError, match=r"nothing\.txt: file not found"):
        read_table(tmp_path / "nothing.txt", ("n",))


def test_compact_table_in_chunks_keeps_line_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tables, "_CHUNK_ROWS", 3)
    path = tmp_path / "t.txt"
    rows = [f"r{i} {i % 2} -1" for i in range(10)]
    path.write_text("2 lines\nof header\n" + "\n".join(rows[:4]) + "\n\n" + "\n".join(rows[4:]))
    table = read_table(path, ("n", "x", "y"), skiprows=2, ints=("x", "y"), compact=np.int8)
    assert table.lines.tolist() == [3, 4, 5, 6, *range(8, 14)]
    assert table.frame[["x", "y"]].to_numpy().dtype == np.int8
    assert table.frame["x"].tolist() == [i % 2 for i in range(10)]
    lines = path.read_text().splitlines()
    lines[11] = "r8 1 200"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetLayoutError, match=r"line 12: value out of range in field 'y'"):
        read_table(path, ("n", "x", "y"), skiprows=2, ints=("x", "y"), compact=np.int8)


NAMES = st.from_regex(r"[a-z][a-z0-9_./]{0,8}", fullmatch=True)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.one_of(st.none(), st.tuples(NAMES, st.integers(-99, 99))),
        max_size=30,
    ),
    sep=st.sampled_from([",", tables.WHITESPACE]),
)
def test_table_round_trip_property(
    tmp_path: Path, rows: list[tuple[str, int] | None], sep: str
) -> None:
    """Any mix of data and blank lines: the rows come back with their exact line numbers."""
    path = tmp_path / "p.txt"
    joiner = "," if sep == "," else "  "
    text = ["header"] + ["" if r is None else f"{r[0]}{joiner}{r[1]}" for r in rows]
    path.write_text("\n".join(text) + "\n")
    table = read_table(path, ("name", "value"), sep=sep, skiprows=1, ints=("value",))
    data = [(i + 2, r) for i, r in enumerate(rows) if r is not None]
    assert table.lines.tolist() == [line for line, _ in data]
    assert table.frame["name"].tolist() == [r[0] for _, r in data]
    assert table.frame["value"].tolist() == [r[1] for _, r in data]


def test_name_lists_with_spaces(tmp_path: Path) -> None:
    path = tmp_path / "cloth.txt"
    path.write_text("3\nname  type\nfloral print   1\n\n a-line 2\nknit\n")
    with pytest.raises(DatasetLayoutError, match=r"line 6: expected '<attribute name> <att"):
        parse_name_list(path, 2, "attribute")
    path.write_text("3\nname  type\nfloral print   1\n\n a-line 2\n")
    assert parse_name_list(path, 2, "attribute") == [("floral print", 1), ("a-line", 2)]


def test_manifest_columns_are_numbers_and_names() -> None:
    block = label_block("va", ["valence", "arousal"], np.array([[0.5, np.nan]]))
    manifest = build_manifest(["a"], ["a.jpg"], categorical={"expression": [None]}, blocks=[block])
    assert manifest.dtypes.to_dict() == {
        "id": object, "image": object, "expression": object,
        "va/valence": np.float32, "va/arousal": np.float32,
    }
    assert manifest["expression"].isna().all()
    with pytest.raises(TypeError, match="class names"):
        build_manifest(["a"], ["a.jpg"], categorical={"identity": [7]})
    with pytest.raises(TypeError, match="float32"):
        build_manifest(["a"], ["a.jpg"], blocks=[pd.DataFrame({"au/AU1": ["1"]})])
