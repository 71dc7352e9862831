"""AffectNet reader on a fixture in the official layout (training.csv with header,
validation.csv without, codes 0-10)."""

from __future__ import annotations

import pytest

from dmtl.data.readers import read_dataset
from dmtl.errors import DatasetLayoutError

from .conftest import FIXTURES, CopyFixture, check_manifest, edit_line, row

ROOT = FIXTURES / "affectnet"
LISTS = "Manually_Annotated_file_lists"
HAPPY = "689/737db2483489148d783ef278f43f486c0a97e140fc4b6b61b84363ca.jpg"


def test_codes_map_to_dmtl_names_and_unusable_codes_are_counted() -> None:
    result = read_dataset("affectnet", ROOT)
    task = result.task("expression")
    assert task.names == ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise")
    m = result.manifest
    assert list(m.columns) == ["id", "image", "split", "expression"]
    assert m["expression"].tolist() == [
        "happiness",
        "neutral",
        "sadness",
        "surprise",
        "fear",
        "disgust",
        "anger",  # training
        "anger",
        "neutral",  # validation (header-less file)
    ]
    assert m["split"].tolist() == ["train"] * 7 + ["val"] * 2
    assert result.dropped == {
        "none": 1,
        "uncertain": 2,
        "no_face": 2,
        "contempt": 2,
        "duplicate": 0,
    }
    assert row(result, HAPPY)["image"] == f"Manually_Annotated_Images/{HAPPY}"
    check_manifest(result)


def test_contempt_option_keeps_an_eighth_class() -> None:
    result = read_dataset("affectnet", ROOT, contempt=True, validation_split="test")
    assert result.task("expression").names[-1] == "contempt"
    assert result.manifest["expression"].tolist().count("contempt") == 2
    assert "contempt" not in result.dropped
    assert set(result.manifest["split"]) == {"train", "test"}
    check_manifest(result)


def test_lists_at_the_root_are_found(copy_fixture: CopyFixture) -> None:
    root = copy_fixture("affectnet")
    for name in ("training.csv", "validation.csv"):
        (root / LISTS / name).rename(root / name)
    assert len(read_dataset("affectnet", root).manifest) == 9


def test_missing_list_names_the_expected_path(copy_fixture: CopyFixture) -> None:
    root = copy_fixture("affectnet")
    (root / LISTS / "validation.csv").unlink()
    with pytest.raises(DatasetLayoutError, match=r"validation\.csv: AffectNet validation list"):
        read_dataset("affectnet", root)


def test_unknown_code_names_file_line_and_value(copy_fixture: CopyFixture) -> None:
    root = copy_fixture("affectnet")
    path = root / LISTS / "training.csv"
    line = path.read_text().splitlines()[3]
    edit_line(path, 4, line.rsplit(",", 3)[0] + ",11,0.1,0.2")
    with pytest.raises(
        DatasetLayoutError, match=r"training\.csv, line 4: unknown expression code: 11"
    ):
        read_dataset("affectnet", root)


def test_truncated_line_names_file_and_line(copy_fixture: CopyFixture) -> None:
    root = copy_fixture("affectnet")
    path = root / LISTS / "validation.csv"
    edit_line(path, 3, "6/4e5f6a.jpg,45,45")
    with pytest.raises(DatasetLayoutError, match=r"validation\.csv, line 3: truncated"):
        read_dataset("affectnet", root)
