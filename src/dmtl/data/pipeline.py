"""The data-side steps of an experiment, on loaded sources and plain settings: a source
over a run's tasks, the strata of the multi-source sampler, and the checks that a held-out
row never trains and that every source gives one input shape.

:func:`dmtl.build.data.build_experiment` runs them in order from the config (load ->
split -> regime -> strata -> edges, see :mod:`dmtl.build.data`); nothing here reads the
config.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence

import numpy as np

from dmtl.core.tasks import Task
from dmtl.data.manifest import Manifest
from dmtl.data.sources import ArraySource, ImageSource, Source
from dmtl.errors import DataError

UNLABELLED = "unlabelled"
"""Name of the stratum of training rows labelled for no task (``<source>[unlabelled]``)."""


def with_tasks(source: Source, tasks: Sequence[Task]) -> Source:
    """A copy of ``source`` over ``tasks``: tasks it lacks unlabelled, tasks not listed dropped."""
    out = copy.copy(source)
    out.tasks = tuple(tasks)
    out.labels = {t.name: source.labels.get(t.name, t.unlabelled(len(source))) for t in tasks}
    return out


def subsample(
    source: Source, split: np.ndarray, max_samples: int | None, seed: int
) -> tuple[Source, np.ndarray]:
    """``max_samples`` random rows of the source (train and held-out rows alike)."""
    if max_samples is None or len(source) <= max_samples:
        return source, split
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(source), max_samples, replace=False))
    return source.subset(rows), split[rows]


def group_by_pattern(source: Source, tasks: Sequence[Task]) -> list[tuple[str, np.ndarray]]:
    """The sampler's strata of a source: rows grouped by the tasks they are labelled for.

    A pattern whose tasks are all covered by another, larger pattern joins the largest
    such pattern (e.g. a few rows missing one task's label stay with the rest of their
    dataset instead of becoming a stratum of their own, and an overlap regime's
    co-annotated rows are not over-sampled). What remains are the patterns that bring a
    task combination no larger pattern covers: a dataset labelled for other tasks, or the
    few rows of a scarce task. Rows labelled for no task are left out. Largest first.
    """
    labelled = np.stack([t.labelled_rows(source.labels[t.name]) for t in tasks], axis=1)
    patterns, inverse = np.unique(labelled, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    sizes = np.bincount(inverse, minlength=len(patterns))
    order = sorted(range(len(patterns)), key=lambda k: (-sizes[k], k))
    owner: dict[int, int] = {}
    for k in order:
        if not patterns[k].any():
            continue
        covering = [
            j for j in order
            if j != k and j in owner and owner[j] == j and sizes[j] > sizes[k]
            and bool(np.all(patterns[j] >= patterns[k]))
        ]
        owner[k] = covering[0] if covering else k
    groups = []
    for k in order:
        if owner.get(k) != k:
            continue
        members = [m for m, o in owner.items() if o == k]
        name = "+".join(t.name for t, on in zip(tasks, patterns[k].tolist(), strict=True) if on)
        groups.append((name, np.flatnonzero(np.isin(inverse, members))))
    return groups


def check_zero_shot(
    index: int, name: str, labels: dict[str, np.ndarray], tasks: Sequence[Task]
) -> None:
    """A zero-shot class has no training label by definition: training rows with one are an
    error (its test rows are how it is scored)."""
    for task in tasks:
        zero_shot = set(getattr(task, "zero_shot", ()))
        if not zero_shot:
            continue
        for label, _, count in task.count_labels(labels[task.name]):
            if label in zero_shot and count:
                raise DataError(
                    f"sources.{index} ({name}): {count} training row(s) are labelled with "
                    f"class {label!r} of task {task.name!r}, a zero-shot class (no training "
                    "labels by definition); move those rows to the test split or take the "
                    "class out of zero_shot"
                )


def row_keys(source: Source) -> np.ndarray | None:
    """What each row's input is, to find one row in two places: its image file (the absolute
    path, ``.`` and ``..`` resolved as text, symbolic links not followed), or its array
    (:attr:`~dmtl.data.sources.ArraySource.array_origin`: the ``.npy`` file or the built-in
    dataset) and index there. ``None`` for a source of another kind (not compared)."""
    if isinstance(source, ImageSource):
        return np.array([os.path.abspath(p) for p in source.paths], dtype=object)
    if isinstance(source, ArraySource):
        origin = source.array_origin or f"<in-memory array {id(source.array)}>"
        return np.array([f"{origin}, row {i}" for i in source.index.tolist()], dtype=object)
    return None


def check_held_out_rows_do_not_train(
    train: Sequence[Source],
    val: Sequence[Source],
    test: Sequence[Source],
    index: Mapping[str, int],
) -> None:
    """A validation or test row that is also a training row (the same input, see
    :func:`row_keys`), or a test row that is also a validation row, is an error naming
    both (``index``: each source name's position in the config, for messages): e.g. a
    test manifest listed again as a training source, or an image listed in two splits of
    one manifest. Scores on such rows would measure memory."""
    seen: dict[str, tuple[str, Source, int]] = {}
    groups = [("training", train), ("validation", val), ("test", test)]
    for role, sources in groups:
        for source in sources:
            keys = row_keys(source)
            if keys is None:
                continue
            clashes = [
                (p, seen[k]) for p, k in enumerate(keys.tolist())
                if k in seen and seen[k][0] != role
            ]
            if clashes:
                _raise_leak(index, role, source, clashes, keys)
            for position, key in enumerate(keys.tolist()):
                seen.setdefault(key, (role, source, position))


def _raise_leak(
    index: Mapping[str, int], role: str, source: Source,
    clashes: list[tuple[int, tuple[str, Source, int]]], keys: np.ndarray,
) -> None:
    position, (other_role, other, other_position) = clashes[0]
    here, there = _base_name(source.name), _base_name(other.name)
    more = f" ({len(clashes) - 1} more such row(s))" if len(clashes) > 1 else ""
    hint = (
        "the source lists this input in two rows that went to different splits: keep one"
        if here == there
        else "give a test (or validation) set once, as its own source with split: test "
        "(or val), never also as a training source"
    )
    raise DataError(
        f"sources.{index.get(here, '?')} ({here}): {role} row {_describe_row(source, position)} "
        f"is also a {other_role} row of sources.{index.get(there, '?')} ({there}): "
        f"{_describe_row(other, other_position)}; both are {keys[position]}{more}. A row is "
        f"trained on or held out, never both: {hint}"
    )


def check_input_shapes(sources: Sequence[Source], index: Mapping[str, int]) -> None:
    """Every source gives inputs of one shape (a batch draws rows of every source, and one
    model takes them): else an error (``index`` as for
    :func:`check_held_out_rows_do_not_train`) naming the two sources and an input of each."""
    first: tuple[Source, tuple[int, ...]] | None = None
    for source in sources:
        if len(source) == 0:
            continue
        if isinstance(source, ImageSource):  # its first image against the source's first
            source.check_sizes(np.zeros(1, np.int64), [source.raw_input(0)])
        shape = source.input_shape
        if first is None:
            first = (source, shape)
        elif shape != first[1]:
            other, expected = first
            here, there = _base_name(source.name), _base_name(other.name)
            raise DataError(
                f"sources.{index.get(here, '?')} ({here}): inputs of shape {shape} "
                f"({_first_input(source)}), but sources.{index.get(there, '?')} ({there}) has "
                f"{expected} ({_first_input(other)}); one model takes one input shape: set "
                "input.image_size (and input.channels) on the sources of image files to "
                "resize them to one size"
            )


def _first_input(source: Source) -> str:
    """The first input of a source, for messages: its image file, else its row."""
    if isinstance(source, ImageSource):
        return f"e.g. {source.paths[0]}"
    return f"e.g. id {source.ids[0]!r}"


def _base_name(name: str) -> str:
    """The config name of a source from its split's name (``s[test]`` -> ``s``)."""
    return name[: name.rindex("[")] if name.endswith("]") and "[" in name else name


def _describe_row(source: Source, position: int) -> str:
    """Where a row of ``source`` comes from: its manifest file and row, else its id."""
    manifest = getattr(source, "manifest", None)
    ident = source.ids[position]
    if isinstance(manifest, Manifest):
        rows = np.flatnonzero(manifest.ids == ident)
        if len(rows):
            return manifest.where(int(rows[0]))
    return f"id {ident!r}"


__all__ = [
    "UNLABELLED",
    "check_held_out_rows_do_not_train",
    "check_input_shapes",
    "check_zero_shot",
    "group_by_pattern",
    "row_keys",
    "subsample",
    "with_tasks",
]
