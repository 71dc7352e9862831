"""scikit-learn digits: 1,797 8x8 handwritten digits with three tasks (bundled, no download).

Inputs: float32 ``(1797, 1, 8, 8)``, pixel / 16 rounded to the 8-bit grid
(``round(255 k/16)/255``), in [0, 1].

Tasks
-----
``digit`` (categorical): the classes ``"0"`` .. ``"9"``.

``shape`` (binary set, one fixed 0/1 row per digit; the knowledge edge
``digit -> shape`` is this table):

- ``even``: the digit is even.
- ``at_least_5``: the digit is 5 or more.
- ``prime``: the digit is prime (2, 3, 5, 7).
- ``loop_top``: the usual glyph has a closed *curved* loop (a bowl) whose
  enclosed counter reaches into the top half: 0 (one loop over the full
  height), 8, 9. The closed triangle some people draw in a 4 is straight,
  not a bowl, so it does not count.
- ``loop_bottom``: likewise in the bottom half: 0, 6, 8.
- ``straight_only``: the glyph is drawn with straight strokes only: 1, 4, 7.
  (Chosen over "has a vertical stroke", for which 5's short upright and 7's
  slanted stem are ambiguous.)

===== ==== ========== ===== ======== =========== =============
digit even at_least_5 prime loop_top loop_bottom straight_only
===== ==== ========== ===== ======== =========== =============
0     1    0          0     1        1           0
1     0    0          0     0        0           1
2     1    0          1     0        0           0
3     0    0          1     0        0           0
4     1    0          0     0        0           1
5     0    1          1     0        0           0
6     1    1          0     0        1           0
7     0    1          1     0        0           1
8     1    1          0     1        1           0
9     0    1          0     1        0           0
===== ==== ========== ===== ======== =========== =============

Every row is different, so the digit can be read back from its shape.

``ink`` (binary set, measured on each image; no knowledge edge, relate it
from co-annotated data). With pixel weights ``w`` (pixel / 16), column ``x``
and row ``y`` (downwards), ink mass ``m = sum w``, centroid
``(x̄, ȳ) = sum w (x, y) / m`` and central moments
``mu_pq = sum w (x - x̄)^p (y - ȳ)^q / m``:

- ``heavy``: ``m`` above the median of ``m`` over all 1,797 images.
- ``slanted``: ``|s|`` above its median over all 1,797 images, where the slant
  ``s = -mu_11 / mu_02`` is the horizontal shift per row going up (> 0: leans
  right), the quantity deskewing removes.
- ``wide``: ``sqrt(mu_20 / mu_02)`` (horizontal over vertical spread) above its
  median over all 1,797 images.

Each ``ink`` attribute takes both values within every digit class.

``measures`` (regression, only with ``load_digits(measures=True)``, in a config
``options: {measures: true}``): the three ink measures themselves, ``mass``, ``slant``
``s`` and ``spread`` ``sqrt(mu_20 / mu_02)``, each z-scored over all 1,797 images.

Split: a fixed stratified split, 1,437 train / 360 test: per class, the test
share is ``360 * n_c / 1797`` rounded by largest remainder (ties to the lower
class), and the class's samples are shuffled by ``numpy.random.default_rng(0)``
(one generator, classes in order) and the first ones go to test.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import numpy as np

from dmtl.core.relatedness import Relatedness
from dmtl.core.tasks import BinarySetTask, CategoricalTask, RegressionTask
from dmtl.data.builtin import BuiltinDataset, per_class_labels

DIGIT = CategoricalTask("digit", [str(d) for d in range(10)])
SHAPE_LABELS = ("even", "at_least_5", "prime", "loop_top", "loop_bottom", "straight_only")
SHAPE = BinarySetTask("shape", SHAPE_LABELS)
INK = BinarySetTask("ink", ("heavy", "slanted", "wide"))
MEASURES = RegressionTask("measures", ("mass", "slant", "spread"))
"""Optional regression task (``load_digits(measures=True)``): the ink measures, z-scored."""

SHAPE_TABLE = np.array(
    [
        # even  >=5  prime  loop_top  loop_bottom  straight_only
        [1, 0, 0, 1, 1, 0],  # 0
        [0, 0, 0, 0, 0, 1],  # 1
        [1, 0, 1, 0, 0, 0],  # 2
        [0, 0, 1, 0, 0, 0],  # 3
        [1, 0, 0, 0, 0, 1],  # 4
        [0, 1, 1, 0, 0, 0],  # 5
        [1, 1, 0, 0, 1, 0],  # 6
        [0, 1, 1, 0, 0, 1],  # 7
        [1, 1, 0, 1, 1, 0],  # 8
        [0, 1, 0, 1, 0, 0],  # 9
    ],
    dtype=np.float32,
)
"""``digit -> shape`` knowledge table (rows: digits 0..9; columns: :data:`SHAPE_LABELS`)."""

NUM_TEST = 360
SPLIT_SEED = 0


def ink_measures(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image ink mass, slant ``-mu_11/mu_02`` and spread ratio ``sqrt(mu_20/mu_02)``.

    ``images``: ``(N, H, W)`` non-negative weights. Returns float64 arrays ``(N,)``.
    """
    w = np.asarray(images, dtype=np.float64)
    h, wd = w.shape[-2:]
    ys, xs = np.mgrid[0:h, 0:wd].astype(np.float64)
    mass = w.sum(axis=(-2, -1))
    safe = np.where(mass > 0, mass, 1.0)
    cx = (w * xs).sum(axis=(-2, -1)) / safe
    cy = (w * ys).sum(axis=(-2, -1)) / safe
    dx = xs - cx[:, None, None]
    dy = ys - cy[:, None, None]
    mu11 = (w * dx * dy).sum(axis=(-2, -1)) / safe
    mu02 = (w * dy * dy).sum(axis=(-2, -1)) / safe
    mu20 = (w * dx * dx).sum(axis=(-2, -1)) / safe
    ok = mu02 > 0
    slant = np.where(ok, -mu11 / np.where(ok, mu02, 1.0), 0.0)
    spread = np.where(ok, np.sqrt(mu20 / np.where(ok, mu02, 1.0)), 0.0)
    return {"mass": mass, "slant": slant, "spread": spread}


def ink_labels(images: np.ndarray) -> np.ndarray:
    """The ``ink`` task's labels (``heavy, slanted, wide``): float32 ``(N, 3)``, see module doc."""
    m = ink_measures(images)
    columns = [m["mass"], np.abs(m["slant"]), m["spread"]]
    return np.stack([c > np.median(c) for c in columns], axis=1).astype(np.float32)


def stratified_split(classes: np.ndarray, num_test: int, seed: int) -> np.ndarray:
    """``"train"``/``"test"`` per sample with ``num_test`` test samples, stratified by class."""
    classes = np.asarray(classes)
    present, counts = np.unique(classes, return_counts=True)
    quotas = num_test * counts / counts.sum()
    parts = np.floor(quotas).astype(np.int64)
    order = np.argsort(-(quotas - parts), kind="stable")
    parts[order[: num_test - int(parts.sum())]] += 1
    rng = np.random.default_rng(seed)
    split = np.full(len(classes), "train", dtype="<U5")
    for c, k in zip(present, parts, strict=True):
        members = rng.permutation(np.flatnonzero(classes == c))
        split[members[:k]] = "test"
    return split


def measure_labels(images: np.ndarray) -> np.ndarray:
    """The ``measures`` task's targets: mass, slant and spread, each z-scored over all images
    (``(m - mean) / std``), float32 ``(N, 3)``."""
    m = ink_measures(images)
    columns = np.stack([m["mass"], m["slant"], m["spread"]], axis=1)
    return ((columns - columns.mean(0)) / columns.std(0)).astype(np.float32)


SKLEARN_DIGITS_FILE = ("datasets", "data", "digits.csv.gz")
"""Where scikit-learn keeps the digits, inside its package: 1,797 rows of 64 pixels (0..16)
and the digit, comma-separated (what ``sklearn.datasets.load_digits`` reads)."""


def scikit_learn_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: pixels float64 ``(1797, 64)`` in 0..16, digits int64 ``(1797,)``.

    The file scikit-learn ships (:data:`SKLEARN_DIGITS_FILE`) is read as
    ``sklearn.datasets.load_digits`` reads it, without importing scikit-learn, whose
    import (SciPy's stats and more) takes about a second of a command that only needs
    the data (``dmtl evaluate``); where the file is not found (another scikit-learn
    layout), ``load_digits`` itself gives the same arrays.
    """
    spec = find_spec("sklearn")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder).joinpath(*SKLEARN_DIGITS_FILE)
        if path.is_file():
            table = np.loadtxt(path, delimiter=",")
            return table[:, :-1], table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)


def load_digits(
    num_test: int = NUM_TEST, split_seed: int = SPLIT_SEED, measures: bool = False
) -> BuiltinDataset:
    """scikit-learn digits with tasks ``digit``, ``shape``, ``ink`` (module docstring), and
    with ``measures=True`` the regression task ``measures`` (:func:`measure_labels`)."""
    pixels, digits = scikit_learn_digits()
    images = pixels.reshape(-1, 8, 8) / 16.0
    if not 0 < num_test < len(digits):
        raise ValueError(f"num_test must lie in (0, {len(digits)}), got {num_test}")
    labels = {
        "digit": digits,
        "shape": per_class_labels(digits, SHAPE_TABLE),
        "ink": ink_labels(images),
    }
    if measures:
        labels["measures"] = measure_labels(images)
    return BuiltinDataset(
        name="digits",
        description="scikit-learn 8x8 handwritten digits; tasks digit, shape, ink",
        tasks=[DIGIT, SHAPE, INK, *([MEASURES] if measures else [])],
        # Stored on the 8-bit grid (round(k * 255/16) / 255), so that an export to PNG and
        # back gives bit-identical tensors; the change is below half a grey level.
        inputs=(np.rint(images * 255.0) / 255.0)[:, None].astype(np.float32),
        labels=labels,
        split=stratified_split(digits, num_test, split_seed),
        knowledge=[Relatedness(DIGIT, SHAPE, SHAPE_TABLE.tolist())],
    )


__all__ = [
    "DIGIT",
    "INK",
    "MEASURES",
    "SHAPE",
    "SHAPE_LABELS",
    "SHAPE_TABLE",
    "ink_labels",
    "ink_measures",
    "load_digits",
    "measure_labels",
    "scikit_learn_digits",
    "stratified_split",
]
