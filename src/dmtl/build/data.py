"""From a config to what one training run needs: tasks, sources per split, relatedness edges.

The config's one reader for data: the steps themselves take plain settings
(:mod:`dmtl.data.pipeline`, :mod:`dmtl.data.regimes`, :mod:`dmtl.knowledge.edges`).

Steps, for one seed:

1. Load every source (built-in dataset, manifest, or dataset reader) and merge the tasks
   they declare with those of the config.
2. Split each source into train / val / test (its own split column, or ``split`` for a
   source held out whole, e.g. a test manifest) and carve a seeded ``val_fraction`` of
   the training rows for validation. Training rows labelled with a zero-shot class are an
   error.
3. Apply the source's label-hiding regime to the remaining training rows (recorded,
   never silent), and, unless ``trainer.validation_labels: full``, to its validation
   rows too: validation then has the labels a user in that regime would have.
4. Group the training rows by which tasks they are labelled for (a pattern covered by a
   larger one joins it, see :func:`dmtl.data.pipeline.group_by_pattern`): each (source,
   group) is one stratum of the multi-source sampler, so every batch sees every task. A
   source's ``weight`` is shared equally among its groups. Rows labelled for no task form one more
   stratum, ``<source>[unlabelled]``: only distribution matching learns from them, and a
   run without it leaves them out (:meth:`Experiment.without_unlabelled`).
5. Build the relatedness edges: domain knowledge, the built-in affect table, a CSV table,
   or an estimate from the co-annotated training rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dmtl.build.edges import edge_specs
from dmtl.build.transforms import input_transforms, resolve_inputs
from dmtl.config import Config, SourceConfig, task_entry
from dmtl.core.labels import PartialLabels
from dmtl.core.relatedness import Relatedness, frequency_prior
from dmtl.core.tasks import Task, task_from_dict
from dmtl.data.builtin import load_builtin
from dmtl.data.pipeline import (
    UNLABELLED,
    check_held_out_rows_do_not_train,
    check_input_shapes,
    check_zero_shot,
    group_by_pattern,
    subsample,
    with_tasks,
)
from dmtl.data.regimes import RegimeSpec, apply_regime
from dmtl.data.sources import ArraySource, Source
from dmtl.errors import ConfigError, DataError
from dmtl.knowledge.edges import build_edges


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

    def without_unlabelled(self) -> Experiment:
        """The experiment without its strata of unlabelled rows (for a method that cannot
        learn from them: only distribution matching does)."""
        keep = [i for i, s in enumerate(self.train) if not s.name.endswith(f"[{UNLABELLED}]")]
        if len(keep) == len(self.train):
            return self
        return dataclasses.replace(
            self,
            train=[self.train[i] for i in keep],
            train_weights=[self.train_weights[i] for i in keep],
        )

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
        array_source = ArraySource(
            cfg.name,
            dataset.tasks,
            dataset.inputs,
            dataset.labels,
            splits=dataset.split,
            mean=cfg.input.mean,
            std=cfg.input.std,
        )
        options = sorted(cfg.options.items())
        array_source.array_origin = f"built-in dataset {cfg.builtin!r} {options}"
        source = _prepared(where, cfg, array_source)
        split = _split_column(source, cfg, where)
        return LoadedSource(cfg, source, split, list(dataset.knowledge))
    if cfg.reader is not None:
        from dmtl.data.readers import read_dataset

        assert cfg.root is not None
        try:
            result = read_dataset(cfg.reader, cfg.root, **cfg.options)
        except (ValueError, FileNotFoundError, OSError) as error:
            raise DataError(f"{where} (reader {cfg.reader!r}): {error}") from None
        tasks = [declared.get(t.name, t) for t in result.tasks]
        source = _manifest_source(where, cfg, result.manifest, tasks)
        split = _split_column(source, cfg, where)
        notes = {"dropped": dict(result.dropped), "notes": list(result.notes)}
        return LoadedSource(cfg, source, split, list(getattr(result, "knowledge", [])), notes)
    if cfg.shards is not None:
        source, knowledge = _shard_source(where, cfg)
        return LoadedSource(cfg, source, _split_column(source, cfg, where), knowledge)
    assert cfg.manifest is not None
    source = _manifest_source(where, cfg, cfg.manifest, list(declared.values()))
    return LoadedSource(cfg, source, _split_column(source, cfg, where))


def _shard_source(where: str, cfg: SourceConfig) -> tuple[Source, list[Relatedness]]:
    """A packed source (``shards``), read as its original files were (docs/datasets.md)."""
    from dmtl.data.shards import open_pack, shard_source

    assert cfg.shards is not None
    if cfg.input.cache == "memory":
        raise DataError(f"{where}.input.cache: 'memory' applies to image files and arrays; a "
                        "packed source is read from its chunks (set input.cache: none)")
    try:
        images = open_pack(cfg.shards, cfg.shards_cache).kind == "image"
        source = shard_source(
            cfg.name, cfg.shards, cache_dir=cfg.shards_cache,
            channels=cfg.input.channels if images else None,
            image_size=cfg.input.decode_size() if images else None,
            mean=cfg.input.mean, std=cfg.input.std,
        )
    except DataError as error:
        raise DataError(f"{where}.shards: {error}") from None
    return _prepared(where, cfg, source), source.pack.edges()


def _prepared(where: str, cfg: SourceConfig, source: Source) -> Source:
    """The source with its input transforms (``input``) and class-balanced draws (``balance``)."""
    source = input_transforms(source, cfg, where)
    if cfg.balance is None:
        return source
    try:
        return source.with_balance(cfg.balance)
    except DataError as error:
        raise DataError(f"{where}.balance: {error}") from None


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
        source = Source.from_manifest(
            cfg.name,
            manifest,
            cfg.root,
            tasks,
            array=cfg.array,
            channels=None if is_array else cfg.input.channels,
            image_size=None if is_array else cfg.input.decode_size(),
            mean=cfg.input.mean,
            std=cfg.input.std,
            skip_corrupt=cfg.skip_corrupt,
            allow_outside_root=cfg.allow_outside_root,
        )
    except ValueError as error:
        raise DataError(f"{where}: {error}") from None
    return _prepared(where, cfg, source)


def _split_column(source: Source, cfg: SourceConfig, where: str) -> np.ndarray:
    """Each row's split: the source's split column; else the split ``split`` declares for the
    whole source; else all rows train."""
    if cfg.split is not None:
        if source.splits is not None:
            raise DataError(
                f"{where}.split: source {cfg.name!r} has its own split column; 'split' declares "
                "the split of a source without one (drop one of the two)"
            )
        return np.full(len(source), cfg.split_name(), dtype=object)
    if source.splits is None:
        return np.full(len(source), cfg.train_split, dtype=object)
    return np.asarray(source.splits, dtype=object)


def split_note(item: LoadedSource) -> str | None:
    """A line for a source whose rows all train because it has no split column and no
    ``split`` (``None`` otherwise): a test set given this way would be trained on."""
    if item.source.splits is not None or item.config.split is not None:
        return None
    carved = (
        f" (val_fraction {item.config.val_fraction} of them carved for validation)"
        if item.config.val_fraction > 0 else ""
    )
    return (
        f"source {item.config.name!r} has no split column: all its {len(item.source)} rows "
        f"train{carved}, nothing of it is a test set; to hold it out, set split: test (or val) "
        "on the source"
    )


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
        tasks[entry.name] = found.with_options(**entry.options())
    return list(tasks.values())


def declared_tasks(config: Config) -> dict[str, Task]:
    """The tasks the config declares with their names (entries with options only left out)."""
    return {
        e.name: task_from_dict({**e.identity(), **e.options()})
        for e in config.tasks
        if e.output_names() is not None
    }


def _balanced_options(
    config: Config, tasks: list[Task], values: Callable[[str], np.ndarray]
) -> list[Task]:
    """Tasks whose options ask for ``balanced`` weights get them from the training labels."""
    out: list[Task] = []
    for task in tasks:
        entry = task_entry(config, task.name, task.kind)
        option = entry.balanced_option(config.method)
        if option is not None:
            weight = task.balanced_weight(values(task.name))
            task = task.with_options(**{option: None if weight is None else list(weight)})
        out.append(task)
    return out


def load_sources(config: Config) -> list[LoadedSource]:
    """Every source of ``config`` (inputs resolved for a pretrained backbone), loaded."""
    config = resolve_inputs(config)
    declared = declared_tasks(config)
    return [load_source(i, cfg, declared) for i, cfg in enumerate(config.sources)]


# ---- building ------------------------------------------------------------------------------------


def build_experiment(
    config: Config, seed: int | None = None, loaded: Sequence[LoadedSource] | None = None
) -> Experiment:
    """Load, split, hide labels, group and relate, for one seed (default ``trainer.seed``)."""
    seed = config.trainer.seed if seed is None else seed
    config = resolve_inputs(config)  # the run records the inputs a pretrained backbone wants
    loaded = list(loaded) if loaded is not None else load_sources(config)
    tasks = _merge_tasks(config, loaded)
    _check_heads(config, tasks)
    experiment = Experiment(config, seed, tasks, [], [], [], [], [], {})
    for index, item in enumerate(loaded):
        _add_source(experiment, index, item)
    positions = {cfg.name: i for i, cfg in enumerate(config.sources)}
    check_held_out_rows_do_not_train(
        experiment.train, experiment.val, experiment.test, positions
    )
    check_input_shapes([*experiment.train, *experiment.val, *experiment.test], positions)
    if not experiment.without_unlabelled().train:
        raise DataError("sources: no training sample is labelled for any task")
    experiment.tasks = _balanced_options(config, tasks, experiment.train_values)
    offered = [edge for item in loaded for edge in item.knowledge]
    experiment.edges = build_edges(
        edge_specs(config.relatedness), experiment.task_map, offered, experiment.train_labels
    )
    return experiment


def _check_heads(config: Config, tasks: Sequence[Task]) -> None:
    unknown = sorted(set(config.heads.per_task) - {t.name for t in tasks})
    if unknown:
        raise ConfigError(
            [("heads.per_task", f"no task {', '.join(map(repr, unknown))}; tasks: "
              f"{', '.join(t.name for t in tasks)}")]
        )


def _add_source(experiment: Experiment, index: int, item: LoadedSource) -> None:
    """Split one source, hide its labels as its regime says, and add its strata.

    The split, regime and weight settings are the config's (``sources.<index>``), which
    may differ from those the source was loaded with (e.g. a study's protocol).
    """
    cfg, seed = experiment.config.sources[index], experiment.seed
    source, split = subsample(
        with_tasks(item.source, experiment.tasks), item.split, cfg.max_samples, seed
    )
    train_rows = np.flatnonzero(split == cfg.train_split)
    held_out = cfg.split in ("val", "test")  # a test or validation set, whole
    if len(train_rows) == 0 and not held_out:
        raise DataError(
            f"sources.{index}.train_split: no row of source {cfg.name!r} is in split "
            f"{cfg.train_split!r} (splits present: {sorted(set(split.tolist()))})"
        )
    record: dict[str, Any] = dict(item.notes)
    for split_name, held in ((cfg.test_split, experiment.test), (cfg.val_split, experiment.val)):
        rows = np.flatnonzero(split == split_name) if split_name is not None else np.zeros(0, int)
        if len(rows):
            held.append(source.subset(rows, name=f"{cfg.name}[{split_name}]").with_augment(None))
    if held_out:
        experiment.records[cfg.name] = record
        return
    training = source.subset(train_rows)
    check_zero_shot(index, cfg.name, training.labels, experiment.tasks)
    if cfg.val_fraction > 0:
        rng = np.random.default_rng([seed, index, 1])
        order = rng.permutation(len(training))
        n_val = max(1, round(cfg.val_fraction * len(training)))
        carved = training.subset(np.sort(order[:n_val]), name=f"{cfg.name}[val]")
        experiment.val.append(carved.with_augment(None))
        training = training.subset(np.sort(order[n_val:]))
    training, record["regime"] = _hide(training, index, cfg, experiment)
    _regime_on_validation(experiment, index, cfg, record)
    _add_strata(experiment, training, cfg, record)
    experiment.records[cfg.name] = record


def _hide(
    source: Source, index: int, cfg: SourceConfig, experiment: Experiment
) -> tuple[Source, dict[str, Any]]:
    """The source with its labels hidden as ``sources.<index>.regime`` says, and the record."""
    try:
        hidden, record = apply_regime(
            source.labels,
            experiment.tasks,
            RegimeSpec(cfg.regime.name, dict(cfg.regime.params)),
            experiment.seed,
        )
    except ValueError as error:
        raise DataError(f"sources.{index}.regime: {error}") from None
    return source.with_labels(hidden, checked=True), record.to_dict()


def _regime_on_validation(
    experiment: Experiment, index: int, cfg: SourceConfig, record: dict[str, Any]
) -> None:
    """Validation rows of this source keep what the regime keeps (``trainer.validation_labels:
    regime``), so that selection sees as few labels as training does; ``full`` keeps all."""
    if experiment.config.trainer.validation_labels == "full" or cfg.regime.name == "full":
        return
    prefix = f"{cfg.name}["
    for position, held in enumerate(experiment.val):
        if held.name.startswith(prefix):
            hidden, hidden_record = _hide(held, index, cfg, experiment)
            experiment.val[position] = hidden
            record.setdefault("validation_regime", {})[held.name] = hidden_record


def _add_strata(
    experiment: Experiment, training: Source, cfg: SourceConfig, record: dict[str, Any]
) -> None:
    """One stratum per group of rows labelled for the same tasks, plus one of the rows
    labelled for no task (they teach through distribution matching only). A source's
    ``weight`` is shared equally among its labelled groups; the unlabelled stratum gets
    one such share."""
    groups = group_by_pattern(training, experiment.tasks)
    labelled = np.zeros(len(training), dtype=bool)
    for _, rows in groups:
        labelled[rows] = True
    record["train_groups"] = {name: len(rows) for name, rows in groups}
    record["unlabelled_rows"] = int((~labelled).sum())
    share = cfg.weight / max(1, len(groups))
    for name, rows in groups:
        experiment.train.append(training.subset(rows, name=f"{cfg.name}[{name}]"))
        experiment.train_weights.append(share)
    if not labelled.all():
        rows = np.flatnonzero(~labelled)
        experiment.train.append(training.subset(rows, name=f"{cfg.name}[{UNLABELLED}]"))
        experiment.train_weights.append(share)


def experiment_warnings(experiment: Experiment) -> list[str]:
    """What a run should be told before it trains, one line each: no test data (or no
    held-out data at all), a monitor without validation data, a task without any labelled
    training sample. (No validation data alone is common and needs no warning.)"""
    lines: list[str] = []
    config = experiment.config
    if not experiment.val and not experiment.test:
        lines.append(
            "no validation and no test data: the run reports no held-out metric (give a "
            "split column, sources[].val_fraction, or a source with split: test or val)"
        )
    elif not experiment.test:
        lines.append(
            "no test data: the final metrics are on the validation data (give a split "
            "column with test rows, or the test set as a source with split: test)"
        )
    if config.trainer.monitor is not None and not experiment.val:
        lines.append(
            f"trainer.monitor {config.trainer.monitor!r} is set but there is no validation "
            "data: no best checkpoint and no early stopping"
        )
    linked = {e.source.name for e in experiment.edges} | {e.target.name for e in experiment.edges}
    for task in experiment.tasks:
        if task.labelled_rows(experiment.train_values(task.name)).any():
            continue
        how = (
            "it learns only through its relatedness edges"
            if task.name in linked
            else "no relatedness edge reaches it either, so its head is not trained"
        )
        lines.append(f"task {task.name!r} has no labelled training sample; {how}")
    return lines


__all__ = [
    "Experiment",
    "LoadedSource",
    "build_experiment",
    "declared_tasks",
    "experiment_warnings",
    "load_source",
    "load_sources",
    "split_note",
]
