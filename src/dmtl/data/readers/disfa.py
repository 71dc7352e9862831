"""DISFA: per-subject, per-AU intensity files.

Official layout::

    <root>/ActionUnit_Labels/SN001/SN001_au1.txt    lines "<frame>,<intensity>", intensity 0-5
    <root>/ActionUnit_Labels/SN001/SN001_au2.txt
    ...

12 AUs are coded: 1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26. An AU *occurs*
when its intensity is at least ``threshold`` (2 by default, the usual
convention: A-level intensity counts as absent).

DISFA ships videos, not frames; where the extracted frames live is the
user's choice, given by ``image_template`` (see :func:`read_disfa`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dmtl.data.crops import CropRecipe
from dmtl.data.readers.base import ReaderResult, find_dir, register_reader
from dmtl.data.readers.columns import au_frames_manifest, au_name
from dmtl.data.readers.tables import read_table
from dmtl.errors import DataError, DatasetLayoutError
from dmtl.knowledge.affect import DISFA_AUS, au_task

DEFAULT_TEMPLATE = "frames/{subject}/{frame:05d}.jpg"
"""dmtl's default place for extracted frames (not part of the official release)."""


def check_template(template: str, **example: object) -> None:
    """Reject an image template with unknown ``{fields}``."""
    try:
        template.format(**example)
    except (KeyError, IndexError, ValueError) as error:
        raise DataError(
            f"image_template {template!r} is invalid ({error}); "
            f"available fields: {', '.join(example)}"
        ) from None


def _read_au_file(path: Path) -> pd.Series:
    table = read_table(path, ("frame", "intensity"), sep=",", ints=("frame", "intensity"))
    frame = table.frame
    table.check_codes("intensity", range(6), "AU intensity (expected 0-5)")
    bad = table.first_bad((frame["frame"] < 1).to_numpy())
    if bad is not None:
        raise table.error(bad, "frame numbers start at 1", frame["frame"].iloc[bad])
    bad = table.first_bad(frame["frame"].duplicated().to_numpy())
    if bad is not None:
        raise table.error(bad, "frame listed twice", frame["frame"].iloc[bad])
    return pd.Series(
        frame["intensity"].to_numpy(np.float32), index=frame["frame"].to_numpy(np.int64)
    )


def _subject(labels: Path, subject: str, numbers: Sequence[int], threshold: int) -> pd.DataFrame:
    """One subject's frames (union over its AU files): occurrence 0/1, NaN where a file lacks it."""
    columns = {}
    for number in numbers:
        path = labels / subject / f"{subject}_au{number}.txt"
        if not path.is_file():
            raise DatasetLayoutError(path, f"DISFA label file for AU{number} not found")
        columns[au_name(number)] = _read_au_file(path)
    intensity = pd.concat(columns, axis=1, join="outer").sort_index()
    occurs = np.where(intensity.isna(), np.nan, intensity.to_numpy() >= threshold)
    part = pd.DataFrame(occurs.astype(np.float32), columns=list(columns))
    part.insert(0, "frame", intensity.index.to_numpy(np.int64))
    part.insert(0, "subject", subject)
    return part


FRAME_CROP = CropRecipe(
    kind="square",
    box_scale=1.25,
    size=(112, 112),
    note="DISFA ships videos; the frames are extracted by the user "
    "(image_template): dmtl assumes a square of 1.25 times the face box (docs/faces.md)",
)
"""The crop dmtl assumes for frames extracted from the DISFA videos."""


@register_reader("disfa", crop=FRAME_CROP)
def read_disfa(
    root: Path,
    *,
    threshold: int = 2,
    aus: Sequence[int] = DISFA_AUS,
    image_template: str = DEFAULT_TEMPLATE,
    label_dir: str = "ActionUnit_Labels",
    val_subjects: Sequence[str] = (),
    test_subjects: Sequence[str] = (),
) -> ReaderResult:
    """Read DISFA AU occurrence (intensity >= ``threshold``) for every subject.

    ``aus`` selects AUs (a subset of the 12 coded ones). ``image_template`` maps
    a frame to its image path relative to ``root``; fields: ``{subject}``
    (``SN001``), ``{frame}`` (1-based, as in the label files) and ``{index}``
    (``frame - 1``). DISFA has no official split: subjects listed in
    ``val_subjects`` / ``test_subjects`` get that split, the others ``train``
    (no ``split`` column when both are empty).
    """
    if not 1 <= int(threshold) <= 5:
        raise DataError(f"option threshold={threshold!r} must be between 1 and 5")
    numbers = [int(a) for a in aus]
    unknown = sorted(set(numbers) - set(DISFA_AUS))
    if unknown or not numbers:
        raise DataError(f"option aus: {unknown or 'empty'}; DISFA codes AUs {list(DISFA_AUS)}")
    check_template(image_template, subject="SN001", frame=1, index=0)
    labels = find_dir(root, [label_dir], "DISFA ActionUnit_Labels folder")
    subjects = sorted(
        p.name for p in labels.iterdir() if p.is_dir() and re.fullmatch(r"SN\d+", p.name)
    )
    if not subjects:
        raise DatasetLayoutError(labels / "SN001", "no subject folders (SN###) found")
    rows = pd.concat(
        [_subject(labels, subject, numbers, threshold) for subject in subjects], ignore_index=True
    )
    missing_entries = int(rows.isna().to_numpy().sum())
    au_columns = [au_name(n) for n in numbers]
    ids = rows["subject"] + "/" + rows["frame"].map("{:05d}".format)
    images = [
        image_template.format(subject=s, frame=int(f), index=int(f) - 1)
        for s, f in zip(rows["subject"], rows["frame"], strict=True)
    ]
    manifest = au_frames_manifest(rows, ids, images, au_columns, val_subjects, test_subjects)
    notes = [
        f"{len(subjects)} subject(s); occurrence = intensity >= {threshold}",
        f"image paths follow {image_template!r}",
    ]
    dropped = {"au_frame_missing": missing_entries}
    return ReaderResult(manifest, [au_task(numbers)], root, dropped, notes)
