"""Aff-Wild2 with the ABAW challenge annotations (expressions, action units, valence-arousal).

Layout (ABAW annotation archive next to the ``cropped_aligned`` frames)::

    <root>/<annotations>/EXPR_Classification_Challenge/{Train_Set,Validation_Set}/<video>.txt
    <root>/<annotations>/AU_Detection_Challenge/{Train_Set,Validation_Set}/<video>.txt
    <root>/<annotations>/VA_Estimation_Challenge/{Train_Set,Validation_Set}/<video>.txt
    <root>/cropped_aligned/<video>/<frame:05d>.jpg
    <root>/cropped_aligned_new_50_vids/<video>/<frame:05d>.jpg    (ABAW5/6: about 50 videos)

The expression folder is also found as ``EXPR_Recognition_Challenge`` or
``EXPR_Set``, the AU folder as ``AU_Set`` and the VA folder as ``VA_Set``
(earlier ABAW editions); ``<annotations>`` is found automatically (``.``,
``annotations``, ``annotations/annotations`` or any sub-folder of the root
holding them).

Each file has one header line (expression: ``Neutral,Anger,Disgust,Fear,
Happiness,Sadness,Surprise,Other``; AU: ``AU1,AU2,...,AU26``; VA:
``valence,arousal``) and then one line per video frame: line ``k + 1`` is
frame ``k`` (1-based), image ``<video>/<k:05d>.jpg``. ``-1`` marks a frame not
annotated for expressions or AUs, ``-5`` a valence or arousal value not
annotated; valence and arousal lie in [-1, 1].
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dmtl.core.tasks import RegressionTask, Task
from dmtl.data.crops import CropRecipe
from dmtl.data.readers.base import ReaderResult, head_lines, register_reader
from dmtl.data.readers.columns import au_name, au_number, build_manifest, label_block
from dmtl.data.readers.tables import read_table
from dmtl.errors import DataError, DatasetLayoutError
from dmtl.knowledge.affect import au_task, expression_task

EXPR_DIRS = ("EXPR_Classification_Challenge", "EXPR_Recognition_Challenge", "EXPR_Set")
AU_DIRS = ("AU_Detection_Challenge", "AU_Set")
VA_DIRS = ("VA_Estimation_Challenge", "VA_Set")
SET_SPLITS = {"Train_Set": "train", "Training_Set": "train", "Validation_Set": "val"}
IMAGE_DIRS = ("cropped_aligned", "cropped_aligned_new_50_vids")
"""Frame folders of ABAW5/6 (the second holds about 50 videos added in ABAW5)."""

VA_NOT_ANNOTATED = -5.0
VA_TARGETS = ("valence", "arousal")

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

FileReader = Callable[[Path, dict[str, int]], pd.DataFrame]


def va_task() -> RegressionTask:
    """The ``va`` task: valence and arousal, each in [-1, 1]."""
    return RegressionTask("va", VA_TARGETS, low=-1.0, high=1.0)


def _annotation_root(root: Path, annotations: str | None) -> Path:
    known = (*EXPR_DIRS, *AU_DIRS, *VA_DIRS)
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


def _header(path: Path) -> list[str]:
    return [h.strip().lstrip("\ufeff") for h in head_lines(path, 1)[0].split(",")]


def _read_expr(path: Path, dropped: dict[str, int]) -> pd.DataFrame:
    names: list[str | None] = []
    for name in _header(path):
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
    header = _header(path)
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
    return _keep_annotated(values, values == -1, columns, "au", dropped)


def _read_va(path: Path, dropped: dict[str, int]) -> pd.DataFrame:
    header = [name.lower() for name in _header(path)]
    if sorted(header) != sorted(VA_TARGETS):
        raise DatasetLayoutError(
            path, "expected the header 'valence,arousal'", line=1, value=",".join(header)
        )
    table = read_table(path, header, sep=",", skiprows=1, blank_lines="error")
    text = table.frame[list(VA_TARGETS)]
    values = text.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    row = table.first_bad(np.isnan(values).any(axis=1))
    if row is not None:
        raise table.error(row, "expected two numbers (valence, arousal)", ",".join(text.iloc[row]))
    missing = values == VA_NOT_ANNOTATED
    row = table.first_bad((~missing & ((values < -1.0) | (values > 1.0))).any(axis=1))
    if row is not None:
        raise table.error(
            row, "valence and arousal must lie in [-1, 1] (-5: not annotated)",
            ",".join(text.iloc[row]),
        )
    return _keep_annotated(values, missing, list(VA_TARGETS), "va", dropped)


def _keep_annotated(
    values: np.ndarray, missing: np.ndarray, columns: list[str], task: str, dropped: dict[str, int]
) -> pd.DataFrame:
    """Frames with at least one annotated value; the others' count goes to ``dropped``."""
    unannotated = missing.all(axis=1)
    dropped[f"{task}_unannotated"] += int(unannotated.sum())
    dropped[f"{task}_partially_unannotated"] += int((missing.any(axis=1) & ~unannotated).sum())
    kept = np.where(missing, np.nan, values)[~unannotated].astype(np.float32)
    out = pd.DataFrame(kept, columns=columns)
    out.insert(0, "frame", np.arange(1, len(values) + 1)[~unannotated])
    return out


def _collect(
    challenge: Path, sets: Sequence[str] | None, read: FileReader, dropped: dict[str, int]
) -> pd.DataFrame:
    parts = []
    for folder, split in _set_dirs(challenge, sets):
        for path in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix == ".txt"):
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


TASKS: dict[str, tuple[tuple[str, ...], FileReader, str, tuple[str, ...]]] = {
    "expression": (EXPR_DIRS, _read_expr, "expression", ("unannotated", "other")),
    "au": (AU_DIRS, _read_au, "AU", ("unannotated", "partially_unannotated")),
    "va": (VA_DIRS, _read_va, "valence-arousal", ("unannotated", "partially_unannotated")),
}
"""Task -> (challenge folders, file reader, name in errors, its ``dropped`` reasons)."""


def _join(frames: dict[str, pd.DataFrame], notes: list[str]) -> pd.DataFrame:
    """One row per annotated frame; a frame in two sets (for two tasks) gets the held-out one."""
    rows: pd.DataFrame | None = None
    for task, frame in frames.items():
        frame = frame.rename(columns={"split": f"split:{task}"})
        rows = frame if rows is None else rows.merge(frame, on=["video", "frame"], how="outer")
    assert rows is not None
    splits = rows[[f"split:{task}" for task in frames]]
    ranks = splits.apply(lambda column: column.map(_SPLIT_RANK))
    conflict = int((ranks.nunique(axis=1) > 1).sum())
    if conflict:
        notes.append(
            f"{conflict} co-annotated frame(s) are in different sets for two tasks; "
            "they were given the held-out split"
        )
    rows["split"] = ranks.max(axis=1).map({v: k for k, v in _SPLIT_RANK.items()})
    if len(frames) > 1:
        both = int((splits.notna().sum(axis=1) > 1).sum())
        notes.append(f"{both} frame(s) are annotated for more than one task")
    rows = rows.drop(columns=list(splits.columns))
    return rows.sort_values(["video", "frame"], kind="stable").reset_index(drop=True)


def _frame_folders(
    root: Path, image_dir: str | Sequence[str], videos: pd.Series, notes: list[str]
) -> pd.Series:
    """Each row's frame folder + ``/``: the first of ``image_dir`` with a folder for its video.

    Each candidate folder is listed once (no per-image check). A video found in
    none of them is given the first, and counted in the notes.
    """
    dirs = [image_dir] if isinstance(image_dir, str) else list(image_dir)
    dirs = [d.strip("/") for d in dirs]
    if not dirs:
        raise DataError("option image_dir: give at least one frame folder")
    unplaced = set(videos.unique())
    folder: dict[str, str] = {}
    for name in dirs:
        if not (root / name).is_dir():
            continue
        with os.scandir(root / name) as entries:
            found = {entry.name for entry in entries if entry.is_dir()} & unplaced
        folder.update(dict.fromkeys(found, name))
        unplaced -= found
    if unplaced:
        notes.append(
            f"{len(unplaced)} video(s) have no frame folder under {', '.join(dirs)}; "
            f"their image paths point into {dirs[0]}"
        )
    used = pd.Series(list(folder.values()), dtype=object).value_counts()
    if len(dirs) > 1 and len(used):
        notes.append("frame folders: " + ", ".join(f"{k} ({v} video(s))" for k, v in used.items()))
    folder.update(dict.fromkeys(unplaced, dirs[0]))
    return videos.map({video: f"{name}/" if name else "" for video, name in folder.items()})


CROPPED_ALIGNED = CropRecipe(
    kind="eye_aligned",
    size=(112, 112),
    left_eye=(0.342, 0.462),
    right_eye=(0.657, 0.460),
    note="Aff-Wild2 cropped_aligned (ABAW): 112 x 112 frames aligned on the eyes",
)
"""How the ABAW ``cropped_aligned`` frames of Aff-Wild2 were cut from the videos."""


@register_reader("affwild2", crop=CROPPED_ALIGNED)
def read_affwild2(
    root: Path,
    *,
    tasks: Sequence[str] = ("expression", "au"),
    sets: Sequence[str] | None = None,
    annotations: str | None = None,
    image_dir: str | Sequence[str] = IMAGE_DIRS,
) -> ReaderResult:
    """Read Aff-Wild2's ABAW expression, AU and valence-arousal annotations, frames joined.

    ``tasks`` chooses among ``expression``, ``au`` and ``va`` (valence-arousal,
    a regression task; not read unless asked). ``sets`` the ABAW set folders to
    read (default: all present; ``Train_Set``/``Training_Set`` -> train,
    ``Validation_Set`` -> val; the test set has no labels). ``annotations`` is
    the folder holding the challenge folders (found automatically when
    ``None``); ``image_dir`` the frame folder or folders (each video's frames
    are looked up in them, in order).
    """
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown or not tasks:
        raise DataError(f"option tasks={list(tasks)!r}: choose from {', '.join(map(repr, TASKS))}")
    base = _annotation_root(root, annotations)
    notes = [f"annotations read from {base.relative_to(root).as_posix() or '.'}"]
    dropped: dict[str, int] = {}
    frames: dict[str, pd.DataFrame] = {}
    for name in (t for t in TASKS if t in tasks):
        dirs, read, what, reasons = TASKS[name]
        challenge = next((base / d for d in dirs if (base / d).is_dir()), base / dirs[0])
        if not challenge.is_dir():
            raise DatasetLayoutError(challenge, f"{what} annotation folder not found")
        dropped.update({f"{name}_{reason}": 0 for reason in reasons})
        frames[name] = _collect(challenge, sets, read, dropped)
    return _result(root, frames, image_dir, dropped, notes)


def _result(
    root: Path,
    frames: dict[str, pd.DataFrame],
    image_dir: str | Sequence[str],
    dropped: dict[str, int],
    notes: list[str],
) -> ReaderResult:
    """The manifest of the joined frames, with the tasks in ``TASKS`` order."""
    task_list: list[Task] = []
    blocks = []
    if "au" in frames:
        aus = sorted({au_number(c) or 0 for c in frames["au"].columns if c.startswith("AU")})
        frames["au"] = frames["au"][["video", "split", "frame", *(au_name(n) for n in aus)]]
    rows = _join(frames, notes)
    for name in frames:
        if name == "expression":
            task_list.append(expression_task(False))
            continue
        task = au_task(aus) if name == "au" else va_task()
        task_list.append(task)
        blocks.append(label_block(name, task.names, rows[list(task.names)].to_numpy(np.float32)))
    ids = rows["video"] + "/" + rows["frame"].astype(np.int64).map("{:05d}".format)
    prefix = _frame_folders(root, image_dir, rows["video"], notes)
    manifest = build_manifest(
        ids.to_numpy(dtype=object),
        prefix.to_numpy(dtype=object) + ids.to_numpy(dtype=object) + ".jpg",
        split=rows["split"].to_numpy(dtype=object),
        categorical={"expression": rows["expression"]} if "expression" in frames else {},
        blocks=blocks,
    )
    return ReaderResult(manifest, task_list, root, dropped, notes)
