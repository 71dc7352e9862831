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


NESTED_IMAGES = "Manually_Annotated/Manually_Annotated_Images"


def test_nested_layout_builds_nested_image_paths(copy_fixture: CopyFixture) -> None:
    root = copy_fixture("affectnet")
    (root / NESTED_IMAGES / "689").mkdir(parents=True)  # as Manually_Annotated.tar unpacks
    result = read_dataset("affectnet", root)
    assert row(result, HAPPY)["image"] == f"{NESTED_IMAGES}/{HAPPY}"
    assert not any("image folder not found" in n for n in result.notes)
    check_manifest(result)
    (root / "Manually_Annotated_Images").mkdir()  # both: the flat layout's folder comes first
    assert row(read_dataset("affectnet", root), HAPPY)["image"].startswith("Manually_Annotated_I")
    explicit = read_dataset("affectnet", root, image_dir="faces/")
    assert row(explicit, HAPPY)["image"] == f"faces/{HAPPY}"


def test_lists_inside_the_nested_folder_without_images(copy_fixture: CopyFixture) -> None:
    root = copy_fixture("affectnet")
    (root / LISTS).rename(root / "Manually_Annotated")
    result = read_dataset("affectnet", root)
    assert row(result, HAPPY)["image"] == f"{NESTED_IMAGES}/{HAPPY}"
    assert f"image folder not found; image paths point into {NESTED_IMAGES}" in result.notes
    flat = read_dataset("affectnet", FIXTURES / "affectnet")
    assert row(flat, HAPPY)["image"] == f"Manually_Annotated_Images/{HAPPY}"


@pytest.mark.parametrize(
    "header",
    [
        "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,"
        "expression,valence,arousal",
        "\ufeffSubDirectory_FilePath,Face_X,Face_Y,Face_Width,Face_Height,Facial_Landmarks,"
        "Expression,Valence,Arousal",
    ],
)
def test_a_header_line_in_validation_csv_is_detected(
    copy_fixture: CopyFixture, header: str
) -> None:
    root = copy_fixture("affectnet")
    path = root / LISTS / "validation.csv"
    path.write_text(header + "\n" + path.read_text(), encoding="utf-8")
    result = read_dataset("affectnet", root)
    baseline = read_dataset("affectnet", ROOT)
    assert result.manifest.equals(baseline.manifest)
    assert "validation.csv: a header line" in result.notes
    assert "validation.csv: no header line" in baseline.notes
    edit_line(path, 3, "6/4e5f6a.jpg,45,45")  # line numbers count the header
    with pytest.raises(DatasetLayoutError, match=r"validation\.csv, line 3: truncated"):
        read_dataset("affectnet", root)


def test_a_first_data_line_is_not_taken_for_a_header(copy_fixture: CopyFixture) -> None:
    root = copy_fixture("affectnet")
    path = root / LISTS / "training.csv"
    edit_line(path, 1, None)  # training.csv without its header
    result = read_dataset("affectnet", root)
    assert "training.csv: no header line" in result.notes
    assert result.manifest["expression"].tolist()[0] == "happiness"
