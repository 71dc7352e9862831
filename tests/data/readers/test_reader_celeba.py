"""CelebA reader: count line + header of 40 names, -1/1 values aligned by runs of spaces."""

from __future__ import annotations

from pathlib import Path

import pytest

from dmtl.data.readers import read_dataset
from dmtl.errors import DataError, DatasetLayoutError

from .conftest import FIXTURES, CopyFixture, check_manifest, edit_line, labels, row

ROOT = FIXTURES / "celeba"
ATTR = "Anno/list_attr_celeba.txt"
# The fixture's attribute rows (as in the file, -1/1).
ROWS = {
    "000001.jpg": [
        -1,
        1,
        1,
        -1,
        -1,
        -1,
        -1,
        -1,
        -1,
        -1,
        -1,
        1,
        -1,
        -1,
        -1,
        -1,
        -1,
        -1,
        1,
        1,
        -1,
        1,
        -1,
        -1,
        1,
        -1,
        -1,
        1,
        -1,
        -1,
        -1,
        1,
        1,
        -1,
        1,
        -1,
        1,
        -1,
        -1,
        1,
    ],
    "000003.jpg": [
        1,
        1,
        1,
        1,
        1,
        1,
        -1,
        -1,
        -1,
        -1,
        1,
        1,
        1,
        1,
        1,
        -1,
        -1,
        1,
        -1,
        1,
        -1,
        1,
        1,
        -1,
        -1,
        1,
        1,
        1,
        1,
        1,
        -1,
        -1,
        1,
        1,
        -1,
        -1,
        1,
        1,
        1,
        1,
    ],
}


def test_identities_attributes_and_partition() -> None:
    result = read_dataset("celeba", ROOT)
    identity, attributes = result.tasks
    # classes named by identity number, those present, sorted numerically
    assert identity.names == ("2", "2880", "2937", "10177")
    assert len(attributes.names) == 40
    assert attributes.names[:3] == ("5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive")
    assert attributes.names[-1] == "Young"
    m = result.manifest
    assert m["id"].tolist() == [f"00000{i}.jpg" for i in range(1, 6)]
    assert m["identity"].tolist() == ["2880", "2937", "10177", "2880", "2"]
    assert m["split"].tolist() == ["train", "train", "val", "test", "train"]
    for name, values in ROWS.items():
        assert labels(result, name, "attributes") == [(v + 1) / 2 for v in values]
    assert row(result, "000004.jpg")["image"] == "img_align_celeba/000004.jpg"
    assert result.dropped == {"not_in_partition": 0, "unlabelled": 0}
    check_manifest(result)


def test_flat_layout_img_folder_and_single_task(copy_fixture: CopyFixture) -> None:
    root = copy_fixture("celeba")
    for path in [*(root / "Anno").iterdir(), *(root / "Eval").iterdir()]:
        path.rename(root / path.name)
    (root / "Img").mkdir()
    result = read_dataset("celeba", root, tasks=["attributes"])
    assert [t.name for t in result.tasks] == ["attributes"]
    assert row(result, "000001.jpg")["image"] == "Img/img_align_celeba/000001.jpg"
    check_manifest(result)


def test_images_missing_from_a_list(copy_fixture: CopyFixture) -> None:
    root = copy_fixture("celeba")
    edit_line(root / "Anno/identity_CelebA.txt", 3, None)  # 000003.jpg has no identity
    edit_line(root / "Eval/list_eval_partition.txt", 5, None)  # 000005.jpg has no partition
    result = read_dataset("celeba", root)
    assert row(result, "000003.jpg")["identity"] != row(result, "000003.jpg")["identity"]  # NaN
    assert "000005.jpg" not in set(result.manifest["id"])
    assert result.dropped["not_in_partition"] == 2  # its identity and attribute rows
    assert result.task("identity").names == ("2", "2880", "2937")
    check_manifest(result)


@pytest.mark.parametrize(
    ("line", "text", "match"),
    [
        (4, "000002.jpg  1 -1  0" + " -1" * 37, r"line 4: attribute values must be -1 or 1: 0"),
        (5, "000003.jpg  1  1  1", r"line 5: truncated or malformed line: expected 41 fields"),
        (1, "five", r"line 1: expected a count line"),
        (7, None, r"line 1: count line says 5 images but 4 rows follow"),
    ],
)
def test_bad_attribute_file(
    copy_fixture: CopyFixture, line: int, text: str | None, match: str
) -> None:
    root = copy_fixture("celeba")
    edit_line(root / ATTR, line, text)
    with pytest.raises(DatasetLayoutError, match=r"list_attr_celeba\.txt, " + match):
        read_dataset("celeba", root)


def test_bad_partition_and_identity(copy_fixture: CopyFixture) -> None:
    root = copy_fixture("celeba")
    edit_line(root / "Eval/list_eval_partition.txt", 2, "000002.jpg 3")
    with pytest.raises(
        DatasetLayoutError, match=r"list_eval_partition\.txt, line 2: unknown partition"
    ):
        read_dataset("celeba", root)
    edit_line(root / "Eval/list_eval_partition.txt", 2, "000002.jpg 0")
    edit_line(root / "Anno/identity_CelebA.txt", 4, "000004.jpg")
    with pytest.raises(DatasetLayoutError, match=r"identity_CelebA\.txt, line 4: truncated"):
        read_dataset("celeba", root)
    (root / "Anno/identity_CelebA.txt").unlink()
    with pytest.raises(DatasetLayoutError, match=r"Anno/identity_CelebA\.txt: CelebA identities"):
        read_dataset("celeba", root)


def test_bad_tasks_option(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="tasks"):
        read_dataset("celeba", ROOT, tasks=["landmarks"])
