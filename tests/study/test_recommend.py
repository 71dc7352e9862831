"""The recommendation (study/recommend.py) and the under-trained verdict, on hand-made results."""

from __future__ import annotations

import pytest

from dmtl.study.recommend import choose, recommend, recommendation_lines, validation_gains
from dmtl.study.results import RunRecord, StudyResults, TaskInfo, upsert_run
from dmtl.study.statistics import negative_transfer, verdict_text

TASKS = {"d": TaskInfo(kind="categorical", primary_metric="accuracy", names=["0", "1"]),
         "k": TaskInfo(kind="categorical", primary_metric="accuracy", names=["0", "1"])}


def _results(val: dict[str, dict[str, list[float]]], test: dict | None = None,
             stopped_early: bool | None = True,
             tasks: dict[str, TaskInfo] | None = None) -> StudyResults:
    """``val[variant][task]`` per seed; test = val unless given."""
    test = test or val
    variants = list(val)
    seeds = list(range(len(next(iter(val["single_task"].values())))))
    r = StudyResults(study="s", tasks=tasks or TASKS, variants=variants, seeds=seeds,
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
    # branch: +0.10 on d, +0.04 on k; mtl: +0.10 on d, -0.10 on k (hurt: k would keep its
    # single-task model, so mtl is scored 0 on k, not -5)
    r = _results({
        "single_task": SINGLE,
        "mtl": {"d": [0.90, 0.92, 0.94], "k": [0.80, 0.82, 0.84]},
        "mtl+ca+dm+branch": {"d": [0.90, 0.92, 0.94], "k": [0.94, 0.96, 0.98]},
    })
    rec = recommend(r)
    # sigma: every variant has std 0.02 on both tasks -> pooled 0.02
    assert rec.scores["mtl+ca+dm+branch"] == pytest.approx((0.10 / 0.02 + 0.04 / 0.02) / 2)
    assert rec.scores["mtl"] == pytest.approx((0.10 / 0.02 + 0.0) / 2)
    assert rec.noise_band == pytest.approx(2 / 6 ** 0.5)
    assert rec.variant == "mtl+ca+dm+branch"
    assert rec.tasks["k"].verdict == "none" and rec.tasks["d"].verdict == "none"
    assert rec.tasks["d"].test_gain == pytest.approx(0.10) and rec.fallbacks == []
    lines = recommendation_lines(rec)
    assert lines[0].startswith("**Use `mtl+ca+dm+branch`**")


def test_within_noise_the_paper_method_wins() -> None:
    # ple is better by 0.2 noise units: within the band 2 / sqrt(3 * 2) = 0.82
    r = _results({
        "single_task": SINGLE,
        "mtl+ca+dm": {"d": [0.90, 0.92, 0.94], "k": [0.90, 0.92, 0.94]},
        "mtl+ca+dm+ple": {"d": [0.908, 0.928, 0.948], "k": [0.90, 0.92, 0.94]},
    })
    rec = recommend(r)
    assert rec.variant == "mtl+ca+dm"
    assert set(rec.within_noise) == {"mtl+ca+dm", "mtl+ca+dm+ple"}
    assert "mtl+ca+dm is the default, the paper's method" in rec.reason


def test_within_noise_without_the_paper_method_the_simpler_variant_wins() -> None:
    r = _results({
        "single_task": SINGLE,
        "mtl+ca": {"d": [0.90, 0.92, 0.94], "k": [0.90, 0.92, 0.94]},
        "mtl+ca+dm+ple": {"d": [0.908, 0.928, 0.948], "k": [0.90, 0.92, 0.94]},
    })
    rec = recommend(r)
    assert rec.variant == "mtl+ca"
    assert "mtl+ca is earlier in the preference order" in rec.reason


def test_exact_ties_and_single_task_as_the_answer() -> None:
    assert choose({"mtl+ca+dm+ple": 1.0, "mtl": 1.0}, band=0.0)[0] == "mtl"
    # every multi-task variant hurts beyond noise: every task keeps its single-task model
    r = _results({"single_task": SINGLE,
                  "mtl": {"d": [0.70, 0.72, 0.74], "k": [0.80, 0.82, 0.84]}})
    rec = recommend(r)
    assert rec.variant == "single_task"
    assert rec.per_task == {"d": "single_task", "k": "single_task"}
    assert all(c.test_verdict == "baseline" and c.test_gain == 0.0
               for c in rec.tasks.values())


def test_no_task_hurt_no_fallback() -> None:
    r = _results({"single_task": SINGLE,
                  "mtl": {"d": [0.90, 0.92, 0.94], "k": [0.89, 0.92, 0.95]}})
    rec = recommend(r)
    assert rec.variant == "mtl" and rec.fallbacks == []
    assert rec.per_task == {"d": "mtl", "k": "mtl"}
    assert recommendation_lines(rec)[0].startswith("**Use `mtl`** (chosen on validation")


HURT_K = {"single_task": SINGLE, "mtl": {"d": [1.0, 1.02, 1.04], "k": [0.85, 0.87, 0.89]}}
"""mtl gains 0.20 on d and loses 0.05 on k, beyond k's noise (σ = 0.02)."""


def test_a_task_hurt_on_validation_keeps_its_single_task_model() -> None:
    rec = recommend(_results(HURT_K))
    assert rec.variant == "mtl"
    assert rec.per_task == {"d": "mtl", "k": "single_task"}
    [fallback] = rec.fallbacks
    assert (fallback.task, fallback.variant) == ("k", "mtl")
    assert fallback.val_gain == pytest.approx(-0.05) and fallback.val_noise == pytest.approx(0.02)
    assert fallback.reason == "negative transfer on validation, gain −0.050 < −σ·√(2/n) = −0.016"
    # validation: mtl's verdict on k (why it falls back); test: the model used for each task
    assert rec.tasks["k"].verdict == "negative transfer" and rec.tasks["k"].variant == "single_task"
    assert rec.tasks["k"].test_gain == 0.0 and rec.tasks["k"].test_verdict == "baseline"
    assert rec.tasks["d"].variant == "mtl" and rec.tasks["d"].test_gain == pytest.approx(0.20)
    saved = rec.to_dict()
    assert saved["per_task"] == {"d": "mtl", "k": "single_task"}
    assert saved["fallbacks"][0]["task"] == "k" and saved["variant"] == "mtl"
    assert recommendation_lines(rec)[0] == (
        "**Use `mtl` for d; the single-task model for k** (k: negative transfer on "
        "validation, gain −0.050 < −σ·√(2/n) = −0.016).")


def test_the_test_split_is_never_read_for_the_choice_or_a_fallback() -> None:
    # on test, mtl would look harmless on k and harmful on d: nothing chosen changes
    test = {"single_task": SINGLE, "mtl": {"d": [0.60, 0.62, 0.64], "k": [0.99, 1.0, 1.0]}}
    seen, blind = recommend(_results(HURT_K)), recommend(_results(HURT_K, test=test))
    for field in ("variant", "reason", "scores", "per_task", "fallbacks"):
        assert getattr(seen, field) == getattr(blind, field)
    assert blind.tasks["d"].test_gain == pytest.approx(-0.20)  # reported as measured
    assert blind.tasks["k"].test_gain == 0.0


def test_an_under_trained_task_below_single_task_beyond_noise_falls_back_too() -> None:
    # the verdict stays "under-trained" (not transfer), but the trained models are what is used
    rec = recommend(_results(HURT_K, stopped_early=False))
    assert rec.tasks["k"].verdict == "under-trained (not counted)"
    assert rec.per_task == {"d": "mtl", "k": "single_task"}
    assert rec.fallbacks[0].reason == ("below single-task on validation, gain −0.050 < "
                                       "−σ·√(2/n) = −0.016 (under-trained: a run reached its "
                                       "epoch budget)")


def test_one_seed_has_no_noise_so_no_task_falls_back() -> None:
    rec = recommend(_results({"single_task": {"d": [0.8], "k": [0.9]},
                              "mtl": {"d": [0.95], "k": [0.85]}}))
    assert rec.variant == "mtl" and rec.fallbacks == []
    assert rec.per_task == {"d": "mtl", "k": "mtl"}


def test_every_task_hurt_falls_back_to_single_task() -> None:
    # one task, two seeds: mtl loses 0.015 on d, beyond its noise; scored as deployed (d back
    # on its single-task model) it ties single_task at 0 and goes first, then d falls back
    one = {"d": TASKS["d"]}
    r = _results({"single_task": {"d": [0.80, 0.82]}, "mtl": {"d": [0.785, 0.805]}}, tasks=one)
    rec = recommend(r)
    # σ² = 0.0002: -0.015 < -σ·sqrt(2/2) = -0.0141, so d would keep its single-task model
    assert rec.scores["mtl"] == 0.0
    assert rec.noise_band == pytest.approx(2 / 2 ** 0.5)
    assert rec.variant == "single_task" and rec.per_task == {"d": "single_task"}
    assert [f.task for f in rec.fallbacks] == ["d"] and rec.fallbacks[0].variant == "mtl"
    assert ("mtl was chosen but is below single-task on validation on every task (d: "
            "negative transfer on validation, gain −0.015 < −σ·√(2/n) = −0.014)") in rec.reason
    assert recommendation_lines(rec)[0].startswith("**Use `single_task`** (chosen on")


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


def test_the_cli_and_the_report_name_the_tasks_that_keep_their_single_task_model() -> None:
    import io

    from rich.console import Console

    from dmtl.cli.render import print_study_table
    from dmtl.study.report import render_markdown

    r = _results(HURT_K)
    out = io.StringIO()
    print_study_table(Console(file=out, force_terminal=False, width=200), r)
    lines = out.getvalue().splitlines()
    assert lines[0] == ("Recommendation: Use mtl for d; the single-task model for k (k: "
                        "negative transfer on validation, gain −0.050 < −σ·√(2/n) = −0.016).")
    assert lines[2].startswith("mtl chosen on validation labels only (score = ")
    row = "| k (accuracy) | single_task | −0.050 | 0.020 | negative transfer | +0.000 | baseline |"
    assert row in lines
    report = render_markdown(r)
    assert ("**Use `mtl` for d; the single-task model for k** (k: negative transfer on "
            "validation, gain −0.050 < −σ·√(2/n) = −0.016).") in report
    assert row in report and "| d (accuracy) | mtl | +0.200 |" in report
    assert report.index("single-task model for k") < report.index("## Results")


def test_a_task_below_single_task_by_more_than_the_gain_standard_error_falls_back() -> None:
    # sigma 0.02 (every variant's std), 3 seeds: the gain's standard error is
    # 0.02 * sqrt(2/3) = 0.0163. k loses 0.018: not negative transfer (> -sigma = -0.02), but
    # below -SE, so k keeps its single-task model; a loss of 0.015 (> -SE) would not.
    hurt = {"d": [0.90, 0.92, 0.94], "k": [0.882, 0.902, 0.922]}
    rec = recommend(_results({"single_task": SINGLE, "mtl": hurt}))
    assert rec.tasks["k"].verdict == "none"
    assert rec.per_task == {"d": "mtl", "k": "single_task"}
    assert rec.fallbacks[0].reason == ("below single-task on validation by more than the "
                                       "gain's standard error, gain −0.018 < −σ·√(2/n) = "
                                       "−0.016")
    kept = {"d": [0.90, 0.92, 0.94], "k": [0.885, 0.905, 0.925]}
    assert recommend(_results({"single_task": SINGLE, "mtl": kept})).fallbacks == []
