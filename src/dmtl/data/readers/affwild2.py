"""Aff-Wild2 with the ABAW challenge annotations (expressions and action units).

Layout (ABAW annotation archive next to the ``cropped_aligned`` frames)::

    <root>/<annotations>/EXPR_Classification_Challenge/Train_Set/<video>.txt
    <root>/<annotations>/EXPR_Classification_Challenge/Validation_Set/<video>.txt
    <root>/<annotations>/AU_Detection_Challenge/Train_Set/<video>.txt
    <root>/<annotations>/AU_Detection_Challenge/Validation_Set/<video>.txt
    <root>/cropped_aligned/<video>/<frame:05d>.jpg

The expression folder is also found as ``EXPR_Recognition_Challenge`` or
``EXPR_Set`` and the AU folder as ``AU_Set`` (earlier ABAW editions);
``<annotations>`` is found automatically (``.``, ``annotations``,
``annotations/annotations`` or any sub-folder of the root holding them).

Each file has one header line (expression: ``Neutral,Anger,Disgust,Fear,
Happiness,Sadness,Surprise,Other``; AU: ``AU1,AU2,...,AU26``) and then one
line per video frame: line ``k + 1`` is frame ``k`` (1-based), image
``<video>/<k:05d>.jpg``. ``-1`` marks a frame not annotated for the task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dmtl.core.tasks import Task
from dmtl.data.readers.base import (
    ReaderResult,
    au_name,
    au_number,
    au_task,
    binary_block,
    build_manifest,
    expression_task,
    head_lines,
    read_table,
    register_reader,
)
from dmtl.errors import DataError, DatasetLayoutError

EXPR_DIRS = ("EXPR_Classification_Challenge", "EXPR_Recognition_Challenge", "EXPR_Set")
AU_DIRS = ("AU_Detection_Challenge", "AU_Set")
SET_SPLITS = {"Train_Set": "train", "Training_Set": "train", "Validation_Set": "val"}

EXPR_NAMES: dict[str, str | None] = {
    "neutral": "neutral",
    "anger": "anger",
    "angry": "anger",
    "disgust": "disgust",
    "fear": "fear",
    "happiness": "happiness",
    "happy": "happiness",
    "sadness": "sadness",
    "sad": "sadness",
    "surprise": "surprise",
    "other": None,
}
"""Header name (lower case) -> dmtl expression; ``None`` = dropped ('Other')."""

_SPLIT_RANK = {"train": 0, "val": 1, "test": 2}


def _annotation_root(root: Path, annotations: str | None) -> Path:
    known = (*EXPR_DIRS, *AU_DIRS)
    if annotations is not None:
        base = root / annotations
        if not base.is_dir():
            raise DatasetLayoutError(base, "Aff-Wild2 annotation folder not found")
        return base
    candidates = [root, root / "annotations", root / "annotations" / "annotations"]
    candidates += sorted(p for p in root.iterdir() if p.is_dir())
    for base in candidates:
        if any((base / name).is_dir() for name in known):
            return base
    raise DatasetLayoutError(
        root / "annotations" / EXPR_DIRS[0],
        f"no ABAW annotation folder ({', '.join(known)}) found under the root or its sub-folders",
    )


def _set_dirs(challenge: Path, sets: Sequence[str] | None) -> list[tuple[Path, str]]:
    out = []
    if sets is None:
        sets = [name for name in SET_SPLITS if (challenge / name).is_dir()]
        if not sets:
            raise DatasetLayoutError(
                challenge / "Train_Set", "no annotation set folder (Train_Set, Validation_Set)"
            )
    for name in sets:
        if name not in SET_SPLITS:
            raise DataError(f"unknown ABAW set {name!r}; expected one of {', '.join(SET_SPLITS)}")
        if (challenge / name).is_dir():
            out.append((challenge / name, SET_SPLITS[name]))
    if not out:
        first = sets[0] if sets else "Train_Set"
        raise DatasetLayoutError(challenge / first, "annotation set folder not found")
    return out


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix == ".txt")


def _read_expr(path: Path, dropped: dict[str, int]) -> pd.DataFrame:
    header = [h.strip().lstrip("\ufeff") for h in head_lines(path, 1)[0].split(",")]
    names: list[str | None] = []
    for name in header:
        if name.lower() not in EXPR_NAMES:
            raise DatasetLayoutError(path, "unknown expression name in header", line=1, value=name)
        names.append(EXPR_NAMES[name.lower()])
    table = read_table(path, ("label",), sep=",", skiprows=1, ints=("label",), blank_lines="error")
    table.check_codes("label", range(-1, len(names)), "expression label")
    codes = table.frame["label"].to_numpy(dtype=np.int64)
    frames = np.arange(1, len(codes) + 1)
    dropped["expression_unannotated"] += int((codes == -1).sum())
    lookup = np.array([*names, None], dtype=object)  # index -1 -> None
    labels = lookup[codes]
    other = np.array([n is None for n in names] + [False])[codes]
    dropped["expression_other"] += int(other.sum())
    keep = pd.notna(labels)
    return pd.DataFrame({"frame": frames[keep], "expression": labels[keep]})


def _read_au(path: Path, dropped: dict[str, int]) -> pd.DataFrame:
    header = [h.strip().lstrip("\ufeff") for h in head_lines(path, 1)[0].split(",")]
    numbers = []
    for name in header:
        number = au_number(name)
        if number is None:
            raise DatasetLayoutError(path, "expected AU names in the header", line=1, value=name)
        numbers.append(number)
    if len(set(numbers)) != len(numbers):
        raise DatasetLayoutError(path, "duplicated AU in header", line=1, value=",".join(header))
    columns = [au_name(n) for n in numbers]
    table = read_table(path, columns, sep=",", skiprows=1, ints=columns, blank_lines="error")
    values = table.frame[columns].to_numpy(dtype=np.int64)
    bad = table.first_bad(~np.isin(values, (-1, 0, 1)).all(axis=1))
    if bad is not None:
        row = values[bad]
        raise table.error(bad, "AU values must be -1, 0 or 1", ",".join(map(str, row)))
    unannotated = (values == -1).all(axis=1)
    dropped["au_unannotated"] += int(unannotated.sum())
    dropped["au_partially_unannotated"] += int(((values == -1).any(axis=1) & ~unannotated).sum())
    frames = np.arange(1, len(values) + 1)[~unannotated]
    out = pd.DataFrame(
        np.where(values[~unannotated] == -1, np.nan, values[~unannotated]).astype(np.float32),
        columns=columns,
    )
    out.insert(0, "frame", frames)
    return out


def _collect(
    challenge: Path,
    sets: Sequence[str] | None,
    read: Callable[[Path, dict[str, int]], pd.DataFrame],
    dropped: dict[str, int],
) -> pd.DataFrame:
    parts = []
    for folder, split in _set_dirs(challenge, sets):
        for path in _files(folder):
            part = read(path, dropped)
            part.insert(0, "video", path.stem)
            part.insert(1, "split", split)
            parts.append(part)
    if not parts:
        raise DatasetLayoutError(challenge, "no annotation files (*.txt) found")
    frame = pd.concat(parts, ignore_index=True)
    duplicated = frame.duplicated(["video", "frame"])
    if bool(duplicated.any()):
        video = frame.loc[duplicated, "video"].iloc[0]
        raise DatasetLayoutError(challenge, "video annotated in two sets", value=video)
    return frame


@register_reader("affwild2")
def read_affwild2(
    root: Path,
    *,
    tasks: Sequence[str] = ("expression", "au"),
    sets: Sequence[str] | None = None,
    annotations: str | None = None,
    image_dir: str = "cropped_aligned",
) -> ReaderResult:
    """Read Aff-Wild2's ABAW expression and AU annotations; co-annotated frames are joined.

    ``tasks`` chooses ``expression`` and/or ``au``; ``sets`` the ABAW set
    folders to read (default: all present; ``Train_Set``/``Training_Set`` ->
    train, ``Validation_Set`` -> val; the test set has no labels).
    ``annotations`` is the folder holding the challenge folders (found
    automatically when ``None``); ``image_dir`` the frames folder.
    """
    unknown = sorted(set(tasks) - {"expression", "au"})
    if unknown or not tasks:
        raise DataError(f"option tasks={list(tasks)!r}: choose from 'expression', 'au'")
    base = _annotation_root(root, annotations)
    dropped = {"expression_unannotated": 0, "expression_other": 0}
    dropped.update({"au_unannotated": 0, "au_partially_unannotated": 0})
    notes = [f"annotations read from {base.relative_to(root).as_posix() or '.'}"]
    task_list: list[Task] = []
    frames: list[pd.DataFrame] = []
    if "expression" in tasks:
        challenge = next((base / d for d in EXPR_DIRS if (base / d).is_dir()), base / EXPR_DIRS[0])
        if not challenge.is_dir():
            raise DatasetLayoutError(challenge, "expression annotation folder not found")
        frames.append(_collect(challenge, sets, _read_expr, dropped))
        task_list.append(expression_task(False))
    au_columns: list[str] = []
    if "au" in tasks:
        challenge = next((base / d for d in AU_DIRS if (base / d).is_dir()), base / AU_DIRS[0])
        if not challenge.is_dir():
            raise DatasetLayoutError(challenge, "AU annotation folder not found")
        au = _collect(challenge, sets, _read_au, dropped)
        numbers = sorted({au_number(c) or 0 for c in au.columns if c.startswith("AU")})
        au_columns = [au_name(n) for n in numbers]
        frames.append(au[["video", "split", "frame", *au_columns]])
        task_list.append(au_task(numbers))
    rows = frames[0]
    if len(frames) == 2:
        rows = frames[0].merge(frames[1], on=["video", "frame"], how="outer", suffixes=("", "_au"))
        both = rows["split"].notna() & rows["split_au"].notna()
        conflict = both & (rows["split"] != rows["split_au"])
        if bool(conflict.any()):
            notes.append(
                f"{int(conflict.sum())} co-annotated frame(s) are in different sets for the two "
                "tasks; they were given the held-out split"
            )
        rank = rows[["split", "split_au"]].apply(lambda c: c.map(_SPLIT_RANK)).max(axis=1)
        inverse = {v: k for k, v in _SPLIT_RANK.items()}
        rows["split"] = rank.map(inverse)
        rows = rows.drop(columns=["split_au"])
        co = int(both.sum())
        notes.append(f"{co} frame(s) are annotated for both expression and AUs")
    rows = rows.sort_values(["video", "frame"], kind="stable").reset_index(drop=True)
    frame_names = rows["frame"].astype(np.int64).map("{:05d}".format)
    ids = rows["video"] + "/" + frame_names
    prefix = f"{image_dir.strip('/')}/" if image_dir else ""
    categorical = {"expression": rows["expression"]} if "expression" in tasks else {}
    binary = []
    if au_columns:
        binary.append(binary_block("au", au_columns, rows[au_columns].to_numpy(np.float32)))
    manifest = build_manifest(
        ids.to_numpy(dtype=object),
        (prefix + ids + ".jpg").to_numpy(dtype=object),
        split=rows["split"].to_numpy(dtype=object),
        categorical=categorical,
        binary=binary,
    )
    return ReaderResult(manifest, task_list, root, dropped, notes)
