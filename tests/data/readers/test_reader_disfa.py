"""DISFA reader: per-subject per-AU intensity files, occurrence threshold."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmtl.data.readers import read_dataset
from dmtl.errors import DataError, DatasetLayoutError

from .conftest import FIXTURES, CopyFixture, check_manifest, edit_line, labels, on, row

ROOT = FIXTURES / "disfa"
AUS = ["AU1", "AU2", "AU4", "AU5", "AU6", "AU9", "AU12", "AU15", "AU17", "AU20", "AU25", "AU26"]


def test_occurrence_is_intensity_at_least_two() -> None:
    result = read_dataset("disfa", ROOT)
    assert list(result.task("au").names) == AUS
    m = result.manifest
    assert m["id"].tolist() == [f"SN00{s}/0000{f}" for s in (1, 2) for f in (1, 2, 3)]
    assert "split" not in m.columns
    assert on(result, "SN001/00001", "au") == ["AU4", "AU6"]  # AU26 = 1 is below 2
    assert on(result, "SN001/00002", "au") == ["AU12", "AU25"]  # AU1 = 1 below, AU12 = 4
    assert on(result, "SN001/00003", "au") == ["AU1", "AU2", "AU25"]  # intensity exactly 2 counts
    assert on(result, "SN002/00001", "au") == ["AU1"]
    # SN002_au26.txt lacks frame 3: missing, not absent
    assert labels(result, "SN002/00003", "au") == [0.0] * 11 + [None]
    assert result.dropped == {"au_frame_missing": 1}
    assert row(result, "SN001/00003")["image"] == "frames/SN001/00003.jpg"
    check_manifest(result)


def test_threshold_option_and_template() -> None:
    result = read_dataset(
        "disfa",
        ROOT,
        threshold=1,
        aus=[1, 26],
        image_template="Images/{subject}/{index}.png",
        test_subjects=["SN002"],
    )
    assert list(result.task("au").names) == ["AU1", "AU26"]
    assert on(result, "SN001/00001", "au") == ["AU26"]
    assert on(result, "SN001/00002", "au") == ["AU1", "AU26"]
    assert row(result, "SN001/00001")["image"] == "Images/SN001/0.png"
    assert result.manifest["split"].tolist() == ["train"] * 3 + ["test"] * 3
    check_manifest(result)


def test_bad_options() -> None:
    with pytest.raises(DataError, match="threshold=0"):
        read_dataset("disfa", ROOT, threshold=0)
    with pytest.raises(DataError, match=r"aus: \[7\]"):
        read_dataset("disfa", ROOT, aus=[1, 7])
    with pytest.raises(DataError, match="image_template"):
        read_dataset("disfa", ROOT, image_template="{subjet}/{frame}.jpg")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("2,6", r"SN001_au12\.txt, line 2: unknown AU intensity \(expected 0-5\): 6"),
        ("2", r"SN001_au12\.txt, line 2: truncated"),
        ("2,x", r"SN001_au12\.txt, line 2: expected an integer in field 'intensity': 'x'"),
        ("1,0", r"SN001_au12\.txt, line 2: frame listed twice: 1"),
    ],
)
def test_bad_lines(copy_fixture: CopyFixture, text: str, match: str) -> None:
    root = copy_fixture("disfa")
    edit_line(root / "ActionUnit_Labels/SN001/SN001_au12.txt", 2, text)
    with pytest.raises(DatasetLayoutError, match=match):
        read_dataset("disfa", root)


def test_missing_au_file(copy_fixture: CopyFixture) -> None:
    root = copy_fixture("disfa")
    (root / "ActionUnit_Labels/SN002/SN002_au9.txt").unlink()
    with pytest.raises(DatasetLayoutError, match=r"SN002/SN002_au9\.txt: DISFA label file for AU9"):
        read_dataset("disfa", root)


def test_missing_label_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match=r"ActionUnit_Labels: DISFA"):
        read_dataset("disfa", tmp_path)
