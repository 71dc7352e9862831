"""Rich rendering for the terminal: tables (a study's unwrapped where stdout is not a
terminal)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # pandas is imported when a table is drawn, not at `dmtl --help`
    import pandas as pd

    from dmtl.study.results import StudyResults


def frame_table(frame: pd.DataFrame, title: str | None = None, digits: int = 3) -> Table:
    """A pandas DataFrame as a rich table (floats to ``digits`` decimals, NaN as n/a)."""
    import pandas as pd

    table = Table(title=title, show_lines=False)
    for column in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[column])
        table.add_column(str(column), justify="right" if numeric else "left")
    for _, row in frame.iterrows():
        table.add_row(*(_cell(v, digits) for v in row.tolist()))
    return table


def _cell(value: object, digits: int) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def metrics_table(metrics: Mapping[str, float | None], title: str) -> Table:
    """Flat ``task/metric`` values as a two-column table, per-label values left out."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        if name.count("/") > 1:
            continue
        if value is None:
            text = "n/a"
        elif name.endswith("num_labelled"):
            text = str(int(value))
        else:
            text = f"{value:.4f}"
        table.add_row(name, text)
    return table


def study_table(results: StudyResults) -> Table:
    """The study's results table (:func:`dmtl.study.report.results_frame`) for the terminal.

    Best cells bold green, a negative-transfer verdict red (its column header says
    "negative transfer", so a verdict keeps only the tasks and their gains).
    """
    from dmtl.study.report import results_frame, task_header
    from dmtl.study.statistics import best_variants

    frame = results_frame(results)
    best = best_variants(results)
    table = Table(title=f"dmtl study: {results.study} (mean ± std over seeds)")
    table.add_column("variant", style="cyan", no_wrap=True)
    for task, info in results.tasks.items():
        table.add_column(f"{task}\n({info.primary_metric})", justify="right")
    table.add_column("negative transfer")
    for _, row in frame.iterrows():
        variant = str(row["variant"]).removesuffix(" (baseline)")
        cells: list[str | Text] = [str(row["variant"])]
        for task in results.tasks:
            style = "bold green" if variant in best[task] else ""
            cells.append(Text(str(row[task_header(results, task)]), style=style))
        verdict = str(row["negative transfer"])
        negative = verdict.startswith("negative transfer on: ")
        cells.append(Text(verdict.removeprefix("negative transfer on: "),
                          style="red" if negative else ""))
        table.add_row(*cells)
    return table


def print_recommendation(console: Console, results: StudyResults) -> None:
    """The study's recommendation (``study/recommend.py``): the variant (and the tasks that
    keep their single-task model), why, and the gains per task on validation and test; the
    prose without Markdown emphasis, the table as Markdown."""
    from dmtl.study.recommend import recommend, recommendation_lines

    lines = [line if line.startswith("|") else line.replace("**", "").replace("`", "")
             for line in recommendation_lines(recommend(results))]
    console.file.write("Recommendation: " + "\n".join(lines) + "\n\n")
    console.file.flush()


def print_study_table(console: Console, results: StudyResults) -> None:
    """The study's table and ranking: a rich table on a terminal; elsewhere (a log file, a
    pipe) the Markdown table at full width, never wrapped."""
    from dmtl.study.report import markdown_table, results_frame
    from dmtl.study.statistics import ranking

    print_recommendation(console, results)
    ranks = ranking(results)
    order = ", ".join(f"{i}. {v} ({r:.2f})"
                      for i, (v, r) in enumerate(ranks["mean rank"].items(), start=1))
    line = f"ranking (mean rank over tasks): {order or 'n/a'}"
    if console.is_terminal:
        console.print(study_table(results))
        console.print(line, highlight=False, markup=False)
        return
    title = f"dmtl study: {results.study} (mean ± std over seeds)"
    console.file.write(f"{title}\n\n{markdown_table(results_frame(results))}\n\n{line}\n")
    console.file.flush()
