"""A study's progress: a rich bar with the time left on a terminal, one plain line per finished
run elsewhere, failures in both; ``--jobs`` is checked and runs the study in workers."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from dmtl.cli.progress import StudyProgressView
from dmtl.study.results import RunRecord, load_results

from .conftest import Invoke


def _record(variant: str, status: str = "done", task: str | None = None) -> RunRecord:
    return RunRecord(variant=variant, seed=0, task=task, status=status, wall_s=1.25,
                     error="RuntimeError: boom\ntraceback" if status == "failed" else None)


def _view(terminal: bool) -> tuple[StudyProgressView, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=120, color_system=None)
    return StudyProgressView(console), out


def test_off_a_terminal_one_line_per_finished_run_with_the_time_left() -> None:
    view, out = _view(terminal=False)
    with view:
        view.study_started(total=4, done=1)  # a resume: one run was done before
        view.run_started("mtl seed 0")
        view.epoch_finished("mtl seed 0", 1, 3)  # no line for an epoch
        assert out.getvalue() == ""
        view.run_finished(_record("mtl"))
        view.run_started("mtl+ca seed 0")
        view.run_finished(_record("mtl+ca", "failed"))
        view.run_started("single_task[digit] seed 0")
        view.run_finished(_record("single_task", task="digit"))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[2/4] mtl seed 0: done in 1.2 s (elapsed ")
    assert "s left)" in lines[0]
    assert lines[1] == "FAILED mtl+ca seed 0: RuntimeError: boom"
    assert lines[2].startswith("[4/4] single_task[digit] seed 0: done in 1.2 s (elapsed ")
    assert "left" not in lines[2]  # nothing left to do
    assert len(lines) == 3


def test_on_a_terminal_a_progress_bar_of_runs_and_epochs() -> None:
    view, out = _view(terminal=True)
    with view:
        view.study_started(total=3, done=0)
        view.run_started("mtl seed 0")
        view.epoch_finished("mtl seed 0", 2, 4)
        view.progress.refresh()
        drawn = out.getvalue()
        assert "runs" in drawn and "mtl seed 0" in drawn and "2/4" in drawn
        overall = view.progress.tasks[0]
        assert overall.total == 3 and overall.completed == pytest.approx(0.5)
        view.run_finished(_record("mtl"))
        assert overall.completed == pytest.approx(1.0)
        assert [t.description for t in view.progress.tasks] == ["runs"]  # the run's row left
        view.run_finished(_record("mtl+dm", "failed"))
    assert "FAILED mtl+dm seed 0: RuntimeError: boom" in out.getvalue()


@pytest.mark.parametrize("jobs", ["0", "-2", "two"])
def test_bad_jobs_is_one_clear_error(cli: Invoke, tiny_config_file: Path, jobs: str) -> None:
    result = cli("study", tiny_config_file, "--jobs", jobs, code=2)
    assert "--jobs" in result.output and "a number >= 1 or 'auto'" in result.output


@pytest.mark.slow
def test_study_with_two_jobs_prints_a_line_per_run(
    cli: Invoke, tiny_config_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "study"
    result = cli("study", tiny_config_file, "--seeds", "1", "-o", out, "--jobs", "2",
                 "--variants", "mtl,mtl+dm")
    done = [line for line in result.output.splitlines() if line.startswith("[")]
    assert [line[:6] for line in done] == ["[1/2] ", "[2/2] "]  # in the order they finish
    assert sorted(line[6:].split(":")[0] for line in done) == ["mtl seed 0", "mtl+dm seed 0"]
    assert "study done" in result.output
    results = load_results(out / "results.json")
    assert [(r.variant, r.status) for r in results.runs] == [("mtl", "done"), ("mtl+dm", "done")]
