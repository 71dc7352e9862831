"""BP4D(-Spontaneous): per subject and task AU occurrence tables.

Official layout::

    <root>/AUCoding/AU_OCC/F001_T1.csv
    <root>/AUCoding/AU_OCC/F001_T2.csv
    ...

Each CSV has a header row: the first column is the frame number, the others
are AU numbers (``0,1,2,3,4,...``); each following row is one frame with
``1`` (present), ``0`` (absent) or ``9`` (not coded, read as missing). Only
the expressive segment of each task is coded. The usual protocol uses 12
AUs: 1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dmtl.data.crops import CropRecipe
from dmtl.data.readers.base import ReaderResult, find_dir, head_lines, register_reader
from dmtl.data.readers.columns import au_frames_manifest, au_name
from dmtl.data.readers.disfa import check_template
from dmtl.data.readers.tables import read_table
from dmtl.errors import DataError, DatasetLayoutError
from dmtl.knowledge.affect import BP4D_AUS, au_task

NOT_CODED = 9
DEFAULT_TEMPLATE = "Sequences(2D+3D)/{subject}/{task}/{frame:04d}.jpg"
"""Assumed place of the 2D frames (see docs/datasets.md, Unverified details)."""


def _read_file(path: Path, numbers: Sequence[int]) -> pd.DataFrame:
    header = [h.strip().lstrip("\ufeff") for h in head_lines(path, 1)[0].split(",")]
    columns = ["frame"]
    for position, name in enumerate(header[1:], start=2):
        try:
            columns.append(au_name(int(float(name))))
        except ValueError:
            raise DatasetLayoutError(
                path, f"header field {position} should be an AU number", line=1, value=name
            ) from None
    wanted = [au_name(n) for n in numbers]
    missing = [w for w in wanted if w not in columns]
    if missing:
        raise DatasetLayoutError(path, f"header lacks {', '.join(missing)}", line=1)
    if len(set(columns)) != len(columns):
        raise DatasetLayoutError(path, "duplicated AU in header", line=1)
    table = read_table(
        path, columns, sep=",", skiprows=1, ints=["frame", *wanted], usecols=["frame", *wanted]
    )
    frame = table.frame
    values = frame[wanted].to_numpy(np.int64)
    bad = table.first_bad(~np.isin(values, (0, 1, NOT_CODED)).all(axis=1))
    if bad is not None:
        odd = next(v for v in values[bad] if v not in (0, 1, NOT_CODED))
        raise table.error(bad, "AU occurrence must be 0, 1 or 9", int(odd))
    bad = table.first_bad(frame["frame"].duplicated().to_numpy())
    if bad is not None:
        raise table.error(bad, "frame listed twice", frame["frame"].iloc[bad])
    out = pd.DataFrame(
        np.where(values == NOT_CODED, np.nan, values).astype(np.float32), columns=wanted
    )
    out.insert(0, "frame", frame["frame"].to_numpy(np.int64))
    return out


FRAME_CROP = CropRecipe(
    kind="square",
    box_scale=1.25,
    size=(112, 112),
    note="BP4D ships videos; the frames are extracted by the user "
    "(image_template): dmtl assumes a square of 1.25 times the face box (docs/faces.md)",
)
"""The crop dmtl assumes for frames extracted from the BP4D videos."""


@register_reader("bp4d", crop=FRAME_CROP)
def read_bp4d(
    root: Path,
    *,
    aus: Sequence[int] = BP4D_AUS,
    au_dir: str = "AUCoding/AU_OCC",
    image_template: str = DEFAULT_TEMPLATE,
    val_subjects: Sequence[str] = (),
    test_subjects: Sequence[str] = (),
) -> ReaderResult:
    """Read BP4D AU occurrence for the AUs ``aus`` (9 = not coded -> missing).

    ``au_dir`` holds the ``<subject>_<task>.csv`` files. ``image_template``
    maps a frame to its image, fields ``{subject}``, ``{task}``, ``{frame}``.
    Frames with none of the chosen AUs coded are dropped. BP4D has no
    official split: ``val_subjects`` / ``test_subjects`` name held-out subjects.
    """
    numbers = [int(a) for a in aus]
    if not numbers or len(set(numbers)) != len(numbers):
        raise DataError(f"option aus={list(aus)!r} must be a non-empty list without repeats")
    check_template(image_template, subject="F001", task="T1", frame=1)
    folder = find_dir(root, [au_dir], "BP4D AU occurrence folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
    if not files:
        raise DatasetLayoutError(folder / "F001_T1.csv", "no AU occurrence files found")
    parts = []
    for path in files:
        match = re.fullmatch(r"(.+)_(T\d+)", path.stem)
        if match is None:
            raise DatasetLayoutError(path, "expected a file name <subject>_<task>.csv")
        part = _read_file(path, numbers)
        part.insert(0, "task", match.group(2))
        part.insert(0, "subject", match.group(1))
        parts.append(part)
    rows = pd.concat(parts, ignore_index=True)
    columns = [au_name(n) for n in numbers]
    coded = rows[columns].notna().any(axis=1)
    dropped = {
        "frames_not_coded": int((~coded).sum()),
        "au_not_coded": int(rows.loc[coded, columns].isna().to_numpy().sum()),
    }
    rows = rows.loc[coded].reset_index(drop=True)
    ids = rows["subject"] + "/" + rows["task"] + "/" + rows["frame"].map("{:04d}".format)
    images = [
        image_template.format(subject=s, task=t, frame=int(f))
        for s, t, f in zip(rows["subject"], rows["task"], rows["frame"], strict=True)
    ]
    manifest = au_frames_manifest(rows, ids, images, columns, val_subjects, test_subjects)
    notes = [
        f"{len(files)} subject/task file(s) from {folder.relative_to(root).as_posix()}",
        f"image paths follow {image_template!r}",
    ]
    return ReaderResult(manifest, [au_task(numbers)], root, dropped, notes)
