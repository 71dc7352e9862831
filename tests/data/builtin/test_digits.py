"""Built-in digits: shapes, split, the shape table, the measured ink attributes, the edge."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dmtl.core.labels import PartialLabels
from dmtl.data.builtin import BuiltinDataset, list_builtin, load_builtin
from dmtl.data.builtin.digits import (
    DIGIT,
    SHAPE,
    SHAPE_LABELS,
    SHAPE_TABLE,
    ink_measures,
    load_digits,
    scikit_learn_digits,
    stratified_split,
)


@pytest.fixture(scope="module")
def digits() -> BuiltinDataset:
    return load_digits()


def test_shapes_and_ranges(digits: BuiltinDataset) -> None:
    assert len(digits) == 1797
    assert digits.inputs.shape == (1797, 1, 8, 8) and digits.inputs.dtype == np.float32
    assert digits.inputs.min() == 0.0 and digits.inputs.max() == 1.0
    assert digits.labels["digit"].dtype == np.int64 and digits.labels["digit"].shape == (1797,)
    assert digits.labels["shape"].dtype == np.float32 and digits.labels["shape"].shape == (1797, 6)
    assert digits.labels["ink"].dtype == np.float32 and digits.labels["ink"].shape == (1797, 3)
    assert [t.name for t in digits.tasks] == ["digit", "shape", "ink"]
    # fully labelled, and valid for the core's label containers
    labels = PartialLabels.from_encoded(
        digits.tasks, {k: torch.as_tensor(v) for k, v in digits.labels.items()}
    )
    assert all(bool(labels[t].mask.all()) for t in labels)


def test_split_is_fixed_and_stratified(digits: BuiltinDataset) -> None:
    assert (digits.split == "train").sum() == 1437 and (digits.split == "test").sum() == 360
    np.testing.assert_array_equal(digits.split, load_digits().split)
    y = digits.labels["digit"]
    for c in range(10):
        share = 360 * (y == c).sum() / len(y)
        assert abs((digits.split[y == c] == "test").sum() - share) < 1
    other = stratified_split(y, 360, seed=1)
    assert (other == "test").sum() == 360 and not np.array_equal(other, digits.split)
    assert len(digits.subset("test")) == 360


def test_the_file_read_gives_scikit_learns_digits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read without importing scikit-learn, or (the file not found) through it: the arrays
    ``sklearn.datasets.load_digits`` gives."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    pixels, digits = scikit_learn_digits()
    assert pixels.dtype == np.float64 and digits.dtype == np.int64
    assert np.array_equal(pixels, bunch.data) and np.array_equal(digits, bunch.target)
    monkeypatch.setattr("dmtl.data.builtin.digits.SKLEARN_DIGITS_FILE", ("no", "such.csv.gz"))
    fallback_pixels, fallback_digits = scikit_learn_digits()
    assert np.array_equal(fallback_pixels, bunch.data)
    assert np.array_equal(fallback_digits, bunch.target)


def test_shape_table_rows_are_unique_and_definitions_hold() -> None:
    rows = {tuple(r) for r in SHAPE_TABLE.astype(int).tolist()}
    assert len(rows) == 10
    d = np.arange(10)
    col = {name: SHAPE_TABLE[:, j].astype(bool) for j, name in enumerate(SHAPE_LABELS)}
    np.testing.assert_array_equal(col["even"], d % 2 == 0)
    np.testing.assert_array_equal(col["at_least_5"], d >= 5)
    np.testing.assert_array_equal(col["prime"], np.isin(d, [2, 3, 5, 7]))
    np.testing.assert_array_equal(np.flatnonzero(col["loop_top"]), [0, 8, 9])
    np.testing.assert_array_equal(np.flatnonzero(col["loop_bottom"]), [0, 6, 8])
    np.testing.assert_array_equal(np.flatnonzero(col["straight_only"]), [1, 4, 7])


def test_shape_labels_follow_the_digit(digits: BuiltinDataset) -> None:
    np.testing.assert_array_equal(digits.labels["shape"], SHAPE_TABLE[digits.labels["digit"]])


def test_ink_attributes_vary_within_every_class(digits: BuiltinDataset) -> None:
    ink, y = digits.labels["ink"], digits.labels["digit"]
    assert set(np.unique(ink).tolist()) == {0.0, 1.0}
    np.testing.assert_allclose(ink.mean(axis=0), 0.5, atol=0.01)  # above the median: ~half
    for c in range(10):
        rates = ink[y == c].mean(axis=0)
        assert ((rates > 0) & (rates < 1)).all(), (c, rates)


def test_ink_measures_on_synthetic_strokes() -> None:
    upright = np.zeros((8, 8))
    upright[:, 3] = 1
    leaning = np.zeros((8, 8))
    for row in range(8):
        leaning[row, 7 - row] = 1  # top right to bottom left: leans right
    wide = np.zeros((8, 8))
    wide[3:5, :] = 1
    m = ink_measures(np.stack([upright, leaning, wide, np.zeros((8, 8))]))
    np.testing.assert_allclose(m["mass"], [8, 8, 16, 0])
    assert m["slant"][0] == 0 and m["slant"][1] == pytest.approx(1.0)
    assert m["spread"][0] == 0 and m["spread"][2] > 1
    assert m["slant"][3] == 0  # an empty image does not divide by zero


def test_knowledge_edge_matches_the_labels(digits: BuiltinDataset) -> None:
    assert [e.name for e in digits.knowledge] == ["digit->shape"]
    edge = digits.knowledge[0]
    assert edge.source == DIGIT and edge.target == SHAPE
    y, shape = digits.labels["digit"], digits.labels["shape"]
    empirical = np.stack([shape[y == c].mean(axis=0) for c in range(10)])
    np.testing.assert_array_equal(edge.table.numpy(), empirical)
    assert not any(e.target.name == "ink" for e in digits.knowledge)
    # the forward map of a one-hot digit is the row of shape labels
    onehot = torch.nn.functional.one_hot(torch.as_tensor(y[:5]), 10).float()
    np.testing.assert_array_equal(edge.forward_map(onehot).numpy(), shape[:5])


def test_registry() -> None:
    info = {i.name: i for i in list_builtin()}
    assert info["digits"].size == 1797 and info["digits"].splits == {"train": 1437, "test": 360}
    assert len(load_builtin("digits")) == 1797
    with pytest.raises(ValueError, match="unknown built-in dataset 'nope'"):
        load_builtin("nope")
