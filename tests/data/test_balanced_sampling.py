"""Class-balanced draws within a source (``sources[].balance``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmtl.build.data import build_experiment
from dmtl.config import ConfigError, validate_config
from dmtl.core.tasks import BinarySetTask, CategoricalTask
from dmtl.data.batching import (
    MultiSourceBatchSampler,
    balance_classes,
    balanced_group_probabilities,
    build_train_loader,
)
from dmtl.data.sources import ArraySource
from dmtl.errors import DataError

# 100 rows: 60 of class 0, 15 of class 1, 5 of class 2, 20 unlabelled.
CLASSES = np.array([0] * 60 + [1] * 15 + [2] * 5 + [-1] * 20)


def _drawn(sampler: MultiSourceBatchSampler, epochs: int = 1) -> np.ndarray:
    rows = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        rows += [row for batch in sampler for row in batch]
    return np.asarray(rows)


def test_group_probabilities_by_hand() -> None:
    groups, p = balanced_group_probabilities(CLASSES)
    assert [len(g) for g in groups] == [60, 15, 5, 20]
    # labelled fraction 0.8, shared by 3 classes; the unlabelled rows keep 0.2
    assert p.tolist() == pytest.approx([0.8 / 3, 0.8 / 3, 0.8 / 3, 0.2])


def test_each_class_gets_an_equal_share_over_many_batches() -> None:
    sampler = MultiSourceBatchSampler([100], 20, classes=[CLASSES], num_batches=500, seed=3)
    drawn = CLASSES[_drawn(sampler)]
    shares = np.array([np.mean(drawn == c) for c in (0, 1, 2, -1)])
    # 10,000 draws: the standard deviation of a share near 0.27 is about 0.0044
    assert shares == pytest.approx([0.8 / 3, 0.8 / 3, 0.8 / 3, 0.2], abs=0.02)
    # rows within a class are drawn by passes: the 5 rows of class 2 evenly
    counts = np.bincount(_drawn(sampler)[drawn == 2] - 75, minlength=5)
    assert counts.max() - counts.min() <= 1


def test_the_epoch_length_and_the_other_sources_are_unchanged() -> None:
    plain = MultiSourceBatchSampler([100, 30], 10, proportions=[3, 1], seed=0)
    balanced = MultiSourceBatchSampler(
        [100, 30], 10, proportions=[3, 1], seed=0, classes=[CLASSES, None]
    )
    assert balanced.counts == plain.counts == [8, 2]
    # the longest to see once: max(ceil(100 / 8), ceil(30 / 2)) = 15 batches
    assert len(balanced) == len(plain) == 15
    for a, b in zip(plain, balanced, strict=True):
        assert a[8:] == b[8:]  # the unbalanced source draws exactly as before
        assert all(0 <= row < 100 for row in b[:8])


def test_the_draws_are_seeded_and_change_with_the_epoch() -> None:
    def batches(seed: int, epoch: int) -> list[list[int]]:
        sampler = MultiSourceBatchSampler([100], 10, classes=[CLASSES], seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert batches(1, 0) == batches(1, 0)
    assert batches(1, 0) != batches(1, 1)
    assert batches(1, 0) != batches(2, 0)


def test_ranks_share_the_global_draw() -> None:
    whole = MultiSourceBatchSampler([100], 8, classes=[CLASSES], seed=0, rank=0, world_size=1)
    halves = [
        MultiSourceBatchSampler([100], 8, classes=[CLASSES], seed=0, rank=r, world_size=2)
        for r in (0, 1)
    ]
    for full, first, second in zip(whole, *halves, strict=True):
        assert sorted(full) == sorted(first + second)


def test_class_arrays_must_fit_the_sources() -> None:
    with pytest.raises(DataError, match="1 class arrays given for 2 sources"):
        MultiSourceBatchSampler([100, 5], 10, classes=[CLASSES])
    with pytest.raises(DataError, match="source 0: 100 class indices for 99 rows"):
        MultiSourceBatchSampler([99], 10, classes=[CLASSES])
    unlabelled = MultiSourceBatchSampler([3], 3, classes=[np.array([-1, -1, -1])])
    assert unlabelled.classes == [None]  # nothing to balance: drawn as usual


def test_a_source_names_its_balance_task() -> None:
    digit = CategoricalTask("digit", ["a", "b"])
    attr = BinarySetTask("attr", ["x"])
    labels = {"digit": np.array([0, 0, 0, 1, -1]), "attr": np.zeros((5, 1), np.float32)}
    source = ArraySource("s", [digit, attr], np.zeros((5, 2), np.float32), labels)
    assert balance_classes(source) is None
    assert balance_classes(source.with_balance("digit")).tolist() == [0, 0, 0, 1, -1]
    with pytest.raises(DataError, match="has no task 'colour' to balance"):
        source.with_balance("colour")
    with pytest.raises(DataError, match="task 'attr' is binary_set; class-balanced sampling"):
        source.with_balance("attr")
    loader = build_train_loader([source.with_balance("digit")], batch_size=4, seed=0)
    assert loader.batch_sampler.classes[0].tolist() == [0, 0, 0, 1, -1]  # type: ignore[union-attr]


def test_balance_from_the_config_reaches_the_training_strata(tiny_data: Any) -> None:
    data = tiny_data()
    data["sources"][0]["balance"] = "digit"
    experiment = build_experiment(validate_config(data))
    assert {s.balance for s in experiment.train} == {"digit"}
    labelled = [s for s in experiment.train if balance_classes(s) is not None]
    assert labelled  # the stratum labelled for the digit is drawn class-balanced


def test_balance_on_a_task_without_classes_is_refused(tiny_data: Any) -> None:
    data = tiny_data()
    data["sources"][0]["balance"] = "shape"
    with pytest.raises(DataError, match=r"sources.0.balance: .*task 'shape' is binary_set"):
        build_experiment(validate_config(data))
    data["sources"][0]["balance"] = "colour"
    with pytest.raises(DataError, match=r"sources.0.balance: .*no task 'colour'"):
        build_experiment(validate_config(data))


def test_a_declared_task_is_checked_with_the_config(tmp_path: Any, tiny_data: Any) -> None:
    (tmp_path / "m.csv").write_text("image,digit\na.png,x\n")
    data = tiny_data(
        tasks=[{"name": "digit", "type": "categorical", "classes": ["x"]},
               {"name": "attr", "type": "binary_set", "labels": ["y"]}],
        relatedness=[],
    )
    data["sources"] = [{"name": "m", "manifest": str(tmp_path / "m.csv"), "balance": "attr"}]
    with pytest.raises(ConfigError, match=r"sources.0.balance: task 'attr' is binary_set"):
        validate_config(data)


@settings(max_examples=40, deadline=None)
@given(
    classes=st.lists(st.integers(-1, 4), min_size=1, max_size=40),
    steps=st.integers(1, 6),
    per_step=st.integers(1, 8),
    seed=st.integers(0, 2**16),
)
def test_balanced_draws_are_rows_of_the_source_in_every_group(
    classes: list[int], steps: int, per_step: int, seed: int
) -> None:
    values = np.asarray(classes)
    groups, p = balanced_group_probabilities(values) if (values >= 0).any() else ([], [])
    if len(groups):
        assert float(np.sum(p)) == pytest.approx(1.0)
        assert sorted(np.concatenate(groups).tolist()) == list(range(len(values)))
    sampler = MultiSourceBatchSampler([len(values)], per_step, classes=[values],
                                      num_batches=steps, seed=seed)
    batches = list(sampler)
    assert len(batches) == steps and all(len(b) == per_step for b in batches)
    assert all(0 <= row < len(values) for b in batches for row in b)
