"""``dmtl predict STUDY_FOLDER``: the study's recommended models, each for the tasks it
serves (a task that keeps its single-task model is predicted by that model)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from click.testing import Result
from typer.testing import CliRunner

from dmtl.cli import app

pytestmark = pytest.mark.slow

Invoke = Callable[..., Result]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory,
          tiny_data: Callable[..., dict[str, Any]]) -> Path:
    """A one-seed study of single_task and mtl whose recommendation is made to be mtl with
    ink on its single-task model (one seed never falls back by itself: no noise)."""
    folder = tmp_path_factory.mktemp("predict-study")
    config = folder / "study.yaml"
    config.write_text(yaml.safe_dump(tiny_data(
        study={"seeds": 1, "variants": ["single_task", "mtl"]},
        output={"dir": str(folder / "study")})))
    done = CliRunner().invoke(app, ["study", str(config)])
    assert done.exit_code == 0, done.output
    results = folder / "study" / "results.json"
    data = json.loads(results.read_text())
    data["recommendation"]["per_task"] = {"digit": "mtl", "shape": "mtl", "ink": "single_task"}
    results.write_text(json.dumps(data))
    return folder / "study"


def test_each_task_is_predicted_by_the_model_the_study_recommends_for_it(
    cli: Invoke, study: Path, exported_digits: Path, tmp_path: Path
) -> None:
    combined, mtl, ink = (tmp_path / f"{n}.csv" for n in ("study", "mtl", "ink"))
    result = cli("predict", study, exported_digits, "-o", combined)
    lines = result.output.splitlines()
    assert any(line.startswith("ink: ") and "single_task-ink" in line for line in lines)
    assert any(line.startswith("digit, shape: ") and "/mtl/" in line for line in lines)
    cli("predict", study / "runs" / "seed0" / "mtl", exported_digits, "-o", mtl)
    cli("predict", study / "runs" / "seed0" / "single_task-ink", exported_digits, "-o", ink)
    both, shared, alone = (pd.read_csv(p) for p in (combined, mtl, ink))
    ink_columns = [c for c in both if "ink" in c]
    assert ink_columns and list(both.columns) == list(shared.columns)
    pd.testing.assert_frame_equal(both[ink_columns], alone[ink_columns])
    others = [c for c in both if c not in ink_columns]
    pd.testing.assert_frame_equal(both[others], shared[others])


def test_a_study_without_a_recommendation_is_one_line(
    cli: Invoke, study: Path, exported_digits: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "no-recommendation"
    copy.mkdir()
    data = json.loads((study / "results.json").read_text())
    data["recommendation"] = None
    (copy / "results.json").write_text(json.dumps(data))
    result = cli("predict", copy, exported_digits, "-o", tmp_path / "p.csv", code=2)
    assert "the study has no recommendation to predict with" in result.output
