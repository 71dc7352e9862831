"""``run_study(jobs=2)``: the results of a serial study, recorded by the parent, in plan
order; the observer sees every run start, its epochs and its end."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dmtl.config import validate_config
from dmtl.study.observer import StudyObserver
from dmtl.study.results import RunRecord, load_results
from dmtl.study.study import PlannedRun, _job_record, run_study


def test_a_job_the_worker_could_not_record_is_a_failed_run(tmp_path: Path) -> None:
    run = PlannedRun("mtl", 0, None, 5)
    died = _job_record(run, tmp_path, "died", -9)
    assert died.status == "failed" and died.error == "the worker process died (exit code -9)"
    assert died.run_dir == "runs/seed0/mtl"
    error = _job_record(PlannedRun("single_task", 1, "digit", 5), tmp_path, "error", "X: y")
    assert error.status == "failed" and error.task == "digit" and error.error == "X: y"


class Recorder(StudyObserver):
    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    def study_started(self, total: int, done: int) -> None:
        self.events.append(("study", str(total), str(done)))

    def run_started(self, label: str) -> None:
        self.events.append(("start", label))

    def epoch_finished(self, label: str, epoch: int, max_epochs: int) -> None:
        self.events.append(("epoch", label, f"{epoch}/{max_epochs}"))

    def run_finished(self, record: RunRecord) -> None:
        self.events.append(("end", record.label(), record.status))


@pytest.mark.slow
def test_parallel_study_gives_the_serial_results(
    tiny_data: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    config = validate_config(tiny_data(
        study={"seeds": 1, "variants": ["single_task", "mtl", "mtl+ca+dm"]},
        trainer={"steps_per_epoch": 3, "max_epochs": 2, "num_threads": 1},
    ))
    serial = run_study(config, tmp_path / "serial")
    watch = Recorder()
    parallel = run_study(config, tmp_path / "parallel", jobs=2, observer=watch)
    assert [r.key for r in parallel.runs] == [r.key for r in serial.runs]  # in plan order
    for one, other in zip(serial.runs, parallel.runs, strict=True):
        assert other.status == "done", other.error
        assert other.metrics == one.metrics and other.steps == one.steps
    assert load_results(tmp_path / "parallel" / "results.json") == parallel
    assert (tmp_path / "parallel" / "report.md").is_file()
    assert watch.events[0] == ("study", "5", "0")
    for run in parallel.runs:
        mine = [e for e in watch.events if len(e) > 1 and e[1] == run.label()]
        assert mine == [("start", run.label()), ("epoch", run.label(), "1/2"),
                        ("epoch", run.label(), "2/2"), ("end", run.label(), "done")]
    config_yaml = (tmp_path / "parallel" / "runs" / "seed0" / "mtl" / "config.yaml").read_text()
    assert "num_threads: 1" in config_yaml
