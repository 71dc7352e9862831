"""EmotioNet reader: the manual FACS sheet (quoted URLs and 'AU n' headers, 999 = not
annotated) and the automatically annotated tab-separated lists (AU 1..60, no header)."""

from __future__ import annotations

import pytest

from dmtl.data.readers import read_dataset
from dmtl.errors import DataError, DatasetLayoutError

from .conftest import FIXTURES, CopyFixture, check_manifest, edit_line, labels, on, row

ROOT = FIXTURES / "emotionet"
MANUAL = "EmotioNet_FACS_aws_2020_24600.csv"
AUS = ["AU1", "AU2", "AU4", "AU5", "AU6", "AU9", "AU12", "AU17", "AU20", "AU25", "AU26", "AU43"]


def test_manual_sheet_with_not_annotated() -> None:
    result = read_dataset("emotionet", ROOT)
    assert list(result.task("au").names) == AUS
    m = result.manifest
    # image 4 has every AU 999: dropped
    assert m["id"].tolist() == ["N_0000000001.jpg", "N_0000000002.jpg", "N_0000000003.jpg"]
    assert on(result, "N_0000000001.jpg", "au") == ["AU6", "AU12", "AU25"]
    assert on(result, "N_0000000002.jpg", "au") == ["AU1", "AU2", "AU5", "AU25", "AU26"]
    assert labels(result, "N_0000000003.jpg", "au")[:5] == [0.0, 0.0, 1.0, None, 0.0]
    assert result.dropped == {"images_not_annotated": 1, "au_not_annotated": 1}
    assert row(result, "N_0000000001.jpg")["image"] == "images/N_0000000001.jpg"
    assert "split" not in m.columns  # no official split
    check_manifest(result)


def test_au_subset_and_template() -> None:
    result = read_dataset("emotionet", ROOT, aus=[12, 1], image_template="{folder}/{name}")
    assert list(result.task("au").names) == ["AU12", "AU1"]
    assert labels(result, "N_0000000002.jpg", "au") == [0.0, 1.0]
    assert row(result, "N_0000000002.jpg")["image"] == "images/N_0000000002.jpg"
    check_manifest(result)


def test_automatic_lists() -> None:
    result = read_dataset("emotionet", ROOT, annotations="automatic", aus=[1, 2, 6, 12, 26])
    assert result.manifest["id"].tolist() == ["A_0000000001.jpg", "A_0000000002.jpg"]
    assert on(result, "A_0000000001.jpg", "au") == ["AU6", "AU12"]
    assert labels(result, "A_0000000002.jpg", "au") == [1.0, 1.0, 0.0, 0.0, None]
    check_manifest(result)


def test_unknown_value_names_file_line_and_value(copy_fixture: CopyFixture) -> None:
    root = copy_fixture("emotionet")
    path = root / MANUAL
    fields = path.read_text().splitlines()[2].split(",")
    fields[4] = "5"  # AU 2
    edit_line(path, 3, ",".join(fields))
    with pytest.raises(
        DatasetLayoutError, match=r"24600\.csv, line 3: AU occurrence must be 0, 1 or 999: 5"
    ):
        read_dataset("emotionet", root)


def test_bad_header_missing_au_and_missing_file(copy_fixture: CopyFixture) -> None:
    root = copy_fixture("emotionet")
    with pytest.raises(DatasetLayoutError, match=r"line 1: no column for AU7"):
        read_dataset("emotionet", root, aus=[1, 7])
    header = (root / MANUAL).read_text().splitlines()[0]
    edit_line(root / MANUAL, 1, header.replace("'AU 9'", "'smile'"))
    with pytest.raises(DatasetLayoutError, match=r"line 1: header field 8 should be an AU name"):
        read_dataset("emotionet", root)
    (root / MANUAL).unlink()
    with pytest.raises(DatasetLayoutError, match=r"EmotioNet manual annotations not found"):
        read_dataset("emotionet", root)
    with pytest.raises(DataError, match="annotations='both' is not one of"):
        read_dataset("emotionet", root, annotations="both")


def test_an_image_listed_twice(copy_fixture: CopyFixture) -> None:
    root = copy_fixture("emotionet")
    lines = (root / MANUAL).read_text().splitlines()
    edit_line(root / MANUAL, 3, lines[1])
    with pytest.raises(DatasetLayoutError, match=r"line 3: image listed twice"):
        read_dataset("emotionet", root)
