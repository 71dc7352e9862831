"""Aff-Wild2 (ABAW annotations): -1/-5 = not annotated, 'Other' dropped, frames of all tasks
joined, frames in two folders."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from dmtl.core.tasks import RegressionTask
from dmtl.data.readers import ReaderResult, read_dataset
from dmtl.errors import DataError, DatasetLayoutError

from .conftest import FIXTURES, CopyFixture, check_manifest, edit_line, labels, on, row

ROOT = FIXTURES / "affwild2"
EXPR = "annotations/EXPR_Classification_Challenge"
AU = "annotations/AU_Detection_Challenge"
AUS = ["AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26"]


def test_frames_of_both_tasks_are_joined() -> None:
    result = read_dataset("affwild2", ROOT)
    assert [t.name for t in result.tasks] == ["expression", "au"]
    assert list(result.task("au").names) == AUS
    m = result.manifest
    assert m["id"].tolist() == [
        "10-60-1280x720_right/00001",
        "video1/00001",
        "video1/00002",
        "video1/00003",
        "video1/00004",
        "video1/00006",
        "video2/00001",
        "video2/00003",
    ]
    expressions = [None if not isinstance(e, str) else e for e in m["expression"]]
    assert expressions == [
        None,
        "neutral",
        "neutral",
        None,
        "happiness",
        "surprise",
        "sadness",
        "anger",
    ]
    assert m["split"].tolist() == ["train"] * 6 + ["val"] * 2
    # co-annotated: expression and AUs on the same frame
    assert on(result, "video1/00004", "au") == ["AU6", "AU12", "AU25"]
    assert labels(result, "video1/00001", "au") == [0.0] * 12
    # AU line all -1: frame kept for its expression, AUs missing
    assert labels(result, "video1/00002", "au") == [None] * 12
    # expression -1 but AUs present
    assert on(result, "video1/00003", "au") == ["AU1", "AU25"]
    # a single -1 in an AU line
    assert labels(result, "10-60-1280x720_right/00001", "au") == [0.0, 1.0] + [0.0] * 9 + [None]
    assert row(result, "video1/00004")["image"] == "cropped_aligned/video1/00004.jpg"
    assert result.dropped == {
        "expression_unannotated": 2,
        "expression_other": 1,
        "au_unannotated": 1,
        "au_partially_unannotated": 1,
    }
    check_manifest(result)


def test_single_task() -> None:
    result = read_dataset("affwild2", ROOT, tasks=["au"], image_dir="frames")
    assert [t.name for t in result.tasks] == ["au"]
    assert len(result.manifest) == 4  # video1 frames 1, 3, 4 and the _right video's frame 1
    assert "expression" not in result.manifest.columns
    assert row(result, "video1/00003")["image"] == "frames/video1/00003.jpg"
    check_manifest(result)


def test_older_abaw_layout_with_seven_classes(tmp_path: Path) -> None:
    folder = tmp_path / "annotations" / "EXPR_Set" / "Training_Set"
    folder.mkdir(parents=True)
    (folder / "vid.txt").write_text(
        "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise\n6\n-1\n2\n"
    )
    result = read_dataset("affwild2", tmp_path, tasks=["expression"])
    assert result.manifest["expression"].tolist() == ["surprise", "disgust"]
    assert result.manifest["id"].tolist() == ["vid/00001", "vid/00003"]


def test_conflicting_sets_give_the_held_out_split(copy_fixture: CopyFixture) -> None:
    root = copy_fixture("affwild2")
    au = root / AU
    (au / "Validation_Set").mkdir()
    shutil.move(au / "Train_Set" / "video1.txt", au / "Validation_Set" / "video1.txt")
    result = read_dataset("affwild2", root)
    assert row(result, "video1/00004")["split"] == "val"
    assert row(result, "video1/00006")["split"] == "train"  # expression only
    assert any("different sets" in n for n in result.notes)


@pytest.mark.parametrize(
    ("file", "line", "text", "match"),
    [
        (
            f"{EXPR}/Train_Set/video1.txt",
            3,
            "8",
            r"video1\.txt, line 3: unknown expression label: 8",
        ),
        (f"{EXPR}/Train_Set/video1.txt", 1, "Neutral,Contempt", r"line 1: unknown expression name"),
        (f"{EXPR}/Train_Set/video1.txt", 3, "", r"video1\.txt, line 3: truncated"),
        (f"{AU}/Train_Set/video1.txt", 4, "1,0,2,0,0,0,0,0,0,0,1,0", r"line 4: AU values must be"),
        (f"{AU}/Train_Set/video1.txt", 5, "0,0,0,1,0,0,1,0,0,0,1", r"line 5: truncated"),
        (f"{AU}/Train_Set/video1.txt", 1, "AU1,Smile", r"line 1: expected AU names"),
    ],
)
def test_bad_files(copy_fixture: CopyFixture, file: str, line: int, text: str, match: str) -> None:
    root = copy_fixture("affwild2")
    edit_line(root / file, line, text)
    with pytest.raises(DatasetLayoutError, match=match):
        read_dataset("affwild2", root)


def test_missing_annotations(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="no ABAW annotation folder"):
        read_dataset("affwild2", tmp_path)
    (tmp_path / "annotations" / "AU_Set" / "Train_Set").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match="expression annotation folder not found"):
        read_dataset("affwild2", tmp_path)


def test_frames_are_numbered_from_one() -> None:
    result = read_dataset("affwild2", ROOT, tasks=["expression"])
    first = row(result, "video2/00001")
    assert first["expression"] == "sadness"
    assert not any(isinstance(v, float) and math.isnan(v) for v in result.manifest["expression"])


VA = "annotations/VA_Estimation_Challenge"
NEW_50 = "cropped_aligned_new_50_vids"


def va(result: ReaderResult, sample_id: str) -> list[float | None]:
    return labels(result, sample_id, "va")


def test_valence_arousal_is_a_regression_task_joined_with_the_others() -> None:
    result = read_dataset("affwild2", ROOT, tasks=["expression", "au", "va"])
    task = result.task("va")
    assert isinstance(task, RegressionTask)
    assert (task.names, task.low, task.high) == (("valence", "arousal"), -1.0, 1.0)
    m = result.manifest
    assert m["id"].tolist() == [
        "10-60-1280x720_right/00001",
        *(f"video1/0000{k}" for k in range(1, 7)),  # frame 5: valence-arousal only
        "video2/00001",
        "video2/00002",  # valence-arousal only
        "video2/00003",
        "video3/00001",  # a video annotated for valence-arousal only
        "video3/00002",
    ]
    assert m[["va/valence", "va/arousal"]].dtypes.tolist() == [np.float32, np.float32]
    assert va(result, "video1/00001") == [0.5, 0.25]
    assert row(result, "video1/00001")["expression"] == "neutral"
    assert labels(result, "video1/00001", "au") == [0.0] * 12
    assert va(result, "video1/00002") == [None, None]  # -5,-5
    assert va(result, "video1/00003") == [pytest.approx(0.1), None]  # -5 in one dimension
    assert va(result, "video1/00005") == [1.0, -1.0]
    assert labels(result, "video1/00005", "au") == [None] * 12
    assert va(result, "video2/00002") == [0.0, 0.0]
    assert row(result, "video2/00002")["split"] == "val"
    assert va(result, "video3/00002") == [pytest.approx(-0.1), pytest.approx(0.2)]
    assert result.dropped == {
        "expression_unannotated": 2,
        "expression_other": 1,
        "au_unannotated": 1,
        "au_partially_unannotated": 1,
        "va_unannotated": 2,
        "va_partially_unannotated": 1,
    }
    check_manifest(result)


def test_valence_arousal_alone_in_the_older_layout(tmp_path: Path) -> None:
    folder = tmp_path / "annotations" / "VA_Set" / "Training_Set"
    folder.mkdir(parents=True)
    (folder / "vid.txt").write_text("Valence,Arousal\n-5,-5\n0.2,-0.4\n\n")
    result = read_dataset("affwild2", tmp_path, tasks=["va"])
    assert [t.name for t in result.tasks] == ["va"]
    assert result.manifest["id"].tolist() == ["vid/00002"]
    assert va(result, "vid/00002") == [pytest.approx(0.2), pytest.approx(-0.4)]
    assert result.dropped == {"va_unannotated": 1, "va_partially_unannotated": 0}
    check_manifest(result)


@pytest.mark.parametrize(
    ("line", "text", "match"),
    [
        (3, "1.5,0.2", r"line 3: valence and arousal must lie in \[-1, 1\].*'1.5,0.2'"),
        (4, "-5,-1.01", r"line 4: valence and arousal must lie in \[-1, 1\]"),
        (2, "high,0.2", r"line 2: expected two numbers \(valence, arousal\): 'high,0.2'"),
        (5, "0.5", r"line 5: truncated or malformed line: expected 2 fields, found 1"),
        (5, "0.5,0.5,0.5", r"line 5: too many fields"),
        (3, "", r"line 3: truncated"),  # a blank line would shift the frames after it
        (1, "valence", r"line 1: expected the header 'valence,arousal'"),
    ],
)
def test_bad_valence_arousal_files(
    copy_fixture: CopyFixture, line: int, text: str, match: str
) -> None:
    root = copy_fixture("affwild2")
    edit_line(root / VA / "Train_Set/video1.txt", line, text)
    with pytest.raises(DatasetLayoutError, match=r"video1\.txt, " + match):
        read_dataset("affwild2", root, tasks=["va"])


def test_each_video_is_found_in_its_frame_folder(copy_fixture: CopyFixture) -> None:
    result = read_dataset("affwild2", ROOT, tasks=["va"])
    assert row(result, "video3/00001")["image"] == f"{NEW_50}/video3/00001.jpg"
    assert row(result, "video1/00004")["image"] == "cropped_aligned/video1/00004.jpg"
    assert any("2 video(s) have no frame folder" in n for n in result.notes)
    root = copy_fixture("affwild2")
    for video in ("video1", "video2", "video3"):  # video3 in both folders: the first listed wins
        (root / "cropped_aligned" / video).mkdir(parents=True)
    (root / "cropped_aligned" / "not_annotated").mkdir()
    result = read_dataset("affwild2", root, tasks=["va"])
    assert row(result, "video3/00001")["image"] == "cropped_aligned/video3/00001.jpg"
    assert not any("no frame folder" in n for n in result.notes)
    result = read_dataset("affwild2", root, tasks=["va"], image_dir=[NEW_50, "cropped_aligned"])
    assert row(result, "video3/00001")["image"] == f"{NEW_50}/video3/00001.jpg"
    assert row(result, "video2/00001")["image"] == "cropped_aligned/video2/00001.jpg"
    result = read_dataset("affwild2", root, tasks=["va"], image_dir="frames")
    assert row(result, "video3/00002")["image"] == "frames/video3/00002.jpg"
    with pytest.raises(DataError, match="image_dir"):
        read_dataset("affwild2", root, image_dir=[])


def test_bad_tasks_option() -> None:
    choose = r"tasks=\['valence'\]: choose from 'expression', 'au', 'va'"
    with pytest.raises(DataError, match=choose):
        read_dataset("affwild2", ROOT, tasks=["valence"])
