"""Statistics over seeds against hand-worked values: cells, Welch intervals, verdicts, ranking."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from dmtl.study.results import RunRecord, StudyResults, upsert_run
from dmtl.study.statistics import (
    SINGLE_SEED,
    Cell,
    best_variants,
    cell,
    metric_values,
    negative_transfer,
    ranking,
    signed,
    summary_table,
    verdict_text,
    welch_interval,
    within_noise,
)

Make = Callable[..., StudyResults]


# --------------------------------------------------------------------------- cells


def test_summary_mean_std_n_by_hand(three_seed_results: StudyResults) -> None:
    t = summary_table(three_seed_results)
    assert list(t.index) == ["single_task", "mtl", "mtl+ca", "mtl+dm", "mtl+ca+dm"]
    assert list(t.columns) == [
        (m, s) for m in ("digit/accuracy", "shape/f1_mean") for s in ("mean", "std", "n")
    ]
    # single_task digit: 0.90, 0.92, 0.94 -> mean 0.92, std sqrt((0.02² + 0 + 0.02²) / 2) = 0.02
    assert t.loc["single_task", ("digit/accuracy", "mean")] == pytest.approx(0.92)
    assert t.loc["single_task", ("digit/accuracy", "std")] == pytest.approx(0.02)
    assert t.loc["single_task", ("digit/accuracy", "n")] == 3
    # mtl+dm shape: 0.70, 0.71, 0.72 -> 0.71 ± 0.01; constant digit -> std 0
    assert t.loc["mtl+dm", ("shape/f1_mean", "mean")] == pytest.approx(0.71)
    assert t.loc["mtl+dm", ("shape/f1_mean", "std")] == pytest.approx(0.01)
    assert t.loc["mtl+dm", ("digit/accuracy", "std")] == pytest.approx(0.0)


def test_summary_two_seeds_one_seed_and_gaps(make_results: Make) -> None:
    r = make_results(
        {
            "single_task": {"digit": [0.5, 0.7], "shape": [0.3]},
            "mtl": {"digit": [0.6, None], "shape": [0.4, 0.8]},
        }
    )
    upsert_run(r, RunRecord(variant="mtl+ca", seed=0, status="failed", error="boom"))
    t = summary_table(r)
    # two seeds: mean 0.6, std = |0.7 - 0.5| / sqrt(2)
    assert t.loc["single_task", ("digit/accuracy", "std")] == pytest.approx(0.2 / math.sqrt(2))
    # one seed: std 0, n 1
    assert t.loc["single_task", ("shape/f1_mean", "std")] == 0.0
    assert t.loc["single_task", ("shape/f1_mean", "n")] == 1
    # None (n/a) is skipped, not counted as 0
    assert t.loc["mtl", ("digit/accuracy", "mean")] == pytest.approx(0.6)
    assert t.loc["mtl", ("digit/accuracy", "n")] == 1
    assert t.loc["mtl", ("shape/f1_mean", "mean")] == pytest.approx(0.6)
    # failed run / no run: NaN mean and std, n 0
    assert t[("digit/accuracy", "mean")].isna()["mtl+ca"]
    assert t[("digit/accuracy", "std")].isna()["mtl+ca"]
    assert t.loc["mtl+dm", ("shape/f1_mean", "n")] == 0


def test_single_task_values_come_from_their_own_task(three_seed_results: StudyResults) -> None:
    r = three_seed_results
    # a single-task digit run that (wrongly) also reports shape must not feed the shape column
    for run in r.runs:
        if run.key == ("single_task", 0, "digit"):
            run.metrics["shape/f1_mean"] = 0.0
    assert metric_values(r, "single_task", "shape/f1_mean") == pytest.approx([0.80, 0.82, 0.84])
    c = cell(r, "single_task", "shape/f1_mean")
    assert (c.n, c.mean, c.std) == (3, pytest.approx(0.82), pytest.approx(0.02))


def test_cell_of_nothing_and_of_one_value() -> None:
    assert (Cell(()).n, Cell(()).mean, Cell(()).std) == (0, None, None)
    assert (Cell((0.4,)).mean, Cell((0.4,)).std) == (0.4, 0.0)


def test_summary_of_a_study_without_runs(make_results: Make) -> None:
    r = make_results({"mtl": {"digit": [None]}})
    r.runs = []
    t = summary_table(r)
    assert (t[("digit/accuracy", "n")] == 0).all() and t[("digit/accuracy", "mean")].isna().all()
    assert best_variants(r) == {"digit": [], "shape": []}
    assert ranking(r).empty


# --------------------------------------------------------------------------- Welch interval


def test_welch_interval_worked_by_hand() -> None:
    """Three seeds each: a = 0.91, 0.93, 0.95 and b = 0.90, 0.92, 0.94.

    mean_a = 0.93, mean_b = 0.92, difference 0.01; s_a = s_b = 0.02 (deviations ±0.02, 0:
    s² = (0.0004 + 0 + 0.0004) / 2 = 0.0004). se = sqrt(0.0004/3 + 0.0004/3)
    = sqrt(0.00026667) = 0.0163299. Welch–Satterthwaite with equal s and n:
    ν = (2v)² / (2 v² / (n - 1)) = 2 (n - 1) = 4. From a t table, t(0.975, 4) = 2.776445,
    so the half width is 2.776445 × 0.0163299 = 0.0453389 and the 95 % interval is
    [0.01 − 0.0453389, 0.01 + 0.0453389] = [−0.0353389, 0.0553389]: it contains 0.
    """
    interval = welch_interval(Cell((0.91, 0.93, 0.95)), Cell((0.90, 0.92, 0.94)))
    assert interval is not None
    assert interval.low == pytest.approx(-0.0353389, abs=1e-6)
    assert interval.high == pytest.approx(0.0553389, abs=1e-6)
    assert interval.contains(0.0)


def test_welch_interval_unequal_variances_by_hand() -> None:
    """a = 0.70, 0.71, 0.72 (s 0.01), b = 0.80, 0.82, 0.84 (s 0.02): difference −0.11.

    v_a = 0.0001/3, v_b = 0.0004/3; se = sqrt(0.0005/3) = 0.0129099;
    ν = (0.0005/3)² / ((0.0001/3)²/2 + (0.0004/3)²/2) = 0.25 / (0.005 + 0.08) = 50/17 = 2.9412;
    t(0.975, 50/17) = 3.2188, half width 0.041554: [−0.151554, −0.068446], 0 outside.
    """
    interval = welch_interval(Cell((0.70, 0.71, 0.72)), Cell((0.80, 0.82, 0.84)))
    assert interval is not None
    assert stats.t.ppf(0.975, 50 / 17) == pytest.approx(3.2188, abs=1e-4)
    assert (interval.low, interval.high) == (
        pytest.approx(-0.151554, abs=1e-6),
        pytest.approx(-0.068446, abs=1e-6),
    )
    assert not interval.contains(0.0)


def test_welch_interval_needs_two_values_a_side_and_handles_zero_spread() -> None:
    assert welch_interval(Cell((0.5,)), Cell((0.4, 0.6))) is None
    assert welch_interval(Cell((0.4, 0.6)), Cell(())) is None
    point = welch_interval(Cell((0.5, 0.5)), Cell((0.25, 0.25)))
    assert point is not None and (point.low, point.high) == (0.25, 0.25)


@settings(max_examples=40, deadline=None)
@given(
    a=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=6),
    b=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=6),
)
def test_welch_interval_matches_scipy(a: list[float], b: list[float]) -> None:
    ca, cb = Cell(tuple(a)), Cell(tuple(b))
    assert ca.std is not None and cb.std is not None
    assume(ca.std > 1e-6 and cb.std > 1e-6)  # scipy loses precision on (near) constant samples
    ours = welch_interval(ca, cb)
    theirs = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert ours is not None
    assert (ours.low, ours.high) == (pytest.approx(theirs.low), pytest.approx(theirs.high))


# --------------------------------------------------------------------------- negative transfer


def test_negative_transfer_beyond_and_within_pooled_std(three_seed_results: StudyResults) -> None:
    v = negative_transfer(three_seed_results)
    assert set(v) == {"mtl", "mtl+ca", "mtl+dm", "mtl+ca+dm"}
    dm_shape = v["mtl+dm"]["shape"]
    # gain = 0.71 - 0.82; pooled = sqrt((0.01² + 0.02²) / 2)
    assert dm_shape.gain == pytest.approx(-0.11)
    assert dm_shape.pooled_std == pytest.approx(math.sqrt((0.01**2 + 0.02**2) / 2))
    assert dm_shape.negative
    assert dm_shape.interval is not None and dm_shape.interval.high < 0
    assert not v["mtl+dm"]["digit"].negative  # gain 0
    # mtl shape: 0.81 vs 0.82, drop 0.01 < pooled std 0.02 -> not negative transfer
    assert v["mtl"]["shape"].gain == pytest.approx(-0.01)
    assert v["mtl"]["shape"].pooled_std == pytest.approx(0.02)
    assert not v["mtl"]["shape"].negative
    assert verdict_text(v["mtl"]) == "none"
    assert verdict_text(v["mtl+dm"]) == "negative transfer on: shape (−0.110)"
    assert v["mtl+ca+dm"]["digit"].gain == pytest.approx(0.04)


def test_a_single_seed_gives_no_verdict(make_results: Make) -> None:
    r = make_results(
        {
            "single_task": {"digit": [0.900], "shape": [0.500]},
            "mtl": {"digit": [0.600], "shape": [0.500]},
            "mtl+ca": {"digit": [0.950], "shape": [0.600]},
        }
    )
    v = negative_transfer(r)
    # a drop of 0.3 on one seed: no verdict, no interval, but the gain is still reported
    assert v["mtl"]["digit"].gain == pytest.approx(-0.3)
    assert not v["mtl"]["digit"].decidable and not v["mtl"]["digit"].negative
    assert v["mtl"]["digit"].interval is None
    assert verdict_text(v["mtl"]) == SINGLE_SEED == "n/a (1 seed)"
    assert verdict_text(v["mtl+ca"]) == SINGLE_SEED
    # no values at all for mtl+dm
    assert not v["mtl+dm"]["digit"].available and v["mtl+dm"]["digit"].gain is None
    assert verdict_text(v["mtl+dm"]) == "n/a"


def test_verdict_names_the_tasks_it_could_not_judge(make_results: Make) -> None:
    r = make_results(
        {
            "single_task": {"digit": [0.90, 0.95], "shape": [0.5]},
            "mtl": {"digit": [0.95, 0.90], "shape": [0.4]},
            "mtl+ca": {"digit": [0.95, 0.90]},
        }
    )
    v = negative_transfer(r)
    assert verdict_text(v["mtl"]) == "none (1 seed: shape)"
    assert verdict_text(v["mtl+ca"]) == "none (not compared: shape)"


def test_signed_uses_a_true_minus_and_no_negative_zero() -> None:
    assert signed(-0.0312) == "−0.031"
    assert signed(0.0123) == "+0.012"
    assert signed(-0.0001) == "+0.000"


# --------------------------------------------------------------------------- best, ranking, noise


def test_best_variants_and_ties(three_seed_results: StudyResults, make_results: Make) -> None:
    assert best_variants(three_seed_results) == {"digit": ["mtl+ca+dm"], "shape": ["mtl+ca+dm"]}
    tie = make_results({"mtl": {"digit": [0.9]}, "mtl+ca": {"digit": [0.9]}})
    assert best_variants(tie)["digit"] == ["mtl", "mtl+ca"]


def test_ranking_by_hand(three_seed_results: StudyResults) -> None:
    """Means, digit: st 0.92, mtl 0.93, ca 0.94 (n=3), dm 0.92, ca+dm 0.96 -> ranks
    st 4.5, mtl 3, ca 2, dm 4.5, ca+dm 1 (st and dm tie for 4th and 5th: 4.5 each).
    Shape: st 0.82, mtl 0.81, ca 0.83, dm 0.71, ca+dm 0.84 -> st 3, mtl 4, ca 2, dm 5, ca+dm 1.
    Mean ranks: ca+dm 1, ca 2, mtl 3.5, st 3.75, dm 4.75."""
    ranks = ranking(three_seed_results)
    assert list(ranks.index) == ["mtl+ca+dm", "mtl+ca", "mtl", "single_task", "mtl+dm"]
    assert ranks["digit"].to_dict() == {
        "mtl+ca+dm": 1.0, "mtl+ca": 2.0, "mtl": 3.0, "single_task": 4.5, "mtl+dm": 4.5
    }
    assert ranks["mean rank"].tolist() == pytest.approx([1.0, 2.0, 3.5, 3.75, 4.75])
    assert ranks["tasks"].tolist() == [2] * 5


def test_ranking_puts_variants_ranked_on_fewer_tasks_last(make_results: Make) -> None:
    r = make_results(
        {"mtl": {"digit": [0.99]}, "mtl+ca": {"digit": [0.5], "shape": [0.5]},
         "mtl+dm": {"digit": [0.6], "shape": [0.4]}}
    )
    ranks = ranking(r)
    # mtl is best on digit but has no shape value: after the variants ranked on both tasks
    assert list(ranks.index) == ["mtl+ca", "mtl+dm", "mtl"]
    assert ranks.loc["mtl", "tasks"] == 1 and ranks["shape"].isna()["mtl"]


def test_within_noise_of_the_best(three_seed_results: StudyResults) -> None:
    """Digit: best mtl+ca+dm (0.95, 0.96, 0.97). mtl (0.91, 0.93, 0.95): difference −0.03,
    se = sqrt(0.0001/3 + 0.0004/3) = 0.01291, ν = 50/17, half width 3.2188 × 0.01291 =
    0.04155: [−0.0716, +0.0116] contains 0 -> within noise. mtl+dm (0.92 × 3): difference
    −0.04, se = sqrt(0.0001/3) = 0.005774, ν = 2, t = 4.3027, half 0.02484: [−0.0648,
    −0.0152] -> beyond noise."""
    groups = within_noise(three_seed_results)["digit"]
    assert groups.best == ["mtl+ca+dm"]
    assert "mtl" in groups.within and "mtl+dm" in groups.beyond
    assert set(groups.within + groups.beyond) == {"single_task", "mtl", "mtl+ca", "mtl+dm"}
    assert groups.undecided == []


def test_within_noise_is_undecided_on_one_seed(make_results: Make) -> None:
    r = make_results({"single_task": {"digit": [0.9]}, "mtl": {"digit": [0.8]}})
    groups = within_noise(r)
    assert (groups["digit"].best, groups["digit"].undecided) == (["single_task"], ["mtl"])
    assert groups["shape"].best == [] and groups["shape"].within == []
