"""Batches and loaders: every training batch holds every source in set proportions.

- :class:`Batch`: ``x``, :class:`~dmtl.core.labels.PartialLabels` and the source index
  of each sample; has ``to()`` (Lightning's ``move_data_to_device`` calls it) and
  ``pin_memory()``.
- :func:`collate_samples`: the collate function building a :class:`Batch`.
- :class:`MultiSourceBatchSampler`: the training batch sampler (proportions,
  cycling of small sources, seed/epoch determinism, DDP sharding).
- :class:`SourceBatchSampler`: evaluation batches, each from one source, in order.
- :class:`ResumableDataLoader`: the training loader, whose place in the epoch is saved
  in checkpoints (exact resumption in the middle of an epoch).
- :func:`build_train_loader`, :func:`build_eval_loader`: DataLoaders over sources.

With DDP under Lightning, build the Trainer with ``use_distributed_sampler=False``:
these samplers shard across ranks themselves (Lightning refuses to wrap a
custom batch sampler otherwise).

>>> batch_counts(10, [1, 1, 1])
[4, 3, 3]
>>> batch_counts(8, [100, 1])
[7, 1]
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, DataLoader, Sampler

from dmtl.core.labels import PartialLabels, TaskLabels
from dmtl.core.tasks import Task
from dmtl.data.sources import Sample, SampleBatch, Source
from dmtl.errors import DataError


@dataclass(frozen=True)
class Batch:
    """A collated batch: inputs ``x`` ``(N, ...)``, partial labels, source index ``(N,)``."""

    x: Tensor
    labels: PartialLabels
    source: Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def to(self, *args: Any, **kwargs: Any) -> Batch:
        """``Tensor.to`` on ``x``; labels and source indices only change device.

        Lightning's ``move_data_to_device`` calls ``batch.to(device, non_blocking=...)``;
        a dtype (e.g. ``batch.to(torch.float16)``) applies to ``x`` alone, so class
        indices and masks keep their types.
        """
        device = _device_of(args, kwargs)
        x = self.x.to(*args, **kwargs)
        if device is None or (x is self.x and self.source.device == device):
            # nothing moves (e.g. CPU to CPU, every step): labels and sources stay as they are
            return Batch(x, self.labels, self.source)
        non_blocking = bool(kwargs.get("non_blocking", False))
        return Batch(
            x,
            self.labels.to(device, non_blocking=non_blocking),
            self.source.to(device, non_blocking=non_blocking),
        )

    def pin_memory(self) -> Batch:
        """Page-locked copy, for ``DataLoader(pin_memory=True)``."""
        labels = {
            k: TaskLabels(v.target.pin_memory(), v.mask.pin_memory())
            for k, v in self.labels.items()
        }
        tasks = list(self.labels.tasks.values())
        return Batch(self.x.pin_memory(), PartialLabels(tasks, labels), self.source.pin_memory())


def _device_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.device | None:
    """The device named in ``Tensor.to``-style arguments, if any."""
    if kwargs.get("device") is not None:
        return torch.device(kwargs["device"])
    for arg in args:
        if isinstance(arg, Tensor):
            return arg.device
        if isinstance(arg, (str, int, torch.device)):
            return torch.device(arg)
    return None


class SampleCollator:
    """Collate samples into a :class:`Batch` (a class, so workers can pickle it).

    Takes either :class:`Sample` objects (one per row) or :class:`SampleBatch` chunks
    (rows of one source each, as :meth:`SourceConcat.__getitems__` returns them): chunks
    are concatenated as they are. A task missing from a sample's labels (its source
    lacks the task) is unlabelled.
    """

    def __init__(self, tasks: Sequence[Task]) -> None:
        self.tasks = tuple(tasks)
        self._fillers = {t.name: torch.as_tensor(t.unlabelled(1)) for t in self.tasks}

    def __call__(self, samples: Sequence[Sample] | Sequence[SampleBatch]) -> Batch:
        if not samples:
            raise DataError("cannot collate an empty batch")
        if isinstance(samples[0], SampleBatch):
            return self._from_chunks(samples)  # type: ignore[arg-type]
        chunks = [
            SampleBatch(s.x.unsqueeze(0), {k: v.unsqueeze(0) for k, v in s.labels.items()},
                        s.source)
            for s in samples
        ]
        return self._from_chunks(chunks)

    def _from_chunks(self, chunks: Sequence[SampleBatch]) -> Batch:
        shapes = {tuple(c.x.shape[1:]) for c in chunks}
        if len(shapes) > 1:
            by_source = sorted({(c.source, tuple(c.x.shape[1:])) for c in chunks})
            raise DataError(
                "samples in one batch have different input shapes "
                f"(source index, shape): {by_source[:6]}; give the image sources one "
                "image_size (and channels) so that inputs can be stacked"
            )
        x = chunks[0].x if len(chunks) == 1 else torch.cat([c.x for c in chunks])
        encoded: dict[str, Tensor] = {}
        for name, filler in self._fillers.items():
            parts = [
                c.labels[name] if name in c.labels
                else filler.expand(len(c.x), *filler.shape[1:])
                for c in chunks
            ]
            encoded[name] = parts[0] if len(parts) == 1 else torch.cat(parts)
        source = torch.cat(
            [torch.full((len(c.x),), c.source, dtype=torch.long) for c in chunks]
        )
        return Batch(x, PartialLabels.from_encoded(self.tasks, encoded), source)


def collate_samples(tasks: Sequence[Task]) -> SampleCollator:
    """A collate function building a :class:`Batch` over ``tasks``."""
    return SampleCollator(tasks)


def batch_counts(batch_size: int, proportions: Sequence[float]) -> list[int]:
    """Samples per source in a batch: largest-remainder rounding, at least 1 each.

    Quotas are ``batch_size * p_s / sum(p)``; each source gets the floor of its quota
    (at least 1), and the samples left go to the largest remainders (ties: first
    source). If the minimum of 1 overshoots, the most over-served sources give back.
    """
    weights = np.asarray(proportions, dtype=np.float64)
    if weights.ndim != 1 or len(weights) == 0:
        raise DataError("proportions: expected one weight per source")
    if not np.all(np.isfinite(weights)) or bool((weights <= 0).any()):
        raise DataError(f"proportions must be positive and finite, got {weights.tolist()}")
    if batch_size < len(weights):
        raise DataError(
            f"a batch of {batch_size} cannot hold a sample of each of {len(weights)} sources"
        )
    quotas = batch_size * weights / weights.sum()
    counts = np.maximum(np.floor(quotas), 1).astype(np.int64)
    while counts.sum() < batch_size:
        counts[int(np.argmax(quotas - counts))] += 1
    while counts.sum() > batch_size:
        excess = np.where(counts > 1, counts - quotas, -np.inf)
        counts[int(np.argmax(excess))] -= 1
    return [int(c) for c in counts]


def rank_and_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """``(rank, world_size)`` as given, else from ``torch.distributed`` if set up, else 0/1."""
    initialised = torch.distributed.is_available() and torch.distributed.is_initialized()
    if world_size is None:
        world_size = torch.distributed.get_world_size() if initialised else 1
    if rank is None:
        rank = torch.distributed.get_rank() if initialised else 0
    if world_size < 1 or not 0 <= rank < world_size:
        raise DataError(f"need 0 <= rank < world_size, got rank {rank}, world_size {world_size}")
    return rank, world_size


class MultiSourceBatchSampler(Sampler[list[int]]):
    """Batches over concatenated sources, every batch holding every source in set proportions.

    Indices are offset as in :class:`~torch.utils.data.ConcatDataset` (source ``s``
    starts at ``sum(sizes[:s])``).

    - **Composition**: ``batch_size`` is the *global* batch size. With ``W`` ranks each
      rank gets ``batch_size // W`` samples per step (``batch_size`` must be a multiple
      of ``W``); the per-rank count of each source, ``c_s``, is
      :func:`batch_counts` of that size and ``proportions`` (default equal shares),
      so every rank sees every source at every step.
    - **Order**: each source is drawn as a stream of fresh permutations of its rows
      ("passes"): no repeat within a pass; a source smaller than its share is cycled,
      reshuffled at each pass (so rows repeat across passes and epochs). When a pass
      ends inside a global step, the rows that step already holds are moved to the
      end of the next pass, so a step never repeats a row (if the source has at least
      ``W * c_s`` rows). The streams depend only on ``(seed, epoch, source)``, not on
      global random state.
    - **Epoch length**: the number of batches needed for the source that takes the
      longest (by its share) to be seen once,
      ``max_s ceil(sizes[s] / (W * c_s))``; ``num_batches`` overrides it.
    - **Class-balanced sources** (``classes[s]`` given: a class index per row, ``-1`` for
      rows without that task's label): each draw of source ``s`` first picks a group,
      each of the ``K`` classes present with probability ``f / K`` and the unlabelled
      rows with probability ``1 - f`` (``f``: the source's labelled fraction), then the
      next row of that group's own stream of permutations. Rows of rare classes repeat
      within an epoch; the epoch length is unchanged.
    - **DDP**: the global draw of a step holds ``W * c_s`` rows of source ``s``; rank
      ``r`` takes the ``r``-th slice, so ranks see disjoint rows within a step and the
      same number of batches. ``rank``/``world_size`` default to ``torch.distributed``
      when it is initialised, else 0/1.

    - **State** (mid-epoch resumption): :meth:`state_dict` holds the epoch and the
      batches of it already served; after :meth:`load_state_dict` the next iteration
      starts at the first batch not served, so an interrupted epoch goes on with the
      same batches in the same order. :class:`ResumableDataLoader` saves the batches
      it has *handed out* instead (workers draw from the sampler ahead of use).

    Call :meth:`set_epoch` at every epoch (Lightning does, through ``.sampler``).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        batch_size: int,
        proportions: Sequence[float] | None = None,
        *,
        num_batches: int | None = None,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        classes: Sequence[np.ndarray | None] | None = None,
    ) -> None:
        self.sizes = [int(s) for s in sizes]
        if not self.sizes:
            raise DataError("the batch sampler needs at least one source")
        empty = [i for i, s in enumerate(self.sizes) if s <= 0]
        if empty:
            raise DataError(f"source(s) {empty} have no samples")
        self.rank, self.world_size = rank_and_world(rank, world_size)
        if batch_size < 1 or batch_size % self.world_size:
            raise DataError(
                f"batch_size {batch_size} must be a positive multiple of world_size "
                f"{self.world_size} (it is the global batch, split across ranks)"
            )
        if seed < 0:
            raise DataError(f"seed must be >= 0, got {seed}")
        self.batch_size = batch_size
        self.per_rank = batch_size // self.world_size
        weights = [1.0] * len(self.sizes) if proportions is None else list(proportions)
        if len(weights) != len(self.sizes):
            raise DataError(
                f"{len(weights)} proportions given for {len(self.sizes)} sources"
            )
        self.counts = batch_counts(self.per_rank, weights)
        """Samples of each source in one rank's batch."""
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        pairs = zip(self.sizes, self.counts, strict=True)
        natural = max(math.ceil(n / (self.world_size * c)) for n, c in pairs)
        if num_batches is not None and num_batches < 1:
            raise DataError(f"num_batches must be >= 1, got {num_batches}")
        self.num_batches = natural if num_batches is None else int(num_batches)
        self.seed = seed
        self.epoch = 0
        self.classes = _checked_classes(classes, self.sizes)
        """Per source: a class index per row (class-balanced draws), or ``None``."""
        self.served = 0
        """Batches of :attr:`epoch` this sampler's iterator has yielded."""
        self._resume_at = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches :meth:`__iter__` yields.

        A new epoch starts at its first batch; the epoch of a loaded state keeps its
        resumption point (Lightning sets the epoch again after loading the state).
        """
        if epoch < 0:
            raise DataError(f"epoch must be >= 0, got {epoch}")
        if int(epoch) != self.epoch:
            self._resume_at = 0
        self.epoch = int(epoch)

    def state_dict(self) -> dict[str, int]:
        """The position in the epochs: ``epoch`` and the batches of it ``served``.

        With the settings that define the batches (``seed``, ``num_batches``,
        ``batch_size``, ``world_size``, the total of ``sizes``), so that a state is
        never loaded into a sampler drawing other batches.
        """
        return {
            "epoch": self.epoch,
            "served": self.served,
            "seed": self.seed,
            "num_batches": self.num_batches,
            "batch_size": self.batch_size,
            "world_size": self.world_size,
            "total_size": sum(self.sizes),
        }

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Continue from ``state``: the next iteration yields the batches not yet served.

        Raises :class:`~dmtl.errors.DataError` if the state was saved by a sampler
        drawing other batches (another seed, epoch length, batch size, world size or
        data size), naming the setting.
        """
        mine = self.state_dict()
        for key in ("seed", "num_batches", "batch_size", "world_size", "total_size"):
            if key in state and int(state[key]) != mine[key]:
                raise DataError(
                    f"the saved position in the training batches is for {key} {state[key]}, "
                    f"this loader has {key} {mine[key]}; the batches would differ"
                )
        served = int(state["served"])
        if not 0 <= served <= self.num_batches:
            raise DataError(
                f"the saved position ({served} batches served) is outside an epoch of "
                f"{self.num_batches} batches"
            )
        self.epoch = int(state["epoch"])
        self.served = self._resume_at = served

    @property
    def sampler(self) -> MultiSourceBatchSampler:
        """This object: Lightning calls ``batch_sampler.sampler.set_epoch(epoch)``."""
        return self

    def __len__(self) -> int:
        return self.num_batches

    def _stream(self, source: int) -> np.ndarray:
        """Rows of ``source`` for this rank, shape ``(num_batches, c_s)``, offset applied."""
        size, count = self.sizes[source], self.counts[source]
        rng = np.random.default_rng([self.seed, self.epoch, source])
        classes = self.classes[source]
        if classes is None:
            drawn = _draw(rng, size, self.num_batches, self.world_size * count)
        else:
            drawn = _draw_balanced(rng, classes, self.num_batches, self.world_size * count)
        per_rank = drawn.reshape(self.num_batches, self.world_size, count)[:, self.rank, :]
        return per_rank + self.offsets[source]

    def __iter__(self) -> Iterator[list[int]]:
        start, self._resume_at = self._resume_at, 0
        self.served = start
        streams = [self._stream(s) for s in range(len(self.sizes))]
        table = np.concatenate(streams, axis=1)
        for row in table[start:]:
            self.served += 1
            yield row.tolist()

    def resume_point(self) -> int:
        """The batch the next iteration starts at (0 unless a state was loaded)."""
        return self._resume_at


def _draw(rng: np.random.Generator, size: int, steps: int, per_step: int) -> np.ndarray:
    """``(steps, per_step)`` rows of ``range(size)`` from consecutive permutations (passes).

    At a pass boundary inside a step, the rows the step already holds go to the end of
    the new pass, so a step has no repeated row when ``per_step <= size``.
    """
    total = steps * per_step
    out = np.empty(total, dtype=np.int64)
    perm, pos, filled = rng.permutation(size), 0, 0
    while filled < total:
        if pos == size:
            perm, pos = rng.permutation(size), 0
            current = out[filled - filled % per_step : filled]
            if len(current):
                used = np.isin(perm, current)
                perm = np.concatenate([perm[~used], perm[used]])
        take = min(size - pos, total - filled)
        out[filled : filled + take] = perm[pos : pos + take]
        filled += take
        pos += take
    return out.reshape(steps, per_step)


def _checked_classes(
    classes: Sequence[np.ndarray | None] | None, sizes: Sequence[int]
) -> list[np.ndarray | None]:
    if classes is None:
        return [None] * len(sizes)
    if len(classes) != len(sizes):
        raise DataError(f"{len(classes)} class arrays given for {len(sizes)} sources")
    out: list[np.ndarray | None] = []
    for s, (values, size) in enumerate(zip(classes, sizes, strict=True)):
        if values is None:
            out.append(None)
            continue
        values = np.asarray(values, dtype=np.int64).reshape(-1)
        if len(values) != size:
            raise DataError(f"source {s}: {len(values)} class indices for {size} rows")
        out.append(None if not bool((values >= 0).any()) else values)
    return out


def balanced_group_probabilities(classes: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """The groups of a class-balanced draw and their probabilities.

    Groups: the rows of each class present (in class order), then the unlabelled rows
    (class ``-1``) if any. A class gets ``f / K`` (``K`` classes present, ``f`` the
    labelled fraction of rows), the unlabelled rows ``1 - f``.

    >>> groups, p = balanced_group_probabilities(np.array([0, 0, 0, 1, -1]))
    >>> [g.tolist() for g in groups], p.tolist()
    ([[0, 1, 2], [3], [4]], [0.4, 0.4, 0.2])
    """
    present = np.unique(classes[classes >= 0])
    groups = [np.flatnonzero(classes == c) for c in present]
    unlabelled = np.flatnonzero(classes < 0)
    labelled = (len(classes) - len(unlabelled)) / len(classes)
    probabilities = [labelled / len(present)] * len(present)
    if len(unlabelled):
        groups.append(unlabelled)
        probabilities.append(len(unlabelled) / len(classes))
    return groups, np.asarray(probabilities)


def _draw_balanced(
    rng: np.random.Generator, classes: np.ndarray, steps: int, per_step: int
) -> np.ndarray:
    """``(steps, per_step)`` rows drawn group by group (:func:`balanced_group_probabilities`):
    a group per draw, then the next row of that group's stream of permutations."""
    groups, probabilities = balanced_group_probabilities(classes)
    picks = rng.choice(len(groups), size=steps * per_step, p=probabilities)
    out = np.empty(steps * per_step, dtype=np.int64)
    for g, rows in enumerate(groups):
        where = np.flatnonzero(picks == g)
        if len(where):
            out[where] = rows[_draw(rng, len(rows), 1, len(where))[0]]
    return out.reshape(steps, per_step)


class ResumableDataLoader(DataLoader[Sample]):
    """A training DataLoader whose place in the epoch goes into Lightning's checkpoints.

    Lightning saves the ``state_dict()`` of a training loader that has one (and, on a
    resume in the middle of an epoch, hands it back through ``load_state_dict``): here
    the :class:`MultiSourceBatchSampler`'s state, with ``served`` counting the batches
    this loader has *handed out* in the epoch. (With workers the sampler runs ahead of
    the batches in use, so its own count would skip batches that were never trained on.)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.batch_sampler, MultiSourceBatchSampler):
            raise DataError("a ResumableDataLoader needs a MultiSourceBatchSampler")
        self._handed_out = 0

    @property
    def position(self) -> MultiSourceBatchSampler:
        """The batch sampler, which knows the epoch and where it starts."""
        assert isinstance(self.batch_sampler, MultiSourceBatchSampler)
        return self.batch_sampler

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        self._handed_out = self.position.resume_point()  # read before the sampler starts
        for batch in super().__iter__():
            self._handed_out += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        """The sampler's state, ``served`` being the batches of the epoch handed out."""
        return {**self.position.state_dict(), "served": self._handed_out}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Go on from ``state`` (see :meth:`MultiSourceBatchSampler.load_state_dict`)."""
        self.position.load_state_dict(state)
        self._handed_out = self.position.resume_point()


class SourceBatchSampler(Sampler[list[int]]):
    """Evaluation batches: each source in order, in batches of ``batch_size`` (never mixed).

    With several ranks, batches are dealt round-robin (batch ``k`` to rank
    ``k % world_size``): ranks see disjoint samples, all samples once, and their
    batch counts may differ by one.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        batch_size: int,
        *,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        self.rank, self.world_size = rank_and_world(rank, world_size)
        self.batches: list[list[int]] = []
        start = 0
        for size in (int(s) for s in sizes):
            for first in range(0, size, batch_size):
                stop = min(first + batch_size, size)
                self.batches.append(list(range(start + first, start + stop)))
            start += size
        self.batch_size = batch_size

    def __len__(self) -> int:
        return len(self.batches[self.rank :: self.world_size])

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches[self.rank :: self.world_size])


class SourceConcat(ConcatDataset[Sample]):
    """Concatenated sources whose samples carry the index of their source.

    DataLoader asks for a whole batch at once (:meth:`__getitems__`): each run of
    indices from one source is fetched by that source in one call
    (:meth:`~dmtl.data.sources.Source.get_batch`).
    """

    def __init__(self, sources: Sequence[Source]) -> None:
        super().__init__(list(sources))
        self._starts = np.asarray([0, *self.cumulative_sizes[:-1]], dtype=np.int64)

    def __getitem__(self, idx: int) -> Sample:
        if idx < 0:
            idx += len(self)
        source = int(np.searchsorted(self.cumulative_sizes, idx, side="right"))
        start = self.cumulative_sizes[source - 1] if source else 0
        return self.datasets[source][idx - start]._replace(source=source)

    def __getitems__(self, indices: Sequence[int]) -> list[SampleBatch]:
        """The samples of ``indices``, in order, as one chunk per run of a source's rows."""
        index = np.asarray(indices, dtype=np.int64).reshape(-1)
        index = np.where(index < 0, index + len(self), index)
        if len(index) and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"indices outside 0..{len(self) - 1}: {index.tolist()[:8]}")
        owner = np.searchsorted(self.cumulative_sizes, index, side="right")
        cuts = np.flatnonzero(np.diff(owner)) + 1
        chunks: list[SampleBatch] = []
        for run in np.split(np.arange(len(index)), cuts):
            if not len(run):
                continue
            source = int(owner[run[0]])
            dataset: Source = self.datasets[source]  # type: ignore[assignment]
            chunk = dataset.get_batch(index[run] - self._starts[source])
            chunks.append(chunk._replace(source=source))
        return chunks


def union_tasks(sources: Sequence[Source]) -> list[Task]:
    """Tasks of all sources (first-seen order); a name must mean the same task everywhere."""
    tasks: dict[str, Task] = {}
    for source in sources:
        for task in source.tasks:
            if task.name in tasks and tasks[task.name] != task:
                raise DataError(
                    f"source {source.name!r} defines task {task.name!r} differently "
                    "from an earlier source"
                )
            tasks.setdefault(task.name, task)
    return list(tasks.values())


def _check_sources(sources: Sequence[Source]) -> None:
    if not sources:
        raise DataError("no sources given")
    names = [s.name for s in sources]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise DataError(f"duplicated source name(s): {', '.join(duplicated)}")


def _weights(
    sources: Sequence[Source], proportions: Sequence[float] | Mapping[str, float] | None
) -> list[float] | None:
    if proportions is None or not isinstance(proportions, Mapping):
        return None if proportions is None else list(proportions)
    names = [s.name for s in sources]
    missing = [n for n in names if n not in proportions]
    unknown = sorted(set(proportions) - set(names))
    if missing or unknown:
        raise DataError(
            "proportions must name every source exactly: "
            f"missing {missing or 'none'}, unknown {unknown or 'none'}"
        )
    return [float(proportions[n]) for n in names]


def build_train_loader(
    sources: Sequence[Source],
    batch_size: int,
    proportions: Sequence[float] | Mapping[str, float] | None = None,
    seed: int = 0,
    num_workers: int = 0,
    *,
    num_batches: int | None = None,
    tasks: Sequence[Task] | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    pin_memory: bool = False,
    worker_start: str | None = None,
) -> DataLoader[Sample]:
    """Training DataLoader over ``sources`` with a :class:`MultiSourceBatchSampler`.

    ``batch_size`` is global (split across ranks). ``proportions``: per-source weights,
    as a list or a mapping from source name (default: equal shares). ``tasks``
    default to the union of the sources' tasks. A source whose ``balance`` names one of its
    categorical tasks is drawn class-balanced (:class:`MultiSourceBatchSampler`).
    Augmentation uses torch's RNG: in
    workers, seeded per worker from a generator seeded with ``seed``; with
    ``num_workers=0``, the main process's global RNG. ``worker_start``: how worker
    processes start (``multiprocessing`` start method; ``None``: the platform's default).
    """
    _check_sources(sources)
    sampler = MultiSourceBatchSampler(
        [len(s) for s in sources], batch_size, _weights(sources, proportions),
        num_batches=num_batches, seed=seed, rank=rank, world_size=world_size,
        classes=[balance_classes(s) for s in sources],
    )
    return ResumableDataLoader(
        SourceConcat(sources),
        batch_sampler=sampler,
        collate_fn=collate_samples(union_tasks(sources) if tasks is None else tasks),
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(seed),
        multiprocessing_context=worker_start if num_workers > 0 else None,
    )


def balance_classes(source: Source) -> np.ndarray | None:
    """The class of each row of ``source`` for its ``balance`` task (``-1``: unlabelled),
    or ``None`` when it has none (or the task is not among its labels)."""
    task = next((t for t in source.tasks if t.name == source.balance), None)
    if task is None or task.name not in source.labels:
        return None
    values = source.labels[task.name]
    classes = task.strata(values)
    if classes is None:
        return None
    return np.where(task.labelled_rows(values), classes, -1)


def build_eval_loader(
    sources: Sequence[Source],
    batch_size: int,
    num_workers: int = 0,
    *,
    tasks: Sequence[Task] | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    pin_memory: bool = False,
    worker_start: str | None = None,
) -> DataLoader[Sample]:
    """Evaluation DataLoader: each source in order, batches never mix sources, no augmentation.

    ``batch_size`` is per rank; see :class:`SourceBatchSampler` for DDP. ``worker_start``:
    as in :func:`build_train_loader`.
    """
    _check_sources(sources)
    plain = [s.with_augment(None) for s in sources]
    return DataLoader(
        SourceConcat(plain),
        batch_sampler=SourceBatchSampler(
            [len(s) for s in plain], batch_size, rank=rank, world_size=world_size
        ),
        collate_fn=collate_samples(union_tasks(plain) if tasks is None else tasks),
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
        multiprocessing_context=worker_start if num_workers > 0 else None,
    )
