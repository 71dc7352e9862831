"""Group-wise evaluation: metrics per group of a manifest column, the worst group, the gap."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from dmtl.cli import app
from dmtl.core.tasks import BinarySetTask, CategoricalTask
from dmtl.study.groups import MISSING_GROUP, group_table


def test_group_table_by_hand() -> None:
    digit = CategoricalTask("digit", ["0", "1"])
    attr = BinarySetTask("attr", ["a"])
    # rows 0-1 group "x": one right, one wrong -> 0.5; rows 2-3 group "y": both right -> 1.0
    logits = {
        "digit": torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 0.0]]),
        "attr": torch.zeros(4, 1),
    }
    labels = {"digit": np.array([0, 1, 1, 0]), "attr": np.full((4, 1), np.nan, np.float32)}
    groups = np.array(["x", "x", "y", "y"], dtype=object)
    table = group_table([digit, attr], logits, labels, groups, "writer")
    assert table.frame.loc["x", "digit/accuracy"] == pytest.approx(0.5)
    assert table.frame.loc["y", "digit/accuracy"] == pytest.approx(1.0)
    assert table.frame["n"].tolist() == [2, 2]
    assert np.isnan(table.frame.loc["x", "attr/f1_mean"])  # no labels: no value
    assert table.worst == {"digit/accuracy": "x"} and table.gap == {"digit/accuracy": 0.5}
    doc = table.to_dict()
    assert doc["groups"][0] == {"writer": "x", "n": 2, "digit/accuracy": 0.5, "attr/f1_mean": None}
    assert "worst group 'x', gap 0.5000" in table.to_markdown()


def run(*args: object, code: int = 0) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, f"{result.output}\n{result.exception!r}"
    return result.output


@pytest.mark.slow
def test_evaluate_by_a_manifest_column_matches_the_predictions(
    tmp_path: Path, tiny_data: Any
) -> None:
    run("datasets", "export", "digits", tmp_path / "digits", "--limit", "300")
    manifest = tmp_path / "digits" / "manifest.csv"
    frame = pd.read_csv(manifest, dtype={"id": str})
    # a derived attribute: three "writers" by id, one row without a value
    frame["writer"] = ["w" + str(int(i) % 3) for i in range(len(frame))]
    frame.loc[frame.index[frame["split"] == "test"][0], "writer"] = None
    frame[["id", "image", "split", "digit"]].to_csv(manifest, index=False)
    frame[["id", "writer"]].to_csv(tmp_path / "writers.csv", index=False)
    data = tiny_data(output={"dir": str(tmp_path / "run")})
    data["sources"] = [{"name": "digits", "manifest": str(manifest)}]
    data["tasks"] = [{"name": "digit", "type": "categorical", "classes": list("0123456789")}]
    data["relatedness"] = []
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    run("train", config)
    output = run("evaluate", tmp_path / "run", "--by", "writer", "--groups",
                 tmp_path / "writers.csv", "-o", tmp_path / "m.json")
    assert "worst group" in output
    groups = json.loads((tmp_path / "m.json").read_text())["groups"]
    rows = {g["writer"]: g for g in groups["groups"]}
    assert set(rows) == {"w0", "w1", "w2", MISSING_GROUP}
    # the same accuracies from `dmtl predict` on the test rows
    test = frame[frame["split"] == "test"].copy()
    test[["id", "image"]].to_csv(tmp_path / "test.csv", index=False)
    run("predict", tmp_path / "run", tmp_path / "test.csv", "-o", tmp_path / "p.csv",
        "--root", tmp_path / "digits")
    predicted = pd.read_csv(tmp_path / "p.csv", dtype={"id": str, "digit": str})
    test = test.merge(predicted[["id", "digit"]], on="id", suffixes=("", "_pred"))
    test["writer"] = test["writer"].fillna(MISSING_GROUP)
    for writer, part in test.groupby("writer"):
        labelled = part[part["digit"].notna()]
        accuracy = (labelled["digit"].astype(int).astype(str) == labelled["digit_pred"]).mean()
        assert rows[writer]["n"] == len(part)
        assert rows[writer]["digit/accuracy"] == pytest.approx(accuracy)
    accuracies = {w: r["digit/accuracy"] for w, r in rows.items()}
    assert groups["worst"]["digit/accuracy"] == min(accuracies, key=accuracies.__getitem__)
    assert groups["gap"]["digit/accuracy"] == pytest.approx(
        max(accuracies.values()) - min(accuracies.values())
    )
    # one line for a column the manifest lacks
    output = run("evaluate", tmp_path / "run", "--by", "age", code=2)
    assert "the manifest of source 'digits' has no column 'age'; columns: source, id" in output
    output = run("evaluate", tmp_path / "run", "--by", "source")
    assert "digits" in output
