"""Aggregation over seeds, the negative-transfer verdict, report.md, the rich table and plots."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from dmtl.study.plots import (
    plot_learning_curves,
    plot_metric_per_variant,
    plot_relatedness,
    read_loss_curves,
)
from dmtl.study.report import (
    best_variants,
    learning_curve_sources,
    metric_values,
    negative_transfer,
    render_markdown,
    rich_table,
    summary_table,
    tasks_hurt,
    verdict_text,
    write_report,
)
from dmtl.study.results import RunRecord, StudyResults, upsert_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
Make = Callable[..., StudyResults]
Writer = Callable[..., Path]


def assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 0
    assert path.read_bytes()[:8] == PNG_MAGIC


# --------------------------------------------------------------------------- summary


def test_summary_mean_std_n_by_hand(three_seed_results: StudyResults) -> None:
    t = summary_table(three_seed_results)
    assert list(t.index) == ["single_task", "mtl", "mtl+ca", "mtl+dm", "mtl+ca+dm"]
    assert list(t.columns.get_level_values(0).unique()) == ["digit/accuracy", "shape/f1_mean"]
    # single_task digit: 0.90, 0.92, 0.94 -> mean 0.92, std sqrt((0.02^2 + 0 + 0.02^2) / 2) = 0.02
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
    # one seed: std 0
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


def test_summary_all_metrics_and_single_task_rows(three_seed_results: StudyResults) -> None:
    r = three_seed_results
    # a single-task digit run that (wrongly) also reports shape must not feed the shape column
    for run in r.runs:
        if run.key == ("single_task", 0, "digit"):
            run.metrics["shape/f1_mean"] = 0.0
    assert metric_values(r, "single_task", "shape/f1_mean") == pytest.approx([0.80, 0.82, 0.84])
    t = summary_table(r, metrics="all")
    assert list(t.columns.get_level_values(0).unique()) == [
        "digit/accuracy",
        "digit/f1_macro",
        "shape/f1_mean",
        "shape/accuracy",
    ]
    assert t.loc["single_task", ("digit/f1_macro", "mean")] == pytest.approx(0.82)
    assert t.loc["mtl", ("shape/accuracy", "mean")] == pytest.approx(0.82)


# --------------------------------------------------------------------------- negative transfer


def test_negative_transfer_beyond_and_within_pooled_std(three_seed_results: StudyResults) -> None:
    v = negative_transfer(three_seed_results)
    assert set(v) == {"mtl", "mtl+ca", "mtl+dm", "mtl+ca+dm"}
    dm_shape = v["mtl+dm"]["shape"]
    # gain = 0.71 - 0.82; pooled = sqrt((0.01^2 + 0.02^2) / 2)
    assert dm_shape.gain == pytest.approx(-0.11)
    assert dm_shape.pooled_std == pytest.approx(math.sqrt((0.01**2 + 0.02**2) / 2))
    assert dm_shape.negative
    assert not v["mtl+dm"]["digit"].negative  # gain 0
    assert tasks_hurt(v["mtl+dm"]) == ["shape"]
    # mtl shape: 0.81 vs 0.82, drop 0.01 < pooled std 0.02 -> not negative transfer
    assert v["mtl"]["shape"].gain == pytest.approx(-0.01)
    assert v["mtl"]["shape"].pooled_std == pytest.approx(0.02)
    assert not v["mtl"]["shape"].negative
    assert verdict_text(v["mtl"]) == "none"
    assert verdict_text(v["mtl+dm"]) == "negative transfer on: shape (−0.110)"
    assert v["mtl+ca+dm"]["digit"].gain == pytest.approx(0.04)


def test_negative_transfer_one_seed_any_drop(make_results: Make) -> None:
    r = make_results(
        {
            "single_task": {"digit": [0.900], "shape": [0.500]},
            "mtl": {"digit": [0.899], "shape": [0.500]},
            "mtl+ca": {"digit": [0.950], "shape": [0.600]},
        }
    )
    v = negative_transfer(r)
    assert v["mtl"]["digit"].pooled_std == 0.0
    assert v["mtl"]["digit"].negative  # a drop of 0.001 counts with one seed
    assert not v["mtl"]["shape"].negative  # equal: no drop
    assert verdict_text(v["mtl"]) == "negative transfer on: digit (−0.001)"
    assert verdict_text(v["mtl+ca"]) == "none"
    # no values at all for mtl+dm
    assert not v["mtl+dm"]["digit"].available and v["mtl+dm"]["digit"].gain is None
    assert verdict_text(v["mtl+dm"]) == "n/a"
    md = render_markdown(r)
    assert "**any** drop" in md


def test_negative_transfer_without_baseline(make_results: Make) -> None:
    r = make_results({"mtl": {"digit": [0.95, 0.9]}, "single_task": {"digit": [0.9, 0.95]}})
    v = negative_transfer(r)
    assert not v["mtl"]["shape"].available
    assert verdict_text(v["mtl"]) == "none (not compared: shape)"


def test_best_variants(three_seed_results: StudyResults) -> None:
    assert best_variants(three_seed_results) == {"digit": ["mtl+ca+dm"], "shape": ["mtl+ca+dm"]}


# --------------------------------------------------------------------------- markdown / rich


def test_markdown_report_content(three_seed_results: StudyResults) -> None:
    r = three_seed_results
    upsert_run(
        r,
        RunRecord(
            variant="mtl+ca", seed=2, status="failed", error="Traceback...\nRuntimeError: a | b"
        ),
    )
    md = render_markdown(r, plots={"Primary metric per variant": "metric_per_variant.png"})
    assert md.startswith("# dmtl study: crafted")
    assert "`dmtl study crafted.yaml --seeds 3`" in md
    assert "| variant | digit (accuracy) | shape (f1_mean) | negative transfer |" in md
    assert "| single_task (baseline) | 0.920 ± 0.020 | 0.820 ± 0.020 | — (baseline) |" in md
    assert "| mtl | 0.930 ± 0.020 | 0.810 ± 0.020 | none |" in md
    assert "| mtl+dm | 0.920 ± 0.000 | 0.710 ± 0.010 | negative transfer on: shape (−0.110) |" in md
    assert "**0.960 ± 0.010**" in md  # best digit cell bold
    # the failed seed of mtl+ca leaves two values: the cell says so
    assert "(n=2)" in md
    assert "sqrt((s_variant² + s_single²) / 2)" in md
    assert "- digit (accuracy): mtl+ca+dm (0.960 ± 0.010)" in md
    assert "mtl+ca seed 2" in md and "RuntimeError: a | b" in md
    assert "](metric_per_variant.png)" in md and "![Primary metric per variant]" in md
    assert "**any** drop" not in md  # no single-seed cell: no one-seed warning
    assert "Label regime per seed" in md
    # the runner's format: summary line first, then the traceback
    upsert_run(
        r,
        RunRecord(
            variant="mtl+ca",
            seed=2,
            status="failed",
            split="",
            error="ValueError: bad\nTraceback (most recent call last):\n  ...\nValueError: bad",
        ),
    )
    md = render_markdown(r)
    assert "- mtl+ca seed 2: ValueError: bad\n" in md
    assert "evaluated on split: test\n" in md


def test_markdown_lists_missing_runs(make_results: Make) -> None:
    r = make_results({"single_task": {"digit": [0.9], "shape": [0.5]}, "mtl": {"digit": [0.8]}})
    md = render_markdown(r)
    assert "Not run yet:" in md and "mtl+ca+dm seed 0" in md
    assert "## Failed runs\n\nnone" in md


def test_rich_table(three_seed_results: StudyResults) -> None:
    table = rich_table(three_seed_results)
    assert table.row_count == 5
    assert [str(c.header) for c in table.columns] == [
        "variant",
        "digit\n(accuracy)",
        "shape\n(f1_mean)",
        "negative transfer",
    ]
    console = Console(record=True, width=160)
    console.print(table)
    text = console.export_text()
    assert "shape (−0.110)" in text  # the column header says "negative transfer"
    assert "0.920 ± 0.020" in text and "single_task (baseline)" in text


# --------------------------------------------------------------------------- plots / files


def test_read_loss_curves_sparse_rows(metrics_csv: Path) -> None:
    curves = read_loss_curves(metrics_csv)
    assert list(curves) == [
        "train/loss",
        "train/sup/digit",
        "train/ca/digit->shape",
        "train/dm/shape->digit",
        "val/loss",
    ]
    # per-step series preferred over the epoch aggregate; NaN rows dropped
    assert list(curves["train/loss"].index) == [0, 1, 2, 3]
    assert curves["train/loss"].tolist() == pytest.approx([2.0, 1.8, 1.5, 1.2])
    assert curves["train/dm/shape->digit"].to_dict() == pytest.approx({0: 0.3, 1: 0.25, 2: 0.2})
    assert curves["val/loss"].to_dict() == pytest.approx({1: 1.7, 3: 1.2})
    assert "val/digit/accuracy" not in curves
    assert all(not s.isna().any() for s in curves.values())


def test_plot_learning_curves(tmp_path: Path, metrics_csv: Path, csv_writer: Writer) -> None:
    other = csv_writer(tmp_path / "b" / "metrics.csv", scale=0.5)
    out = plot_learning_curves({"mtl": metrics_csv, "mtl+dm": other}, tmp_path / "lc.png", smooth=2)
    assert_png(out)
    only = plot_learning_curves({"mtl": metrics_csv}, tmp_path / "lc1.png", terms=["train/loss"])
    assert_png(only)
    empty = tmp_path / "empty.csv"
    empty.write_text("epoch,step,val/digit/accuracy\n0,0,0.5\n")
    with pytest.raises(ValueError, match="no loss terms"):
        plot_learning_curves({"x": empty}, tmp_path / "none.png")


def test_plot_metric_per_variant(three_seed_results: StudyResults, make_results: Make,
                                 tmp_path: Path) -> None:  # fmt: skip
    assert_png(plot_metric_per_variant(three_seed_results, tmp_path / "m.png"))
    assert_png(plot_metric_per_variant(three_seed_results, tmp_path / "s.png", metrics="summary"))
    sparse = make_results({"single_task": {"digit": [0.9]}, "mtl": {"digit": [None]}})
    assert_png(plot_metric_per_variant(sparse, tmp_path / "sparse.png"))


def test_plot_relatedness(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    small = rng.random((7, 12))
    small[0, 0] = np.nan
    rows = ["neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise"]
    cols = [f"AU{i}" for i in range(12)]
    assert_png(plot_relatedness(small, rows, cols, tmp_path / "small.png", "p(AU | expression)"))
    big = rng.random((50, 30))
    names = [f"compound_{i}" for i in range(50)]
    assert_png(plot_relatedness(big, names, [f"AU{i}" for i in range(30)], tmp_path / "big.png"))
    with pytest.raises(ValueError, match="does not match"):
        plot_relatedness(small, rows[:3], cols, tmp_path / "bad.png")


def test_write_report(three_seed_results: StudyResults, tmp_path: Path, csv_writer: Writer) -> None:
    study = tmp_path / "study"
    for run in three_seed_results.runs:
        if run.seed == 0 and run.run_dir:
            csv_writer(study / run.run_dir / "logs" / "version_0" / "metrics.csv")
    seed, sources = learning_curve_sources(three_seed_results, study)
    assert seed == 0
    assert set(sources) == {
        "single_task[digit]",
        "single_task[shape]",
        "mtl",
        "mtl+ca",
        "mtl+dm",
        "mtl+ca+dm",
    }
    heat = plot_relatedness(np.eye(3), list("abc"), list("xyz"), study / "report" / "rel.png")
    report = write_report(
        three_seed_results,
        study / "report",
        study_dir=study,
        extra_plots={"Relatedness": heat},
    )
    assert report == study / "report" / "report.md"
    md = report.read_text(encoding="utf-8")
    assert "negative transfer on: shape (−0.110)" in md
    assert "(seed 0)" in md
    for name in ("metric_per_variant.png", "learning_curves.png", "rel.png"):
        assert f"]({name})" in md
        assert_png(study / "report" / name)
    # without logs: the report still comes, with the metric plot only
    bare = write_report(three_seed_results, tmp_path / "bare")
    assert "learning_curves.png" not in bare.read_text(encoding="utf-8")
    assert_png(tmp_path / "bare" / "metric_per_variant.png")
