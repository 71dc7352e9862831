"""``report.md`` of a study: its tables as pandas DataFrames of text, rendered to Markdown.

Sections: summary (commands, tasks, variants, seeds, the study's wall time,
hardware); warnings (each once); results (mean ± std per variant and task,
negative-transfer verdict); difference to single-task with a 95 % confidence
interval; ranking; best variant and the variants within noise of it, per task;
per-class and per-label metrics; training (protocol, steps, epochs, early stops);
failed runs; plots; the effective config and the regime. Every number comes from
:mod:`dmtl.study.statistics` and every rule is stated in the report.
:func:`results_frame` is also the table the command line prints.

>>> from dmtl.study.results import RunRecord, StudyResults, TaskInfo, upsert_run
>>> r = StudyResults(study="s", tasks={"d": TaskInfo(kind="categorical",
...     primary_metric="accuracy", names=["0", "1"])}, variants=["single_task", "mtl"], seeds=[0])
>>> _ = upsert_run(r, RunRecord(variant="single_task", task="d", seed=0, status="done",
...     metrics={"d/accuracy": 0.90}))
>>> _ = upsert_run(r, RunRecord(variant="mtl", seed=0, status="done", metrics={"d/accuracy": 0.85}))
>>> print(markdown_table(results_frame(r)))
| variant | d (accuracy) | negative transfer |
|------------------------|----------------|---------------------|
| single_task (baseline) | 0.900 ± 0.000 | — (baseline) |
| mtl | 0.850 ± 0.000 | n/a (1 seed) |
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from dmtl.study.group_stats import GroupSummary, gap_verdict, group_column, summaries
from dmtl.study.recommend import models_line, recommend, recommendation_lines
from dmtl.study.results import BASELINE, RunRecord, StudyResults, missing_runs
from dmtl.study.statistics import (
    SINGLE_SEED,
    TOLERANCE,
    Cell,
    best_variants,
    cell,
    negative_transfer,
    ranking,
    signed,
    verdict_text,
    within_noise,
)

REPORT_NAME = "report.md"
AFFINITY_TABLE = "affinity.csv"
AFFINITY_PLOT = "affinity.png"
"""The study's task affinity (``study.affinity``), beside the report."""
AFFINITY_NOTE = (
    "Row i, column j: how much a step on task i's loss lowers task j's loss (on the rows "
    "labelled for j), relative to a step on j itself (Z[i->j] / Z[j->j], 1 on the diagonal;"
    " below 0: i's step raises j's loss, a sign of negative transfer at the shared layers)."
)

RESULTS_NOTE = (
    "Std: sample standard deviation over seeds (ddof = 1; 0 with one seed). Cells based on "
    "fewer than {seeds} seed(s) show their n. Bold: best variant for the task. The "
    "`single_task` row uses, for each task, the model trained on that task alone."
)
DIFFERENCE_RULE = (
    "Rule: gain = mean(variant) − mean(single_task); pooled std = "
    "sqrt((s_variant² + s_single²) / 2). A task counts as **negative transfer** for a variant "
    "when gain < −pooled std, i.e. the variant is below the single-task model by more than "
    "one pooled std. 95 % CI: Welch's t interval of the difference of means over seeds, "
    "gain ± t(0.975, ν) · sqrt(s_variant²/n_variant + s_single²/n_single), ν by "
    "Welch–Satterthwaite; where it contains 0, the difference is not significant at the 95 % "
    "level, whatever the verdict. Both need at least 2 seeds on each side: with one seed the "
    f"std is 0 and any drop would count, so the verdict is `{SINGLE_SEED}`."
)
RANK_RULE = (
    "Rule: on each task the variants are ranked by mean primary metric (1 = best; ties share "
    "the average rank); a variant's mean rank is taken over the tasks it has a value on. "
    "Variants ranked on more tasks come first, then lower mean rank."
)
NOISE_RULE = (
    "Rule: a variant is within noise of the best when the 95 % Welch confidence interval of "
    "mean(variant) − mean(best) contains 0; it needs at least 2 seeds on both sides."
)
TRAINING_NOTE = (
    "Means over the done runs (seeds); best step: the step of the checkpoint evaluated; "
    "stopped early: runs stopped before their budget / runs that reported it; run wall s: "
    "a run's training and evaluation time; n/a: not reported by the trainer."
)
WALL_NOTE = "elapsed from the start of the study to its report"
PER_OUTPUT_LIMIT = 100
"""Per-class/label metrics are recorded for tasks of at most this many outputs (the
training module's ``MAX_PER_OUTPUT_METRICS``): the report says so for larger tasks."""
COLLAPSED_ROWS = 20
"""A per-output table longer than this is folded (``<details>``) to keep the report short."""
PER_OUTPUT_METRIC = {"categorical": ("f1", "class"), "binary_set": ("f1", "label"),
                     "regression": ("ccc", "target")}
"""Per kind of task: the per-output metric in ``results.json`` and what an output is."""
PER_OUTPUT_NOTE = (
    "Each task's metric per class (label), on the evaluation split: mean ± std over seeds "
    "per variant; bold: the best mean of the row. The `single_task` column uses the model "
    "trained on that task alone."
)

GROUPS_NOTE = (
    "Per group: the mean over seeds of the task's primary metric in that group. Worst "
    "group: the lowest mean. Gap: best − worst group of each seed, mean ± std over seeds. "
    "A variant is **wider** than single-task when mean(gap) − mean(gap of single_task) > "
    "pooled std = sqrt((s_variant² + s_single²) / 2); it needs 2 seeds on each side."
)


# --------------------------------------------------------------------------- formatting


def markdown_table(frame: pd.DataFrame) -> str:
    """``frame`` (index dropped) as a Markdown pipe table, cells as given, ``|`` escaped."""
    text = frame.astype(str).replace({r"\|": r"\\|", "\n": " "}, regex=True)
    text.columns = [str(c).replace("|", "\\|") for c in text.columns]
    return text.to_markdown(index=False, stralign=None, numalign=None, disable_numparse=True)


def fmt_cell(c: Cell, n_seeds: int, digits: int = 3) -> str:
    """``0.920 ± 0.020``, with ``(n=2)`` when fewer values than seeds; ``n/a`` without values."""
    if c.mean is None:
        return "n/a"
    text = f"{c.mean:.{digits}f} ± {c.std or 0.0:.{digits}f}"
    return text + (f" (n={c.n})" if c.n != n_seeds else "")


def task_header(results: StudyResults, task: str) -> str:
    """``digit (accuracy)``: a task with its primary metric."""
    return f"{task} ({results.tasks[task].primary_metric})"


def _number(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"


# --------------------------------------------------------------------------- tables


def _report_order(results: StudyResults) -> list[str]:
    first = [BASELINE] if BASELINE in results.variants else []
    return first + [v for v in results.variants if v != BASELINE]


def results_frame(results: StudyResults, *, bold: bool = False) -> pd.DataFrame:
    """``variant``, ``<task> (<metric>)`` per task (mean ± std), ``negative transfer``.

    Baseline first, then the study's order; ``bold`` marks the best cells ``**…**``.
    """
    verdicts, best = negative_transfer(results), best_variants(results)
    rows = []
    for v in _report_order(results):
        row = {"variant": f"{v} (baseline)" if v == BASELINE else v}
        for t, m in results.primary_metrics().items():
            text = fmt_cell(cell(results, v, m), len(results.seeds))
            row[task_header(results, t)] = (
                f"**{text}**" if bold and v in best[t] and text != "n/a" else text
            )
        row["negative transfer"] = "— (baseline)" if v == BASELINE else verdict_text(verdicts[v])
        rows.append(row)
    return pd.DataFrame(rows)


def differences_frame(results: StudyResults) -> pd.DataFrame:
    """One row per multi-task variant and task: gain, 95 % CI, pooled std, verdict."""
    rows = []
    for variant, per_task in negative_transfer(results).items():
        for task, vd in per_task.items():
            gain, pooled, interval = vd.gain, vd.pooled_std, vd.interval
            if not vd.available:
                verdict = "n/a"
            elif vd.under_trained:
                verdict = "under-trained (not counted)"
            elif not vd.decidable:
                verdict = SINGLE_SEED
            else:
                verdict = "**negative transfer**" if vd.negative else "none"
            rows.append({
                "variant": variant,
                "task": task_header(results, task),
                "gain": "n/a" if gain is None else signed(gain),
                "95 % CI": "n/a" if interval is None
                else f"[{signed(interval.low)}, {signed(interval.high)}]",
                "pooled std": "n/a" if pooled is None or not vd.decidable else f"{pooled:.3f}",
                "verdict": verdict,
            })
    return pd.DataFrame(rows, columns=["variant", "task", "gain", "95 % CI", "pooled std",
                                       "verdict"])


def ranking_frame(results: StudyResults) -> pd.DataFrame:
    """``#``, ``variant``, the rank on each task, ``mean rank`` (see :func:`ranking`)."""
    ranks = ranking(results)
    frame = pd.DataFrame({"#": range(1, len(ranks) + 1), "variant": list(ranks.index)})
    for task in results.tasks:
        frame[task] = [
            "n/a" if pd.isna(r) else f"{r:g}" for r in ranks[task]
        ]
    frame["mean rank"] = [f"{r:.2f}" for r in ranks["mean rank"]]
    return frame


def _run_label(run: RunRecord) -> str:
    return run.variant if run.task is None else f"{run.variant}[{run.task}]"


def training_frame(results: StudyResults) -> pd.DataFrame:
    """Per run label (variant, ``single_task[<task>]``): done runs, mean steps, epochs,
    best step, wall time, and how many stopped early (over those that reported it)."""
    numeric = ["steps", "epochs", "best_step", "stopped_early", "wall_s"]
    runs = [r for r in results.runs if r.status == "done"]
    frame = pd.DataFrame(
        [{"run": _run_label(r), **{k: getattr(r, k) for k in numeric}} for r in runs],
        columns=["run", *numeric],
    ).astype({k: float for k in numeric})
    stats = frame.groupby("run", sort=False).agg(
        runs=("run", "size"),
        steps=("steps", "mean"),
        epochs=("epochs", "mean"),
        best_step=("best_step", "mean"),
        stopped=("stopped_early", "sum"),
        reported=("stopped_early", "count"),
        wall_s=("wall_s", "mean"),
    )
    return pd.DataFrame({
        "run": stats.index,
        "runs": stats["runs"].to_numpy(),
        "steps": [_number(x) for x in stats["steps"]],
        "epochs": [_number(x) for x in stats["epochs"]],
        "best step": [_number(x) for x in stats["best_step"]],
        "stopped early": [f"{s:.0f}/{n}" if n else "n/a"
                          for s, n in zip(stats["stopped"], stats["reported"], strict=True)],
        "run wall s": [_number(round(x, 1)) for x in stats["wall_s"]],
    })


def budget_warning(results: StudyResults) -> str | None:
    """Under early stopping, a line naming the runs that trained to the budget: the budget,
    not their validation metric, ended them, and they may be under-trained."""
    if (results.protocol or {}).get("name") != "early_stopping":
        return None
    full = [r for r in results.runs if r.status == "done" and r.stopped_early is False]
    if not full:
        return None
    labels = sorted({_run_label(r) for r in full})
    done = sum(r.status == "done" for r in results.runs)
    return (f"{len(full)} of {done} runs trained to the budget without stopping early "
            f"({', '.join(labels)}): the budget, not their validation metric, ended them, so "
            "they may be under-trained; a larger study.budget_epochs gives them room")


def study_warnings(results: StudyResults) -> list[str]:
    """Every warning of the study, each once: those recorded while it ran (the data, the
    monitor), then the budget's (:func:`budget_warning`)."""
    lines = list(dict.fromkeys(results.warnings))
    budget = budget_warning(results)
    return lines + ([budget] if budget is not None and budget not in lines else [])


def per_output_frame(results: StudyResults, task: str) -> pd.DataFrame | None:
    """One row per class (label) of ``task``, one column per variant (report order): mean ±
    std over seeds of its per-output metric, the best mean of each row bold. ``None`` when
    no run recorded it (e.g. a task of more than :data:`PER_OUTPUT_LIMIT` outputs)."""
    info = results.tasks[task]
    metric, noun = PER_OUTPUT_METRIC.get(info.kind, ("f1", "output"))
    variants, n_seeds = _report_order(results), len(results.seeds)
    rows, found = [], False
    for name in info.names:
        cells = {v: cell(results, v, f"{task}/{metric}/{name}") for v in variants}
        means = [c.mean for c in cells.values() if c.mean is not None]
        found = found or bool(means)
        top = max(means, default=None)
        row = {noun: name}
        for v, c in cells.items():
            text = fmt_cell(c, n_seeds)
            best = top is not None and c.mean is not None and c.mean >= top - TOLERANCE
            row[v] = f"**{text}**" if best and len(means) > 1 else text
        rows.append(row)
    return pd.DataFrame(rows, columns=[noun, *variants]) if found else None


def protocol_text(protocol: Mapping[str, Any] | None) -> str:
    """``early_stopping (budget epochs: 60, patience: 5, validation: regime)``."""
    if not protocol:
        return "not recorded in these results"
    details = ", ".join(
        f"{k.replace('_', ' ')}: {v}" for k, v in protocol.items() if k != "name"
    )
    name = str(protocol.get("name", "unnamed"))
    return name + (f" ({details})" if details else "")


# --------------------------------------------------------------------------- sections


def _run_counts(results: StudyResults) -> str:
    done = sum(r.status == "done" for r in results.runs)
    failed = sum(r.status == "failed" for r in results.runs)
    missing = len(missing_runs(results))
    return f"{done} done, {failed} failed, {missing} missing"


def _wall_line(results: StudyResults) -> str:
    """The study's one wall-time figure, defined (``n/a`` in files written before it)."""
    if results.wall_s is None:
        return "- Wall time: n/a (not recorded in these results)"
    n = len(results.commands)
    over = f", summed over its {n} commands" if n > 1 else ""
    return f"- Wall time: {results.wall_s:.0f} s ({WALL_NOTE}{over})"


def _command_lines(results: StudyResults) -> list[str]:
    if len(results.commands) == 1:
        return [f"- Command: `{results.commands[0]}`"]
    if not results.commands:
        return []
    return ["- Commands (first, then each resume):",
            *(f"  {i}. `{c}`" for i, c in enumerate(results.commands, start=1))]


def _summary(results: StudyResults) -> list[str]:
    tasks = ", ".join(
        f"{t} ({i.kind.replace('_', ' ')}, {len(i.names)} "
        f"{'classes' if i.kind == 'categorical' else 'labels'}; primary: {i.primary_metric})"
        for t, i in results.tasks.items()
    )
    splits = sorted({r.split for r in results.runs if r.status == "done" and r.split}) or ["-"]
    hw = results.hardware
    hardware = ", ".join(x for x in (
        hw.platform,
        f"{hw.cpu_count} CPUs" if hw.cpu_count else "",
        f"torch {hw.torch}" if hw.torch else "",
        f"device {hw.device}" if hw.device else "",
    ) if x)
    return [
        *_command_lines(results),
        f"- Created: {results.created.isoformat(timespec='seconds')}, dmtl {results.dmtl_version}",
        f"- Tasks: {tasks}",
        f"- Variants: {', '.join(results.variants)}",
        f"- Seeds: {', '.join(map(str, results.seeds))}; evaluated on split: {', '.join(splits)}",
        f"- Runs: {_run_counts(results)}",
        _wall_line(results),
        f"- Hardware: {hardware}",
    ]


def _noise_lines(results: StudyResults) -> list[str]:
    lines = []
    primaries = results.primary_metrics()
    for task, groups in within_noise(results).items():
        head = f"- {task_header(results, task)}: "
        if not groups.best:
            lines.append(head + "n/a")
            continue
        top = fmt_cell(cell(results, groups.best[0], primaries[task]), len(results.seeds))
        parts = [f"best {', '.join(groups.best)} ({top})"]
        for label, names in (("within noise", groups.within), ("beyond noise", groups.beyond),
                             (SINGLE_SEED, groups.undecided)):
            if names:
                parts.append(f"{label}: {', '.join(names)}")
        lines.append(head + "; ".join(parts))
    return lines


def _failed_lines(results: StudyResults) -> list[str]:
    failed = [r for r in results.runs if r.status == "failed"]
    lines = [] if failed else ["none"]
    for r in failed:
        first = _error_line(r.error)
        first = first if len(first) <= 300 else first[:297] + "..."
        where = f" (`{r.run_dir}`)" if r.run_dir else ""
        lines.append(f"- {r.label()}{where}: {first}")
    missing = missing_runs(results)
    if missing:
        lines += ["", "Not run yet: " + ", ".join(_key_label(k) for k in missing)]
    return lines


def _warning_lines(results: StudyResults) -> list[str]:
    lines = study_warnings(results)
    return ["## Warnings", "", *(f"- {line}" for line in lines), ""] if lines else []


def _per_output_lines(results: StudyResults) -> list[str]:
    """Per task, its per-class (label) table, folded when long; what is not recorded, said."""
    lines: list[str] = []
    for task, info in results.tasks.items():
        metric, noun = PER_OUTPUT_METRIC.get(info.kind, ("f1", "output"))
        title = f"{task}: {metric.upper()} per {noun} ({len(info.names)})"
        frame = per_output_frame(results, task)
        if frame is None:
            why = (f"not recorded: per-{noun} metrics are kept for tasks of at most "
                   f"{PER_OUTPUT_LIMIT} outputs, and {task} has {len(info.names)}"
                   if len(info.names) > PER_OUTPUT_LIMIT else "n/a: no run recorded them")
            lines += [f"### {title}", "", why[0].upper() + why[1:] + ".", ""]
        elif len(frame) > COLLAPSED_ROWS:
            lines += [f"### {title}", "", "<details>", f"<summary>{len(frame)} rows</summary>",
                      "", markdown_table(frame), "", "</details>", ""]
        else:
            lines += [f"### {title}", "", markdown_table(frame), ""]
    return ["## Per class and per label", "", PER_OUTPUT_NOTE, "", *lines] if lines else []


def _group_lines(results: StudyResults) -> list[str]:
    """``## Groups`` (``study.group_by``): per task, each variant's mean metric per group,
    the worst group, the gap (mean ± std over seeds) and whether it widens single-task's."""
    lines: list[str] = []
    for task, found in summaries(results).items():
        baseline = next((s for s in found if s.variant == BASELINE), None)
        rows = [
            {"variant": s.variant,
             **{g: "n/a" if m is None else f"{m:.3f}" for g, m in s.means.items()},
             "worst group": s.worst or "n/a", "gap": fmt_cell(s.gap, len(results.seeds)),
             "gap vs single_task": "—" if s.variant == BASELINE else _flagged(s, baseline)}
            for s in found
        ]
        frame = pd.DataFrame(rows).fillna("n/a")
        lines += [f"### {task_header(results, task)}", "", markdown_table(frame), ""]
    if not lines:
        return []
    return [f"## Groups (by {group_column(results)}, on the evaluation split)", "",
            GROUPS_NOTE, "", *lines]


def _flagged(summary: GroupSummary, baseline: GroupSummary | None) -> str:
    text = gap_verdict(summary, baseline)
    return f"**{text}**" if text.startswith("wider") else text


def _plot_lines(plots: Mapping[str, str], files: Mapping[str, str]) -> list[str]:
    if not plots and not files:
        return []
    out = ["## Plots", "", *(f"- [{caption}]({path})" for caption, path in plots.items()),
           *(f"- {caption}: [{path}]({path})" for caption, path in files.items()), ""]
    for caption, path in plots.items():
        out += [f"![{caption}]({path})", ""]
    return out


def affinity_frame(affinity: Mapping[str, Any]) -> pd.DataFrame:
    """``z_relative`` over all trunk parameters: rows the task stepped on, columns the task
    whose loss changes."""
    rows = pd.DataFrame([r for r in affinity["rows"] if r["group"] == "all"])
    tasks = list(dict.fromkeys(rows["source"]))
    table = rows.pivot(index="source", columns="target", values="z_relative")
    table = table.reindex(index=tasks, columns=tasks).map(lambda v: f"{v:+.3f}")
    return table.rename_axis(index="step on \\ loss of", columns=None).reset_index()


def _affinity_lines(results: StudyResults) -> list[str]:
    """``## Task affinity`` when the study measured it."""
    affinity = results.affinity
    if not affinity or not affinity.get("rows"):
        return []
    how = (f"Measured once, on seed {affinity['seed']}'s training data: the shared model "
           f"for {affinity['epochs']} epochs, measured on one step in {affinity['every']} "
           f"({affinity['steps']} steps), as `dmtl affinity` does.")
    return ["## Task affinity", "", how, "", markdown_table(affinity_frame(affinity)), "",
            AFFINITY_NOTE, "", f"Table: [{AFFINITY_TABLE}]({AFFINITY_TABLE}); heat map: "
            f"[{AFFINITY_PLOT}]({AFFINITY_PLOT}).", ""]


def _details(title: str, payload: object) -> list[str]:
    body = json.dumps(payload, indent=2, sort_keys=True, default=str)
    return ["<details>", f"<summary>{title}</summary>", "", "```json", body, "```", "",
            "</details>", ""]


def render_markdown(
    results: StudyResults,
    plots: Mapping[str, str] | None = None,
    *,
    files: Mapping[str, str] | None = None,
) -> str:
    """The report as Markdown; ``plots`` maps a caption to an image path and ``files`` a
    caption to a data file (both relative to the report)."""
    recommendation = recommend(results)
    where = models_line(results, recommendation)
    out = [f"# dmtl study: {results.study}", "", "## Recommendation", "",
           *recommendation_lines(recommendation), "", *([where, ""] if where else []),
           *_summary(results), ""]
    out += _warning_lines(results)
    out += ["## Results (primary metric, mean ± std over seeds)", "",
            markdown_table(results_frame(results, bold=True)), "",
            RESULTS_NOTE.format(seeds=len(results.seeds)), ""]
    if BASELINE in results.variants and len(results.variants) > 1:
        out += ["## Difference to single-task (95 % confidence interval over seeds)", "",
                markdown_table(differences_frame(results)), "", DIFFERENCE_RULE, ""]
    out += ["## Ranking", "", markdown_table(ranking_frame(results)), "", RANK_RULE, ""]
    out += ["## Best variant and variants within noise of it, per task", "",
            *_noise_lines(results), "", NOISE_RULE, ""]
    out += _per_output_lines(results)
    out += _group_lines(results)
    out += ["## Training", "", f"Protocol: {protocol_text(results.protocol)}.", "",
            markdown_table(training_frame(results)), "", TRAINING_NOTE, ""]
    out += ["## Failed runs", "", *_failed_lines(results), ""]
    out += _affinity_lines(results)
    out += _plot_lines(plots or {}, files or {})
    if results.config:
        out += _details("Config (effective: the file with the command's overrides, seeds "
                        "and variants, under the study's protocol)", results.config)
    if results.regime:
        out += _details("Label regime per seed", results.regime)
    return "\n".join(out).rstrip() + "\n"


def _error_line(error: str | None) -> str:
    """One line naming an error: its first line, or a bare traceback's last (``Type: message``)."""
    lines = [line.strip() for line in (error or "").strip().splitlines() if line.strip()]
    if not lines:
        return "no error recorded"
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]


def _key_label(key: tuple[str, int, str | None]) -> str:
    variant, seed, task = key
    return f"{variant if task is None else f'{variant}[{task}]'} seed {seed}"


__all__ = [
    "AFFINITY_PLOT",
    "AFFINITY_TABLE",
    "PER_OUTPUT_LIMIT",
    "REPORT_NAME",
    "affinity_frame",
    "budget_warning",
    "differences_frame",
    "fmt_cell",
    "markdown_table",
    "per_output_frame",
    "protocol_text",
    "ranking_frame",
    "render_markdown",
    "results_frame",
    "study_warnings",
    "task_header",
    "training_frame",
]
