"""Manifest reading, validation, encoding and writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dmtl.core.tasks import BinarySetTask, CategoricalTask, RegressionTask, Task
from dmtl.data.manifest import Manifest, read_manifest, write_manifest
from dmtl.errors import DataError


def write_csv(tmp_path: Path, text: str, name: str = "m.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_names_indices_empty_and_partial_binary(tmp_path: Path, tasks: list[Task]) -> None:
    path = write_csv(
        tmp_path,
        "id,image,split,digit,attr/even\n"
        "a,x/a.png,train,two,1\n"
        "b,x/b.png,val,1,0\n"
        "c,x/c.png,test,,\n",
    )
    m = Manifest.read(path, tasks)
    assert m.ids.tolist() == ["a", "b", "c"]
    assert m.image is not None and m.image.tolist() == ["x/a.png", "x/b.png", "x/c.png"]
    assert m.split is not None and m.split.tolist() == ["train", "val", "test"]
    assert m.labels["digit"].dtype == np.int64
    assert m.labels["digit"].tolist() == [2, 1, -1]
    attr = m.labels["attr"]
    assert attr.dtype == np.float32 and attr.shape == (3, 2)
    np.testing.assert_array_equal(attr[:, 0], [1.0, 0.0, np.nan])
    assert np.isnan(attr[:, 1]).all()  # no column: not observed
    assert m.root == tmp_path and m.kind == "image"


def test_task_without_any_column_is_unlabelled(tmp_path: Path, tasks: list[Task]) -> None:
    m = Manifest.read(write_csv(tmp_path, "image,digit\na.png,zero\n"), tasks)
    assert np.isnan(m.labels["attr"]).all() and m.labels["digit"].tolist() == [0]


def test_ids_default_to_image_or_index(tasks: list[Task]) -> None:
    m = Manifest.from_frame(pd.DataFrame({"index": [4, 2], "digit": [0, 1]}), tasks)
    assert m.ids.tolist() == ["4", "2"]
    assert m.index is not None and m.index.dtype == np.int64 and m.index.tolist() == [4, 2]


def test_class_names_take_precedence_over_indices() -> None:
    task = CategoricalTask("n", ["1", "2", "3"])
    m = Manifest.from_frame(pd.DataFrame({"image": ["a", "b", "c"], "n": ["1", "0", 3]}), [task])
    # "1" is a class name (index 0); "0" is no name, so an index; 3 is the name "3"
    assert m.labels["n"].tolist() == [0, 0, 2]


def test_frame_with_numeric_and_missing_cells(tasks: list[Task]) -> None:
    frame = pd.DataFrame(
        {
            "image": ["a", "b", "c"],
            "digit": [2.0, np.nan, 0.0],
            "attr/even": [True, False, None],
            "attr/big": pd.array([1, None, 0], dtype="Int8"),
        }
    )
    m = Manifest.from_frame(frame, tasks)
    assert m.labels["digit"].tolist() == [2, -1, 0]
    np.testing.assert_array_equal(m.labels["attr"], [[1, 1], [0, np.nan], [np.nan, 0]])


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_write_then_read_is_identical(tmp_path: Path, tasks: list[Task], suffix: str) -> None:
    labels = {
        "digit": np.array([0, -1, 2, 1]),
        "attr": np.array([[1, np.nan], [np.nan, np.nan], [0, 1], [1, 0]], dtype=np.float32),
    }
    original = Manifest(
        tuple(tasks),
        labels,
        image=np.array(["a.png", "b.png", "c d.png", "e.png"]),
        ids=np.array(["1", "2", "3", "4"]),
        split=np.array(["train", "val", "test", "train"]),
    )
    path = write_manifest(tmp_path / f"m{suffix}", original)
    if suffix == ".csv":
        text = path.read_text()
        assert text.splitlines()[0] == "id,image,split,digit,attr/even,attr/big"
        assert ",two," in text  # class names, not indices
    back = read_manifest(path, tasks)
    for name in labels:
        np.testing.assert_array_equal(back.labels[name], original.labels[name])
    assert back.ids.tolist() == ["1", "2", "3", "4"]
    assert back.split is not None and back.split.tolist() == ["train", "val", "test", "train"]
    assert back.image is not None and back.image.tolist() == ["a.png", "b.png", "c d.png", "e.png"]


def test_select_keeps_original_row_numbers(tmp_path: Path, tasks: list[Task]) -> None:
    m = Manifest.read(write_csv(tmp_path, "image,digit\na,zero\nb,one\nc,two\n"), tasks)
    sub = m.select([2])
    assert sub.labels["digit"].tolist() == [2]
    assert sub.where(0, "image") == f"{tmp_path / 'm.csv'}, row 3 (line 4), column 'image'"


# ----------------------------------------------------------------------------- errors


def expect_error(tmp_path: Path, tasks: list[Task], text: str, *fragments: str) -> DataError:
    """Read ``text`` as a CSV manifest; the error must mention the file and every fragment."""
    path = write_csv(tmp_path, text)
    with pytest.raises(DataError) as info:
        Manifest.read(path, tasks)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert isinstance(info.value, DataError) and isinstance(info.value, ValueError)
    return info.value


def test_unknown_class_name(tmp_path: Path, tasks: list[Task]) -> None:
    expect_error(
        tmp_path,
        tasks,
        "image,digit\na,zero\nb,tow\nc,thre\n",
        "row 2 (line 3)",
        "column 'digit'",
        "unknown class 'tow'",
        "did you mean 'two'",
        "1 more bad value",
    )


def test_class_index_out_of_range(tmp_path: Path, tasks: list[Task]) -> None:
    expect_error(
        tmp_path,
        tasks,
        "image,digit\na,0\nb,3\n",
        "row 2 (line 3)",
        "column 'digit'",
        "class index 3 out of range",
        "0..2",
    )
    expect_error(tmp_path, tasks, "image,digit\na,-1\n", "row 1 (line 2)", "leave the cell empty")


@pytest.mark.parametrize("value", ["2", "yes", "0.5"])
def test_binary_value_other_than_0_1_empty(tmp_path: Path, tasks: list[Task], value: str) -> None:
    expect_error(
        tmp_path,
        tasks,
        f"image,attr/even\na,1\nb,\nc,{value}\n",
        "row 3 (line 4)",
        "column 'attr/even'",
        "expected 0 or 1 (or empty)",
        repr(value),
    )


@pytest.mark.parametrize("value", ["nan", "NaN", "-nan", " NAN ", "NA", "inf"])
def test_the_text_nan_is_no_empty_cell(tmp_path: Path, tasks: list[Task], value: str) -> None:
    expect_error(
        tmp_path, tasks, f"image,attr/even\na,1\nb,\nc,{value}\n", "row 3 (line 4)",
        "column 'attr/even'", "expected 0 or 1 (or empty)", repr(value.strip()),
    )
    regression = [RegressionTask("score", ["v"])]
    expect_error(
        tmp_path, regression, f"image,score/v\na,0.5\nb,\nc,{value}\n", "row 3 (line 4)",
        "column 'score/v'", "expected a finite number (or empty)",
    )


def test_only_an_empty_cell_is_not_observed(tmp_path: Path, tasks: list[Task]) -> None:
    m = Manifest.read(write_csv(tmp_path, "image,attr/even,attr/big\na,1,\nb, ,0\n"), tasks)
    assert np.isnan(m.labels["attr"][:, 1][0]) and np.isnan(m.labels["attr"][:, 0][1])
    # a numeric column's missing values (Parquet, DataFrames) are its empty cells
    frame = pd.DataFrame({"image": ["a", "b"], "attr/even": [np.nan, 1.0], "attr/big": [None, 0]})
    labels = Manifest.from_frame(frame, tasks).labels["attr"]
    assert np.isnan(labels[0]).all() and labels[1].tolist() == [1.0, 0.0]


def test_binary_accepts_float_text(tmp_path: Path, tasks: list[Task]) -> None:
    m = Manifest.read(write_csv(tmp_path, "image,attr/even\na,1.0\nb,0.0\n"), tasks)
    assert m.labels["attr"][:, 0].tolist() == [1.0, 0.0]


def test_duplicated_id(tmp_path: Path, tasks: list[Task]) -> None:
    expect_error(
        tmp_path,
        tasks,
        "id,image,digit\nx,a,0\ny,b,1\nx,c,2\n",
        "column 'id'",
        "id 'x' is duplicated",
        "rows 1, 3",
    )
    expect_error(
        tmp_path,
        tasks,
        "image,digit\na,0\na,1\n",
        "column 'image'",
        "'a' is duplicated",
        "ids default to the image column",
        "rows 1, 2",
    )


def test_empty_manifest(tmp_path: Path, tasks: list[Task]) -> None:
    expect_error(tmp_path, tasks, "image,digit\n", "empty manifest")
    expect_error(tmp_path, tasks, "", "empty manifest")


def test_no_column_matches_any_task(tmp_path: Path, tasks: list[Task]) -> None:
    expect_error(tmp_path, tasks, "image,split\na,train\n", "no column matches any task", "digit")
    inputs = Manifest.read(tmp_path / "m.csv", tasks, require_labels=False)  # e.g. to predict
    assert (inputs.labels["digit"] == -1).all() and np.isnan(inputs.labels["attr"]).all()


def test_unknown_columns_are_listed(tmp_path: Path, tasks: list[Task]) -> None:
    expect_error(
        tmp_path,
        tasks,
        "image,digt,attr/evn,colour,digit\na,0,1,red,0\n",
        "3 column(s) match no task",
        "'digt' (did you mean 'digit'?)",
        "'attr/evn'",
        "'colour'",
    )


def test_both_or_neither_image_and_index(tmp_path: Path, tasks: list[Task]) -> None:
    expect_error(tmp_path, tasks, "image,index,digit\na,0,0\n", "both an 'image' and an 'index'")
    expect_error(tmp_path, tasks, "id,digit\na,0\n", "no 'image' column", "no 'index' column")
    # the missing column is named even without rows, and a near name is suggested
    expect_error(tmp_path, tasks, "path,digit\n", "no 'image' column", "rename 'path'")


def test_bad_index_split_and_empty_path(tmp_path: Path, tasks: list[Task]) -> None:
    expect_error(
        tmp_path,
        tasks,
        "index,digit\n0,0\n-2,1\n",
        "row 2 (line 3)",
        "column 'index'",
        "non-negative integer",
    )
    expect_error(
        tmp_path,
        tasks,
        "image,split,digit\na,train,0\nb,training,0\n",
        "row 2 (line 3)",
        "column 'split'",
        "'training'",
    )
    expect_error(tmp_path, tasks, "image,digit\n,0\n", "row 1 (line 2)", "empty image path")


def test_dataframe_errors_name_origin_without_lines(tasks: list[Task]) -> None:
    frame = pd.DataFrame({"image": ["a", "b"], "digit": ["one", "eleven"]})
    with pytest.raises(DataError, match=r"^affectnet\.csv, row 2, column 'digit': unknown"):
        Manifest.from_frame(frame, tasks, origin="affectnet.csv")


def test_file_problems(tmp_path: Path, tasks: list[Task]) -> None:
    with pytest.raises(DataError, match="not found"):
        Manifest.read(tmp_path / "missing.csv", tasks)
    bad = tmp_path / "m.txt"
    bad.write_text("image,digit\na,0\n")
    with pytest.raises(DataError, match="unknown manifest suffix"):
        Manifest.read(bad, tasks)


def test_constructed_labels_are_validated(tasks: list[Task]) -> None:
    with pytest.raises(DataError, match="class index 5 out of range"):
        Manifest(tuple(tasks), {"digit": np.array([5])}, image=np.array(["a"]))
    binary = BinarySetTask("attr", ["even", "big"])
    with pytest.raises(DataError, match=r"expected 0 or 1 \(or NaN\)"):
        Manifest((binary,), {"attr": np.array([[0.5, 1.0]])}, image=np.array(["a"]))
    with pytest.raises(DataError, match="duplicated id 'a'"):
        Manifest(tuple(tasks), {}, image=np.array(["a", "a"]))
    with pytest.raises(DataError, match="split 'dev'"):
        Manifest(tuple(tasks), {}, index=np.array([0]), split=np.array(["dev"]))
