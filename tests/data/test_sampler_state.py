"""The training sampler's and loader's state: an epoch resumed mid-way yields the batches left."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lightning.fabric.utilities.data import _set_sampler_epoch
from lightning.fabric.utilities.types import _Stateful

from dmtl.data.batching import MultiSourceBatchSampler, ResumableDataLoader, build_train_loader
from dmtl.data.sources import ArraySource
from dmtl.errors import DataError


def _sources() -> list[ArraySource]:
    return [
        ArraySource("big", [], np.arange(40, dtype=np.float32).reshape(40, 1), {}),
        ArraySource("small", [], np.arange(100, 107, dtype=np.float32).reshape(7, 1), {}),
    ]


@settings(max_examples=30, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 30), min_size=1, max_size=3),
    world_size=st.sampled_from([1, 2]),
    epoch=st.integers(0, 5),
    data=st.data(),
)
def test_a_loaded_state_yields_exactly_the_batches_not_yet_served(
    sizes: list[int], world_size: int, epoch: int, data: Any
) -> None:
    batch = 4 * world_size
    for rank in range(world_size):
        whole = MultiSourceBatchSampler(sizes, batch, seed=7, rank=rank, world_size=world_size)
        whole.set_epoch(epoch)
        expected = list(whole)
        served = data.draw(st.integers(0, len(expected)))
        first = MultiSourceBatchSampler(sizes, batch, seed=7, rank=rank, world_size=world_size)
        first.set_epoch(epoch)
        iterator = iter(first)
        head = [next(iterator) for _ in range(served)]
        state = first.state_dict()
        assert state["epoch"] == epoch and state["served"] == served
        again = MultiSourceBatchSampler(sizes, batch, seed=7, rank=rank, world_size=world_size)
        again.load_state_dict(state)
        again.set_epoch(epoch)  # Lightning sets the same epoch again after loading
        assert head + list(again) == expected
        again.set_epoch(epoch + 1)  # the next epoch starts at its first batch
        fresh = MultiSourceBatchSampler(sizes, batch, seed=7, rank=rank, world_size=world_size)
        fresh.set_epoch(epoch + 1)
        assert list(again) == list(fresh)


def test_a_state_for_other_batches_is_refused() -> None:
    state = MultiSourceBatchSampler([10, 5], 4, seed=1, rank=0, world_size=1).state_dict()
    for other, key in [
        (MultiSourceBatchSampler([10, 5], 4, seed=2, rank=0, world_size=1), "seed"),
        (MultiSourceBatchSampler([10, 5], 6, seed=1, num_batches=5, rank=0, world_size=1),
         "batch_size"),
        (MultiSourceBatchSampler([10, 5], 4, seed=1, num_batches=9, rank=0, world_size=1),
         "num_batches"),
        (MultiSourceBatchSampler([10, 6], 4, seed=1, rank=0, world_size=1), "total_size"),
        (MultiSourceBatchSampler([10, 5], 4, seed=1, rank=0, world_size=2), "world_size"),
    ]:
        with pytest.raises(DataError, match=f"is for {key} .* this loader has {key} "):
            other.load_state_dict(state)
    sampler = MultiSourceBatchSampler([10, 5], 4, seed=1, rank=0, world_size=1)
    with pytest.raises(DataError, match="outside an epoch of 5 batches"):
        sampler.load_state_dict({**state, "served": 6})


@pytest.mark.parametrize("num_workers", [0, 2])
def test_the_loader_saves_the_batches_it_handed_out_not_those_prefetched(
    num_workers: int,
) -> None:
    def loader() -> ResumableDataLoader:
        made = build_train_loader(_sources(), 4, seed=3, num_workers=num_workers, rank=0,
                                  world_size=1)
        assert isinstance(made, ResumableDataLoader) and isinstance(made, _Stateful)
        return made

    reference = loader()
    _set_sampler_epoch(reference, 2)
    expected = [batch.x.flatten().tolist() for batch in reference]
    first = loader()
    _set_sampler_epoch(first, 2)
    iterator = iter(first)
    head = [next(iterator).x.flatten().tolist() for _ in range(3)]
    state = first.state_dict()
    assert state["epoch"] == 2 and state["served"] == 3  # workers have drawn further
    resumed = loader()
    resumed.load_state_dict(state)
    iterator = iter(resumed)  # Lightning creates the iterator, then sets the epoch
    _set_sampler_epoch(resumed, 2)
    tail = [batch.x.flatten().tolist() for batch in iterator]
    assert head + tail == expected
    assert resumed.state_dict()["served"] == len(expected)


def test_the_loader_refuses_another_batch_sampler() -> None:
    with pytest.raises(DataError, match="needs a MultiSourceBatchSampler"):
        ResumableDataLoader(torch.arange(4), batch_size=2)
