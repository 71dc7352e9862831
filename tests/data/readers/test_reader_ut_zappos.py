"""UT-Zappos50K reader: meta-data.csv + image-path.mat, ';'-separated multi-values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from dmtl.data.readers import read_dataset
from dmtl.errors import DataError, DatasetLayoutError

from .conftest import FIXTURES, CopyFixture, check_manifest, edit_line, labels, on, row

ROOT = FIXTURES / "ut_zappos"
DATA = "ut-zap50k-data"
PATHS = [
    "Shoes/Sneakers and Athletic Shoes/Nike/7716996.288224.jpg",
    "Shoes/Oxfords/Bostonian/100627.72.jpg",
    "Boots/Ankle/Steve Madden/8046634.3.jpg",
    "Sandals/Flat/Jambu Jr./7984474.1.jpg",
]


def write_image_paths(path: Path, paths: list[str]) -> None:
    """``image-path.mat`` as distributed: an N x 1 cell array ``imagepath`` of strings.

    (This is how ``fixtures/ut_zappos/ut-zap50k-data/image-path.mat`` was written.)
    """
    cell = np.empty((len(paths), 1), dtype=object)
    for i, p in enumerate(paths):
        cell[i, 0] = np.array([p])
    scipy.io.savemat(path, {"imagepath": cell})


def test_category_attributes_and_image_paths() -> None:
    result = read_dataset("ut_zappos", ROOT)
    category, attributes = result.tasks
    assert category.names == ("Boots", "Sandals", "Shoes")
    assert attributes.names == (
        "HeelHeight.Flat",
        "HeelHeight.High heel",
        "Insole.Padded",
        "Closure.Buckle",
        "Closure.Hook and Loop",
        "Closure.Lace up",
        "Closure.Zipper",
        "Gender.Men",
        "Gender.Women",
        "Material.Leather",
        "Material.Rubber",
        "Material.Synthetic",
        "ToeStyle.Capped Toe",
        "ToeStyle.Open Toe",
        "ToeStyle.Pointed Toe",
        "ToeStyle.Round Toe",
    )
    m = result.manifest
    assert m["id"].tolist() == ["7716996-288224", "100627-72", "8046634-3", "7984474-1"]
    assert m["category"].tolist() == ["Shoes", "Shoes", "Boots", "Sandals"]
    assert "split" not in m.columns
    assert (
        row(result, "100627-72")["image"]
        == "ut-zap50k-images/Shoes/Oxfords/Bostonian/100627.72.jpg"
    )
    # a folder name ending with '.' is stored as %2E
    assert (
        row(result, "7984474-1")["image"]
        == "ut-zap50k-images/Sandals/Flat/Jambu Jr%2E/7984474.1.jpg"
    )
    first = labels(result, "7716996-288224", "attributes")
    assert first[:2] == [None, None]  # empty HeelHeight: unknown, not absent
    assert on(result, "7716996-288224", "attributes") == [
        "Insole.Padded",
        "Closure.Lace up",
        "Gender.Men",
        "Material.Rubber",
        "Material.Synthetic",
        "ToeStyle.Round Toe",
    ]
    assert on(result, "100627-72", "attributes") == [
        "Closure.Lace up",
        "Gender.Men",
        "Material.Leather",
        "ToeStyle.Capped Toe",
        "ToeStyle.Round Toe",
    ]
    assert labels(result, "7984474-1", "attributes")[9:12] == [None, None, None]  # no Material
    assert result.dropped == {"rare_attribute_values": 0, "duplicate_cid": 0}
    check_manifest(result)


def test_subcategory_min_count_and_no_escaping() -> None:
    result = read_dataset(
        "ut_zappos",
        ROOT,
        category_level="subcategory",
        min_count=2,
        escape_trailing_dots=False,
        attribute_columns=["Closure", "Gender", "Material", "ToeStyle", "HeelHeight"],
    )
    assert result.task("category").names == (
        "Boots:Ankle",
        "Sandals:Flat",
        "Shoes:Oxfords",
        "Shoes:Sneakers and Athletic Shoes",
    )
    assert result.task("attributes").names == (
        "Closure.Lace up",
        "Gender.Men",
        "Gender.Women",
        "Material.Leather",
        "ToeStyle.Round Toe",
    )
    assert result.dropped == {"rare_attribute_values": 10, "duplicate_cid": 0}
    assert row(result, "7984474-1")["image"].endswith("Jambu Jr./7984474.1.jpg")
    check_manifest(result)


def test_cid_must_match_the_image_path(copy_fixture: CopyFixture) -> None:
    root = copy_fixture("ut_zappos")
    write_image_paths(root / DATA / "image-path.mat", [PATHS[1], PATHS[0], *PATHS[2:]])
    with pytest.raises(DatasetLayoutError, match=r"meta-data\.csv, line 2: CID does not match"):
        read_dataset("ut_zappos", root)
    assert len(read_dataset("ut_zappos", root, check_cid=False).manifest) == 4


def test_path_list_and_metadata_disagree(copy_fixture: CopyFixture) -> None:
    root = copy_fixture("ut_zappos")
    write_image_paths(root / DATA / "image-path.mat", PATHS[:3])
    with pytest.raises(DatasetLayoutError, match=r"image-path\.mat: has 3 image paths but"):
        read_dataset("ut_zappos", root)
    (root / DATA / "image-path.mat").unlink()
    with pytest.raises(DatasetLayoutError, match=r"image-path\.mat: UT-Zappos50K image path list"):
        read_dataset("ut_zappos", root)


def test_bad_metadata(copy_fixture: CopyFixture) -> None:
    root = copy_fixture("ut_zappos")
    meta = root / DATA / "meta-data.csv"
    edit_line(meta, 3, "100627-72,,Oxfords,,,Lace up,Men,Leather,Capped Toe")
    with pytest.raises(DatasetLayoutError, match=r"meta-data\.csv, line 3: empty Category"):
        read_dataset("ut_zappos", root)
    edit_line(meta, 3, "100627-72,Shoes,Oxfords,,,Lace up")
    with pytest.raises(DatasetLayoutError, match=r"meta-data\.csv, line 3: truncated"):
        read_dataset("ut_zappos", root)
    edit_line(meta, 1, "CID,Category,SubCategory")
    with pytest.raises(
        DatasetLayoutError, match=r"meta-data\.csv, line 1: header lacks HeelHeight"
    ):
        read_dataset("ut_zappos", root)


def test_bad_options() -> None:
    with pytest.raises(DataError, match="category_level='brand'"):
        read_dataset("ut_zappos", ROOT, category_level="brand")
    with pytest.raises(DataError, match="attribute_columns"):
        read_dataset("ut_zappos", ROOT, attribute_columns=["Brand"])


def test_a_repeated_cid_keeps_its_first_row(copy_fixture: CopyFixture) -> None:
    root = copy_fixture("ut_zappos")
    meta = root / DATA / "meta-data.csv"
    lines = meta.read_text().splitlines()
    extra = [
        "100627-72,Shoes,Loafers,,,Slip-On,Men,Leather,Round Toe",  # same CID, other listing
        lines[4],  # an identical repeat of 7984474-1
    ]
    meta.write_text("\n".join([*lines, *extra]) + "\n")
    write_image_paths(
        root / DATA / "image-path.mat",
        [*PATHS, "Shoes/Loafers/Bostonian/100627.72.jpg", PATHS[3]],
    )
    result = read_dataset("ut_zappos", root)
    ids = ["7716996-288224", "100627-72", "8046634-3", "7984474-1"]
    assert result.manifest["id"].tolist() == ids
    assert row(result, "100627-72")["image"].endswith("Shoes/Oxfords/Bostonian/100627.72.jpg")
    assert "Closure.Slip-On" not in result.task("attributes").names
    assert result.dropped == {"rare_attribute_values": 0, "duplicate_cid": 2}
    assert any(
        "2 row(s) repeat an earlier CID (first at line 6)" in n and "1 of the repeats differ" in n
        for n in result.notes
    )
    check_manifest(result)
