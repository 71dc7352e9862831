"""RAF-DB, basic emotion subset.

Official layout (``basic`` folder of the RAF-DB release)::

    <root>/EmoLabel/list_patition_label.txt      ("patition" sic; or <root>/basic/EmoLabel/...)
    <root>/Image/aligned/<stem>_aligned.jpg
    <root>/Image/original/<name>

Each line of the list is ``<name> <label>``, e.g. ``train_00001.jpg 5``, with
RAF-DB's own label order 1 Surprise, 2 Fear, 3 Disgust, 4 Happiness,
5 Sadness, 6 Anger, 7 Neutral. The ``train_``/``test_`` prefix of the name
gives the split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dmtl.data.crops import CropRecipe
from dmtl.data.readers.base import ReaderResult, check_choice, find_file, register_reader
from dmtl.data.readers.columns import build_manifest
from dmtl.data.readers.tables import read_table
from dmtl.knowledge.affect import expression_task

LABELS: dict[int, str] = {
    1: "surprise",
    2: "fear",
    3: "disgust",
    4: "happiness",
    5: "sadness",
    6: "anger",
    7: "neutral",
}
"""RAF-DB basic label -> dmtl expression name (mapped by name, not by position)."""

LIST = "EmoLabel/list_patition_label.txt"


ALIGNED_CROP = CropRecipe(
    kind="eye_aligned",
    size=(100, 100),
    left_eye=(0.33, 0.42),
    right_eye=(0.67, 0.42),
    note="RAF-DB Image/aligned: 100 x 100, a similarity transform on the facial landmarks",
)
"""How RAF-DB's ``Image/aligned`` faces were cut (``Image/original`` are whole photos)."""


def _crop(options: dict[str, object]) -> CropRecipe | None:
    return ALIGNED_CROP if options.get("aligned", True) else None


@register_reader("rafdb", crop=_crop)
def read_rafdb(
    root: Path,
    *,
    aligned: bool = True,
    test_split: str = "test",
) -> ReaderResult:
    """Read RAF-DB basic.

    ``aligned`` picks ``Image/aligned/<stem>_aligned.jpg`` (default) or
    ``Image/original/<name>``. ``test_split`` is the split given to the
    ``test_`` images (``"test"`` or ``"val"``).
    """
    check_choice("test_split", test_split, ("val", "test"))
    path = find_file(root, [LIST, f"basic/{LIST}"], "RAF-DB label list")
    base = path.parent.parent.relative_to(root).as_posix()
    prefix = "" if base == "." else f"{base}/"
    table = read_table(path, ("name", "label"), ints=("label",))
    table.check_codes("label", LABELS, "RAF-DB expression label")
    frame = table.frame
    names = frame["name"].astype(str)
    is_train = names.str.startswith("train_").to_numpy()
    is_test = names.str.startswith("test_").to_numpy()
    bad = table.first_bad(~(is_train | is_test))
    if bad is not None:
        raise table.error(bad, "image name must start with 'train_' or 'test_'", names.iloc[bad])
    duplicated = table.first_bad(names.duplicated().to_numpy())
    if duplicated is not None:
        raise table.error(duplicated, "image listed twice", names.iloc[duplicated])
    if aligned:
        stems = names.str.replace(r"\.[^.]*$", "", regex=True)
        images = prefix + "Image/aligned/" + stems + "_aligned.jpg"
    else:
        images = prefix + "Image/original/" + names
    split = np.where(is_train, "train", test_split)
    manifest = build_manifest(
        names.to_numpy(dtype=object),
        pd.Series(images).to_numpy(dtype=object),
        split=split,
        categorical={"expression": frame["label"].map(LABELS).to_numpy(dtype=object)},
    )
    notes = [f"labels read from {path.relative_to(root).as_posix()}"]
    return ReaderResult(manifest, [expression_task(False)], root, {}, notes)
