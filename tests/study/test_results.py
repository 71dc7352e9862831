"""results.json: schema round trip, validation, atomic save, upsert and resume helpers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from pydantic import ValidationError

from dmtl.core.tasks import BinarySetTask, CategoricalTask
from dmtl.errors import ResultsError
from dmtl.study.results import (
    SCHEMA_VERSION,
    RunRecord,
    StudyResults,
    TaskInfo,
    collect_hardware,
    completed,
    expected_runs,
    find_run,
    load_results,
    missing_runs,
    record_command,
    save_results,
    upsert_run,
)


def test_round_trip_preserves_everything(three_seed_results: StudyResults, tmp_path: Path) -> None:
    r = three_seed_results
    r.hardware = collect_hardware("cpu")
    path = save_results(r, tmp_path / "study" / "results.json")
    loaded = load_results(path)
    assert loaded == r
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == SCHEMA_VERSION == 1
    assert set(raw) >= {"study", "created", "dmtl_version", "tasks", "variants", "seeds", "runs",
                        "regime", "hardware", "command", "commands", "protocol"}
    assert raw["tasks"]["shape"] == {"kind": "binary_set", "primary_metric": "f1_mean",
                                     "names": ["round", "straight"]}
    assert raw["regime"] == {"0": {"name": "disjoint"}}
    assert raw["hardware"]["device"] == "cpu"
    run = raw["runs"][0]
    assert set(run) == {"variant", "seed", "task", "status", "metrics", "split", "wall_s", "steps",
                        "epochs", "best_step", "stopped_early", "run_dir", "error", "groups",
                         "val_metrics"}
    # created is ISO 8601 and survives the round trip
    assert loaded.created.isoformat() == r.created.isoformat()


def test_save_is_atomic_and_leaves_no_temp(
    three_seed_results: StudyResults, tmp_path: Path
) -> None:
    path = tmp_path / "results.json"
    save_results(three_seed_results, path)
    three_seed_results.runs[0].wall_s = 99.0
    save_results(three_seed_results, path)
    assert load_results(path).runs[0].wall_s == 99.0
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_save_refuses_inconsistent_results_and_keeps_old_file(
    three_seed_results: StudyResults, tmp_path: Path
) -> None:
    path = save_results(three_seed_results, tmp_path / "results.json")
    before = path.read_text()
    # appended without upsert_run: a duplicate key and an unknown seed
    three_seed_results.runs.append(three_seed_results.runs[0].model_copy())
    with pytest.raises(ResultsError):
        save_results(three_seed_results, path)
    three_seed_results.runs[-1] = RunRecord(variant="mtl", seed=7, status="done")
    with pytest.raises(ResultsError, match="seed"):
        save_results(three_seed_results, path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_upsert_is_idempotent_and_replaces_in_place(three_seed_results: StudyResults) -> None:
    r = three_seed_results
    n = len(r.runs)
    index = next(i for i, run in enumerate(r.runs) if run.key == ("mtl+dm", 1, None))
    failed = RunRecord(variant="mtl+dm", seed=1, status="failed", error="CUDA OOM")
    upsert_run(r, failed)
    upsert_run(r, failed)
    assert len(r.runs) == n
    assert r.runs[index] == failed
    assert not completed(r, "mtl+dm", 1)
    done = RunRecord(variant="mtl+dm", seed=1, status="done", metrics={"digit/accuracy": 0.5})
    assert upsert_run(r, done) is r
    assert len(r.runs) == n and r.runs[index] == done
    assert completed(r, "mtl+dm", 1)
    # a single-task run is keyed by its task too
    assert completed(r, "single_task", 0, "digit") and completed(r, "single_task", 0, "shape")
    assert not completed(r, "single_task", 0)
    assert find_run(r, "single_task", 2, "shape") is not None
    assert find_run(r, "mtl", 5) is None


def test_upsert_rejects_unknown_variant_seed_task(three_seed_results: StudyResults) -> None:
    with pytest.raises(ResultsError, match="variant"):
        upsert_run(three_seed_results, RunRecord(variant="mtl+xx", seed=0, status="done"))
    with pytest.raises(ResultsError, match="seed"):
        upsert_run(three_seed_results, RunRecord(variant="mtl", seed=9, status="done"))
    with pytest.raises(ResultsError, match="task"):
        upsert_run(
            three_seed_results,
            RunRecord(variant="single_task", task="colour", seed=0, status="done"),
        )


def test_run_record_validation() -> None:
    with pytest.raises(ValidationError, match="must name its task"):
        RunRecord(variant="single_task", seed=0, status="done")
    with pytest.raises(ValidationError, match="only 'single_task' runs"):
        RunRecord(variant="mtl", seed=0, task="digit", status="done")
    with pytest.raises(ValidationError, match="status"):
        RunRecord.model_validate({"variant": "mtl", "seed": 0, "status": "running"})
    with pytest.raises(ValidationError, match="extra"):
        RunRecord.model_validate({"variant": "mtl", "seed": 0, "status": "done", "foo": 1})
    with pytest.raises(ValidationError, match="<task>/<metric>"):
        RunRecord(variant="mtl", seed=0, status="done", metrics={"accuracy": 0.5})
    run = RunRecord(
        variant="mtl", seed=0, status="done", metrics={"digit/accuracy": math.nan, "a/b": None}
    )
    assert run.metrics == {"digit/accuracy": None, "a/b": None}
    assert json.loads(run.model_dump_json())["metrics"]["digit/accuracy"] is None
    assert run.label() == "mtl seed 0"


def test_load_errors(three_seed_results: StudyResults, tmp_path: Path) -> None:
    path = save_results(three_seed_results, tmp_path / "results.json")
    raw = json.loads(path.read_text())

    raw["schema_version"] = 2
    path.write_text(json.dumps(raw))
    with pytest.raises(ResultsError, match="schema_version 2"):
        load_results(path)

    raw["schema_version"] = 1
    raw["runs"].append(dict(raw["runs"][0]))
    path.write_text(json.dumps(raw))
    with pytest.raises(ResultsError, match="listed twice"):
        load_results(path)

    raw["runs"].pop()
    raw["unexpected"] = True
    path.write_text(json.dumps(raw))
    with pytest.raises(ResultsError, match="unexpected"):
        load_results(path)

    path.write_text("{not json")
    with pytest.raises(ResultsError, match="cannot read"):
        load_results(path)
    with pytest.raises(ResultsError, match="cannot read"):
        load_results(tmp_path / "absent.json")


def test_study_level_validation() -> None:
    tasks = {"d": TaskInfo(kind="categorical", primary_metric="accuracy", names=["0", "1"])}
    with pytest.raises(ValidationError, match="duplicated seeds"):
        StudyResults(study="s", tasks=tasks, variants=["mtl"], seeds=[0, 0])
    with pytest.raises(ValidationError, match="kind"):
        TaskInfo.model_validate({"kind": "ranking", "primary_metric": "ndcg", "names": []})


def test_regime_seed_keys_become_strings() -> None:
    raw = {"study": "s", "tasks": {}, "variants": ["mtl"], "seeds": [0, 1]}
    r = StudyResults.model_validate({**raw, "regime": {0: {"hidden": 0.5}, 1: {"hidden": 0.4}}})
    assert r.regime == {"0": {"hidden": 0.5}, "1": {"hidden": 0.4}}


def test_expected_and_missing_runs(three_seed_results: StudyResults) -> None:
    r = three_seed_results
    keys = expected_runs(r)
    # per seed: 2 single-task runs + 4 multi-task variants
    assert len(keys) == 3 * (2 + 4)
    assert ("single_task", 0, "digit") in keys and ("mtl+ca+dm", 2, None) in keys
    assert missing_runs(r) == []
    r.runs = [run for run in r.runs if run.key != ("mtl", 2, None)]
    assert missing_runs(r) == [("mtl", 2, None)]


def test_task_info_from_task() -> None:
    assert TaskInfo.from_task(CategoricalTask("digit", ["a", "b"])) == TaskInfo(
        kind="categorical", primary_metric="accuracy", names=["a", "b"]
    )
    info = TaskInfo.from_task(BinarySetTask("au", ["AU1"]))
    assert (info.kind, info.primary_metric) == ("binary_set", "f1_mean")


OLD_FILE = {
    "schema_version": 1,
    "study": "digits",
    "created": "2025-01-31T12:00:00Z",
    "dmtl_version": "0.1.0",
    "command": "dmtl study configs/digits.yaml --seeds 1",
    "config": {},
    "tasks": {"digit": {"kind": "categorical", "primary_metric": "accuracy", "names": ["0", "1"]}},
    "variants": ["single_task", "mtl"],
    "seeds": [0],
    "runs": [
        {"variant": "single_task", "seed": 0, "task": "digit", "status": "done",
         "metrics": {"digit/accuracy": 0.9}, "split": "test", "wall_s": 1.0, "steps": 10,
         "run_dir": "runs/seed0/single_task-digit", "error": None},
        {"variant": "mtl", "seed": 0, "task": None, "status": "done",
         "metrics": {"digit/accuracy": 0.8}, "split": "test", "wall_s": 1.0, "steps": 10,
         "run_dir": "runs/seed0/mtl", "error": None},
    ],
    "regime": {},
    "hardware": {"platform": "Linux", "python": "3.11.7", "cpu_count": 2, "torch": "2.4.1",
                 "device": "cpu"},
}
"""A results.json as written before runs recorded epochs and studies their commands/protocol."""


def test_a_file_without_the_newer_fields_loads(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(OLD_FILE))
    results = load_results(path)
    assert results.commands == ["dmtl study configs/digits.yaml --seeds 1"]
    assert results.command == "dmtl study configs/digits.yaml --seeds 1"
    assert results.protocol is None
    assert [(r.epochs, r.best_step, r.stopped_early) for r in results.runs] == [(None,) * 3] * 2
    # and it is written back with the new fields, still loadable
    assert load_results(save_results(results, path)) == results


def test_record_command_keeps_every_command_and_the_first_as_command() -> None:
    results = StudyResults(study="s", tasks={}, variants=["mtl"], seeds=[0])
    record_command(results, None)
    assert (results.command, results.commands) == (None, [])
    record_command(results, "dmtl study a.yaml")
    record_command(results, "dmtl study a.yaml --resume")
    record_command(results, "dmtl study a.yaml --resume")  # the same resume again: once
    record_command(results, "dmtl study a.yaml --seeds 5 --resume")
    assert results.command == "dmtl study a.yaml"
    assert results.commands == [
        "dmtl study a.yaml", "dmtl study a.yaml --resume", "dmtl study a.yaml --seeds 5 --resume"
    ]
