"""Metrics per group of a manifest column: is the model as good for every group?

``dmtl evaluate RUN --by COLUMN`` splits the evaluated samples by the value of
``COLUMN`` in their source's manifest (any column: a demographic attribute, a
recording condition, ...; ``source`` is the source's name, for every kind of source)
and computes each task's primary metric within every group. The **worst group** of a
metric is the group where it is lowest (every primary metric, accuracy, mean F1 and
mean CCC, is better higher) and the **gap** is ``best - worst`` over the groups with
a value. Samples whose cell is empty form the group ``(missing)``.

The column is read from a table given with ``--groups FILE`` (CSV/Parquet with the
samples' ``id`` and the column: attributes kept outside the training manifest, which
holds only ids, inputs, splits and labels), else from the file the source was built
from: a manifest source's CSV/Parquet, or a reader's manifest (the reader runs again);
a built-in dataset has only ``source``. Rows are joined on ``id`` (else on ``image``
or ``index``, as manifests default their ids).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from dmtl.build.checkpoint import TrainedModel, load_trained
from dmtl.core.labels import PartialLabels
from dmtl.core.metrics import MultiTaskMetrics
from dmtl.core.tasks import Task
from dmtl.data.batching import build_eval_loader
from dmtl.data.sources import Source
from dmtl.errors import DataError

if TYPE_CHECKING:
    from dmtl.build.data import Experiment
    from dmtl.config import Config, SourceConfig

SOURCE_COLUMN = "source"
MISSING_GROUP = "(missing)"


@dataclass
class GroupTable:
    """Per group (rows, in sorted order): ``n`` samples and each task's primary metric;
    per metric the worst group and the gap ``best - worst``."""

    column: str
    frame: pd.DataFrame
    worst: dict[str, str] = field(default_factory=dict)
    gap: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: the column, rows, worst groups and gaps."""
        rows = self.frame.reset_index().replace({np.nan: None}).to_dict(orient="records")
        return {"by": self.column, "groups": rows, "worst": self.worst, "gap": self.gap}

    def to_markdown(self) -> str:
        """The table, then one line per metric: its worst group and the gap."""
        lines = [self.frame.to_markdown(floatfmt=".4f")]
        for metric, group in self.worst.items():
            lines.append(f"- {metric}: worst group {group!r}, gap {self.gap[metric]:.4f}")
        return "\n".join(lines)


def source_config(config: Config, source: Source) -> SourceConfig:
    """The config of a split source (named ``<source>[test]``, ``<source>[val]``)."""
    name = source.name.split("[", 1)[0]
    for cfg in config.sources:
        if cfg.name == name:
            return cfg
    raise DataError(f"no source {name!r} in the run's config")


def read_table_file(path: Path) -> pd.DataFrame:
    """A CSV (cells as text) or Parquet table; one :class:`DataError` line if unreadable."""
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot read the table ({error})") from None


def _manifest_table(cfg: SourceConfig, column: str) -> pd.DataFrame:
    """The source's manifest as read from its file or reader (``id`` and ``column``)."""
    if cfg.manifest is not None:
        return read_table_file(cfg.manifest)
    if cfg.reader is not None and cfg.root is not None:
        from dmtl.data.readers import read_dataset

        return read_dataset(cfg.reader, cfg.root, **cfg.options).manifest
    raise DataError(
        f"--by {column}: source {cfg.name!r} is a built-in dataset; it has only the "
        f"column {SOURCE_COLUMN!r}"
    )


def group_values(
    config: Config, source: Source, column: str, groups: Path | None = None
) -> np.ndarray:
    """The value of ``column`` for each sample of ``source``, as text (see module docstring)."""
    cfg = source_config(config, source)
    if column == SOURCE_COLUMN:
        return np.full(len(source), cfg.name, dtype=object)
    table = read_table_file(groups) if groups is not None else _manifest_table(cfg, column)
    where = str(groups) if groups is not None else f"the manifest of source {cfg.name!r}"
    if column not in table.columns:
        known = ", ".join([SOURCE_COLUMN, *map(str, table.columns)])
        raise DataError(f"--by {column}: {where} has no column {column!r}; columns: {known}")
    key = next((k for k in ("id", "image", "index") if k in table.columns), None)
    if key is None:
        raise DataError(f"--by {column}: {where} has no id column")
    cells = table[column].astype(object).where(table[column].notna(), MISSING_GROUP)
    mapping = dict(zip(table[key].astype(str), cells.astype(str), strict=True))
    return np.array([mapping.get(str(i), MISSING_GROUP) for i in source.ids], dtype=object)


@torch.no_grad()
def split_logits(
    trained: TrainedModel, sources: Sequence[Source], batch_size: int,
    device: torch.device | None = None,
) -> dict[str, torch.Tensor]:
    """Every task's logits for every sample of ``sources``, in source then row order."""
    model = trained.model.to(device or torch.device("cpu")).eval()
    tasks = list(trained.tasks)
    chunks: dict[str, list[torch.Tensor]] = {t.name: [] for t in tasks}
    loader = build_eval_loader(list(sources), batch_size=batch_size, tasks=tasks)
    for batch in loader:
        for name, z in model(batch.x.to(device or torch.device("cpu"))).items():
            chunks[name].append(z.float().cpu())
    return {t.name: torch.cat(chunks[t.name]) for t in tasks}


def encoded_labels(tasks: Sequence[Task], sources: Sequence[Source]) -> dict[str, np.ndarray]:
    """Every task's encoded labels for every sample of ``sources`` (unlabelled where a
    source lacks the task), in source then row order."""
    return {
        t.name: np.concatenate(
            [s.labels.get(t.name, t.unlabelled(len(s))) for s in sources]
        )
        for t in tasks
    }


def group_table(
    tasks: Sequence[Task], logits: dict[str, torch.Tensor], labels: dict[str, np.ndarray],
    groups: np.ndarray, column: str,
) -> GroupTable:
    """Each task's primary metric within each group (see :class:`GroupTable`)."""
    primary = MultiTaskMetrics(tasks, synchronised=False).primary_names()
    rows = []
    for group in sorted(set(groups.tolist())):
        rows_of = np.flatnonzero(groups == group)
        metrics = MultiTaskMetrics(tasks, per_output=False, synchronised=False)
        encoded = {name: torch.from_numpy(values[rows_of]) for name, values in labels.items()}
        metrics.update(
            {name: z[rows_of] for name, z in logits.items()},
            PartialLabels.from_encoded(tasks, encoded),
        )
        values = metrics.compute_flat()
        row: dict[str, Any] = {column: group, "n": len(rows_of)}
        for name in primary.values():
            value = values.get(name)
            row[name] = math_value(value)
        rows.append(row)
    frame = pd.DataFrame(rows).set_index(column)
    table = GroupTable(column, frame)
    for name in primary.values():
        scores = frame[name].dropna()
        if len(scores):
            table.worst[name] = str(scores.idxmin())
            table.gap[name] = float(scores.max() - scores.min())
    return table


def math_value(value: object) -> float:
    """A metric value as a float; NaN where there is none (no labels in the group)."""
    if value is None:
        return float("nan")
    if isinstance(value, torch.Tensor):
        return float(value.item())
    return float(value)  # type: ignore[arg-type]


def evaluate_groups(
    trained: TrainedModel, experiment: Experiment, split: str, column: str,
    table: Path | None = None, device: torch.device | None = None,
) -> GroupTable:
    """The group table of ``split`` (``test`` or ``val``) of a trained module's data;
    ``table``: the file holding ``column`` (default: each source's manifest)."""
    sources = experiment.test if split == "test" else experiment.val
    if not sources:
        raise DataError(f"the run's config has no {split} split")
    groups = np.concatenate(
        [group_values(experiment.config, s, column, table) for s in sources]
    )
    logits = split_logits(trained, sources, experiment.config.trainer.eval_batch_size, device)
    labels = encoded_labels(list(trained.tasks), sources)
    return group_table(list(trained.tasks), logits, labels, groups, column)


def check_group_column(
    experiment: Experiment, column: str, table: Path | None = None
) -> None:
    """Refuse, before any run trains, a ``column`` that the test (else validation) split's
    sources or ``table`` lack: one :class:`DataError` line."""
    for source in experiment.test or experiment.val:
        group_values(experiment.config, source, column, table)


def checkpoint_groups(
    checkpoint: Path | None, experiment: Experiment, column: str, table: Path | None = None
) -> dict[str, Any]:
    """The group table (:meth:`GroupTable.to_dict`) of a run's evaluated ``checkpoint`` on
    ``experiment``'s test split (else validation, as the run's own metrics)."""
    if checkpoint is None or not Path(checkpoint).is_file():
        raise DataError(f"group table by {column}: the run left no checkpoint to evaluate")
    trained = load_trained(checkpoint)
    accelerator = experiment.config.trainer.accelerator
    use_cuda = torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")
    device = torch.device("cuda" if use_cuda else "cpu")
    split = "test" if experiment.test else "val"
    return evaluate_groups(trained, experiment, split, column, table, device).to_dict()


__all__ = [
    "MISSING_GROUP",
    "SOURCE_COLUMN",
    "GroupTable",
    "check_group_column",
    "checkpoint_groups",
    "encoded_labels",
    "evaluate_groups",
    "group_table",
    "group_values",
    "split_logits",
]
