"""Export to PNG + manifest, and the exact round trip through the generic image path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dmtl.core.tasks import Task
from dmtl.data.export import export_source
from dmtl.data.sources import ArraySource, ImageSource, Source
from dmtl.errors import DataError


def labels(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    digit = rng.integers(-1, 3, n)
    attr = rng.integers(0, 2, (n, 2)).astype(np.float32)
    attr[rng.random((n, 2)) < 0.3] = np.nan
    return {"digit": digit, "attr": attr}


@pytest.mark.parametrize("channels", [1, 3])
def test_round_trip_is_exact_for_8_bit_data(
    tmp_path: Path, tasks: list[Task], channels: int
) -> None:
    n = 12
    rng = np.random.default_rng(0)
    array = (rng.integers(0, 256, (n, channels, 7, 5)) / 255).astype(np.float32)  # k / 255
    array[0] = 0.0
    array[1] = 1.0
    splits = np.array(["train", "val", "test"] * 4)
    ids = np.array([f"s{i:02d}" for i in range(n)])
    source = ArraySource("a", tasks, array, labels(n), ids=ids, splits=splits)
    manifest = export_source(source, tmp_path / "out")
    assert manifest == tmp_path / "out" / "manifest.csv"
    frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    assert list(frame.columns) == ["id", "image", "split", "digit", "attr/even", "attr/big"]
    back = Source.from_manifest("b", manifest, None, tasks)
    assert isinstance(back, ImageSource) and back.channels == channels and len(back) == n
    for i in range(n):
        assert torch.equal(back[i].x, source[i].x)  # bit-identical tensors
    for name, values in source.labels.items():
        np.testing.assert_array_equal(back.labels[name], values)
        assert back.labels[name].dtype == values.dtype
    assert back.ids.tolist() == ids.tolist()
    assert back.splits is not None and back.splits.tolist() == splits.tolist()


def test_round_trip_within_half_a_step_otherwise(tmp_path: Path, tasks: list[Task]) -> None:
    array = (np.arange(17, dtype=np.float32) / 16).reshape(1, 1, 1, 17)  # k / 16
    source = ArraySource("a", tasks, array, {})
    back = Source.from_manifest("b", export_source(source, tmp_path), None, tasks)
    error = (back[0].x - source[0].x).abs().max()
    assert 0 < float(error) <= 0.5 / 255 + 1e-7


def test_export_ignores_normalisation_and_augmentation(tmp_path: Path, tasks: list[Task]) -> None:
    array = np.full((2, 1, 4, 4), 0.2, dtype=np.float32)
    source = ArraySource("a", tasks, array, {}, mean=0.5, std=0.1)
    back = Source.from_manifest("b", export_source(source, tmp_path), None, tasks)
    assert torch.equal(back[0].x, torch.from_numpy(array[0]).float().mul(255).round() / 255)


def test_export_errors(tmp_path: Path, tasks: list[Task]) -> None:
    out_of_range = ArraySource("a", tasks, np.full((2, 1, 3, 3), 1.5, np.float32), {})
    with pytest.raises(DataError, match=r"sample 0 .*export needs raw inputs in \[0, 1\]"):
        export_source(out_of_range, tmp_path / "a")
    flat = ArraySource("f", tasks, np.zeros((2, 9), np.float32), {})
    with pytest.raises(DataError, match="only images"):
        export_source(flat, tmp_path / "f")
    fine = ArraySource("g", tasks, np.zeros((2, 1, 3, 3), np.float32), {})
    export_source(fine, tmp_path / "g")
    with pytest.raises(DataError, match="overwrite=True"):
        export_source(fine, tmp_path / "g")
    export_source(fine, tmp_path / "g", overwrite=True)
    with pytest.raises(DataError, match="unknown image format"):
        export_source(fine, tmp_path / "h", image_format="nope")
