"""CUB-200-2011 reader: species, attributes with certainty, extra-field lines, class knowledge."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from dmtl.data.readers import ReaderResult, read_dataset
from dmtl.errors import DataError, DatasetLayoutError

from .conftest import FIXTURES, CopyFixture, check_manifest, edit_line, labels, row

ROOT = FIXTURES / "cub"
BASE = "CUB_200_2011"
LABELS = f"{BASE}/attributes/image_attribute_labels.txt"
IMG1 = "001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg"
IMG5 = "003.Sooty_Albatross/Sooty_Albatross_0001_796366.jpg"


def names(result: ReaderResult) -> list[str]:
    return [str(i) for i in result.manifest["id"]]


def test_species_attributes_split_and_knowledge() -> None:
    result = read_dataset("cub", ROOT)
    species, attributes = result.tasks
    assert species.names == (
        "001.Black_footed_Albatross",
        "002.Laysan_Albatross",
        "003.Sooty_Albatross",
    )
    assert attributes.names == (
        "has_bill_shape::curved_(up_or_down)",
        "has_bill_shape::dagger",
        "has_wing_color::blue",
        "has_wing_color::brown",
    )
    m = result.manifest
    assert m["species"].tolist() == [species.names[i] for i in (0, 0, 1, 1, 2)]
    assert m["split"].tolist() == ["test", "train", "train", "test", "train"]
    assert row(result, IMG1)["image"] == f"{BASE}/images/{IMG1}"
    expected = [[0, 1, 0, 1], [1, 0, 0, 1], [0, 1, 1, 0], [1, 0, 1, 0], [None, 0, 1, 0]]
    for name, values in zip(names(result), expected, strict=True):
        assert labels(result, name, "attributes") == values
    # image 5, attribute 1 has two conflicting lines: missing
    assert result.dropped == {"conflicting_votes": 1}
    assert any(
        "2 line(s) of image_attribute_labels.txt have extra fields" in n for n in result.notes
    )
    (edge,) = result.knowledge
    assert (edge.source.name, edge.target.name) == ("species", "attributes")
    torch.testing.assert_close(
        edge.table,
        torch.tensor(
            [[0.0, 1.0, 0.125, 0.875], [0.5, 0.25, 0.0, 1.0], [1 / 30, 29 / 30, 0.4, 0.6]]
        ),
    )
    check_manifest(result)


def test_low_certainty_labels_become_missing() -> None:
    result = read_dataset("cub", ROOT / BASE, min_certainty=3)  # root = the CUB_200_2011 folder
    expected = [
        [0, 1, None, 1],
        [1, 0, None, None],
        [0, 1, 1, 0],
        [None, 0, 1, 0],
        [None, None, 1, 0],
    ]
    for name, values in zip(names(result), expected, strict=True):
        assert labels(result, name, "attributes") == values
    assert result.dropped == {"low_certainty": 5, "conflicting_votes": 1}
    assert row(result, IMG5)["image"] == f"images/{IMG5}"


def test_attribute_names_inside_attributes_folder(tmp_path: Path) -> None:
    shutil.copytree(ROOT / BASE, tmp_path / BASE)
    shutil.copy(ROOT / "attributes.txt", tmp_path / BASE / "attributes" / "attributes.txt")
    result = read_dataset("cub", tmp_path / BASE, attributes=False)
    assert [t.name for t in result.tasks] == ["species"]
    assert len(result.knowledge) == 1
    check_manifest(result)


def test_species_only_needs_no_attribute_files(tmp_path: Path) -> None:
    shutil.copytree(ROOT / BASE, tmp_path / BASE)
    shutil.rmtree(tmp_path / BASE / "attributes")
    result = read_dataset("cub", tmp_path, attributes=False, knowledge=False)
    assert [t.name for t in result.tasks] == ["species"]
    assert result.knowledge == []
    assert list(result.manifest.columns) == ["id", "image", "split", "species"]
    check_manifest(result)


def test_missing_attribute_names(tmp_path: Path) -> None:
    shutil.copytree(ROOT / BASE, tmp_path / BASE)
    with pytest.raises(
        DatasetLayoutError, match=r"attributes/attributes\.txt: CUB-200-2011 attribute names"
    ):
        read_dataset("cub", tmp_path)


@pytest.mark.parametrize(
    ("line", "text", "match"),
    [
        (5, "2 1 1 5 5.2", r"line 5: unknown certainty id \(expected 1-4\): 5"),
        (5, "2 1 1", r"line 5: truncated or malformed line: expected at least 4 fields, found 3"),
        (5, "2 9 1 4 5.2", r"line 5: unknown attribute id: 9"),
        (5, "8 1 1 4 5.2", r"line 5: unknown image id: 8"),
        (5, "2 1 yes 4 5.2", r"line 5: expected an integer in field 'is_present': 'yes'"),
    ],
)
def test_bad_attribute_lines(copy_fixture: CopyFixture, line: int, text: str, match: str) -> None:
    root = copy_fixture("cub")
    edit_line(root / LABELS, line, text)
    with pytest.raises(DatasetLayoutError, match=r"image_attribute_labels\.txt, " + match):
        read_dataset("cub", root)


def test_bad_lists(copy_fixture: CopyFixture) -> None:
    root = copy_fixture("cub")
    edit_line(root / BASE / "train_test_split.txt", 3, "3 2")
    with pytest.raises(
        DatasetLayoutError, match=r"train_test_split\.txt, line 3: unknown is_training"
    ):
        read_dataset("cub", root)
    edit_line(root / BASE / "train_test_split.txt", 3, None)
    with pytest.raises(DatasetLayoutError, match=r"train_test_split\.txt: image has no line: 3"):
        read_dataset("cub", root)
    edit_line(root / BASE / "image_class_labels.txt", 2, "2 4")
    with pytest.raises(
        DatasetLayoutError, match=r"image_class_labels\.txt, line 2: unknown class id: 4"
    ):
        read_dataset("cub", root)


def test_bad_class_knowledge(copy_fixture: CopyFixture) -> None:
    root = copy_fixture("cub")
    path = root / BASE / "attributes/class_attribute_labels_continuous.txt"
    edit_line(path, 2, "50 25 0 140")
    with pytest.raises(
        DatasetLayoutError, match=r"continuous\.txt, line 2: percentages must be between"
    ):
        read_dataset("cub", root)
    edit_line(path, 2, None)
    with pytest.raises(DatasetLayoutError, match=r"expected 3 rows \(one per class\), found 2"):
        read_dataset("cub", root)
    assert read_dataset("cub", root, knowledge=False).knowledge == []


def test_bad_option() -> None:
    with pytest.raises(DataError, match="min_certainty=5"):
        read_dataset("cub", ROOT, min_certainty=5)


def test_long_lines_keep_their_first_four_fields(copy_fixture: CopyFixture) -> None:
    root = copy_fixture("cub")
    # unexplained trailing fields, more than any line of the fixture has, and an odd time
    edit_line(root / LABELS, 6, "2 2 1 4 5.2 0 0 1 x 3.5 0 0 7")
    edit_line(root / LABELS, 7, "2 3 0 1 n/a")
    result = read_dataset("cub", root)
    assert labels(result, names(result)[1], "attributes") == [1, 1, 0, 1]
    note = "3 line(s) of image_attribute_labels.txt have extra fields"
    assert any(note in n for n in result.notes)
    # the four documented fields are still checked on a long line
    edit_line(root / LABELS, 6, "2 2 1 9 5.2 0 0 1 x 3.5 0 0 7")
    with pytest.raises(DatasetLayoutError, match=r"line 6: unknown certainty id .*: 9"):
        read_dataset("cub", root)
