"""``dmtl evaluate RUN --by COLUMN``: the metrics per group, the worst group and the gap
(:mod:`dmtl.study.groups`), printed as a table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from dmtl.cli.errors import console

if TYPE_CHECKING:
    from dmtl.build.checkpoint import TrainedModel
    from dmtl.build.data import Experiment


def report_groups(
    trained: TrainedModel, experiment: Experiment, split: str, column: str,
    groups: Path | None = None,
) -> dict[str, Any]:
    """Print the group table of ``split`` by ``column`` (read from ``groups`` when given);
    return it as plain data (JSON)."""
    from dmtl.study.groups import evaluate_groups

    table = evaluate_groups(trained, experiment, split, column, groups)
    view = Table(title=f"{split} metrics by {column}")
    metrics = list(table.frame.columns.drop("n"))
    for name in (column, "n", *metrics):
        view.add_column(name, justify="left" if name == column else "right")
    for group, row in table.frame.iterrows():
        cells = [_cell(row[m]) for m in metrics]
        view.add_row(str(group), str(int(row["n"])), *cells)
    console.print(view)
    for metric, group in table.worst.items():
        console.print(
            f"{metric}: worst group [bold]{group}[/], gap {table.gap[metric]:.4f}",
            highlight=False,
        )
    return table.to_dict()


def _cell(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4f}"
