"""BP4D reader: AU_OCC csv files, header of AU numbers, 9 = not coded."""

from __future__ import annotations

import pytest

from dmtl.data.readers import read_dataset
from dmtl.errors import DatasetLayoutError

from .conftest import FIXTURES, CopyFixture, check_manifest, edit_line, labels, on, row

ROOT = FIXTURES / "bp4d"
OCC = "AUCoding/AU_OCC"
AUS = ["AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU14", "AU15", "AU17", "AU23", "AU24"]


def test_occurrence_and_not_coded() -> None:
    result = read_dataset("bp4d", ROOT)
    assert list(result.task("au").names) == AUS
    m = result.manifest
    # frame 2442 has none of the 12 AUs coded: dropped
    assert m["id"].tolist() == ["F001/T1/2440", "F001/T1/2441", "M002/T8/0101", "M002/T8/0102"]
    assert on(result, "F001/T1/2440", "au") == ["AU1", "AU6", "AU7", "AU12"]
    assert labels(result, "F001/T1/2441", "au") == [None] + [0.0] * 5 + [1.0] + [0.0] * 5
    assert on(result, "M002/T8/0101", "au") == ["AU4", "AU15", "AU17"]
    assert on(result, "M002/T8/0102", "au") == ["AU24"]
    assert result.dropped == {"frames_not_coded": 1, "au_not_coded": 1}
    assert row(result, "F001/T1/2440")["image"] == "Sequences(2D+3D)/F001/T1/2440.jpg"
    check_manifest(result)


def test_au_subset_template_and_split() -> None:
    result = read_dataset(
        "bp4d",
        ROOT,
        aus=[12, 1],
        image_template="img/{subject}_{task}/{frame}.png",
        val_subjects=["M002"],
    )
    assert list(result.task("au").names) == ["AU12", "AU1"]
    assert labels(result, "F001/T1/2441", "au") == [1.0, None]
    assert row(result, "M002/T8/0102")["image"] == "img/M002_T8/102.png"
    assert result.manifest["split"].tolist() == ["train", "train", "val", "val"]
    check_manifest(result)


def test_unknown_value_names_file_line_and_value(copy_fixture: CopyFixture) -> None:
    root = copy_fixture("bp4d")
    path = root / OCC / "M002_T8.csv"
    fields = path.read_text().splitlines()[2].split(",")
    fields[12] = "5"  # AU12
    edit_line(path, 3, ",".join(fields))
    with pytest.raises(
        DatasetLayoutError, match=r"M002_T8\.csv, line 3: AU occurrence must be 0, 1 or 9: 5"
    ):
        read_dataset("bp4d", root)


def test_truncated_line(copy_fixture: CopyFixture) -> None:
    root = copy_fixture("bp4d")
    path = root / OCC / "F001_T1.csv"
    edit_line(path, 2, "2440,1,0,0")
    with pytest.raises(DatasetLayoutError, match=r"F001_T1\.csv, line 2: truncated"):
        read_dataset("bp4d", root)


def test_header_without_a_requested_au(copy_fixture: CopyFixture) -> None:
    root = copy_fixture("bp4d")
    with pytest.raises(DatasetLayoutError, match=r"F001_T1\.csv, line 1: header lacks AU43"):
        read_dataset("bp4d", root, aus=[1, 43])


def test_bad_file_name_and_missing_folder(copy_fixture: CopyFixture) -> None:
    root = copy_fixture("bp4d")
    (root / OCC / "F001_T1.csv").rename(root / OCC / "F001T1.csv")
    with pytest.raises(DatasetLayoutError, match=r"F001T1\.csv: expected a file name"):
        read_dataset("bp4d", root)
    with pytest.raises(DatasetLayoutError, match=r"AUCoding/AU_OCC: BP4D"):
        read_dataset("bp4d", root / "AUCoding")
