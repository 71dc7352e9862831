"""Fashion-MNIST loader on tiny idx files in the official names; the real folder if installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dmtl.data.builtin import BuiltinDataset, load_builtin
from dmtl.data.builtin.fashion_mnist import (
    ATTRIBUTE_LABELS,
    ATTRIBUTE_TABLE,
    CATEGORIES,
    DEFAULT_ROOT,
    GROUP_OF,
    GROUP_TABLE,
    GROUPS,
    load_fashion_mnist,
    pixel_labels,
)
from dmtl.data.builtin.idx import write_idx
from dmtl.errors import DataError

SIZES = {"train": 30, "t10k": 20}


def _write(folder: Path, gz: bool = True, dotted: bool = False, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in SIZES.items():
        images = rng.integers(0, 256, size=(n, 28, 28)).astype(np.uint8)
        images[rng.random((n, 28, 28)) < rng.random((n, 1, 1))] = 0  # footprints vary in size
        labels = (np.arange(n) % 10).astype(np.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{prefix}-{kind}-ubyte"
            if dotted:
                name = name.replace("-idx", ".idx")
            write_idx(folder / (name + (".gz" if gz else "")), array)
    return folder


@pytest.fixture()
def tiny(tmp_path: Path) -> BuiltinDataset:
    return load_fashion_mnist(_write(tmp_path / "fm"))


def test_tiny_files_load(tiny: BuiltinDataset) -> None:
    assert len(tiny) == 50
    assert tiny.inputs.shape == (50, 1, 28, 28) and tiny.inputs.dtype == np.float32
    assert tiny.inputs.min() >= 0.0 and tiny.inputs.max() <= 1.0
    assert (tiny.split == "train").sum() == 30 and (tiny.split == "test").sum() == 20
    assert [t.name for t in tiny.tasks] == ["category", "group", "attributes", "pixel"]
    y = tiny.labels["category"]
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, np.r_[np.arange(30) % 10, np.arange(20) % 10])
    np.testing.assert_array_equal(tiny.labels["group"], GROUP_OF[y])
    np.testing.assert_array_equal(tiny.labels["attributes"], ATTRIBUTE_TABLE[y])


def test_pixels_are_scaled_by_255(tmp_path: Path) -> None:
    folder = _write(tmp_path / "fm")
    from dmtl.data.builtin.idx import read_idx

    raw = read_idx(folder / "train-images-idx3-ubyte.gz")
    data = load_fashion_mnist(folder, splits=("train",))
    np.testing.assert_allclose(data.inputs[:, 0], raw / 255.0, rtol=1e-6)


def test_pixel_attributes_use_the_median_of_their_split(tiny: BuiltinDataset) -> None:
    for split in ("train", "test"):
        rows = tiny.split == split
        expected = pixel_labels(tiny.inputs[rows, 0])
        np.testing.assert_array_equal(tiny.labels["pixel"][rows], expected)
        assert 0.3 <= tiny.labels["pixel"][rows].mean() <= 0.5


def test_pixel_definitions_on_synthetic_images() -> None:
    small_dark = np.zeros((28, 28), np.float32)
    small_dark[:5, :5] = 0.3
    large_light = np.zeros((28, 28), np.float32)
    large_light[:20, :20] = 0.9
    faint = np.full((28, 28), 0.05, np.float32)  # below the footprint threshold everywhere
    out = pixel_labels(np.stack([small_dark, large_light, faint]))
    np.testing.assert_array_equal(out, [[0, 0], [1, 1], [0, 0]])


def test_knowledge_edges(tiny: BuiltinDataset) -> None:
    assert [e.name for e in tiny.knowledge] == ["category->group", "category->attributes"]
    group, attributes = tiny.knowledge
    np.testing.assert_array_equal(group.table.numpy(), GROUP_TABLE)
    np.testing.assert_array_equal(group.table.sum(dim=1).numpy(), np.ones(10))
    np.testing.assert_array_equal(attributes.table.numpy(), ATTRIBUTE_TABLE)
    assert not any(e.target.name == "pixel" for e in tiny.knowledge)


def test_tables() -> None:
    assert len({tuple(r) for r in ATTRIBUTE_TABLE.astype(int).tolist()}) == len(CATEGORIES)
    group_of = GROUP_OF
    members = {
        g: [CATEGORIES[c] for c in np.flatnonzero(group_of == i)] for i, g in enumerate(GROUPS)
    }
    assert members == {
        "upper_body": ["T-shirt/top", "Pullover", "Coat", "Shirt"],
        "lower_body_or_dress": ["Trouser", "Dress"],
        "footwear": ["Sandal", "Sneaker", "Ankle boot"],
        "bag": ["Bag"],
    }
    a = {name: ATTRIBUTE_TABLE[:, j].astype(bool) for j, name in enumerate(ATTRIBUTE_LABELS)}
    np.testing.assert_array_equal(a["footwear"], group_of == GROUPS.index("footwear"))
    assert [CATEGORIES[c] for c in np.flatnonzero(a["open_toe"])] == ["Sandal"]
    assert [CATEGORIES[c] for c in np.flatnonzero(a["covers_ankle"])] == ["Trouser", "Ankle boot"]


@pytest.mark.parametrize(("gz", "dotted"), [(False, False), (True, True), (False, True)])
def test_file_name_variants(tmp_path: Path, gz: bool, dotted: bool) -> None:
    data = load_fashion_mnist(_write(tmp_path / "fm", gz=gz, dotted=dotted))
    assert len(data) == 50


def test_splits_and_limit(tmp_path: Path) -> None:
    folder = _write(tmp_path / "fm")
    (folder / "train-images-idx3-ubyte.gz").unlink()  # the test split alone needs no train files
    test_only = load_fashion_mnist(folder, splits=("test",), limit=7)
    assert len(test_only) == 7 and set(test_only.split) == {"test"}
    full = load_fashion_mnist(_write(tmp_path / "full"), splits=("test",))
    np.testing.assert_array_equal(test_only.labels["pixel"], full.labels["pixel"][:7])
    with pytest.raises(ValueError, match="splits"):
        load_fashion_mnist(folder, splits=("val",))
    with pytest.raises(ValueError, match="limit"):
        load_fashion_mnist(folder, splits=("test",), limit=0)


def test_missing_folder_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "absent")
    folder = _write(tmp_path / "fm")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_builtin("fashion_mnist", root=folder)
    assert issubclass(DataError, DataError)


def test_inconsistent_files(tmp_path: Path) -> None:
    folder = _write(tmp_path / "fm")
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(3, dtype=np.uint8))
    with pytest.raises(DataError, match="3 labels for 20 images"):
        load_fashion_mnist(folder)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.full(20, 10, dtype=np.uint8))
    with pytest.raises(DataError, match=r"item 0: label 10 outside \[0, 9\]"):
        load_fashion_mnist(folder)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((20, 8, 8), dtype=np.uint8))
    with pytest.raises(DataError, match=r"shape \(N, 28, 28\)"):
        load_fashion_mnist(folder)


@pytest.mark.skipif(
    not DEFAULT_ROOT.is_dir(), reason=f"{DEFAULT_ROOT} absent (dataset-fashion-mnist)"
)
def test_real_files() -> None:
    data = load_fashion_mnist(splits=("test",))
    assert data.inputs.shape == (10000, 1, 28, 28)
    np.testing.assert_array_equal(np.bincount(data.labels["category"]), [1000] * 10)
    np.testing.assert_allclose(data.labels["pixel"].mean(axis=0), 0.5, atol=0.01)
