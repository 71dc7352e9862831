"""Crafted study results and Lightning logs for the results/report/plots tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from dmtl.study.results import (
    RunRecord,
    StudyResults,
    TaskInfo,
    upsert_run,
)

VARIANTS = ("single_task", "mtl", "mtl+ca", "mtl+dm", "mtl+ca+dm")
"""The variants of the crafted studies (the original ablation)."""

Values = Mapping[str, Mapping[str, Sequence[float | None]]]
"""``{variant: {task: primary metric per seed}}``."""

TASKS = {
    "digit": TaskInfo(kind="categorical", primary_metric="accuracy", names=list("0123456789")),
    "shape": TaskInfo(kind="binary_set", primary_metric="f1_mean", names=["round", "straight"]),
}


def build_results(values: Values, study: str = "crafted") -> StudyResults:
    """A study whose primary metrics are ``values``; single-task runs carry their task's only.

    Each run also gets a secondary metric (``digit/f1_macro`` = primary - 0.1,
    ``shape/accuracy`` = primary + 0.01) so "all metrics" tables have more columns.
    """
    n_seeds = max(len(v) for per_task in values.values() for v in per_task.values())
    results = StudyResults(
        study=study,
        command=f"dmtl study {study}.yaml --seeds {n_seeds}",
        tasks=dict(TASKS),
        variants=list(VARIANTS),
        seeds=list(range(n_seeds)),
        regime={"0": {"name": "disjoint"}},
    )

    def metrics(task: str, value: float | None) -> dict[str, float | None]:
        primary = f"{task}/{TASKS[task].primary_metric}"
        other = f"{task}/f1_macro" if task == "digit" else f"{task}/accuracy"
        shift = -0.1 if task == "digit" else 0.01
        return {primary: value, other: None if value is None else value + shift}

    for variant, per_task in values.items():
        for seed in range(n_seeds):
            if variant == "single_task":
                for task, vals in per_task.items():
                    if seed < len(vals):
                        run = RunRecord(
                            variant=variant,
                            seed=seed,
                            task=task,
                            status="done",
                            metrics=metrics(task, vals[seed]),
                            wall_s=1.0,
                            steps=10,
                            run_dir=f"seed{seed}/single_task-{task}",
                        )
                        upsert_run(results, run)
            else:
                m: dict[str, float | None] = {}
                for task, vals in per_task.items():
                    if seed < len(vals):
                        m |= metrics(task, vals[seed])
                if m:
                    run = RunRecord(
                        variant=variant,
                        seed=seed,
                        status="done",
                        metrics=m,
                        wall_s=2.0,
                        steps=10,
                        run_dir=f"seed{seed}/{variant}",
                    )
                    upsert_run(results, run)
    return results


@pytest.fixture
def make_results() -> Callable[..., StudyResults]:
    return build_results


@pytest.fixture
def three_seed_results() -> StudyResults:
    """Three seeds. ``mtl+dm`` drops on shape far beyond the pooled std; ``mtl`` within it."""
    return build_results(
        {
            "single_task": {"digit": [0.90, 0.92, 0.94], "shape": [0.80, 0.82, 0.84]},
            "mtl": {"digit": [0.91, 0.93, 0.95], "shape": [0.79, 0.81, 0.83]},
            "mtl+ca": {"digit": [0.93, 0.94, 0.95], "shape": [0.82, 0.83, 0.84]},
            "mtl+dm": {"digit": [0.92, 0.92, 0.92], "shape": [0.70, 0.71, 0.72]},
            "mtl+ca+dm": {"digit": [0.95, 0.96, 0.97], "shape": [0.83, 0.84, 0.85]},
        }
    )


METRICS_CSV = """\
epoch,step,train/ca/digit->shape_epoch,train/ca/digit->shape_step,train/dm/shape->digit_step,train/loss_epoch,train/loss_step,train/sup/digit,val/digit/accuracy,val/loss
0,0,,0.50,0.30,,2.0,1.5,,
0,1,,0.40,0.25,,1.8,1.3,,
0,1,0.45,,,1.9,,,,
0,1,,,,,,,0.5,1.7
1,2,,0.30,0.20,,1.5,1.1,,
1,3,,0.20,,,1.2,0.9,,
1,3,0.25,,,1.35,,,,
1,3,,,,,,,0.7,1.2
"""
"""A CSVLogger file as Lightning writes it: one sparse row per logging call."""


def write_metrics_csv(path: Path, scale: float = 1.0) -> Path:
    """Write :data:`METRICS_CSV` (loss values times ``scale``) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = METRICS_CSV.splitlines()
    out = [lines[0]]
    for line in lines[1:]:
        cells = line.split(",")
        out.append(
            ",".join(cells[:2] + [c if not c else f"{float(c) * scale:g}" for c in cells[2:]])
        )
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def csv_writer() -> Callable[..., Path]:
    """:func:`write_metrics_csv`, for tests that need several log files."""
    return write_metrics_csv


@pytest.fixture
def metrics_csv(tmp_path: Path) -> Path:
    return write_metrics_csv(tmp_path / "logs" / "version_0" / "metrics.csv")
