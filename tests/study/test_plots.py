"""Plots of a study and the report's files: PNGs drawn, learning curves read, report written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dmtl.knowledge.heatmap import new_figure, plot_relatedness
from dmtl.study.outputs import (
    CURVES_CSV,
    learning_curve_sources,
    training_logs,
    write_report,
)
from dmtl.study.plots import (
    SeedLog,
    _best_point,
    _task_panel,
    curves_frame,
    is_loss_term,
    plot_curves,
    plot_learning_curves,
    plot_metric_per_variant,
    read_curves,
    read_loss_curves,
)
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


def test_read_curves_of_validation_metrics(metrics_csv: Path) -> None:
    curves = read_curves(metrics_csv, {"val/digit/accuracy", "val/selection"}.__contains__)
    assert list(curves) == ["val/digit/accuracy"]  # what the file has
    assert curves["val/digit/accuracy"].to_dict() == pytest.approx({1: 0.5, 3: 0.7})


def test_curves_frame_has_every_run_seed_and_term(tmp_path: Path, csv_writer: Writer) -> None:
    logs = {
        "mtl": {0: SeedLog(csv_writer(tmp_path / "a.csv")),
                1: SeedLog(csv_writer(tmp_path / "b.csv", scale=0.5))},
        "mtl+dm": {0: SeedLog(csv_writer(tmp_path / "c.csv"))},
    }
    frame = curves_frame(logs, is_loss_term)
    assert list(frame.columns) == ["run", "seed", "term", "step", "value"]
    assert set(map(tuple, frame[["run", "seed"]].drop_duplicates().to_numpy())) == {
        ("mtl", 0), ("mtl", 1), ("mtl+dm", 0)
    }
    mtl1 = frame[(frame["run"] == "mtl") & (frame["seed"] == 1) & (frame["term"] == "val/loss")]
    assert mtl1["value"].tolist() == pytest.approx([0.85, 0.6])  # 1.7 and 1.2, halved
    assert curves_frame({}, is_loss_term).empty


def test_best_checkpoint_is_marked_on_the_point_logged_before_its_step() -> None:
    """A checkpoint at step 10 (10 steps done) holds the epoch whose last step and whose
    validation Lightning logged at step 9."""
    series = pd.Series([0.5, 0.6, 0.7], index=[4, 9, 14])
    assert _best_point(series, 10) == (9.0, 0.6)
    assert _best_point(series, 15) == (14.0, 0.7)
    assert _best_point(series, 4) is None and _best_point(series, None) is None


def test_plot_curves(tmp_path: Path, csv_writer: Writer) -> None:
    logs = {"mtl": {0: SeedLog(csv_writer(tmp_path / "a.csv"), best_step=2),
                    1: SeedLog(csv_writer(tmp_path / "b.csv", scale=0.5), best_step=4)}}
    frame = curves_frame(logs, is_loss_term)
    assert_png(plot_curves(frame, tmp_path / "c.png", best_steps={("mtl", 0): 2}, title="t"))
    with pytest.raises(ValueError, match="no curves"):
        plot_curves(frame.iloc[0:0], tmp_path / "none.png")


def test_bars_start_at_zero(three_seed_results: StudyResults) -> None:
    """Means between 0.71 and 0.96: the axis still starts at 0, and says so."""
    fig = new_figure(4, 3)
    ax = fig.subplots()
    _task_panel(ax, three_seed_results, "shape", [f"C{i}" for i in range(5)])
    assert ax.get_ylim() == (0.0, 1.05)
    assert ax.get_ylabel() == "f1_mean (axis from 0)"
    # the means, to 3 decimals, under the bars
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "0.820", "0.810", "0.830", "0.710", "0.840"
    ]


def test_write_report(
    three_seed_results: StudyResults, tmp_path: Path, csv_writer: Writer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    study = tmp_path / "study"
    for run in three_seed_results.runs:
        if run.seed < 2 and run.run_dir:
            csv_writer(study / run.run_dir / "logs" / "version_0" / "metrics.csv")
            run.best_step = 2
    seed, sources = learning_curve_sources(three_seed_results, study)
    labels = {"single_task[digit]", "single_task[shape]", "mtl", "mtl+ca", "mtl+dm", "mtl+ca+dm"}
    assert seed == 0 and set(sources) == labels
    logs = training_logs(three_seed_results, study)
    assert set(logs) == labels and all(set(seeds) == {0, 1} for seeds in logs.values())
    assert logs["mtl"][1].best_step == 2
    # a heat map named relative to the working directory is linked relative to the report
    monkeypatch.chdir(tmp_path)
    heat = plot_relatedness(np.eye(3), list("abc"), list("xyz"), Path("study") / "rel.png")
    report = write_report(three_seed_results, "study", extra_plots={"Relatedness": heat})
    assert report == Path("study") / "report.md"
    md = report.read_text(encoding="utf-8")
    assert "negative transfer on: shape (−0.110)" in md
    assert "Loss terms over training steps (all seeds:" in md
    for name in ("metric_per_variant.png", "learning_curves.png", "validation_curves.png",
                 "rel.png"):
        assert f"]({name})" in md
        assert_png(study / name)
    assert f"[{CURVES_CSV}]({CURVES_CSV})" in md
    curves = pd.read_csv(study / CURVES_CSV)
    assert set(curves["run"]) == labels and set(curves["seed"]) == {0, 1}
    assert {"train/loss", "val/loss", "val/digit/accuracy"} <= set(curves["term"])
    assert sorted(p.name for p in study.iterdir() if p.is_file()) == [
        "learning_curves.png", "metric_per_variant.png", "rel.png", "report.md",
        CURVES_CSV, "validation_curves.png",
    ]  # no temporary file left behind
    # without logs: the report still comes, with the metric plot only
    bare = write_report(three_seed_results, tmp_path / "bare")
    text = bare.read_text(encoding="utf-8")
    assert "learning_curves.png" not in text and CURVES_CSV not in text
    assert_png(tmp_path / "bare" / "metric_per_variant.png")
