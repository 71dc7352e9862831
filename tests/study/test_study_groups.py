"""The study's group tables: ``study.group_by`` (``dmtl study --by``), each run's table in
``results.json``, and the report's Groups section (mean per group, worst group, gap)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from dmtl.cli import app
from dmtl.config import load_config
from dmtl.errors import ConfigError
from dmtl.study.group_stats import gap_verdict, summaries
from dmtl.study.report import render_markdown
from dmtl.study.results import RunRecord, StudyResults, TaskInfo, load_results, upsert_run

SHAPE_LABELS = ["even", "at_least_5", "prime", "loop_top", "loop_bottom", "straight_only"]


def run(*args: object, code: int = 0) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, f"{result.output}\n{result.exception!r}"
    return result.output


# ---------------------------------------------------------------------------- config


def test_groups_file_is_relative_to_the_config_and_must_exist(
    tmp_path: Path, tiny_data: Any
) -> None:
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "attrs.csv").write_text("id,writer\n0,a\n")
    config = folder / "study.yaml"
    data = tiny_data(study={"group_by": "writer", "groups": "attrs.csv"})
    config.write_text(yaml.safe_dump(data))
    assert load_config(config).study.groups == folder / "attrs.csv"
    data["study"]["groups"] = "missing.csv"
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"study\.groups: file not found: .*missing\.csv"):
        load_config(config)
    output = run("config", "check", config, code=2)
    assert output.count("study.groups") == 1 and "file not found" in output
    del data["study"]["group_by"]
    data["study"]["groups"] = "attrs.csv"
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"study\.groups: needs study\.group_by"):
        load_config(config)


@pytest.mark.slow
def test_a_column_a_builtin_dataset_lacks_is_refused_before_training(
    tmp_path: Path, write_config: Any
) -> None:
    config = write_config(study={"seeds": 1, "variants": ["mtl"]})
    output = run("study", config, "--out", tmp_path / "s", "--by", "age", code=2)
    assert "--by age: source 'digits' is a built-in dataset; it has only the column" in output
    assert not (tmp_path / "s" / "results.json").exists()


# ---------------------------------------------------------------------------- statistics


def _record(variant: str, seed: int, task: str | None, by_group: dict[str, float]) -> RunRecord:
    metric = "digit/accuracy"
    rows = [{"writer": g, "n": 10, metric: v} for g, v in by_group.items()]
    worst = min(by_group, key=by_group.__getitem__)
    gap = max(by_group.values()) - min(by_group.values())
    return RunRecord(
        variant=variant, seed=seed, task=task, status="done", metrics={metric: 0.5},
        groups={"by": "writer", "groups": rows, "worst": {metric: worst}, "gap": {metric: gap}},
    )


def _crafted(mtl_b: tuple[float, float]) -> StudyResults:
    results = StudyResults(
        study="g", tasks={"digit": TaskInfo(kind="categorical", primary_metric="accuracy",
                                            names=["0", "1"])},
        variants=["single_task", "mtl"], seeds=[0, 1],
    )
    for seed in (0, 1):
        # single-task gaps 0.10 and 0.20; mtl: a = 0.9, b as given
        upsert_run(results, _record("single_task", seed, "digit",
                                    {"a": 0.8, "b": 0.7 - 0.1 * seed}))
        upsert_run(results, _record("mtl", seed, None, {"a": 0.9, "b": mtl_b[seed]}))
    return results


def test_group_summaries_by_hand() -> None:
    results = _crafted((0.5, 0.6))  # mtl gaps 0.4 and 0.3
    baseline, mtl = summaries(results)["digit"]
    assert baseline.means == pytest.approx({"a": 0.8, "b": 0.65})
    assert mtl.means == pytest.approx({"a": 0.9, "b": 0.55}) and mtl.worst == "b"
    assert mtl.gap.mean == pytest.approx(0.35) and mtl.gap.std == pytest.approx(math.sqrt(0.005))
    # gain 0.35 - 0.15 = 0.20 > pooled sqrt((0.005 + 0.005) / 2) = 0.0707: wider
    assert gap_verdict(mtl, baseline) == "wider (+0.200)"
    report = render_markdown(results)
    assert "## Groups (by writer, on the evaluation split)" in report
    assert "| mtl | 0.900 | 0.550 | b | 0.350 ± 0.071 | **wider (+0.200)** |" in report


def test_a_gap_within_noise_is_not_wider_and_one_seed_is_undecided() -> None:
    results = _crafted((0.75, 0.75))  # mtl gaps 0.15 and 0.15: gain 0.0
    baseline, mtl = summaries(results)["digit"]
    assert gap_verdict(mtl, baseline) == "not wider (+0.000)"
    results.runs = [r for r in results.runs if r.seed == 0]
    baseline, mtl = summaries(results)["digit"]
    assert gap_verdict(mtl, baseline) == "n/a (1 seed) (+0.050)"
    assert gap_verdict(mtl, None) == "n/a"


def test_no_group_tables_no_section() -> None:
    results = _crafted((0.5, 0.6))
    for r in results.runs:
        r.groups = None
    assert summaries(results) == {}
    assert "## Groups" not in render_markdown(results)


# ---------------------------------------------------------------------------- end to end


def _digits_with_writers(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """Exported digits (300 samples), a made-up ``writer`` of each id kept in a side table."""
    run("datasets", "export", "digits", tmp_path / "digits", "--limit", "300")
    manifest = tmp_path / "digits" / "manifest.csv"
    frame = pd.read_csv(manifest, dtype={"id": str})
    frame = frame.drop(columns=[c for c in frame.columns if c.startswith("ink/")])
    frame.to_csv(manifest, index=False)  # digit and shape only
    frame["writer"] = ["w" + str(int(i) % 3) for i in frame["id"]]
    frame[["id", "writer"]].to_csv(tmp_path / "writers.csv", index=False)
    return manifest, frame


def _accuracy_per_writer(tmp_path: Path, run_dir: Path, test: pd.DataFrame) -> dict[str, float]:
    """Digit accuracy per writer from ``dmtl predict`` on the test rows."""
    out = tmp_path / f"pred-{run_dir.parent.name}-{run_dir.name}.csv"
    run("predict", run_dir, tmp_path / "test.csv", "-o", out, "--root", tmp_path / "digits")
    predicted = pd.read_csv(out, dtype={"id": str, "digit": str})
    merged = test.merge(predicted[["id", "digit"]], on="id", suffixes=("", "_pred"))
    right = merged["digit"].astype(int).astype(str) == merged["digit_pred"]
    return {str(w): float(v) for w, v in right.groupby(merged["writer"]).mean().items()}


@pytest.mark.slow
def test_study_by_a_side_table_column_matches_the_predictions(
    tmp_path: Path, tiny_data: Any
) -> None:
    manifest, frame = _digits_with_writers(tmp_path)
    data = tiny_data(output={"dir": str(tmp_path / "unused")},
                     study={"seeds": 2, "variants": ["single_task", "mtl"]})
    data["sources"] = [{"name": "digits", "manifest": str(manifest)}]
    data["tasks"] = [
        {"name": "digit", "type": "categorical", "classes": list("0123456789")},
        {"name": "shape", "type": "binary_set", "labels": SHAPE_LABELS},
    ]
    data["relatedness"] = []
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "study"
    run("study", config, "--out", out, "--by", "writer", "--groups", tmp_path / "writers.csv")

    results = load_results(out / "results.json")
    assert results.config["study"]["group_by"] == "writer"
    test = frame[frame["split"] == "test"].copy()
    test[["id", "image"]].to_csv(tmp_path / "test.csv", index=False)
    done = [r for r in results.runs if r.status == "done"]
    assert len(done) == 6, [r.error for r in results.runs]
    digit_runs = [r for r in done if r.task in (None, "digit")]
    for record in digit_runs:
        assert record.groups is not None and record.groups["by"] == "writer"
        rows = {g["writer"]: g for g in record.groups["groups"]}
        expected = _accuracy_per_writer(tmp_path, out / str(record.run_dir), test)
        assert set(rows) == set(expected) == {"w0", "w1", "w2"}
        for writer, accuracy in expected.items():
            assert rows[writer]["n"] == int((test["writer"] == writer).sum())
            assert rows[writer]["digit/accuracy"] == pytest.approx(accuracy)
        assert record.groups["gap"]["digit/accuracy"] == pytest.approx(
            max(expected.values()) - min(expected.values())
        )
        assert record.groups["worst"]["digit/accuracy"] == min(expected, key=expected.__getitem__)
    shape_run = next(r for r in done if r.task == "shape")
    assert shape_run.groups is not None and "shape/f1_mean" in shape_run.groups["groups"][0]
    assert "digit/accuracy" not in shape_run.groups["groups"][0]

    report = (out / "report.md").read_text()
    assert "## Groups (by writer, on the evaluation split)" in report
    mtl = [r for r in digit_runs if r.variant == "mtl"]
    assert mtl[0].groups is not None
    means = [np.mean([_row(r, w) for r in mtl]) for w in ("w0", "w1", "w2")]
    gaps = [r.groups["gap"]["digit/accuracy"] for r in mtl if r.groups is not None]
    row = f"| mtl | {means[0]:.3f} | {means[1]:.3f} | {means[2]:.3f} |"
    assert row in report, report
    assert f"{np.mean(gaps):.3f} ± {np.std(gaps, ddof=1):.3f}" in report


def _row(record: RunRecord, writer: str) -> float:
    assert record.groups is not None
    return next(float(g["digit/accuracy"]) for g in record.groups["groups"]
                if g["writer"] == writer)


@pytest.mark.slow
def test_study_by_source_in_parallel_workers(tmp_path: Path, tiny_data: Any) -> None:
    """Two manifest sources (the exported digits split by id parity), ``study.group_by:
    source`` in the config, runs in worker processes: each record carries its table, one
    row per source, each with its own test rows."""
    manifest, frame = _digits_with_writers(tmp_path)
    parity = frame["id"].astype(int) % 2
    columns = ["id", "image", "split", "digit"]
    for name, part in (("odd", frame[parity == 1]), ("even", frame[parity == 0])):
        part[columns].to_csv(manifest.parent / f"{name}.csv", index=False)
    data = tiny_data(study={"seeds": 1, "variants": ["single_task", "mtl"],
                            "group_by": "source"}, output={"dir": str(tmp_path / "unused")})
    data["sources"] = [{"name": n, "manifest": f"digits/{n}.csv"} for n in ("odd", "even")]
    data["tasks"] = [{"name": "digit", "type": "categorical", "classes": list("0123456789")}]
    data["relatedness"] = []
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "s"
    run("study", config, "--out", out, "--jobs", "2")
    results = load_results(out / "results.json")
    assert [r.status for r in results.runs] == ["done", "done"], [r.error for r in results.runs]
    test = frame[frame["split"] == "test"]
    n_odd = int((test["id"].astype(int) % 2 == 1).sum())
    for record in results.runs:
        assert record.groups is not None
        rows = record.groups["groups"]
        assert [(g["source"], g["n"]) for g in rows] == [
            ("even", len(test) - n_odd), ("odd", n_odd)
        ]
    assert json.loads((out / "results.json").read_text())["runs"][0]["groups"]["by"] == "source"
    assert "## Groups (by source" in (out / "report.md").read_text()


@pytest.mark.slow
def test_builtin_digits_by_source_is_the_whole_test_split(
    tmp_path: Path, write_config: Any
) -> None:
    """The tiny built-in study with ``study.group_by: source``: one group, all the test
    rows, so its metrics are the run's own test metrics, and the gap is 0."""
    config = write_config(study={"seeds": 1, "variants": ["single_task", "mtl"],
                                 "group_by": "source"})
    out = tmp_path / "s"
    run("study", config, "--out", out)
    results = load_results(out / "results.json")
    assert len(results.runs) == 4 and all(r.status == "done" for r in results.runs)
    for record in results.runs:
        assert record.groups is not None
        (row,) = record.groups["groups"]
        assert row["source"] == "digits"
        metrics = [m for m in row if "/" in m]
        assert metrics and all(record.metrics[m] == pytest.approx(row[m]) for m in metrics)
        assert all(gap == 0.0 for gap in record.groups["gap"].values())
    report = (out / "report.md").read_text()
    assert "## Groups (by source, on the evaluation split)" in report
    assert "| mtl | " in report.split("## Groups", 1)[1]
