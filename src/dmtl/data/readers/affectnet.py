"""AffectNet (manually annotated part): ``training.csv`` / ``validation.csv``.

Official layout (Mollahosseini et al. 2017; columns as distributed)::

    <root>/Manually_Annotated_file_lists/training.csv     (or <root>/training.csv)
    <root>/Manually_Annotated_file_lists/validation.csv   (or <root>/validation.csv)
    <root>/Manually_Annotated_Images/<subDirectory_filePath>

Columns: ``subDirectory_filePath, face_x, face_y, face_width, face_height,
facial_landmarks, expression, valence, arousal``. ``training.csv`` starts with
that header line; the distributed ``validation.csv`` has none (both cases are
accepted). Expression codes: 0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear,
5 Disgust, 6 Anger, 7 Contempt, 8 None, 9 Uncertain, 10 No-Face.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dmtl.data.readers.base import (
    ReaderResult,
    Table,
    build_manifest,
    check_choice,
    expression_task,
    find_file,
    head_lines,
    read_table,
    register_reader,
)

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
)


def _read_list(path: Path) -> Table:
    first = head_lines(path, 1)[0]
    has_header = first.split(",", 1)[0].strip().lstrip("\ufeff") == COLUMNS[0]
    return read_table(
        path,
        COLUMNS,
        sep=",",
        skiprows=1 if has_header else 0,
        ints=("expression",),
        usecols=(COLUMNS[0], "expression"),
    )


@register_reader("affectnet")
def read_affectnet(
    root: Path,
    *,
    contempt: bool = False,
    validation_split: str = "val",
    image_dir: str = "Manually_Annotated_Images",
) -> ReaderResult:
    """Read AffectNet's manually annotated lists.

    ``contempt`` keeps Contempt as an 8th class (otherwise its rows are dropped
    and counted). ``validation_split`` is the split given to ``validation.csv``
    (``"val"``, or ``"test"`` as most papers use it, since AffectNet's test set is
    not public). ``image_dir`` is the image folder relative to ``root``.
    """
    check_choice("validation_split", validation_split, ("val", "test"))
    task = expression_task(contempt)
    keep = {code: name for code, name in CODES.items() if contempt or name != "contempt"}
    dropped = {"none": 0, "uncertain": 0, "no_face": 0}
    if not contempt:
        dropped["contempt"] = 0
    parts: list[pd.DataFrame] = []
    prefix = f"{image_dir.strip('/')}/" if image_dir else ""
    for stem, split in (("training", "train"), ("validation", validation_split)):
        path = find_file(root, [f"{d}{stem}.csv" for d in LIST_DIRS], f"AffectNet {stem} list")
        table = _read_list(path)
        table.check_codes("expression", range(11), "expression code")
        frame = table.frame
        codes = frame["expression"]
        for code, reason in DROPPED_CODES.items():
            dropped[reason] += int((codes == code).sum())
        if not contempt:
            dropped["contempt"] += int((codes == 7).sum())
        kept = frame.loc[codes.isin(list(keep))]
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
    rows = rows.loc[~duplicated]
    manifest = build_manifest(
        rows["id"],
        rows["image"],
        split=rows["split"],
        categorical={"expression": rows["expression"]},
    )
    notes = [f"validation.csv rows have split {validation_split!r}"]
    if dropped["duplicate"]:
        notes.append(f"{dropped['duplicate']} image(s) listed more than once; kept the first")
    return ReaderResult(manifest, [task], root, dropped, notes)
