"""report.md: its sections, tables and stated rules, from crafted results."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from dmtl.study.report import (
    budget_warning,
    differences_frame,
    markdown_table,
    per_output_frame,
    protocol_text,
    ranking_frame,
    render_markdown,
    results_frame,
    study_warnings,
    training_frame,
)
from dmtl.study.results import RunRecord, StudyResults, TaskInfo, upsert_run

Make = Callable[..., StudyResults]

SECTIONS = [
    "## Warnings",
    "## Results (primary metric, mean ± std over seeds)",
    "## Difference to single-task (95 % confidence interval over seeds)",
    "## Ranking",
    "## Best variant and variants within noise of it, per task",
    "## Per class and per label",
    "## Training",
    "## Failed runs",
]


def test_markdown_table_escapes_pipes_and_keeps_cells_unpadded() -> None:
    frame = pd.DataFrame({"a|b": ["x | y", "long value"], "n": ["1", "2"]})
    assert markdown_table(frame).splitlines() == [
        "| a\\|b | n |",
        "|------------|-----|",
        "| x \\| y | 1 |",
        "| long value | 2 |",
    ]


def test_results_frame(three_seed_results: StudyResults) -> None:
    frame = results_frame(three_seed_results, bold=True)
    assert list(frame.columns) == [
        "variant", "digit (accuracy)", "shape (f1_mean)", "negative transfer"
    ]
    assert frame.iloc[0].tolist() == [
        "single_task (baseline)", "0.920 ± 0.020", "0.820 ± 0.020", "— (baseline)"
    ]
    rows = {row["variant"]: row for _, row in frame.iterrows()}
    assert rows["mtl+dm"]["negative transfer"] == "negative transfer on: shape (−0.110)"
    assert rows["mtl+ca+dm"]["digit (accuracy)"] == "**0.960 ± 0.010**"  # best: bold
    assert results_frame(three_seed_results).iloc[-1, 1] == "0.960 ± 0.010"


def test_differences_frame(three_seed_results: StudyResults) -> None:
    frame = differences_frame(three_seed_results)
    assert len(frame) == 4 * 2
    mtl_digit = frame[(frame["variant"] == "mtl") & (frame["task"] == "digit (accuracy)")]
    # the hand-worked Welch interval of test_statistics: 0.01 ± 0.0453389
    assert mtl_digit.iloc[0].tolist() == [
        "mtl", "digit (accuracy)", "+0.010", "[−0.035, +0.055]", "0.020", "none"
    ]
    dm_shape = frame[(frame["variant"] == "mtl+dm") & (frame["task"] == "shape (f1_mean)")]
    assert dm_shape.iloc[0].tolist() == [
        "mtl+dm", "shape (f1_mean)", "−0.110", "[−0.152, −0.068]", "0.016",
        "**negative transfer**",
    ]


def test_one_seed_report_gives_gains_but_no_verdict(make_results: Make) -> None:
    r = make_results(
        {"single_task": {"digit": [0.9], "shape": [0.5]}, "mtl": {"digit": [0.6], "shape": [0.5]}}
    )
    frame = differences_frame(r)
    row = frame[(frame["variant"] == "mtl") & (frame["task"] == "digit (accuracy)")].iloc[0]
    assert row.tolist() == ["mtl", "digit (accuracy)", "−0.300", "n/a", "n/a", "n/a (1 seed)"]
    md = render_markdown(r)
    assert "| mtl | 0.600 ± 0.000 | **0.500 ± 0.000** | n/a (1 seed) |" in md
    assert "negative transfer on" not in md


def test_ranking_frame(three_seed_results: StudyResults) -> None:
    frame = ranking_frame(three_seed_results)
    assert frame.iloc[0].tolist() == [1, "mtl+ca+dm", "1", "1", "1.00"]
    assert frame.iloc[3].tolist() == [4, "single_task", "4.5", "3", "3.75"]


def test_training_frame_and_protocol(three_seed_results: StudyResults) -> None:
    r = three_seed_results
    for run in r.runs:
        if run.variant == "mtl":
            run.epochs, run.best_step, run.stopped_early = 4 + run.seed, 30, run.seed == 2
    frame = training_frame(r)
    assert list(frame["run"]) == [
        "single_task[digit]", "single_task[shape]", "mtl", "mtl+ca", "mtl+dm", "mtl+ca+dm"
    ]
    mtl = frame[frame["run"] == "mtl"].iloc[0].tolist()
    assert mtl == ["mtl", 3, "10", "5", "30", "1/3", "2"]  # epochs 4, 5, 6 -> 5
    assert frame[frame["run"] == "mtl+dm"].iloc[0].tolist()[3:6] == ["n/a", "n/a", "n/a"]
    assert protocol_text(None) == "not recorded in these results"
    r.protocol = {"name": "early_stopping", "budget_epochs": 90}
    assert budget_warning(r) == (
        "2 of 18 runs trained to the budget without stopping early (mtl): the budget, not "
        "their validation metric, ended them, so they may be under-trained; a larger "
        "study.budget_epochs gives them room"
    )
    md = render_markdown(r)
    assert "## Warnings\n\n- 2 of 18 runs trained to the budget" in md
    assert md.count("trained to the budget") == 1
    r.protocol = {"name": "equal_steps", "epochs": 90}  # every run trains to the end there
    assert budget_warning(r) is None and "## Warnings" not in render_markdown(r)
    assert protocol_text({"name": "early_stopping", "budget_epochs": 60, "patience": 5,
                          "validation": "regime"}) == (
        "early_stopping (budget epochs: 60, patience: 5, validation: regime)"
    )


def test_report_sections_and_rules(three_seed_results: StudyResults) -> None:
    r = three_seed_results
    r.protocol = {"name": "fixed_epochs", "epochs": 30}
    r.warnings = ["no test data: the final metrics are on the validation data"]
    _with_per_class_f1(r)
    upsert_run(
        r,
        RunRecord(
            variant="mtl+ca", seed=2, status="failed", error="Traceback...\nRuntimeError: a | b"
        ),
    )
    md = render_markdown(r, plots={"Primary metric per variant": "metric_per_variant.png"})
    assert md.startswith("# dmtl study: crafted")
    positions = [md.index(section) for section in SECTIONS]
    assert positions == sorted(positions)
    assert "- Command: `dmtl study crafted.yaml --seeds 3`" in md
    assert "| variant | digit (accuracy) | shape (f1_mean) | negative transfer |" in md
    assert "| single_task (baseline) | 0.920 ± 0.020 | 0.820 ± 0.020 | — (baseline) |" in md
    assert "| mtl | 0.930 ± 0.020 | 0.810 ± 0.020 | none |" in md
    assert "| mtl+dm | 0.920 ± 0.000 | 0.710 ± 0.010 | negative transfer on: shape (−0.110) |" in md
    assert "(n=2)" in md  # the failed seed of mtl+ca leaves two values: the cell says so
    # the rules are stated
    assert "sqrt((s_variant² + s_single²) / 2)" in md and "Welch" in md
    assert "ties share the average rank" in md
    assert "contains 0" in md
    noise = "- digit (accuracy): best mtl+ca+dm (0.960 ± 0.010); within noise: single_task, mtl"
    assert noise in md
    assert "Protocol: fixed_epochs (epochs: 30)." in md
    assert "mtl+ca seed 2" in md and "RuntimeError: a | b" in md
    assert "](metric_per_variant.png)" in md and "![Primary metric per variant]" in md
    assert "Label regime per seed" in md
    # the runner's error format: summary line first, then the traceback
    upsert_run(r, RunRecord(variant="mtl+ca", seed=2, status="failed", split="",
                            error="ValueError: bad\nTraceback (most recent call last):\n  ...\n"
                                  "ValueError: bad"))
    md = render_markdown(r)
    assert "- mtl+ca seed 2: ValueError: bad\n" in md
    assert "evaluated on split: test\n" in md


def test_report_lists_every_command_after_resumes(three_seed_results: StudyResults) -> None:
    r = three_seed_results
    r.commands += ["dmtl study crafted.yaml --seeds 5 --resume"]
    md = render_markdown(r)
    assert (
        "- Commands (first, then each resume):\n"
        "  1. `dmtl study crafted.yaml --seeds 3`\n"
        "  2. `dmtl study crafted.yaml --seeds 5 --resume`\n"
    ) in md


def test_report_lists_missing_runs(make_results: Make) -> None:
    r = make_results({"single_task": {"digit": [0.9], "shape": [0.5]}, "mtl": {"digit": [0.8]}})
    md = render_markdown(r)
    assert "Not run yet:" in md and "mtl+ca+dm seed 0" in md
    assert "## Failed runs\n\nnone" in md


def test_report_without_single_task_has_no_difference_section(make_results: Make) -> None:
    r = make_results({"mtl": {"digit": [0.9, 0.8]}, "mtl+ca": {"digit": [0.95, 0.85]}})
    r.variants = ["mtl", "mtl+ca"]
    md = render_markdown(r)
    assert "## Difference to single-task" not in md
    assert "| mtl | 0.850 ± 0.071 | n/a | n/a |" in md
    assert "## Ranking" in md


def test_report_follows_the_variants_of_the_results(make_results: Make) -> None:
    """Variant names are not a fixed list: a new one is reported in the study's order."""
    r = make_results({"single_task": {"digit": [0.9, 0.8]}})
    r.variants = ["single_task", "mtl+upgrad", "mtl"]
    for seed, (a, b) in enumerate([(0.95, 0.7), (0.85, 0.6)]):
        upsert_run(r, RunRecord(variant="mtl+upgrad", seed=seed, status="done",
                                metrics={"digit/accuracy": a}))
        upsert_run(r, RunRecord(variant="mtl", seed=seed, status="done",
                                metrics={"digit/accuracy": b}))
    assert list(results_frame(r)["variant"]) == ["single_task (baseline)", "mtl+upgrad", "mtl"]
    assert list(ranking_frame(r)["variant"]) == ["mtl+upgrad", "single_task", "mtl"]
    assert list(differences_frame(r)["variant"].unique()) == ["mtl+upgrad", "mtl"]


def _with_per_class_f1(r: StudyResults) -> StudyResults:
    """Per-class F1 of ``digit`` (class ``c`` of seed ``s``: primary − 0.01·c + 0.001·s) and
    per-label F1 of ``shape`` (``round``: primary, ``straight``: primary − 0.2)."""
    for run in r.runs:
        for task, primary in (("digit", "digit/accuracy"), ("shape", "shape/f1_mean")):
            value = run.metrics.get(primary)
            if value is None:
                continue
            if task == "digit":
                run.metrics |= {f"digit/f1/{c}": value - 0.01 * c + 0.001 * run.seed
                                for c in range(10)}
            else:
                run.metrics |= {"shape/f1/round": value, "shape/f1/straight": value - 0.2}
    return r


def test_per_output_frame_gives_mean_and_std_per_class(three_seed_results: StudyResults) -> None:
    r = _with_per_class_f1(three_seed_results)
    digit = per_output_frame(r, "digit")
    assert digit is not None
    assert list(digit.columns) == ["class", "single_task", "mtl", "mtl+ca", "mtl+dm", "mtl+ca+dm"]
    assert list(digit["class"]) == list("0123456789")
    # class 3 of mtl+ca+dm: 0.95 - 0.03 + 0.000, 0.96 - 0.03 + 0.001, 0.97 - 0.03 + 0.002
    # = 0.920, 0.931, 0.942: mean 0.931, sample std 0.011; the best of the row: bold
    assert digit.iloc[3]["mtl+ca+dm"] == "**0.931 ± 0.011**"
    assert digit.iloc[3]["single_task"] == "0.891 ± 0.021"
    shape = per_output_frame(r, "shape")
    assert shape is not None and list(shape["label"]) == ["round", "straight"]
    assert shape.iloc[1]["mtl+dm"] == "0.510 ± 0.010"  # 0.70, 0.71, 0.72 minus 0.2


def test_report_per_class_tables_fold_long_ones_and_name_what_is_not_recorded(
    three_seed_results: StudyResults,
) -> None:
    r = _with_per_class_f1(three_seed_results)
    md = render_markdown(r)
    assert "### digit: F1 per class (10)\n\n| class | single_task | mtl |" in md
    assert "### shape: F1 per label (2)\n\n| label |" in md
    # a task of 150 classes has no per-class metrics in results.json: the report says why
    r.tasks["id"] = TaskInfo(kind="categorical", primary_metric="accuracy",
                             names=[f"p{i}" for i in range(150)])
    md = render_markdown(r)
    assert ("### id: F1 per class (150)\n\nNot recorded: per-class metrics are kept for "
            "tasks of at most 100 outputs, and id has 150.") in md
    # 30 classes recorded: the table is folded
    r.tasks["id"] = TaskInfo(kind="categorical", primary_metric="accuracy",
                             names=[f"p{i}" for i in range(30)])
    for run in r.runs:
        if run.variant == "mtl" and run.status == "done":
            run.metrics |= {f"id/f1/p{i}": 0.5 for i in range(30)}
    md = render_markdown(r)
    assert "### id: F1 per class (30)\n\n<details>\n<summary>30 rows</summary>" in md


def test_report_limit_is_the_training_modules() -> None:
    from dmtl.study.report import PER_OUTPUT_LIMIT
    from dmtl.training.module import MAX_PER_OUTPUT_METRICS

    assert PER_OUTPUT_LIMIT == MAX_PER_OUTPUT_METRICS


def test_each_warning_once(three_seed_results: StudyResults) -> None:
    r = three_seed_results
    r.protocol = {"name": "early_stopping", "budget_epochs": 90}
    for run in r.runs:
        run.stopped_early = run.variant != "mtl"
    budget = budget_warning(r)
    assert budget is not None
    r.warnings = ["task 'ink' has no labelled training sample", budget,
                  "task 'ink' has no labelled training sample"]
    assert study_warnings(r) == ["task 'ink' has no labelled training sample", budget]
    md = render_markdown(r)
    assert md.count("task 'ink' has no labelled training sample") == 1
    assert md.count(budget) == 1


def test_report_gives_one_defined_wall_time(three_seed_results: StudyResults) -> None:
    r = three_seed_results
    md = render_markdown(r)
    assert "- Wall time: n/a (not recorded in these results)" in md  # an older file
    r.wall_s = 605.4
    md = render_markdown(r)
    assert "- Wall time: 605 s (elapsed from the start of the study to its report)\n" in md
    assert "total wall time" not in md and md.count("Wall time") == 1
    r.commands.append("dmtl study crafted.yaml --resume")
    assert "605 s (elapsed from the start of the study to its report, summed over its 2 " \
           "commands)" in render_markdown(r)
