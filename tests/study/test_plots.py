"""Plots of a study and the report's files: PNGs drawn, learning curves read, report written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from dmtl.knowledge.heatmap import plot_relatedness
from dmtl.study.outputs import learning_curve_sources, write_report
from dmtl.study.plots import plot_learning_curves, plot_metric_per_variant, read_loss_curves
from dmtl.study.results import StudyResults

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
Make = Callable[..., StudyResults]
Writer = Callable[..., Path]


def assert_png(path: Path) -> None:
    assert path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


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
    assert_png(plot_learning_curves({"mtl": metrics_csv, "mtl+dm": other}, tmp_path / "lc.png"))
    empty = tmp_path / "empty.csv"
    empty.write_text("epoch,step,val/digit/accuracy\n0,0,0.5\n")
    with pytest.raises(ValueError, match="no loss terms"):
        plot_learning_curves({"x": empty}, tmp_path / "none.png")


def test_plot_metric_per_variant(
    three_seed_results: StudyResults, make_results: Make, tmp_path: Path
) -> None:
    assert_png(plot_metric_per_variant(three_seed_results, tmp_path / "m.png"))
    sparse = make_results({"single_task": {"digit": [0.9]}, "mtl": {"digit": [None]}})
    assert_png(plot_metric_per_variant(sparse, tmp_path / "sparse.png"))


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
    heat = plot_relatedness(np.eye(3), list("abc"), list("xyz"), study / "rel.png")
    report = write_report(three_seed_results, study, extra_plots={"Relatedness": heat})
    assert report == study / "report.md"
    md = report.read_text(encoding="utf-8")
    assert "negative transfer on: shape (−0.110)" in md
    assert "Loss terms over training steps (seed 0)" in md
    for name in ("metric_per_variant.png", "learning_curves.png", "rel.png"):
        assert f"]({name})" in md
        assert_png(study / name)
    assert sorted(p.name for p in study.iterdir() if p.is_file()) == [
        "learning_curves.png", "metric_per_variant.png", "rel.png", "report.md"
    ]  # no temporary file left behind
    # without logs: the report still comes, with the metric plot only
    bare = write_report(three_seed_results, tmp_path / "bare")
    assert "learning_curves.png" not in bare.read_text(encoding="utf-8")
    assert_png(tmp_path / "bare" / "metric_per_variant.png")
