"""AffectNet (manually annotated part): ``training.csv`` / ``validation.csv``.

Official layout (Mollahosseini et al. 2017; columns as distributed), flat::

    <root>/Manually_Annotated_file_lists/training.csv     (or <root>/training.csv)
    <root>/Manually_Annotated_file_lists/validation.csv   (or <root>/validation.csv)
    <root>/Manually_Annotated_Images/<subDirectory_filePath>

or nested, as the ``Manually_Annotated.tar`` archive unpacks::

    <root>/Manually_Annotated_file_lists/{training,validation}.csv
                               (or under <root>/Manually_Annotated/)
    <root>/Manually_Annotated/Manually_Annotated_Images/<subDirectory_filePath>

Columns: ``subDirectory_filePath, face_x, face_y, face_width, face_height,
facial_landmarks, expression, valence, arousal``. ``training.csv`` starts with
that header line; copies of ``validation.csv`` differ (with or without it), so
a first line none of whose fields is a number is taken for a header.
Expression codes: 0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust,
6 Anger, 7 Contempt, 8 None, 9 Uncertain, 10 No-Face.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from dmtl.data.crops import CropRecipe
from dmtl.data.readers.base import (
    ReaderResult,
    check_choice,
    find_file,
    head_lines,
    register_reader,
)
from dmtl.data.readers.columns import build_manifest
from dmtl.data.readers.tables import Table, read_table
from dmtl.knowledge.affect import expression_task

COLUMNS = (
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
)

CODES: dict[int, str] = {
    0: "neutral",
    1: "happiness",
    2: "sadness",
    3: "surprise",
    4: "fear",
    5: "disgust",
    6: "anger",
    7: "contempt",
}
"""AffectNet expression code -> dmtl expression name."""

DROPPED_CODES: dict[int, str] = {8: "none", 9: "uncertain", 10: "no_face"}
"""Codes that carry no expression; rows with them are dropped and counted under these keys."""

LIST_DIRS = (
    "",
    "Manually_Annotated_file_lists/",
    "Manually_Annotated/Manually_Annotated_file_lists/",
    "Manually_Annotated/",
)
IMAGE_DIRS = ("Manually_Annotated_Images", "Manually_Annotated/Manually_Annotated_Images")
"""Image folders of the flat and the nested layout."""


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_list(path: Path, notes: list[str]) -> Table:
    """A list file; its first line is a header when none of its fields is a number."""
    first = next(csv.reader(head_lines(path, 1)))
    has_header = len(first) > 1 and not any(_is_number(field) for field in first)
    notes.append(f"{path.name}: {'a' if has_header else 'no'} header line")
    return read_table(
        path,
        COLUMNS,
        sep=",",
        skiprows=1 if has_header else 0,
        ints=("expression",),
        usecols=(COLUMNS[0], "expression"),
    )


def _image_dir(root: Path, lists: Path, image_dir: str | None, notes: list[str]) -> str:
    """The given image folder, else the one of the two layouts that exists."""
    if image_dir is not None:
        return image_dir.strip("/")
    found = next((d for d in IMAGE_DIRS if (root / d).is_dir()), None)
    if found is None:
        nested = lists.relative_to(root).parts[:1] == ("Manually_Annotated",)
        found = IMAGE_DIRS[1] if nested else IMAGE_DIRS[0]
        notes.append(f"image folder not found; image paths point into {found}")
    return found


AFFECTNET_CROP = CropRecipe(
    kind="square",
    box_scale=1.0,
    size=(224, 224),
    note="AffectNet: the face box of each web photo (face_x, face_y, face_width, "
    "face_height), not aligned; the images are distributed at various sizes",
)
"""How AffectNet's ``Manually_Annotated_Images`` were cut from the web photos."""


@register_reader("affectnet", crop=AFFECTNET_CROP)
def read_affectnet(
    root: Path,
    *,
    contempt: bool = False,
    validation_split: str = "val",
    image_dir: str | None = None,
) -> ReaderResult:
    """Read AffectNet's manually annotated lists (expression; flat or nested layout).

    ``contempt`` keeps Contempt as an 8th class (otherwise its rows are dropped
    and counted). ``validation_split`` is the split given to ``validation.csv``
    (``"val"``, or ``"test"`` as most papers use it, since AffectNet's test set is
    not public). ``image_dir`` is the image folder relative to ``root`` (default:
    ``Manually_Annotated_Images`` or ``Manually_Annotated/Manually_Annotated_Images``,
    whichever exists).
    """
    check_choice("validation_split", validation_split, ("val", "test"))
    keep = {code: name for code, name in CODES.items() if contempt or name != "contempt"}
    dropped = {"none": 0, "uncertain": 0, "no_face": 0}
    if not contempt:
        dropped["contempt"] = 0
    notes = [f"validation.csv rows have split {validation_split!r}"]
    parts: list[pd.DataFrame] = []
    prefix = ""
    for stem, split in (("training", "train"), ("validation", validation_split)):
        path = find_file(root, [f"{d}{stem}.csv" for d in LIST_DIRS], f"AffectNet {stem} list")
        if stem == "training":
            folder = _image_dir(root, path, image_dir, notes)
            prefix = f"{folder}/" if folder else ""
        table = _read_list(path, notes)
        table.check_codes("expression", range(11), "expression code")
        codes = table.frame["expression"]
        for code, reason in DROPPED_CODES.items():
            dropped[reason] += int((codes == code).sum())
        if not contempt:
            dropped["contempt"] += int((codes == 7).sum())
        kept = table.frame.loc[codes.isin(list(keep))]
        rel = kept["subDirectory_filePath"].astype(str).str.strip().str.lstrip("/")
        parts.append(
            pd.DataFrame(
                {
                    "id": rel.to_numpy(dtype=object),
                    "image": (prefix + rel).to_numpy(dtype=object),
                    "split": split,
                    "expression": kept["expression"].map(keep).to_numpy(dtype=object),
                }
            )
        )
    rows = pd.concat(parts, ignore_index=True)
    duplicated = rows["id"].duplicated()
    dropped["duplicate"] = int(duplicated.sum())
    if dropped["duplicate"]:
        notes.append(f"{dropped['duplicate']} image(s) listed more than once; kept the first")
    rows = rows.loc[~duplicated]
    labels = {"expression": rows["expression"]}
    manifest = build_manifest(rows["id"], rows["image"], split=rows["split"], categorical=labels)
    return ReaderResult(manifest, [expression_task(contempt)], root, dropped, notes)
