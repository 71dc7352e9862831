"""From a config to what one training run needs: tasks, sources per split, relatedness edges.

Steps, for one seed:

1. Load every source (built-in dataset, manifest, or dataset reader) and merge the tasks
   they declare with those of the config.
2. Split each source into train / val / test (its own split column) and carve a seeded
   ``val_fraction`` of the training rows for validation (with all their labels).
3. Apply the source's label-hiding regime to the remaining training rows (recorded,
   never silent).
4. Group the training rows by which tasks they are labelled for (a pattern covered by a
   larger one joins it, see :func:`_group_by_pattern`): each (source, group) is one
   stratum of the multi-source sampler, so every batch sees every task. A source's
   ``weight`` is shared equally among its groups. Rows labelled for no task carry no
   supervision and are left out of training (counted in ``unlabelled``).
5. Build the relatedness edges: domain knowledge, the built-in affect table, a CSV table,
   or an estimate from the co-annotated training rows.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dmtl.config import Config, SourceConfig, task_entry
from dmtl.core.labels import PartialLabels
from dmtl.core.relatedness import Relatedness, frequency_prior
from dmtl.core.tasks import Task
from dmtl.data.builtin import load_builtin
from dmtl.data.regimes import RegimeSpec, apply_regime
from dmtl.data.sources import ArraySource, Augment, Source
from dmtl.errors import ConfigError, DataError
from dmtl.knowledge.edges import build_edges

EncodedLabels = dict[str, np.ndarray]


@dataclass
class LoadedSource:
    """A whole source before splitting, with the knowledge edges it brings."""

    config: SourceConfig
    source: Source
    split: np.ndarray  # per row: "train", "test", ...
    knowledge: list[Relatedness] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Experiment:
    """Everything one run needs, for one seed."""

    config: Config
    seed: int
    tasks: list[Task]
    train: list[Source]
    train_weights: list[float]
    val: list[Source]
    test: list[Source]
    edges: list[Relatedness]
    records: dict[str, Any]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train[0][0].x.shape)

    @property
    def task_map(self) -> dict[str, Task]:
        return {t.name: t for t in self.tasks}

    def train_labels(self) -> PartialLabels:
        """All training labels at once (for estimation, priors and positive weights)."""
        merged = {
            t.name: np.concatenate([s.labels[t.name] for s in self.train]) for t in self.tasks
        }
        return PartialLabels.from_encoded(
            self.tasks, {k: torch.from_numpy(v) for k, v in merged.items()}
        )

    def priors(self) -> dict[str, list[float]]:
        """Class priors of the edges' source tasks (``method.prior``)."""
        if self.config.method.prior == "uniform":
            return {}
        labels = self.train_labels()
        out: dict[str, list[float]] = {}
        for edge in self.edges:
            entry = labels[edge.source.name]
            counts = torch.bincount(entry.target[entry.mask], minlength=edge.source.num_classes)
            out[edge.source.name] = frequency_prior(counts).tolist()
        return out

    def train_values(self, task: str) -> np.ndarray:
        """The encoded training labels of one task, every source's rows in order."""
        return np.concatenate([s.labels[task] for s in self.train])

    def single_task(self, task_name: str) -> Experiment:
        """The data restricted to one task's labels, with no edge (the single-task baseline)."""
        task = self.task_map[task_name]
        train, weights = [], []
        for source, weight in zip(self.train, self.train_weights, strict=True):
            keep = task.labelled_rows(source.labels[task.name])
            if keep.any():
                train.append(with_tasks(source.subset(np.flatnonzero(keep)), [task]))
                weights.append(weight)
        if not train:
            raise DataError(f"no training sample is labelled for task {task_name!r}")
        return dataclasses.replace(
            self,
            tasks=[task],
            train=train,
            train_weights=weights,
            val=[with_tasks(s, [task]) for s in self.val],
            test=[with_tasks(s, [task]) for s in self.test],
            edges=[],
        )


# ---- loading -------------------------------------------------------------------------------------


def load_source(index: int, cfg: SourceConfig, declared: dict[str, Task]) -> LoadedSource:
    """Load ``sources.<index>`` of a config; errors name that path."""
    where = f"sources.{index}"
    if cfg.builtin is not None:
        try:
            dataset = load_builtin(cfg.builtin, **cfg.options)
        except (ValueError, FileNotFoundError, OSError) as error:
            raise DataError(f"{where}.builtin: {error}") from None
        source: Source = ArraySource(
            cfg.name,
            dataset.tasks,
            dataset.inputs,
            dataset.labels,
            splits=dataset.split,
            mean=cfg.input.mean,
            std=cfg.input.std,
            augment=_augment(cfg),
        )
        return LoadedSource(cfg, source, _split_column(source), list(dataset.knowledge))
    if cfg.reader is not None:
        from dmtl.data.readers import read_dataset

        assert cfg.root is not None
        try:
            result = read_dataset(cfg.reader, cfg.root, **cfg.options)
        except (ValueError, FileNotFoundError, OSError) as error:
            raise DataError(f"{where} (reader {cfg.reader!r}): {error}") from None
        tasks = [declared.get(t.name, t) for t in result.tasks]
        source = _manifest_source(where, cfg, result.manifest, tasks)
        split = _split_column(source)
        notes = {"dropped": dict(result.dropped), "notes": list(result.notes)}
        return LoadedSource(cfg, source, split, list(getattr(result, "knowledge", [])), notes)
    assert cfg.manifest is not None
    source = _manifest_source(where, cfg, cfg.manifest, list(declared.values()))
    return LoadedSource(cfg, source, _split_column(source))


def _augment(cfg: SourceConfig) -> Augment | None:
    if cfg.input.crop_padding or cfg.input.hflip:
        return Augment(crop_padding=cfg.input.crop_padding, hflip=cfg.input.hflip)
    return None


def _manifest_source(where: str, cfg: SourceConfig, manifest: Any, tasks: list[Task]) -> Source:
    source = _read_manifest_source(where, cfg, manifest, tasks)
    if cfg.input.cache == "memory":  # decoded once, here; every copy of the source shares it
        source = source.cache_in_memory(cfg.input.cache_max_gb * 2**30, f"{where}.input.cache")
    return source


def _read_manifest_source(
    where: str, cfg: SourceConfig, manifest: Any, tasks: list[Task]
) -> Source:
    is_array = cfg.array is not None
    try:
        return Source.from_manifest(
            cfg.name,
            manifest,
            cfg.root,
            tasks,
            array=cfg.array,
            channels=None if is_array else cfg.input.channels,
            image_size=None if is_array else cfg.input.image_size,
            mean=cfg.input.mean,
            std=cfg.input.std,
            augment=_augment(cfg),
            skip_corrupt=cfg.skip_corrupt,
        )
    except ValueError as error:
        raise DataError(f"{where}: {error}") from None


def _split_column(source: Source) -> np.ndarray:
    """Each row's split; a source without a split column is all training data."""
    if source.splits is None:
        return np.full(len(source), "train", dtype=object)
    return np.asarray(source.splits, dtype=object)


def with_tasks(source: Source, tasks: Sequence[Task]) -> Source:
    """A copy of ``source`` over ``tasks``: tasks it lacks unlabelled, tasks not listed dropped."""
    out = copy.copy(source)
    out.tasks = tuple(tasks)
    out.labels = {t.name: source.labels.get(t.name, t.unlabelled(len(source))) for t in tasks}
    return out


def _merge_tasks(config: Config, loaded: Sequence[LoadedSource]) -> list[Task]:
    """The tasks of the config and of every source (a name means one task everywhere),
    with the training options of the config's entries applied."""
    tasks = declared_tasks(config)
    for item in loaded:
        for task in item.source.tasks:
            known = tasks.setdefault(task.name, task)
            if known != task:
                raise DataError(
                    f"sources: task {task.name!r} of source {item.config.name!r} has other "
                    f"{task.output_words} than declared elsewhere ({list(task.names)[:5]}... "
                    f"vs {list(known.names)[:5]}...)"
                )
    for i, entry in enumerate(config.tasks):
        found = tasks.get(entry.name)
        if found is None:
            raise ConfigError(
                [(f"tasks.{i}", f"no source brings task {entry.name!r}; declare its "
                  f"{'classes' if entry.type == 'categorical' else 'names'} to use it")]
            )
        if found.kind != entry.type:
            raise ConfigError(
                [(f"tasks.{i}.type", f"task {entry.name!r} is {found.kind}, not {entry.type}")]
            )
        tasks[entry.name] = entry.apply_options(found)
    return list(tasks.values())


def declared_tasks(config: Config) -> dict[str, Task]:
    """The tasks the config declares with their names (entries with options only left out)."""
    return {e.name: e.to_task() for e in config.tasks if e.output_names() is not None}


def _balanced_options(
    config: Config, tasks: list[Task], values: Callable[[str], np.ndarray]
) -> list[Task]:
    """Tasks whose options ask for ``balanced`` weights get them from the training labels."""
    out: list[Task] = []
    for task in tasks:
        entry = task_entry(config, task)
        option = entry.balanced_option(config.method)
        if option is not None:
            weight = task.balanced_weight(values(task.name))
            task = task.with_options(**{option: None if weight is None else list(weight)})
        out.append(task)
    return out


def load_sources(config: Config) -> list[LoadedSource]:
    declared = declared_tasks(config)
    return [load_source(i, cfg, declared) for i, cfg in enumerate(config.sources)]


# ---- building ------------------------------------------------------------------------------------


def build_experiment(
    config: Config, seed: int | None = None, loaded: Sequence[LoadedSource] | None = None
) -> Experiment:
    """Load, split, hide labels, group and relate, for one seed (default ``trainer.seed``)."""
    seed = config.trainer.seed if seed is None else seed
    loaded = list(loaded) if loaded is not None else load_sources(config)
    tasks = _merge_tasks(config, loaded)
    train: list[Source] = []
    weights: list[float] = []
    val: list[Source] = []
    test: list[Source] = []
    records: dict[str, Any] = {}
    for index, item in enumerate(loaded):
        cfg = item.config
        source = with_tasks(item.source, tasks)
        if cfg.max_samples is not None and len(source) > cfg.max_samples:
            rng = np.random.default_rng(seed)
            rows = np.sort(rng.choice(len(source), cfg.max_samples, replace=False))
            source = source.subset(rows)
            split = item.split[rows]
        else:
            split = item.split
        train_rows = np.flatnonzero(split == cfg.train_split)
        if len(train_rows) == 0:
            raise DataError(
                f"sources.{index}.train_split: no row of source {cfg.name!r} is in split "
                f"{cfg.train_split!r} (splits present: {sorted(set(split.tolist()))})"
            )
        if cfg.test_split is not None:
            test_rows = np.flatnonzero(split == cfg.test_split)
            if len(test_rows):
                test.append(
                    source.subset(test_rows, name=f"{cfg.name}[{cfg.test_split}]").with_augment(
                        None
                    )
                )
        if cfg.val_split is not None:
            val_rows = np.flatnonzero(split == cfg.val_split)
            if len(val_rows):
                val.append(
                    source.subset(val_rows, name=f"{cfg.name}[{cfg.val_split}]").with_augment(None)
                )
        training = source.subset(train_rows)
        if cfg.val_fraction > 0:
            # Carved before the regime: validation keeps all its labels, like an official
            # validation split, and the regime's record describes the rows trained on.
            rng = np.random.default_rng([seed, index, 1])
            order = rng.permutation(len(training))
            n_val = max(1, round(cfg.val_fraction * len(training)))
            val.append(
                training.subset(np.sort(order[:n_val]), name=f"{cfg.name}[val]").with_augment(None)
            )
            training = training.subset(np.sort(order[n_val:]))
        try:
            hidden, record = apply_regime(
                training.labels,
                tasks,
                RegimeSpec(cfg.regime.name, dict(cfg.regime.params)),
                seed,
            )
        except ValueError as error:
            raise DataError(f"sources.{index}.regime: {error}") from None
        training = training.with_labels(hidden, checked=True)
        source_record: dict[str, Any] = {"regime": record.to_dict(), **item.notes}
        groups = _group_by_pattern(training, tasks)
        unlabelled = len(training) - sum(len(rows) for _, rows in groups)
        source_record["train_groups"] = {name: len(rows) for name, rows in groups}
        source_record["unlabelled_not_used"] = unlabelled
        for name, rows in groups:
            train.append(training.subset(rows, name=f"{cfg.name}[{name}]"))
            weights.append(cfg.weight / len(groups))
        records[cfg.name] = source_record
    if not train:
        raise DataError("sources: no training sample is labelled for any task")
    experiment = Experiment(config, seed, tasks, train, weights, val, test, [], records)
    experiment.tasks = _balanced_options(config, tasks, experiment.train_values)
    offered = [edge for item in loaded for edge in item.knowledge]
    experiment.edges = build_edges(
        config.relatedness, experiment.task_map, offered, experiment.train_labels
    )
    return experiment


def _group_by_pattern(source: Source, tasks: Sequence[Task]) -> list[tuple[str, np.ndarray]]:
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
