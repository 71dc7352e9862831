"""RAF-DB basic reader: list_patition_label.txt (sic) with RAF-DB's own label order."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dmtl.data.readers import read_dataset
from dmtl.errors import DataError, DatasetLayoutError

from .conftest import FIXTURES, CopyFixture, check_manifest, edit_line, row

ROOT = FIXTURES / "rafdb"
LIST = "EmoLabel/list_patition_label.txt"


def test_labels_are_mapped_by_name_not_position() -> None:
    result = read_dataset("rafdb", ROOT)
    m = result.manifest
    # RAF-DB: 1 Surprise, 2 Fear, 3 Disgust, 4 Happiness, 5 Sadness, 6 Anger, 7 Neutral
    assert dict(zip(m["id"], m["expression"], strict=True)) == {
        "train_00001.jpg": "sadness",
        "train_00002.jpg": "sadness",
        "train_00003.jpg": "happiness",
        "train_00004.jpg": "surprise",
        "train_00005.jpg": "neutral",
        "test_0001.jpg": "sadness",
        "test_0002.jpg": "surprise",
        "test_0003.jpg": "fear",
        "test_0004.jpg": "disgust",
        "test_0005.jpg": "anger",
    }
    assert m["split"].tolist() == ["train"] * 5 + ["test"] * 5
    assert row(result, "train_00001.jpg")["image"] == "Image/aligned/train_00001_aligned.jpg"
    assert result.task("expression").names[0] == "neutral"
    check_manifest(result)


def test_original_images_and_val_split() -> None:
    result = read_dataset("rafdb", ROOT, aligned=False, test_split="val")
    assert row(result, "test_0003.jpg")["image"] == "Image/original/test_0003.jpg"
    assert set(result.manifest["split"]) == {"train", "val"}


def test_basic_subfolder_is_found(tmp_path: Path) -> None:
    shutil.copytree(ROOT, tmp_path / "basic")
    result = read_dataset("rafdb", tmp_path)
    assert row(result, "test_0001.jpg")["image"] == "basic/Image/aligned/test_0001_aligned.jpg"


def test_bad_option() -> None:
    with pytest.raises(DataError, match="test_split='dev'"):
        read_dataset("rafdb", ROOT, test_split="dev")


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("train_00003.jpg 8", r"line 3: unknown RAF-DB expression label: 8"),
        ("train_00003.jpg", r"line 3: truncated"),
        (
            "val_0003.jpg 1",
            r"line 3: image name must start with 'train_' or 'test_': 'val_0003.jpg'",
        ),
        ("train_00003.jpg 1 2", r"line 3: too many fields"),
    ],
)
def test_bad_lines(copy_fixture: CopyFixture, line: str, match: str) -> None:
    root = copy_fixture("rafdb")
    edit_line(root / LIST, 3, line)
    with pytest.raises(DatasetLayoutError, match=r"list_patition_label\.txt, " + match):
        read_dataset("rafdb", root)


def test_missing_list(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match=r"EmoLabel/list_patition_label\.txt: RAF-DB"):
        read_dataset("rafdb", tmp_path)
