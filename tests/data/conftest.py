"""Fixtures for the data tests: tasks, tiny PNG folders with manifests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dmtl.core.tasks import BinarySetTask, CategoricalTask, Task

WritePngs = Callable[..., Path]


@pytest.fixture
def tasks() -> list[Task]:
    """A categorical and a binary-set task."""
    return [
        CategoricalTask("digit", ["zero", "one", "two"]),
        BinarySetTask("attr", ["even", "big"]),
    ]


def pixels(n: int, channels: int = 1, size: tuple[int, int] = (8, 8), seed: int = 0) -> np.ndarray:
    """Random uint8 images ``(n, channels, H, W)``."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, channels, *size), dtype=np.uint8)


def save_png(path: Path, image: np.ndarray) -> None:
    """Save a ``(C, H, W)`` uint8 image as grey or RGB PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.shape[0] == 1:
        Image.fromarray(image[0], mode="L").save(path)
    else:
        Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0)), mode="RGB").save(path)


@pytest.fixture
def write_pngs(tmp_path: Path) -> WritePngs:
    """Write ``n`` PNGs under ``tmp_path/<folder>/img/`` and a ``manifest.csv`` labelling them.

    Labels: ``digit`` = row % 3 (as class names), ``attr/even`` = (row % 2 == 0),
    ``attr/big`` empty; split alternates train/test. Returns the manifest path.
    """

    def write(
        n: int = 6, channels: int = 1, folder: str = "src", size: tuple[int, int] = (8, 8)
    ) -> Path:
        root = tmp_path / folder
        images = pixels(n, channels, size)
        names = [f"img/{i}.png" for i in range(n)]
        for name, image in zip(names, images, strict=True):
            save_png(root / name, image)
        classes = ["zero", "one", "two"]
        frame = pd.DataFrame(
            {
                "image": names,
                "split": ["train" if i % 2 == 0 else "test" for i in range(n)],
                "digit": [classes[i % 3] for i in range(n)],
                "attr/even": [str(int(i % 2 == 0)) for i in range(n)],
            }
        )
        path = root / "manifest.csv"
        frame.to_csv(path, index=False)
        np.save(root / "pixels.npy", images)
        return path

    return write
