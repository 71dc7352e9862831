"""Rich rendering of tables for the terminal."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from rich.table import Table


def frame_table(frame: pd.DataFrame, title: str | None = None, digits: int = 3) -> Table:
    """A pandas DataFrame as a rich table (floats to ``digits`` decimals, NaN as n/a)."""
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
