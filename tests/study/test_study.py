"""The study runner: variants x seeds, resumable, failures recorded, results and report written.

Most tests replace ``run_training`` by a fake that records what it was asked to train
(instant); one test trains for real.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dmtl.build.data import Experiment
from dmtl.config import Config, validate_config
from dmtl.errors import OutputError
from dmtl.study.results import VARIANTS, load_results
from dmtl.study.study import run_study, variant_config
from dmtl.training.run import RunResult


@dataclass
class Call:
    variant_method: tuple[str, bool]
    tasks: list[str]
    edges: list[str]
    seed: int
    steps_per_epoch: int | None
    run_dir: Path


@dataclass
class FakeTraining:
    """Stands for ``run_training``: records each call, returns metrics, can fail on demand."""

    calls: list[Call] = field(default_factory=list)
    fail: Callable[[Call], BaseException | None] = lambda call: None

    def __call__(self, experiment: Experiment, run_dir: Path, **kwargs: Any) -> RunResult:
        method = experiment.config.method
        call = Call(
            (method.co_annotation, method.distribution_matching),
            [t.name for t in experiment.tasks],
            [e.name for e in experiment.edges],
            experiment.seed,
            kwargs.get("steps_per_epoch"),
            Path(run_dir),
        )
        self.calls.append(call)
        error = self.fail(call)
        if error is not None:
            raise error
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        metrics: dict[str, float | None] = {}
        for task in call.tasks:
            primary = "accuracy" if task == "digit" else "f1_mean"
            metrics[f"{task}/{primary}"] = 0.5 + 0.01 * len(self.calls)
        return RunResult(Path(run_dir), metrics, "test", 5, 0.1, None)


@pytest.fixture
def config(tiny_data: Callable[..., dict[str, Any]]) -> Config:
    return validate_config(tiny_data())


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeTraining:
    training = FakeTraining()
    monkeypatch.setattr("dmtl.study.study.run_training", training)
    return training


def test_variant_configs_switch_the_method(config: Config) -> None:
    def switches(variant: str) -> tuple[str, bool, bool, str, str]:
        m = variant_config(config, variant).method
        return (m.co_annotation, m.distribution_matching, m.guard, m.aggregator, m.weighting)

    methods = {v: switches(v) for v in VARIANTS if v != "single_task"}
    assert methods == {
        "mtl": ("off", False, False, "sum", "fixed"),
        "mtl+ca": ("soft", False, False, "sum", "fixed"),
        "mtl+dm": ("off", True, False, "sum", "fixed"),
        "mtl+ca+dm": ("soft", True, False, "sum", "fixed"),
        "mtl+ca+dm+guard": ("soft", True, True, "sum", "fixed"),
        "mtl+ca+dm+upgrad": ("soft", True, False, "upgrad", "fixed"),
        "mtl+ca+dm+uw": ("soft", True, False, "sum", "uncertainty"),
        "mtl+ca+dm+branch": ("soft", True, False, "sum", "fixed"),
        "mtl+ca+dm+mmoe": ("soft", True, False, "sum", "fixed"),
        "mtl+ca+dm+ple": ("soft", True, False, "sum", "fixed"),
    }
    architectures = {v: variant_config(config, v).architecture.name for v in methods}
    assert architectures == {
        **{v: "shared" for v in methods},
        "mtl+ca+dm+branch": "branch", "mtl+ca+dm+mmoe": "mmoe", "mtl+ca+dm+ple": "ple",
    }
    hard = config.model_copy(
        update={"study": config.study.model_copy(update={"co_annotation": "hard"})}
    )
    assert variant_config(hard, "mtl+ca").method.co_annotation == "hard"
    assert config.method.co_annotation == "off"  # the original is not changed
    # everything else is kept
    assert variant_config(config, "mtl+dm").trainer == config.trainer


def test_study_trains_every_variant_for_every_seed(
    config: Config, fake: FakeTraining, tmp_path: Path
) -> None:
    messages: list[str] = []
    results = run_study(config, tmp_path / "study", seeds=2, progress=messages.append,
                        command="dmtl study tiny.yaml --seeds 2")
    assert len(fake.calls) == 2 * 7
    for seed in (0, 1):
        calls = [c for c in fake.calls if c.seed == seed]
        single = calls[:3]
        assert [c.tasks for c in single] == [["digit"], ["shape"], ["ink"]]
        assert all(c.edges == [] for c in single)
        assert [c.variant_method for c in calls[3:]] == [
            ("off", False), ("soft", False), ("off", True), ("soft", True)
        ]
        assert all(c.tasks == ["digit", "shape", "ink"] for c in calls[3:])
        assert all(c.edges == ["digit->shape"] for c in calls[3:])
    # the same number of steps for every run: the multi-task epoch length
    assert {c.steps_per_epoch for c in fake.calls} == {5}
    dirs = sorted(str(c.run_dir.relative_to(tmp_path / "study")) for c in fake.calls if c.seed == 0)
    assert dirs == sorted(
        ["runs/seed0/single_task-digit", "runs/seed0/single_task-shape",
         "runs/seed0/single_task-ink", "runs/seed0/mtl", "runs/seed0/mtl+ca",
         "runs/seed0/mtl+dm", "runs/seed0/mtl+ca+dm"]
    )
    assert results.seeds == [0, 1]
    assert results.command == "dmtl study tiny.yaml --seeds 2"
    assert set(results.regime) == {"0", "1"}
    saved = load_results(tmp_path / "study" / "results.json")
    assert saved == results
    assert len(saved.runs) == 14 and all(r.status == "done" for r in saved.runs)
    assert (tmp_path / "study" / "report.md").is_file()
    assert (tmp_path / "study" / "config.yaml").is_file()
    assert (tmp_path / "study" / "relatedness_digit__shape.png").is_file()
    assert "train single_task[digit] seed 0" in messages
    assert results.protocol is not None and results.protocol["name"] == "early_stopping"
    report = (tmp_path / "study" / "report.md").read_text()
    # a knowledge table is the same for every seed: its heat map names no seed
    assert "[Relatedness digit->shape (knowledge table)](relatedness_digit__shape.png)" in report
    assert "Protocol: early_stopping (budget epochs: 1, patience: 5" in report


def test_resume_runs_only_what_is_missing(
    config: Config, fake: FakeTraining, tmp_path: Path
) -> None:
    out = tmp_path / "study"
    run_study(config, out, seeds=1)
    assert len(fake.calls) == 7
    messages: list[str] = []
    run_study(config, out, seeds=1, resume=True, progress=messages.append)
    assert len(fake.calls) == 7  # nothing new
    assert messages.count("skip mtl seed 0 (done)") == 1
    # more seeds on resume: only the new seed trains, the results keep both
    results = run_study(config, out, seeds=2, resume=True)
    assert len(fake.calls) == 14 and {c.seed for c in fake.calls[7:]} == {1}
    assert results.seeds == [0, 1] and len(results.runs) == 14


def test_resume_keeps_every_command_and_adds_new_variants(
    tiny_data: Callable[..., dict[str, Any]], fake: FakeTraining, tmp_path: Path
) -> None:
    out = tmp_path / "study"
    first = validate_config(tiny_data(study={"seeds": 1, "variants": ["mtl"]}))
    run_study(first, out, command="dmtl study tiny.yaml --variants mtl")
    more = validate_config(tiny_data(study={"seeds": 1, "variants": ["mtl", "mtl+dm"]}))
    results = run_study(more, out, resume=True, command="dmtl study tiny.yaml --resume")
    assert [c.variant_method for c in fake.calls] == [("off", False), ("off", True)]
    assert results.variants == ["mtl", "mtl+dm"]
    assert results.command == "dmtl study tiny.yaml --variants mtl"
    assert results.commands == [
        "dmtl study tiny.yaml --variants mtl", "dmtl study tiny.yaml --resume"
    ]
    report = (out / "report.md").read_text()
    assert "1. `dmtl study tiny.yaml --variants mtl`" in report
    assert "2. `dmtl study tiny.yaml --resume`" in report


def test_an_estimated_table_names_its_seed(
    tiny_data: Callable[..., dict[str, Any]], fake: FakeTraining, tmp_path: Path
) -> None:
    data = tiny_data(relatedness=[{"source": "digit", "target": "shape", "kind": "estimate"}],
                     study={"seeds": 2, "variants": ["mtl"]})
    data["sources"][0]["regime"] = {"name": "full", "params": {}}
    run_study(validate_config(data), tmp_path / "s")
    report = (tmp_path / "s" / "report.md").read_text()
    # the heat map is of the last seed's estimate
    assert "[Relatedness digit->shape (estimated, seed 1)]" in report


def test_the_training_protocol_fields_are_recorded(
    tiny_data: Callable[..., dict[str, Any]],
    fake: FakeTraining,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    def early(experiment: Experiment, run_dir: Path, **kwargs: Any) -> RunResult:
        result = fake(experiment, run_dir, **kwargs)
        return dataclasses.replace(result, epochs=4, best_step=17, stopped_early=True)

    monkeypatch.setattr("dmtl.study.study.run_training", early)
    stopped = tiny_data(study={"seeds": 1, "variants": ["single_task", "mtl"], "patience": 3})
    results = run_study(validate_config(stopped), tmp_path / "s")
    assert {(r.epochs, r.best_step, r.stopped_early) for r in results.runs} == {(4, 17, True)}
    assert results.protocol == {
        "name": "early_stopping", "budget_epochs": 1, "patience": 3, "min_epochs": 1,
        "monitor": "val/selection", "validation": "regime", "val_fraction": 0.1,
    }
    report = (tmp_path / "s" / "report.md").read_text()
    assert "| mtl | 1 | 5 | 4 | 17 | 1/1 |" in report


def test_existing_study_folder_is_refused(config: Config, fake: FakeTraining,
                                          tmp_path: Path) -> None:
    out = tmp_path / "study"
    run_study(config, out, seeds=1)
    with pytest.raises(OutputError, match="--resume"):
        run_study(config, out, seeds=1)
    results = run_study(config, out, seeds=1, overwrite=True)
    assert len(fake.calls) == 14 and len(results.runs) == 7


def test_a_failed_run_is_recorded_and_retried_on_resume(
    config: Config, fake: FakeTraining, tmp_path: Path
) -> None:
    out = tmp_path / "study"
    fake.fail = lambda call: (
        RuntimeError("boom in mtl+dm") if call.variant_method == ("off", True) else None
    )
    messages: list[str] = []
    results = run_study(config, out, seeds=1, progress=messages.append)
    assert len(fake.calls) == 7  # the study went on after the failure
    failed = [r for r in results.runs if r.status == "failed"]
    assert [r.variant for r in failed] == ["mtl+dm"]
    assert failed[0].error is not None and failed[0].error.startswith("RuntimeError: boom")
    assert any(m.startswith("FAILED mtl+dm seed 0: RuntimeError: boom") for m in messages)
    assert "boom in mtl+dm" in (out / "report.md").read_text()
    fake.fail = lambda call: None
    again = run_study(config, out, seeds=1, resume=True)
    assert len(fake.calls) == 8  # only the failed run again
    assert all(r.status == "done" for r in again.runs) and len(again.runs) == 7


def test_interrupt_saves_the_finished_runs_and_stops(
    config: Config, fake: FakeTraining, tmp_path: Path
) -> None:
    out = tmp_path / "study"
    fake.fail = lambda call: KeyboardInterrupt() if call.variant_method == ("soft", False) else None
    with pytest.raises(KeyboardInterrupt):
        run_study(config, out, seeds=1)
    saved = load_results(out / "results.json")
    assert [(r.variant, r.task) for r in saved.runs] == [
        ("single_task", "digit"), ("single_task", "shape"), ("single_task", "ink"), ("mtl", None)
    ]
    fake.fail = lambda call: None
    results = run_study(config, out, seeds=1, resume=True)
    assert len(fake.calls) == 5 + 3  # the interrupted run and the two after it
    assert len(results.runs) == 7


def test_variants_can_be_chosen(tiny_data: Callable[..., dict[str, Any]], fake: FakeTraining,
                                tmp_path: Path) -> None:
    config = validate_config(tiny_data(study={"seeds": 1, "variants": ["mtl", "mtl+dm"]}))
    results = run_study(config, tmp_path / "s")
    assert [c.variant_method for c in fake.calls] == [("off", False), ("off", True)]
    assert [r.variant for r in results.runs] == ["mtl", "mtl+dm"]


def test_a_real_study_of_two_variants(tiny_data: Callable[..., dict[str, Any]],
                                      tmp_path: Path) -> None:
    config = validate_config(
        tiny_data(study={"seeds": 1, "variants": ["single_task", "mtl+ca+dm"]},
                  trainer={"steps_per_epoch": 3})
    )
    out = tmp_path / "study"
    results = run_study(config, out)
    assert [(r.variant, r.task, r.status, r.steps) for r in results.runs] == [
        ("single_task", "digit", "done", 3),
        ("single_task", "shape", "done", 3),
        ("single_task", "ink", "done", 3),
        ("mtl+ca+dm", None, "done", 3),
    ]
    ca_dm = results.runs[-1]
    assert {"digit/accuracy", "shape/f1_mean", "ink/f1_mean"} <= set(ca_dm.metrics)
    assert (out / ca_dm.run_dir / "checkpoints" / "last.ckpt").is_file()  # type: ignore[operator]
    logs = (out / ca_dm.run_dir / "logs" / "metrics.csv").read_text()  # type: ignore[operator]
    assert "train/ca/digit->shape_step" in logs and "train/dm/digit->shape_step" in logs
    report = (out / "report.md").read_text()
    assert "| mtl+ca+dm |" in report and "negative transfer" in report
    # one seed: no noise, so no fallback; every task is served by the chosen model
    recommendation = results.recommendation or {}
    assert recommendation["fallbacks"] == []
    assert recommendation["per_task"] == dict.fromkeys(
        ["digit", "shape", "ink"], recommendation["variant"])
    assert f"**Use `{recommendation['variant']}`**" in report
    folder = ("runs/seed<s>/single_task-digit" if recommendation["variant"] == "single_task"
              else f"runs/seed<s>/{recommendation['variant']}")
    assert f"Models: `{folder}` for digit" in report


def test_results_record_the_effective_config_and_the_wall_time(
    config: Config, fake: FakeTraining, tmp_path: Path
) -> None:
    """What ran: the seeds of the command (not the file's), the study folder, every variant
    a resume added; one wall time, summed over the commands."""
    out = tmp_path / "study"
    assert config.study.seeds == 1
    first = run_study(config, out, seeds=2)
    assert first.config["study"]["seeds"] == 2
    assert first.config["output"]["dir"] == str(out)
    assert first.config["trainer"]["monitor"] == "val/selection"  # under the protocol
    assert first.wall_s is not None and first.wall_s > 0
    assert "study:\n  seeds: 2\n" in (out / "config.yaml").read_text()
    spent = first.wall_s
    more = run_study(config, out, seeds=3, resume=True)
    assert more.config["study"]["seeds"] == 3
    assert more.wall_s is not None and more.wall_s >= spent
    report = (out / "report.md").read_text()
    assert f"- Wall time: {more.wall_s:.0f} s (elapsed from the start of the study" in report
    assert '"seeds": 3' in report


def test_a_warning_is_said_and_recorded_once_for_every_seed(
    config: Config, fake: FakeTraining, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    line = "task 'ink' has no labelled training sample; it learns only through its edges"
    monkeypatch.setattr("dmtl.study.study.experiment_warnings", lambda experiment: [line])
    messages: list[str] = []
    results = run_study(config, tmp_path / "s", seeds=3, progress=messages.append)
    assert messages.count(f"warning: {line}") == 1
    assert results.warnings == [line]
    assert (tmp_path / "s" / "report.md").read_text().count(line) == 1
    # a resume says it again (its own command's output), but records it once
    messages.clear()
    again = run_study(config, tmp_path / "s", seeds=3, resume=True, progress=messages.append)
    assert messages.count(f"warning: {line}") == 1 and again.warnings == [line]


def test_user_warnings_are_relayed_as_lines_others_pass_through() -> None:
    import warnings

    from dmtl.study.study import relayed_warnings

    lines: list[str] = []
    with pytest.warns(DeprecationWarning, match="old"), relayed_warnings(lines.append):
        warnings.warn("source 's': skipped 1 corrupt image(s) of 40", stacklevel=1)
        warnings.warn("source 's': skipped 1 corrupt image(s) of 40", stacklevel=1)
        warnings.warn("old", DeprecationWarning, stacklevel=1)
    assert lines == ["source 's': skipped 1 corrupt image(s) of 40"] * 2  # deduplicated later
