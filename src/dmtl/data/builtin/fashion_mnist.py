"""Fashion-MNIST (Xiao et al. 2017) from its four idx files, with four tasks.

Files, in any folder (default :data:`DEFAULT_ROOT`, where the Debian/Ubuntu
package ``dataset-fashion-mnist`` installs them, gzip-compressed)::

    train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz   (60,000 images: split "train")
    t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz    (10,000 images: split "test")

Each may also be uncompressed (no ``.gz``), or spelt ``train-images.idx3-ubyte``.
Inputs: float32 ``(N, 1, 28, 28)``, pixel / 255, in [0, 1].

Tasks
-----
``category`` (categorical, the official 10 classes in label order):
T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot.

``group`` (categorical, 4; knowledge edge ``category -> group``, 0/1 rows):
``upper_body`` = {T-shirt/top, Pullover, Coat, Shirt}; ``lower_body_or_dress``
= {Trouser, Dress}; ``footwear`` = {Sandal, Sneaker, Ankle boot}; ``bag`` = {Bag}.

``attributes`` (binary set, the *typical* item of each class; knowledge edge
``category -> attributes`` is this table):

- ``covers_torso``: worn over the chest and back.
- ``covers_legs``: covers at least the thighs (trousers, a dress's skirt; a
  coat or jacket is taken to end at the hip).
- ``long_sleeves``: sleeves to the wrist (pullover, coat, shirt; a T-shirt/top
  has short or no sleeves, a dress typically too).
- ``front_opening``: opens down the whole front with buttons or a zip (coat,
  shirt; a pullover is by definition pulled over the head).
- ``outerwear``: worn over other clothes outdoors (coat).
- ``footwear``: worn on the feet.
- ``open_toe``: leaves the toes uncovered (sandal).
- ``covers_ankle``: reaches over the ankle when worn (full-length trousers,
  ankle boots; not low-cut sneakers or sandals).
- ``carried``: carried, not worn (bag).

=========== ===== ==== ====== ===== ===== ===== ==== ====== =======
category    torso legs sleeve front outer foot open ankle  carried
=========== ===== ==== ====== ===== ===== ===== ==== ====== =======
T-shirt/top 1     0    0      0     0     0     0    0      0
Trouser     0     1    0      0     0     0     0    1      0
Pullover    1     0    1      0     0     0     0    0      0
Dress       1     1    0      0     0     0     0    0      0
Coat        1     0    1      1     1     0     0    0      0
Sandal      0     0    0      0     0     1     1    0      0
Shirt       1     0    1      1     0     0     0    0      0
Sneaker     0     0    0      0     0     1     0    0      0
Bag         0     0    0      0     0     0     0    0      1
Ankle boot  0     0    0      0     0     1     0    1      0
=========== ===== ==== ====== ===== ===== ===== ==== ====== =======

Every row is different. Individual items break the typical pattern (a
short-sleeved shirt); that is the noise a knowledge table carries.

``pixel`` (binary set, measured on each image; no knowledge edge). With
pixel values ``v`` in [0, 1] and the item's *footprint* = pixels with
``v > 0.1``:

- ``large``: the footprint's share of the 784 pixels is above the median of
  that share over the image's split (train or test).
- ``bright``: the mean ``v`` over the footprint (the item's tone, independent
  of its size) is above the median of that mean over the image's split.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dmtl.core.relatedness import Relatedness
from dmtl.core.tasks import BinarySetTask, CategoricalTask
from dmtl.data.builtin import BuiltinDataset, per_class_labels
from dmtl.data.builtin.idx import read_idx
from dmtl.errors import DataError

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
"""Where ``apt-get install dataset-fashion-mnist`` puts the files."""

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
"""Split -> (images, labels) file stems; ``.gz`` optional."""

SPLIT_SIZES = {"train": 60000, "test": 10000}

CATEGORIES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
GROUPS = ("upper_body", "lower_body_or_dress", "footwear", "bag")
GROUP_OF = np.array([0, 1, 0, 1, 0, 2, 0, 2, 3, 2], dtype=np.int64)
"""Group index of each category."""

ATTRIBUTE_LABELS = (
    "covers_torso",
    "covers_legs",
    "long_sleeves",
    "front_opening",
    "outerwear",
    "footwear",
    "open_toe",
    "covers_ankle",
    "carried",
)
ATTRIBUTE_TABLE = np.array(
    [
        # torso legs sleeves front outer foot open ankle carried
        [1, 0, 0, 0, 0, 0, 0, 0, 0],  # T-shirt/top
        [0, 1, 0, 0, 0, 0, 0, 1, 0],  # Trouser
        [1, 0, 1, 0, 0, 0, 0, 0, 0],  # Pullover
        [1, 1, 0, 0, 0, 0, 0, 0, 0],  # Dress
        [1, 0, 1, 1, 1, 0, 0, 0, 0],  # Coat
        [0, 0, 0, 0, 0, 1, 1, 0, 0],  # Sandal
        [1, 0, 1, 1, 0, 0, 0, 0, 0],  # Shirt
        [0, 0, 0, 0, 0, 1, 0, 0, 0],  # Sneaker
        [0, 0, 0, 0, 0, 0, 0, 0, 1],  # Bag
        [0, 0, 0, 0, 0, 1, 0, 1, 0],  # Ankle boot
    ],
    dtype=np.float32,
)
"""``category -> attributes`` knowledge table (rows: :data:`CATEGORIES`)."""

GROUP_TABLE = np.eye(len(GROUPS), dtype=np.float32)[GROUP_OF]
"""``category -> group`` knowledge table: one 1 per row."""

FOOTPRINT_THRESHOLD = 0.1

CATEGORY = CategoricalTask("category", CATEGORIES)
GROUP = CategoricalTask("group", GROUPS)
ATTRIBUTES = BinarySetTask("attributes", ATTRIBUTE_LABELS)
PIXEL = BinarySetTask("pixel", ("large", "bright"))


def _candidates(stem: str) -> list[str]:
    dotted = stem.replace("-idx", ".idx")
    return [f"{stem}.gz", stem, f"{dotted}.gz", dotted]


def find_files(
    root: str | Path | None = None, splits: Sequence[str] = ("train", "test")
) -> dict[str, tuple[Path, Path]]:
    """Split -> (images, labels) paths found in ``root``; a clear error if any is missing."""
    folder = DEFAULT_ROOT if root is None else Path(root)
    hint = (
        "install it with `apt-get install dataset-fashion-mnist` (files go to "
        f"{DEFAULT_ROOT}) or pass the folder holding train-images-idx3-ubyte(.gz), "
        "train-labels-idx1-ubyte(.gz), t10k-images-idx3-ubyte(.gz), t10k-labels-idx1-ubyte(.gz)"
    )
    if not folder.is_dir():
        raise DataError(f"Fashion-MNIST folder {folder} not found: {hint}")
    found: dict[str, tuple[Path, Path]] = {}
    for split in splits:
        paths = []
        stems = FILES[split]
        for stem in stems:
            hits = [folder / name for name in _candidates(stem) if (folder / name).is_file()]
            if not hits:
                raise DataError(
                    f"{folder}: Fashion-MNIST file {stem}(.gz) not found "
                    f"(looked for {', '.join(_candidates(stem))}): {hint}"
                )
            paths.append(hits[0])
        found[split] = (paths[0], paths[1])
    return found


def pixel_labels(images: np.ndarray) -> np.ndarray:
    """The ``pixel`` task (``large, bright``) of one split: float32 ``(N, 2)``, see module doc.

    ``images``: ``(N, H, W)`` with values in [0, 1]; medians are taken over these images.
    """
    v = np.asarray(images, dtype=np.float32)
    footprint = v > FOOTPRINT_THRESHOLD
    size = footprint.sum(axis=(-2, -1))
    share = size / float(v.shape[-2] * v.shape[-1])
    tone = (v * footprint).sum(axis=(-2, -1)) / np.maximum(size, 1)
    columns = [share, tone]
    return np.stack([c > np.median(c) for c in columns], axis=1).astype(np.float32)


def _read_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DataError(
            f"{images_path}: expected uint8 images of shape (N, 28, 28), "
            f"got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataError(f"{labels_path}: expected uint8 labels of shape (N,), got {labels.shape}")
    if len(labels) != len(images):
        raise DataError(
            f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path}"
        )
    if len(labels) and int(labels.max()) >= len(CATEGORIES):
        row = int(np.argmax(labels >= len(CATEGORIES)))
        top = len(CATEGORIES) - 1
        raise DataError(f"{labels_path}, item {row}: label {int(labels[row])} outside [0, {top}]")
    return images, labels.astype(np.int64)


def load_fashion_mnist(
    root: str | Path | None = None,
    splits: Sequence[str] = ("train", "test"),
    limit: int | None = None,
) -> BuiltinDataset:
    """Fashion-MNIST with tasks ``category``, ``group``, ``attributes``, ``pixel`` (module doc).

    ``root``: the folder with the idx files (default :data:`DEFAULT_ROOT`).
    ``splits``: which of ``train``/``test`` to load. ``limit``: keep only the
    first ``limit`` images of each split (``pixel`` medians still use the whole split).
    """
    unknown = [s for s in splits if s not in FILES]
    if unknown or not splits:
        raise ValueError(f"splits must be a non-empty subset of {tuple(FILES)}, got {splits!r}")
    if limit is not None and (isinstance(limit, bool) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    paths = find_files(root, splits)
    inputs, categories, pixel, split = [], [], [], []
    for name in dict.fromkeys(splits):
        images, labels = _read_split(*paths[name])
        scaled = images.astype(np.float32) / np.float32(255.0)
        measured = pixel_labels(scaled)
        keep = slice(None) if limit is None else slice(0, limit)
        inputs.append(scaled[keep][:, None])
        categories.append(labels[keep])
        pixel.append(measured[keep])
        split.append(np.full(len(labels[keep]), name, dtype="<U5"))
    category = np.concatenate(categories)
    return BuiltinDataset(
        name="fashion_mnist",
        description="Fashion-MNIST 28x28 clothing; tasks category, group, attributes, pixel",
        tasks=[CATEGORY, GROUP, ATTRIBUTES, PIXEL],
        inputs=np.concatenate(inputs),
        labels={
            "category": category,
            "group": GROUP_OF[category],
            "attributes": per_class_labels(category, ATTRIBUTE_TABLE),
            "pixel": np.concatenate(pixel),
        },
        split=np.concatenate(split),
        knowledge=[
            Relatedness(CATEGORY, GROUP, GROUP_TABLE.tolist()),
            Relatedness(CATEGORY, ATTRIBUTES, ATTRIBUTE_TABLE.tolist()),
        ],
    )


__all__ = [
    "ATTRIBUTES",
    "ATTRIBUTE_LABELS",
    "ATTRIBUTE_TABLE",
    "CATEGORIES",
    "CATEGORY",
    "DEFAULT_ROOT",
    "FILES",
    "GROUP",
    "GROUPS",
    "GROUP_OF",
    "GROUP_TABLE",
    "PIXEL",
    "DataError",
    "find_files",
    "load_fashion_mnist",
    "pixel_labels",
]
