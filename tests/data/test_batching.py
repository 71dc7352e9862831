"""Batch composition, determinism, DDP sharding, collation and loaders."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.fabric.utilities.data import _set_sampler_epoch

from dmtl.core.labels import PartialLabels
from dmtl.core.tasks import BinarySetTask, CategoricalTask, Task
from dmtl.data.batching import (
    Batch,
    MultiSourceBatchSampler,
    SourceBatchSampler,
    batch_counts,
    build_eval_loader,
    build_train_loader,
    collate_samples,
)
from dmtl.data.sources import ArraySource, Sample
from dmtl.errors import DataError


def per_source(batch: list[int], sizes: list[int]) -> list[list[int]]:
    """Split a batch of concatenated indices into per-source local indices."""
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [
        [i - int(bounds[s]) for i in batch if bounds[s] <= i < bounds[s + 1]]
        for s in range(len(sizes))
    ]


def test_batch_counts_largest_remainder_and_minimum() -> None:
    assert batch_counts(12, [1, 1, 1]) == [4, 4, 4]
    assert batch_counts(10, [1, 1, 1]) == [4, 3, 3]
    assert batch_counts(8, [2, 1, 1]) == [4, 2, 2]
    assert batch_counts(10, [0.55, 0.45]) == [6, 4]  # 5.5/4.5: tie goes to the first
    assert batch_counts(4, [1000, 1, 1]) == [2, 1, 1]  # every source at least 1
    assert batch_counts(5, [1, 1, 1, 1, 1]) == [1] * 5
    with pytest.raises(DataError, match="cannot hold a sample of each"):
        batch_counts(2, [1, 1, 1])
    with pytest.raises(DataError, match="positive"):
        batch_counts(4, [1, 0])


def test_every_batch_holds_every_source_in_equal_shares_despite_100x_size() -> None:
    sizes = [2000, 20]
    sampler = MultiSourceBatchSampler(sizes, 10, seed=3, rank=0, world_size=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 400  # the large source seen once: 2000 / 5
    small_draws: list[int] = []
    large_draws: list[int] = []
    for batch in batches:
        large, small = per_source(batch, sizes)
        assert len(batch) == 10 and len(large) == 5 and len(small) == 5
        large_draws += large
        small_draws += small
    assert sorted(large_draws) == list(range(2000))  # one full pass, no repeat
    # the small source is cycled: each pass of 20 draws is a permutation, reshuffled
    passes = [small_draws[k : k + 20] for k in range(0, len(small_draws), 20)]
    assert all(sorted(p) == list(range(20)) for p in passes)
    assert len({tuple(p) for p in passes}) > 1


def test_set_proportions_and_epoch_length() -> None:
    sizes = [90, 300, 7]
    sampler = MultiSourceBatchSampler(sizes, 16, [3, 4, 1], rank=0, world_size=1)
    assert sampler.counts == [6, 8, 2]
    assert len(sampler) == max(math.ceil(90 / 6), math.ceil(300 / 8), math.ceil(7 / 2)) == 38
    for batch in sampler:
        assert [len(part) for part in per_source(batch, sizes)] == [6, 8, 2]
    fixed = MultiSourceBatchSampler(sizes, 16, [3, 4, 1], num_batches=5, rank=0, world_size=1)
    assert len(list(fixed)) == len(fixed) == 5


def test_deterministic_for_seed_and_epoch() -> None:
    def draw(seed: int, epoch: int) -> list[list[int]]:
        sampler = MultiSourceBatchSampler([50, 5], 8, seed=seed, rank=0, world_size=1)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert draw(1, 0) == draw(1, 0)
    assert draw(1, 2) == draw(1, 2)
    assert draw(1, 0) != draw(1, 1)
    assert draw(1, 0) != draw(2, 0)
    torch.manual_seed(0)
    np.random.seed(0)
    first = draw(4, 1)
    torch.manual_seed(99)
    np.random.seed(99)
    assert draw(4, 1) == first  # no global random state involved


def test_two_ranks_see_disjoint_samples_and_the_same_number_of_batches() -> None:
    sizes = [100, 9, 30]
    ranks = [
        MultiSourceBatchSampler(sizes, 12, seed=5, rank=r, world_size=2) for r in range(2)
    ]
    assert len(ranks[0]) == len(ranks[1]) == math.ceil(100 / (2 * 2))
    b0, b1 = list(ranks[0]), list(ranks[1])
    assert len(b0) == len(b1) == len(ranks[0])
    for x, y in zip(b0, b1, strict=True):
        assert len(x) == len(y) == 6  # per-rank batch = 12 // 2
        assert not set(x) & set(y)  # disjoint within a step
        assert [len(p) for p in per_source(x, sizes)] == [2, 2, 2]  # every source on every rank
    for seed in range(10):  # pass boundaries falling inside a step never break disjointness
        for world in (2, 3):
            shards = [
                list(MultiSourceBatchSampler([7, 23, 11], 6 * world, seed=seed, rank=r,
                                             world_size=world))
                for r in range(world)
            ]
            for step in zip(*shards, strict=True):
                flat = [i for batch in step for i in batch]
                assert len(flat) == len(set(flat))
    single = MultiSourceBatchSampler(sizes, 12, seed=5, rank=0, world_size=1)
    assert single.counts == [4, 4, 4]
    with pytest.raises(DataError, match="multiple of world_size"):
        MultiSourceBatchSampler(sizes, 13, rank=0, world_size=2)
    with pytest.raises(DataError, match="rank"):
        MultiSourceBatchSampler(sizes, 12, rank=2, world_size=2)


def test_lightning_sets_the_epoch() -> None:
    sources = [ArraySource("a", [], np.zeros((8, 2), np.float32), {})]
    loader = build_train_loader(sources, 4, rank=0, world_size=1)
    _set_sampler_epoch(loader, 3)
    assert isinstance(loader.batch_sampler, MultiSourceBatchSampler)
    assert loader.batch_sampler.epoch == 3


def make_sources() -> tuple[list[Task], list[ArraySource]]:
    digit = CategoricalTask("digit", ["a", "b", "c"])
    attr = BinarySetTask("attr", ["x", "y"])
    big = ArraySource(
        "big", [digit], np.arange(40, dtype=np.float32).reshape(40, 1) + 0.0,
        {"digit": np.arange(40) % 3},
    )
    small = ArraySource(
        "small", [attr], -np.arange(4, dtype=np.float32).reshape(4, 1) - 1.0,
        {"attr": np.array([[1, 0], [0, np.nan], [np.nan, 1], [1, 1]], np.float32)},
    )
    return [digit, attr], [big, small]


def test_collate_fills_missing_tasks_and_checks_shapes() -> None:
    tasks, (big, small) = make_sources()
    collate = collate_samples(tasks)
    batch = collate([big[4], small[1]._replace(source=1)])
    assert isinstance(batch, Batch) and isinstance(batch.labels, PartialLabels)
    assert batch.source.tolist() == [0, 1] and batch.source.dtype == torch.long
    assert batch.labels["digit"].mask.tolist() == [True, False]
    assert batch.labels["digit"].target.tolist()[0] == 1
    assert batch.labels["attr"].mask.tolist() == [[False, False], [True, False]]
    assert len(batch) == 2
    odd = Sample(torch.zeros(3), {}, 0)
    with pytest.raises(DataError, match="different input shapes"):
        collate([big[0], odd])


def test_batch_moves_with_lightning() -> None:
    tasks, (big, small) = make_sources()
    batch = collate_samples(tasks)([big[0], small[0]])
    moved = move_data_to_device(batch, torch.device("cpu"))
    assert isinstance(moved, Batch) and torch.equal(moved.x, batch.x)
    doubled = batch.to(torch.float64)
    assert doubled.x.dtype == torch.float64


@pytest.mark.parametrize("num_workers", [0, 2])
def test_train_loader_mixes_sources_and_tags_them(num_workers: int) -> None:
    _, sources = make_sources()
    loader = build_train_loader(
        sources, 8, {"big": 3, "small": 1}, seed=2, num_workers=num_workers, rank=0, world_size=1
    )
    assert loader.persistent_workers == (num_workers > 0)
    batches = list(loader)
    assert len(batches) == len(loader) == math.ceil(40 / 6)
    reference = list(build_train_loader(sources, 8, [3, 1], seed=2, rank=0, world_size=1))
    for batch, same in zip(batches, reference, strict=True):
        assert torch.equal(batch.x, same.x)  # identical with and without workers
        assert batch.source.tolist() == [0] * 6 + [1] * 2
        from_big = batch.source == 0
        assert bool((batch.x[from_big] >= 0).all()) and bool((batch.x[~from_big] < 0).all())
        assert bool(batch.labels["digit"].mask[from_big].all())
        assert not bool(batch.labels["digit"].mask[~from_big].any())
        rows = batch.x[from_big, 0].long()
        assert torch.equal(batch.labels["digit"].target[from_big], rows % 3)


def test_train_loader_checks_names_and_proportions() -> None:
    _, sources = make_sources()
    with pytest.raises(DataError, match="missing"):
        build_train_loader(sources, 8, {"big": 1}, rank=0, world_size=1)
    with pytest.raises(DataError, match="duplicated source name"):
        build_train_loader([sources[0], sources[0]], 8, rank=0, world_size=1)


def test_eval_loader_is_sequential_per_source_and_shards_by_rank() -> None:
    _, sources = make_sources()
    loader = build_eval_loader(sources, 16, rank=0, world_size=1)
    batches = list(loader)
    assert [b.source.tolist() for b in batches] == [[0] * 16, [0] * 16, [0] * 8, [1] * 4]
    assert torch.cat([b.x for b in batches[:3]]).flatten().tolist() == list(range(40))
    sampler = SourceBatchSampler([40, 4], 16, rank=1, world_size=2)
    assert list(sampler) == [list(range(16, 32)), [40, 41, 42, 43]]
    other = SourceBatchSampler([40, 4], 16, rank=0, world_size=2)
    assert len(other) == 2 and not {i for b in other for i in b} & {i for b in sampler for i in b}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batch_pins_and_moves_to_cuda() -> None:
    tasks, (big, small) = make_sources()
    batch = collate_samples(tasks)([big[0], small[0]]).pin_memory()
    assert batch.x.is_pinned() and batch.labels["digit"].target.is_pinned()
    moved = move_data_to_device(batch, torch.device("cuda"))
    assert moved.x.is_cuda and moved.source.is_cuda and moved.labels["attr"].mask.is_cuda
