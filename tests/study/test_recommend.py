"""The recommendation (study/recommend.py) and the under-trained verdict, on hand-made results."""

from __future__ import annotations

import pytest

from dmtl.study.recommend import choose, recommend, recommendation_lines, validation_gains
from dmtl.study.results import RunRecord, StudyResults, TaskInfo, upsert_run
from dmtl.study.statistics import negative_transfer, verdict_text

TASKS = {"d": TaskInfo(kind="categorical", primary_metric="accuracy", names=["0", "1"]),
         "k": TaskInfo(kind="categorical", primary_metric="accuracy", names=["0", "1"])}


def _results(val: dict[str, dict[str, list[float]]], test: dict | None = None,
             stopped_early: bool | None = True) -> StudyResults:
    """``val[variant][task]`` per seed; test = val unless given."""
    test = test or val
    variants = list(val)
    seeds = list(range(len(next(iter(val["single_task"].values())))))
    r = StudyResults(study="s", tasks=TASKS, variants=variants, seeds=seeds,
                     protocol={"name": "early_stopping"})
    for variant, per_task in val.items():
        for seed in seeds:
            if variant == "single_task":
                for task in per_task:
                    m = {f"{task}/accuracy": test[variant][task][seed]}
                    v = {f"{task}/accuracy": per_task[task][seed]}
                    upsert_run(r, RunRecord(variant=variant, task=task, seed=seed, status="done",
                                            metrics=m, val_metrics=v,
                                            stopped_early=stopped_early))
            else:
                m = {f"{t}/accuracy": test[variant][t][seed] for t in per_task}
                v = {f"{t}/accuracy": per_task[t][seed] for t in per_task}
                upsert_run(r, RunRecord(variant=variant, seed=seed, status="done", metrics=m,
                                        val_metrics=v, stopped_early=stopped_early))
    return r


SINGLE = {"d": [0.80, 0.82, 0.84], "k": [0.90, 0.92, 0.94]}


def test_gains_are_paired_by_seed_on_validation() -> None:
    r = _results({"single_task": SINGLE,
                  "mtl": {"d": [0.85, 0.86, 0.90], "k": [0.90, 0.90, 0.90]}})
    gains = validation_gains(r, "mtl")
    assert gains["d"] == pytest.approx((0.05 + 0.04 + 0.06) / 3)
    assert gains["k"] == pytest.approx((0.0 - 0.02 - 0.04) / 3)


def test_a_clear_winner_is_chosen_and_checked() -> None:
    # branch: +0.10 on d, +0.00 on k; mtl: +0.10 on d, -0.10 on k (hurt)
    r = _results({
        "single_task": SINGLE,
        "mtl": {"d": [0.90, 0.92, 0.94], "k": [0.80, 0.82, 0.84]},
        "mtl+ca+dm+branch": {"d": [0.90, 0.92, 0.94], "k": [0.90, 0.92, 0.94]},
    })
    rec = recommend(r)
    # sigma: every variant has std 0.02 on both tasks -> pooled 0.02
    assert rec.scores["mtl+ca+dm+branch"] == pytest.approx((0.10 / 0.02 + 0.0) / 2)
    assert rec.scores["mtl"] == pytest.approx((0.10 / 0.02 - 0.10 / 0.02) / 2)
    assert rec.noise_band == pytest.approx(2 / 6 ** 0.5)
    assert rec.variant == "mtl+ca+dm+branch"
    assert rec.tasks["k"].verdict == "none" and rec.tasks["d"].verdict == "none"
    assert rec.tasks["d"].test_gain == pytest.approx(0.10)
    lines = recommendation_lines(rec)
    assert lines[0].startswith("**Use `mtl+ca+dm+branch`**")


def test_within_noise_the_simpler_variant_wins() -> None:
    # ple is better by 0.2 noise units: within the band 2 / sqrt(3 * 2) = 0.82
    r = _results({
        "single_task": SINGLE,
        "mtl+ca+dm": {"d": [0.90, 0.92, 0.94], "k": [0.90, 0.92, 0.94]},
        "mtl+ca+dm+ple": {"d": [0.908, 0.928, 0.948], "k": [0.90, 0.92, 0.94]},
    })
    rec = recommend(r)
    assert rec.variant == "mtl+ca+dm"
    assert set(rec.within_noise) == {"mtl+ca+dm", "mtl+ca+dm+ple"}
    assert "more complex" in rec.reason


def test_exact_ties_and_single_task_as_the_answer() -> None:
    assert choose({"mtl+ca+dm+ple": 1.0, "mtl": 1.0}, band=0.0)[0] == "mtl"
    # every multi-task variant hurts beyond noise: single_task (score 0) is recommended
    r = _results({"single_task": SINGLE,
                  "mtl": {"d": [0.70, 0.72, 0.74], "k": [0.80, 0.82, 0.84]}})
    rec = recommend(r)
    assert rec.variant == "single_task"
    assert all(c.verdict == "baseline" for c in rec.tasks.values())


def test_negative_transfer_on_validation_is_reported() -> None:
    # d gains a lot, k loses more than its noise: chosen, but flagged on k
    r = _results({"single_task": SINGLE,
                  "mtl": {"d": [1.0, 1.02, 1.04], "k": [0.85, 0.87, 0.89]}})
    rec = recommend(r)
    assert rec.variant == "mtl"
    assert rec.tasks["k"].verdict == "negative transfer"
    assert rec.tasks["k"].test_verdict == "negative transfer"


def test_one_seed_uses_raw_gains_and_says_so() -> None:
    r = _results({"single_task": {"d": [0.8], "k": [0.9]},
                  "mtl": {"d": [0.85], "k": [0.9]}})
    rec = recommend(r)
    assert rec.variant == "mtl" and rec.noise_band is None
    assert "one seed" in rec.reason and rec.tasks["d"].verdict == "n/a (1 seed)"


def test_no_validation_metrics_no_recommendation() -> None:
    r = _results({"single_task": SINGLE, "mtl": SINGLE})
    for run in r.runs:
        run.val_metrics = {}
    assert recommend(r).variant is None


def test_runs_that_reached_their_budget_give_no_transfer_verdict() -> None:
    hurt = {"single_task": SINGLE, "mtl": {"d": [0.70, 0.72, 0.74], "k": SINGLE["k"]}}
    counted = negative_transfer(_results(hurt, stopped_early=True))["mtl"]
    assert counted["d"].negative and not counted["d"].under_trained
    budget = negative_transfer(_results(hurt, stopped_early=False))["mtl"]
    assert budget["d"].under_trained and not budget["d"].negative
    assert "under-trained" in verdict_text(budget)
    rec = recommend(_results({"single_task": SINGLE, "mtl": {"d": [0.9, 0.92, 0.94],
                                                              "k": SINGLE["k"]}},
                             stopped_early=False))
    assert rec.tasks["d"].verdict == "under-trained (not counted)"


def test_the_cli_table_and_the_report_open_with_the_recommendation() -> None:
    import io

    from rich.console import Console

    from dmtl.cli.render import print_study_table
    from dmtl.study.report import render_markdown

    r = _results({"single_task": SINGLE,
                  "mtl": {"d": [0.90, 0.92, 0.94], "k": [0.90, 0.92, 0.94]}})
    out = io.StringIO()
    print_study_table(Console(file=out, force_terminal=False, width=200), r)
    assert out.getvalue().startswith("Recommendation: Use mtl (chosen on validation labels")
    report = render_markdown(r)
    assert report.index("## Recommendation") < report.index("## Results")
    assert "**Use `mtl`**" in report
