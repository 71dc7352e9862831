"""The study's task affinity (``study.affinity``): measured once with ``dmtl affinity``'s
function, written beside the report, kept in results.json and shown in report.md."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from dmtl.config import Config, validate_config
from dmtl.study.results import load_results
from dmtl.study.study import run_study
from dmtl.training.run import RunResult


def _fake_training(experiment: Any, run_dir: Path, **kwargs: Any) -> RunResult:
    """Stands for ``run_training`` (instant): the affinity, not the runs, is under test."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    metrics: dict[str, float | None] = {
        f"{t.name}/{'accuracy' if t.name == 'digit' else 'f1_mean'}": 0.5
        for t in experiment.tasks
    }
    return RunResult(Path(run_dir), metrics, "test", 5, 0.1, None)


def _config(tiny_data: Callable[..., dict[str, Any]], affinity: bool) -> Config:
    raw = tiny_data()
    raw["study"] = {**raw.get("study", {}), "variants": ["mtl"], "affinity": affinity}
    return validate_config(raw)


def test_study_reports_the_task_affinity(
    tiny_data: Callable[..., dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("dmtl.study.study.run_training", _fake_training)
    out = tmp_path / "study"
    messages: list[str] = []
    results = run_study(_config(tiny_data, True), out, seeds=1, progress=messages.append)
    assert any(m.startswith("affinity (seed 0") for m in messages)
    table = pd.read_csv(out / "affinity.csv")
    assert (out / "affinity.png").stat().st_size > 0
    tasks = ["digit", "shape", "ink"]
    overall = table[table["group"] == "all"]
    assert sorted(zip(overall["source"], overall["target"], strict=True)) == sorted(
        (i, j) for i in tasks for j in tasks)
    diagonal = overall[overall["source"] == overall["target"]]["z_relative"]
    assert all(math.isclose(v, 1.0) for v in diagonal)  # Z[j->j] / Z[j->j]
    # results.json keeps the same table, and reloads
    stored = load_results(out / "results.json").affinity
    assert stored is not None and stored == results.affinity
    assert stored["seed"] == 0 and stored["steps"] > 0 and stored["epochs"] == 2
    assert len(stored["rows"]) == len(table)
    report = (out / "report.md").read_text()
    section = report.split("## Task affinity", 1)[1].split("\n## ", 1)[0]
    assert "[affinity.png](affinity.png)" in section
    assert "[affinity.csv](affinity.csv)" in section
    assert "| digit |" in section and "+1.000" in section
    # --overwrite accepts the folder with the affinity's files in it
    again = run_study(_config(tiny_data, True), out, seeds=1, overwrite=True)
    assert again.affinity is not None


def test_study_without_affinity_writes_none(
    tiny_data: Callable[..., dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("dmtl.study.study.run_training", _fake_training)
    out = tmp_path / "study"
    results = run_study(_config(tiny_data, False), out, seeds=1)
    assert results.affinity is None
    assert not (out / "affinity.csv").exists() and not (out / "affinity.png").exists()
    assert "## Task affinity" not in (out / "report.md").read_text()
    assert load_results(out / "results.json").affinity is None  # the key is optional


def test_ctrl_c_during_the_affinity_still_writes_the_report(
    tiny_data: Callable[..., dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lightning turns a Ctrl-C inside ``fit`` into ``SystemExit(1)``: the runs are done,
    so the study warns once, leaves the affinity out and writes its report."""

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise SystemExit(1)

    monkeypatch.setattr("dmtl.study.study.run_training", _fake_training)
    monkeypatch.setattr("dmtl.training.affinity.measure_affinity", interrupted)
    out = tmp_path / "study"
    results = run_study(_config(tiny_data, True), out, seeds=1)
    assert results.affinity is None and not (out / "affinity.csv").exists()
    assert [w for w in results.warnings if "interrupted (Ctrl-C)" in w] != []
    assert "## Task affinity" not in (out / "report.md").read_text()
