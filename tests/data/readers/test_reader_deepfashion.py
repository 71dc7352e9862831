"""DeepFashion category/attribute benchmark: count + header lines, -1/0/1 attribute labels."""

from __future__ import annotations

import pytest

from dmtl.data.readers import read_dataset
from dmtl.errors import DataError, DatasetLayoutError

from .conftest import FIXTURES, CopyFixture, check_manifest, edit_line, labels, row

ROOT = FIXTURES / "deepfashion"
BLOUSE = "img/Sheer_Pleated-Front_Blouse/img_00000001.jpg"
BLOUSE2 = "img/Sheer_Pleated-Front_Blouse/img_00000002.jpg"
CAPRIS = "img/Paisley_Print_Capris/img_00000042.jpg"
DRESS = "img/Floral_Maxi_Dress/img_00000077.jpg"


def test_categories_attributes_and_partition() -> None:
    result = read_dataset("deepfashion", ROOT)
    category, attributes = result.tasks
    assert category.names == ("Anorak", "Blazer", "Blouse", "Capris", "Dress", "Cape")
    # names with spaces; the duplicated 'knit' is told apart by its type
    assert attributes.names == (
        "a-line",
        "abstract print",
        "floral",
        "floral print",
        "knit#2",
        "knit#5",
    )
    m = result.manifest
    assert m["category"].tolist() == ["Blouse", "Blouse", "Anorak", "Capris", "Dress"]
    assert m["split"].tolist() == ["train", "train", "val", "test", "train"]
    assert row(result, BLOUSE)["image"] == BLOUSE
    assert labels(result, BLOUSE, "attributes") == [0, 0, 0, 0, 0, 1]
    assert labels(result, BLOUSE2, "attributes") == [0, None, 0, 0, 1, 0]  # 0 = unknown
    assert labels(result, CAPRIS, "attributes") == [0, 1, None, None, 0, 0]
    assert labels(result, DRESS, "attributes") == [1, 0, 1, 1, 0, 0]
    assert result.dropped == {"unknown_attribute_labels": 3}
    assert any("Cape" in n for n in result.notes)
    check_manifest(result)


def test_options(copy_fixture: CopyFixture) -> None:
    result = read_dataset("deepfashion", ROOT, zero_as="negative", drop_empty_categories=True)
    assert result.task("category").names == ("Anorak", "Blouse", "Capris", "Dress")
    assert labels(result, CAPRIS, "attributes") == [0, 1, 0, 0, 0, 0]
    assert result.dropped == {"unknown_attribute_labels": 0}
    check_manifest(result)
    root = copy_fixture("deepfashion")
    (root / "Anno").rename(root / "Anno_coarse")
    (root / "Img").mkdir()
    result = read_dataset("deepfashion", root, attributes=False)
    assert [t.name for t in result.tasks] == ["category"]
    assert row(result, DRESS)["image"] == f"Img/{DRESS}"


@pytest.mark.parametrize(
    ("file", "line", "text", "match"),
    [
        (
            "Anno/list_category_img.txt",
            4,
            f"{BLOUSE2}   7",
            r"list_category_img\.txt, line 4: unknown category label: 7",
        ),
        (
            "Anno/list_category_img.txt",
            7,
            None,
            r"list_category_img\.txt, line 1: count line says 5 rows but 4",
        ),
        (
            "Anno/list_category_img.txt",
            2,
            None,
            r"list_category_img\.txt, line 2: expected a header line",
        ),
        (
            "Anno/list_attr_img.txt",
            3,
            f"{BLOUSE} -1 -1 -1 -1 -1  2",
            r"list_attr_img\.txt, line 3: attribute labels must be -1, 0 or 1: 2",
        ),
        (
            "Anno/list_attr_img.txt",
            6,
            f"{CAPRIS} -1  1  0",
            r"list_attr_img\.txt, line 6: truncated",
        ),
        (
            "Anno/list_attr_cloth.txt",
            4,
            "abstract print",
            r"list_attr_cloth\.txt, line 4: expected '<attribute name> <attribute type>'",
        ),
        (
            "Eval/list_eval_partition.txt",
            5,
            f"{'img/Striped_Textured_Anorak/img_00000010.jpg'} dev",
            r"list_eval_partition\.txt, line 5: unknown evaluation status",
        ),
    ],
)
def test_bad_files(
    copy_fixture: CopyFixture, file: str, line: int, text: str | None, match: str
) -> None:
    root = copy_fixture("deepfashion")
    edit_line(root / file, line, text)
    with pytest.raises(DatasetLayoutError, match=match):
        read_dataset("deepfashion", root)


@pytest.mark.parametrize(
    ("file", "match"),
    [
        ("Eval/list_eval_partition.txt", "evaluation partition not found"),
        ("Anno/list_attr_cloth.txt", "attribute names not found"),
        ("Anno/list_category_cloth.txt", "category names not found"),
    ],
)
def test_missing_files(copy_fixture: CopyFixture, file: str, match: str) -> None:
    root = copy_fixture("deepfashion")
    (root / file).unlink()
    with pytest.raises(DatasetLayoutError, match=file.replace(".", r"\.") + ": " + match):
        read_dataset("deepfashion", root)


def test_missing_attribute_file_is_fine_without_attributes(copy_fixture: CopyFixture) -> None:
    root = copy_fixture("deepfashion")
    (root / "Anno/list_attr_img.txt").unlink()
    with pytest.raises(DatasetLayoutError, match=r"Anno/list_attr_img\.txt: image attributes"):
        read_dataset("deepfashion", root)
    assert len(read_dataset("deepfashion", root, attributes=False).manifest) == 5


def test_bad_option() -> None:
    with pytest.raises(DataError, match="zero_as='unknown'"):
        read_dataset("deepfashion", ROOT, zero_as="unknown")
