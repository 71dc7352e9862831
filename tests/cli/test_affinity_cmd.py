"""``dmtl affinity CONFIG``: the table, the heat map and the summary, written once."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .conftest import Invoke


def test_affinity_writes_table_heat_map_and_summary(
    cli: Invoke, session_config: Path, tmp_path: Path
) -> None:
    out = tmp_path / "affinity"
    result = cli("affinity", session_config, "--out", out, "--epochs", "1", "--every", "2")
    assert "step on" in result.output and "branches auto would choose" in result.output
    table = pd.read_csv(out / "affinity.csv")
    overall = table[table["group"] == "all"]
    assert len(overall) == 9  # 3 tasks x 3 tasks
    assert (overall[overall["source"] == overall["target"]]["z_relative"] == 1.0).all()
    assert (out / "affinity.png").stat().st_size > 0
    summary = json.loads((out / "affinity.json").read_text())
    assert summary["epochs"] == 1 and summary["every"] == 2 and summary["steps"] > 0
    cli("affinity", session_config, "--out", out, code=2)  # not overwritten unasked
