"""EmotioNet: action-unit occurrence of face photos from the web (Benitez-Quiroz et al. 2016).

EmotioNet is distributed as lists of image URLs with AU labels; the photos are
downloaded by the user. Two official annotation files are read:

- ``manual`` (default): the manually FACS-coded set, ``EmotioNet_FACS_aws_2020_24600.csv``
  (any ``EmotioNet_FACS*.csv`` in the root). A header line ``URL,URL orig,'AU 1','AU 2',
  ...`` (AU names quoted and spaced as distributed), then one line per image: its URL
  (quoted ``'...'``), the original URL, and per AU ``1`` (present), ``0`` (absent) or
  ``999`` (not annotated).
- ``automatic``: the automatically annotated lists ``dataFile_*.txt`` (tab-separated, no
  header): URL, original URL, then AU 1 to AU 60, each ``1``, ``0`` or ``999``.

Layout::

    <root>/EmotioNet_FACS_aws_2020_24600.csv     (manual; or <root>/dataFile_0001.txt, ...)
    <root>/images/<file name of the URL>         (where the photos were saved; image_template)

``999`` is read as missing. Images with none of the chosen AUs annotated are dropped.
There is no official split; use the config's ``val_fraction`` or a manifest. The
photos are whole web photos: a face detector must cut the faces
(``dmtl predict --faces`` does, as the crop recipe below says).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from dmtl.data.crops import CropRecipe
from dmtl.data.readers.base import ReaderResult, check_choice, head_lines, register_reader
from dmtl.data.readers.columns import au_name, au_number, build_manifest, label_block
from dmtl.data.readers.tables import read_table
from dmtl.errors import DataError, DatasetLayoutError
from dmtl.knowledge.affect import au_task

NOT_ANNOTATED = 999
MANUAL_GLOB = "EmotioNet_FACS*.csv"
AUTOMATIC_GLOB = "dataFile_*.txt"
AUTOMATIC_AUS = 60
"""The automatically annotated lists give AU 1 to AU 60, in that order."""
DEFAULT_TEMPLATE = "images/{name}"

WEB_PHOTO_CROP = CropRecipe(
    kind="square",
    box_scale=1.25,
    size=(224, 224),
    note="EmotioNet: whole web photos; dmtl cuts the detected face as a square of 1.25 "
    "times its box (docs/faces.md)",
)
"""How dmtl cuts the faces of EmotioNet's web photos (the dataset ships no crops)."""


def _unquote(text: str) -> str:
    return text.strip().strip("'\"").strip()


def _read_manual(path: Path, aus: Sequence[int] | None) -> tuple[pd.DataFrame, list[int]]:
    """URL column and AU columns (``AU<n>``, values 0/1/999) of the manual FACS file."""
    header = [_unquote(h).lstrip("\ufeff") for h in head_lines(path, 1)[0].split(",")]
    if len(header) < 3 or header[0].upper() != "URL":
        raise DatasetLayoutError(
            path, "expected a header 'URL,URL orig,'AU 1',...'", line=1, value=",".join(header)
        )
    numbers = []
    for position, name in enumerate(header[2:], start=3):
        number = au_number(name)
        if number is None:
            raise DatasetLayoutError(
                path, f"header field {position} should be an AU name", line=1, value=name
            )
        numbers.append(number)
    if len(set(numbers)) != len(numbers):
        raise DatasetLayoutError(path, "duplicated AU in header", line=1)
    columns = ["url", "orig", *[au_name(n) for n in numbers]]
    return _chosen(path, columns, numbers, aus, ",", skiprows=1)


def _chosen(
    path: Path, columns: list[str], numbers: list[int], aus: Sequence[int] | None, sep: str,
    skiprows: int,
) -> tuple[pd.DataFrame, list[int]]:
    chosen = numbers if aus is None else [int(a) for a in aus]
    missing = [au_name(n) for n in chosen if n not in numbers]
    if missing:
        raise DatasetLayoutError(path, f"no column for {', '.join(missing)}", line=1)
    wanted = [au_name(n) for n in chosen]
    table = read_table(path, columns, sep=sep, skiprows=skiprows, ints=wanted,
                       usecols=["url", *wanted])
    values = table.frame[wanted].to_numpy(np.int64)
    bad = table.first_bad(~np.isin(values, (0, 1, NOT_ANNOTATED)).all(axis=1))
    if bad is not None:
        odd = next(v for v in values[bad] if v not in (0, 1, NOT_ANNOTATED))
        raise table.error(bad, "AU occurrence must be 0, 1 or 999", int(odd))
    out = pd.DataFrame(
        np.where(values == NOT_ANNOTATED, np.nan, values).astype(np.float32), columns=wanted
    )
    out.insert(0, "url", table.frame["url"].astype(str).map(_unquote).to_numpy())
    out.insert(0, "line", table.lines)
    out.insert(0, "file", path.name)
    return out, chosen


def _read_automatic(path: Path, aus: Sequence[int] | None) -> tuple[pd.DataFrame, list[int]]:
    numbers = list(range(1, AUTOMATIC_AUS + 1))
    columns = ["url", "orig", *[au_name(n) for n in numbers]]
    return _chosen(path, columns, numbers, aus, "\t", skiprows=0)


def _image_name(url: str) -> tuple[str, str]:
    """The file name and the folder name of a URL's path."""
    path = PurePosixPath(re.sub(r"^[a-z]+://[^/]*", "", url.split("?")[0]))
    return path.name, path.parent.name


@register_reader("emotionet", crop=WEB_PHOTO_CROP)
def read_emotionet(
    root: Path,
    *,
    annotations: str = "manual",
    aus: Sequence[int] | None = None,
    image_template: str = DEFAULT_TEMPLATE,
) -> ReaderResult:
    """Read EmotioNet AU occurrence (999 = not annotated -> missing).

    ``annotations``: ``manual`` (``EmotioNet_FACS*.csv``) or ``automatic``
    (``dataFile_*.txt``). ``aus``: the AUs to read (default: every AU of the file).
    ``image_template`` maps an image to its path under the root, fields ``{name}`` (the
    URL's file name) and ``{folder}`` (the folder above it in the URL).
    """
    check_choice("annotations", annotations, ("manual", "automatic"))
    if aus is not None and (not aus or len(set(aus)) != len(aus)):
        raise DataError(f"option aus={list(aus)!r} must be a non-empty list without repeats")
    pattern = MANUAL_GLOB if annotations == "manual" else AUTOMATIC_GLOB
    files = sorted(root.glob(pattern))
    if not files:
        example = "EmotioNet_FACS_aws_2020_24600.csv" if annotations == "manual" else (
            "dataFile_0001.txt")
        raise DatasetLayoutError(root / example, f"EmotioNet {annotations} annotations not found")
    read = _read_manual if annotations == "manual" else _read_automatic
    parts = [read(path, aus) for path in files]
    numbers = parts[0][1]
    if any(p[1] != numbers for p in parts):
        raise DataError(f"{root}: the EmotioNet files list different AUs; choose them with aus")
    rows = pd.concat([p[0] for p in parts], ignore_index=True)
    return _result(root, rows, numbers, image_template, len(files))


def _result(
    root: Path, rows: pd.DataFrame, numbers: list[int], template: str, files: int
) -> ReaderResult:
    columns = [au_name(n) for n in numbers]
    annotated = rows[columns].notna().any(axis=1)
    dropped = {
        "images_not_annotated": int((~annotated).sum()),
        "au_not_annotated": int(rows.loc[annotated, columns].isna().to_numpy().sum()),
    }
    rows = rows.loc[annotated].reset_index(drop=True)
    names = [_image_name(url) for url in rows["url"]]
    ids = pd.Series([name for name, _ in names], dtype=object)
    duplicated = ids.duplicated().to_numpy()
    if duplicated.any():
        first = int(np.flatnonzero(duplicated)[0])
        raise DatasetLayoutError(
            root / str(rows["file"].iloc[first]), "image listed twice",
            line=int(rows["line"].iloc[first]), value=ids.iloc[first],
        )
    try:
        images = [template.format(name=name, folder=folder) for name, folder in names]
    except (KeyError, IndexError, ValueError) as error:
        raise DataError(
            f"image_template {template!r} is invalid ({error}); fields: {{name}}, {{folder}}"
        ) from None
    manifest = build_manifest(
        ids.to_numpy(), images, blocks=[label_block("au", columns, rows[columns].to_numpy())]
    )
    notes = [f"{files} annotation file(s)", f"image paths follow {template!r}"]
    return ReaderResult(manifest, [au_task(numbers)], root, dropped, notes)
