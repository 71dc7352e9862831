"""The study's group tables over seeds: is a variant as good for every group?

With ``study.group_by`` each run records its primary metrics per group of a manifest
column (:mod:`dmtl.study.groups`, ``RunRecord.groups``). Per variant and task this
module gives, over the seeds (done runs; a ``single_task`` run counts for its own task
only):

- the mean of the metric in each group;
- the worst group: the group with the lowest of those means;
- the gap ``best − worst`` of each seed, as mean ± sample std over seeds;
- for a multi-task variant, whether it **widens the gap** compared with
  ``single_task``: ``mean(gap_variant) − mean(gap_single) > pooled std``, with
  pooled std ``sqrt((s_variant² + s_single²) / 2)`` (the rule of negative transfer,
  :class:`~dmtl.study.statistics.Verdict`, on the gap); it needs at least 2 seeds on
  each side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dmtl.study.results import BASELINE, RunRecord, StudyResults
from dmtl.study.statistics import SINGLE_SEED, TOLERANCE, Cell, Verdict, signed


@dataclass(frozen=True)
class GroupSummary:
    """One variant's group table of one task's primary metric, over seeds."""

    variant: str
    task: str
    metric: str
    means: dict[str, float | None]
    """Mean over seeds of the metric in each group (``None``: no value in any seed)."""
    gap: Cell
    """The gap ``best − worst`` of each seed."""

    @property
    def worst(self) -> str | None:
        """The group with the lowest mean; ``None`` when no group has one."""
        valued = {g: m for g, m in self.means.items() if m is not None}
        return min(valued, key=valued.__getitem__) if valued else None


def group_column(results: StudyResults) -> str | None:
    """The column the study's runs are grouped by: ``study.group_by`` of its config, else
    that of the first run with a group table; ``None`` when no run has one."""
    configured = (results.config.get("study") or {}).get("group_by")
    if configured:
        return str(configured)
    return next((str(r.groups["by"]) for r in results.runs if r.groups), None)


def _runs_of(results: StudyResults, variant: str, task: str, by: str) -> list[RunRecord]:
    return [
        r for r in results.runs
        if r.variant == variant and r.status == "done" and r.groups is not None
        and r.groups.get("by") == by and (r.task is None or r.task == task)
    ]


def summarise(results: StudyResults, variant: str, task: str, by: str) -> GroupSummary | None:
    """The :class:`GroupSummary` of ``variant`` on ``task``; ``None`` without group tables."""
    metric = f"{task}/{results.tasks[task].primary_metric}"
    runs = _runs_of(results, variant, task, by)
    if not runs:
        return None
    values: dict[str, list[float]] = {}
    gaps: list[float] = []
    for run in runs:
        table: dict[str, Any] = run.groups or {}
        for row in table.get("groups", []):
            group = str(row[by])
            values.setdefault(group, [])
            if row.get(metric) is not None:
                values[group].append(float(row[metric]))
        if table.get("gap", {}).get(metric) is not None:
            gaps.append(float(table["gap"][metric]))
    means = {g: float(np.mean(v)) if v else None for g, v in sorted(values.items())}
    return GroupSummary(variant, task, metric, means, Cell(tuple(gaps)))


def summaries(results: StudyResults) -> dict[str, list[GroupSummary]]:
    """Per task, the :class:`GroupSummary` of each variant that has group tables, in the
    study's order (``single_task`` first)."""
    by = group_column(results)
    if by is None:
        return {}
    order = [v for v in results.variants if v == BASELINE]
    order += [v for v in results.variants if v != BASELINE]
    out: dict[str, list[GroupSummary]] = {}
    for task in results.tasks:
        found = [s for v in order if (s := summarise(results, v, task, by)) is not None]
        if found:
            out[task] = found
    return out


def gap_verdict(summary: GroupSummary, baseline: GroupSummary | None) -> str:
    """Whether ``summary``'s variant widens the gap of ``baseline`` (single-task), as text:
    ``wider (+0.052)``, ``not wider (−0.010)``, ``n/a (1 seed)``, ``n/a``."""
    if baseline is None or summary.gap.n == 0 or baseline.gap.n == 0:
        return "n/a"
    verdict = Verdict(summary.variant, summary.task, summary.metric, summary.gap, baseline.gap)
    gain, pooled = verdict.gain or 0.0, verdict.pooled_std or 0.0
    if not verdict.decidable:
        return f"{SINGLE_SEED} ({signed(gain)})"
    return f"{'wider' if gain > pooled + TOLERANCE else 'not wider'} ({signed(gain)})"


__all__ = ["GroupSummary", "gap_verdict", "group_column", "summaries", "summarise"]
