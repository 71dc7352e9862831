"""The statistics of a study over seeds, in one place: cells, intervals, verdicts, ranking.

Every figure of the report and the plots comes from here.

**Cell.** For variant ``v`` and metric ``m``, the values ``x_1..x_n`` of the
``done`` runs whose value is not ``None`` (a ``single_task`` run gives only its
own task's metrics): ``mean = (1/n) Σ x_i``, sample std
``s = sqrt(Σ (x_i − mean)² / (n − 1))`` (ddof = 1; 0 when ``n = 1``), ``n``.

**Difference to single-task** (variant ``v``, task ``t``, primary metric, higher
is better): ``gain = mean_v − mean_single``, shown with

* ``pooled std = sqrt((s_v² + s_single²) / 2)``;
* the 95 % **Welch t interval** of the difference of means,
  ``gain ± t_{0.975, ν} · se`` with ``se = sqrt(s_v²/n_v + s_single²/n_single)`` and
  ``ν = se⁴ / ((s_v²/n_v)² / (n_v − 1) + (s_single²/n_single)² / (n_single − 1))``
  (Welch–Satterthwaite); when ``se = 0`` the interval is the point ``[gain, gain]``.

**Negative transfer** (the verdict): ``gain < −pooled std`` (a drop of more than one
pooled std; ``TOLERANCE`` absorbs rounding). It needs at least 2 seeds on both sides:
with one seed the std is 0 and any drop would count, so no verdict is given.

**Under-trained.** Under early stopping, a comparison where a run on either side (the
variant's, or the single-task run of that task) trained to its epoch budget without
stopping early is marked ``under-trained`` and counted as transfer neither way: the
budget, not the validation metric, ended that run, so its gap says how fast it learns
rather than what it learns.

**Ranking.** On each task the variants with a value are ranked by mean primary
metric (1 = best; ties share the average rank); a variant's score is the mean of
its ranks over the tasks it has a value on. Variants ranked on more tasks come
first, then lower mean rank, then study order.

**Within noise of the best.** On each task, the best variant(s) have the highest
mean; another variant is within noise when the 95 % Welch interval of
``mean_v − mean_best`` contains 0 (needs ≥ 2 seeds on both sides).

>>> from dmtl.study.results import RunRecord, StudyResults, TaskInfo, upsert_run
>>> r = StudyResults(study="s", tasks={"d": TaskInfo(kind="categorical",
...     primary_metric="accuracy", names=["0", "1"])}, variants=["single_task", "mtl"],
...     seeds=[0, 1])
>>> for seed, (single, mtl) in enumerate([(0.90, 0.80), (0.92, 0.82)]):
...     _ = upsert_run(r, RunRecord(variant="single_task", task="d", seed=seed, status="done",
...         metrics={"d/accuracy": single}))
...     _ = upsert_run(r, RunRecord(variant="mtl", seed=seed, status="done",
...         metrics={"d/accuracy": mtl}))
>>> verdict_text(negative_transfer(r)["mtl"])
'negative transfer on: d (−0.100)'
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from dmtl.study.results import BASELINE, RunRecord, StudyResults

CONFIDENCE = 0.95
"""Level of every confidence interval in the report."""

TOLERANCE = 1e-9
"""Numerical slack in comparisons of means (metrics live in [0, 1])."""

STATS: tuple[str, str, str] = ("mean", "std", "n")
"""The sub-columns of every metric in :func:`summary_table`."""

SINGLE_SEED = "n/a (1 seed)"
"""What a verdict says when a side rests on one seed."""


# --------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class Cell:
    """One variant's values of one metric over seeds, and their mean, sample std and count."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        """``(1/n) Σ x_i``; ``None`` without values."""
        return float(np.mean(self.values)) if self.values else None

    @property
    def std(self) -> float | None:
        """Sample std (ddof = 1); 0 for one value, ``None`` without values."""
        if not self.values:
            return None
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else 0.0


def _usable(run: RunRecord, metric: str) -> float | None:
    """``run``'s value of ``metric`` if it counts (module docstring), else ``None``."""
    if run.status != "done" or (run.task is not None and metric.split("/", 1)[0] != run.task):
        return None
    value = run.metrics.get(metric)
    return float(value) if value is not None and math.isfinite(value) else None


def values_frame(results: StudyResults, metrics: Collection[str]) -> pd.DataFrame:
    """Long table of the usable values of ``metrics``: ``variant``, ``seed``, ``metric``, ``value``.

    Rows come from the ``done`` runs, ``None``/non-finite values left out; a
    ``single_task`` run contributes its own task's metrics only.
    """
    rows = [
        (run.variant, run.seed, metric, value)
        for run in results.runs
        for metric in metrics
        if (value := _usable(run, metric)) is not None
    ]
    return pd.DataFrame(rows, columns=["variant", "seed", "metric", "value"])


def metric_values(results: StudyResults, variant: str, metric: str) -> list[float]:
    """Values of ``metric`` for ``variant``, in seed order (see :func:`values_frame`)."""
    found = [
        (run.seed, value)
        for run in results.runs
        if run.variant == variant and (value := _usable(run, metric)) is not None
    ]
    return [value for _, value in sorted(found)]


def cell(results: StudyResults, variant: str, metric: str) -> Cell:
    """:class:`Cell` of ``metric`` for ``variant``."""
    return Cell(tuple(metric_values(results, variant, metric)))


def summary_table(results: StudyResults) -> pd.DataFrame:
    """Mean, std and n of each task's primary metric, per variant (rows, study order).

    Columns are a ``(metric, stat)`` MultiIndex, stat in ``mean``, ``std``, ``n``;
    std is 0 for one value; a variant without values has NaN mean and std, n 0.
    """
    metrics = list(results.primary_metrics().values())
    table = values_frame(results, metrics).pivot_table(
        index="variant", columns="metric", values="value", aggfunc=["mean", "std", "count"]
    )
    table = table.rename(columns={"count": "n"}, level=0).swaplevel(axis=1)
    columns = pd.MultiIndex.from_product([metrics, list(STATS)], names=["metric", "stat"])
    table = table.reindex(index=pd.Index(list(results.variants), name="variant"), columns=columns)
    for metric in metrics:
        counts = table[(metric, "n")].fillna(0).astype(int)
        table[(metric, "n")] = counts
        table.loc[counts == 1, (metric, "std")] = 0.0
    return table


# --------------------------------------------------------------------------- intervals


@dataclass(frozen=True)
class Interval:
    """A confidence interval ``[low, high]`` of a difference of means."""

    low: float
    high: float

    def contains(self, x: float) -> bool:
        return self.low - TOLERANCE <= x <= self.high + TOLERANCE


def welch_interval(a: Cell, b: Cell, confidence: float = CONFIDENCE) -> Interval | None:
    """Welch t interval of ``mean_a − mean_b`` (module docstring); ``None`` if a side has n < 2."""
    if a.n < 2 or b.n < 2:
        return None
    assert a.mean is not None and b.mean is not None and a.std is not None and b.std is not None
    diff = a.mean - b.mean
    va, vb = a.std**2 / a.n, b.std**2 / b.n
    se = math.sqrt(va + vb)
    if se == 0.0:
        return Interval(diff, diff)
    dof = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2.0, dof)) * se
    return Interval(diff - half, diff + half)


# --------------------------------------------------------------------------- negative transfer


@dataclass(frozen=True)
class Verdict:
    """Variant vs single-task on one task's primary metric (module docstring for the rules)."""

    variant: str
    task: str
    metric: str
    variant_cell: Cell
    baseline_cell: Cell
    budget_reached: bool = False
    """A run on either side trained to its epoch budget (see "Under-trained")."""

    @property
    def under_trained(self) -> bool:
        """Available, but a run behind it reached its budget: no transfer verdict."""
        return self.available and self.budget_reached

    @property
    def available(self) -> bool:
        """Both sides have at least one value."""
        return self.variant_cell.n > 0 and self.baseline_cell.n > 0

    @property
    def decidable(self) -> bool:
        """Both sides have at least two values: a verdict can be given."""
        return self.variant_cell.n > 1 and self.baseline_cell.n > 1

    @property
    def gain(self) -> float | None:
        """``mean_variant − mean_single``; ``None`` unless :attr:`available`."""
        if not self.available:
            return None
        assert self.variant_cell.mean is not None and self.baseline_cell.mean is not None
        return self.variant_cell.mean - self.baseline_cell.mean

    @property
    def pooled_std(self) -> float | None:
        """``sqrt((s_variant² + s_single²) / 2)``; ``None`` unless :attr:`available`."""
        if not self.available:
            return None
        s1, s2 = self.variant_cell.std or 0.0, self.baseline_cell.std or 0.0
        return math.sqrt((s1 * s1 + s2 * s2) / 2.0)

    @property
    def interval(self) -> Interval | None:
        """The 95 % Welch interval of :attr:`gain`; ``None`` unless :attr:`decidable`."""
        return welch_interval(self.variant_cell, self.baseline_cell)

    @property
    def negative(self) -> bool:
        """Negative transfer: decidable and ``gain < −pooled std``."""
        gain, pooled = self.gain, self.pooled_std
        if not self.decidable or gain is None or pooled is None or self.budget_reached:
            return False
        return gain < -pooled - TOLERANCE


def negative_transfer(results: StudyResults) -> dict[str, dict[str, Verdict]]:
    """``{variant: {task: Verdict}}`` for every variant but ``single_task``, on primary metrics."""
    primaries = results.primary_metrics()
    baseline = {t: cell(results, BASELINE, m) for t, m in primaries.items()}
    return {
        v: {
            t: Verdict(v, t, m, cell(results, v, m), baseline[t],
                       budget_reached=budget_reached(results, v, t))
            for t, m in primaries.items()
        }
        for v in results.variants
        if v != BASELINE
    }


def budget_reached(results: StudyResults, variant: str, task: str) -> bool:
    """Under early stopping: a done run of ``variant`` (all its tasks) or of the single-task
    model of ``task`` trained to its budget (``stopped_early`` is ``False``)."""
    if (results.protocol or {}).get("name") != "early_stopping":
        return False
    return any(
        run.status == "done" and run.stopped_early is False
        and (run.variant == variant or (run.variant == BASELINE and run.task == task))
        for run in results.runs
    )


def signed(x: float, digits: int = 3) -> str:
    """``+0.012`` / ``−0.031`` (a true minus sign); a rounded zero shows as ``+0.000``."""
    text = f"{x:+.{digits}f}"
    if float(text) == 0.0:
        text = f"{0.0:+.{digits}f}"
    return text.replace("-", "−")


def verdict_text(verdicts: Mapping[str, Verdict]) -> str:
    """The verdict of one variant over its tasks, as one line.

    ``"negative transfer on: shape (−0.031)"``; else ``"none"``, followed by
    ``(1 seed: t; not compared: u)`` for the tasks it could not judge;
    ``"n/a (1 seed)"`` when every comparable task rests on one seed; ``"n/a"``
    when nothing is comparable.
    """
    hurt = [v for v in verdicts.values() if v.negative]
    under = [t for t, v in verdicts.items() if v.under_trained]
    suffix = f" (under-trained, not counted: {', '.join(under)})" if under else ""
    if hurt:
        return "negative transfer on: " + ", ".join(
            f"{v.task} ({signed(v.gain or 0.0)})" for v in hurt
        ) + suffix
    if under and len(under) == len(verdicts):
        return "under-trained (the budget ended a run; not counted)"
    one_seed = [t for t, v in verdicts.items() if v.available and not v.decidable]
    missing = [t for t, v in verdicts.items() if not v.available]
    if len(missing) == len(verdicts):
        return "n/a"
    if len(one_seed) + len(missing) == len(verdicts):
        return SINGLE_SEED
    notes = [f"under-trained, not counted: {', '.join(under)}"] if under else []
    notes += [f"1 seed: {', '.join(one_seed)}"] if one_seed else []
    notes += [f"not compared: {', '.join(missing)}"] if missing else []
    return "none" + (f" ({'; '.join(notes)})" if notes else "")


# --------------------------------------------------------------------------- best and ranking


def _means(results: StudyResults) -> pd.DataFrame:
    """Mean primary metric per variant (rows) and task (columns)."""
    table = summary_table(results)
    return pd.DataFrame(
        {task: table[(metric, "mean")] for task, metric in results.primary_metrics().items()}
    )


def best_variants(results: StudyResults) -> dict[str, list[str]]:
    """``{task: variants with the highest mean primary metric}`` (ties listed; ``[]`` if none)."""
    means = _means(results)
    return {
        task: [str(v) for v in means.index[means[task] >= means[task].max() - TOLERANCE]]
        for task in results.tasks
    }


def ranking(results: StudyResults) -> pd.DataFrame:
    """Rank of each variant per task, its mean rank and the number of tasks it is ranked on.

    Index: the variants in ranking order (module docstring); columns: one per task
    (NaN where the variant has no value), ``mean rank``, ``tasks``.
    """
    ranks = _means(results).round(9).rank(axis=0, ascending=False, method="average")
    ranks["mean rank"] = ranks.mean(axis=1, skipna=True)
    ranks["tasks"] = ranks[list(results.tasks)].notna().sum(axis=1).astype(int)
    ranked = ranks[ranks["tasks"] > 0]
    return ranked.sort_values(["tasks", "mean rank"], ascending=[False, True], kind="stable")


@dataclass(frozen=True)
class NoiseGroups:
    """On one task: the best variants and how each other variant compares with the first best.

    ``within``/``beyond``: the Welch interval of ``mean_v − mean_best`` contains 0 / not;
    ``undecided``: a side has fewer than 2 seeds.
    """

    task: str
    best: list[str]
    within: list[str]
    beyond: list[str]
    undecided: list[str]


def within_noise(results: StudyResults) -> dict[str, NoiseGroups]:
    """``{task: NoiseGroups}`` on each task's primary metric (module docstring for the rule)."""
    out: dict[str, NoiseGroups] = {}
    for task, best in best_variants(results).items():
        metric = results.primary_metrics()[task]
        groups: dict[str, list[str]] = {"within": [], "beyond": [], "undecided": []}
        top = cell(results, best[0], metric) if best else Cell(())
        for variant in results.variants:
            c = cell(results, variant, metric)
            if variant in best or c.n == 0:
                continue
            interval = welch_interval(c, top)
            kind = (
                "undecided"
                if interval is None
                else ("within" if interval.contains(0.0) else "beyond")
            )
            groups[kind].append(variant)
        out[task] = NoiseGroups(task, best, **groups)
    return out


__all__ = [
    "CONFIDENCE",
    "SINGLE_SEED",
    "STATS",
    "TOLERANCE",
    "Cell",
    "Interval",
    "NoiseGroups",
    "Verdict",
    "best_variants",
    "budget_reached",
    "cell",
    "metric_values",
    "negative_transfer",
    "ranking",
    "signed",
    "summary_table",
    "values_frame",
    "verdict_text",
    "welch_interval",
    "within_noise",
]
