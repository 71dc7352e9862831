"""Relatedness tables from a trained model's predictions (method.md section 3.3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from click.testing import Result
from torch import Tensor
from typer.testing import CliRunner

from dmtl.build.data import build_experiment
from dmtl.cli import app
from dmtl.config import load_config, validate_config
from dmtl.core.relatedness import Relatedness
from dmtl.core.tasks import BinarySetTask, CategoricalTask
from dmtl.data.builtin import load_builtin
from dmtl.data.sources import ArraySource
from dmtl.errors import DataError, SpecError
from dmtl.inference.card import ModelCard
from dmtl.inference.predict import input_source
from dmtl.inference.relatedness import estimate_from_predictions
from dmtl.inference.runtime import load_predictor

A = CategoricalTask("a", ["x", "y"])
B = BinarySetTask("b", ["u"])
G = CategoricalTask("g", ["p", "q", "r"])
P_A = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
P_B = torch.tensor([[1.0], [0.5], [0.0]])
P_G = torch.tensor([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])


def run_cli(*args: str | Path, code: int = 0) -> Result:
    """``dmtl ARGS`` in this process, checking the exit code."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


class TablePredictor:
    """Fixed probabilities: input ``[i]`` gets row ``i`` of ``P_A``, ``P_B`` and ``P_G``."""

    card = ModelCard(name="fixed", tasks=(A, B, G), input_shape=(1,))

    def probabilities(self, x: Tensor) -> dict[str, Tensor]:
        rows = x[:, 0].long()
        return {"a": P_A[rows], "b": P_B[rows], "g": P_G[rows]}


def _inputs(n: int = 3) -> ArraySource:
    empty = {t.name: t.unlabelled(n) for t in (A, B, G)}
    return ArraySource("unlabelled", [A, B, G], np.arange(n, dtype=np.float32)[:, None], empty)


def test_soft_counts_by_hand() -> None:
    """n_c = sum_x p_A(c|x) = [1.5, 1.5]; n_c,u = sum_x p_A(c|x) p_B(x) = [1.25, 0.25]."""
    (raw,) = estimate_from_predictions(TablePredictor(), [_inputs()], [("a", "b")], alpha=0.0)
    assert raw.num_inputs == 3
    assert torch.allclose(raw.edge.table, torch.tensor([[1.25 / 1.5], [0.25 / 1.5]]))
    # alpha = 1 shrinks towards the marginal m = (1.25 + 0.25) / 3 = 0.5
    (smoothed,) = estimate_from_predictions(TablePredictor(), [_inputs()], [("a", "b")])
    assert torch.allclose(smoothed.edge.table, torch.tensor([[1.75 / 2.5], [0.75 / 2.5]]))


def test_a_categorical_target_gives_rows_that_sum_to_one() -> None:
    """R[c, d] = sum_x p_A(c|x) p_G(d|x) / sum_x p_A(c|x)."""
    (edge,) = estimate_from_predictions(TablePredictor(), [_inputs()], [("a", "g")], alpha=0.0)
    expected = (P_A.T @ P_G) / P_A.sum(0)[:, None]
    assert torch.allclose(edge.edge.table, expected)
    assert torch.allclose(edge.edge.table.sum(1), torch.ones(2))


def test_the_estimate_does_not_depend_on_batching_or_splitting_the_inputs() -> None:
    whole = estimate_from_predictions(TablePredictor(), [_inputs()], [("a", "b"), ("a", "g")])
    parts = [_inputs().subset([0, 2], name="first"), _inputs().subset([1], name="second")]
    split = estimate_from_predictions(TablePredictor(), parts, [("a", "b"), ("a", "g")],
                                      batch_size=1)
    for one, other in zip(whole, split, strict=True):
        assert torch.allclose(one.edge.table, other.edge.table)


def test_errors_name_the_task_and_the_shape() -> None:
    with pytest.raises(SpecError, match="the model has no task 'c'; its tasks: a, b, g"):
        estimate_from_predictions(TablePredictor(), [_inputs()], [("a", "c")])
    with pytest.raises(SpecError, match="source task must be categorical, 'b' is binary_set"):
        estimate_from_predictions(TablePredictor(), [_inputs()], [("b", "a")])
    wide = ArraySource("wide", [A], np.zeros((2, 3), np.float32), {})
    with pytest.raises(DataError, match=r"inputs of shape \(3,\), but the model was trained on "
                       r"inputs of shape \(1,\)"):
        estimate_from_predictions(TablePredictor(), [wide], [("a", "b")])


# ---- from the command line, on a trained model ----------------------------------------------


@pytest.fixture
def digits_npy(tmp_path: Path) -> Path:
    path = tmp_path / "unlabelled.npy"
    np.save(path, load_builtin("digits").inputs[:150])
    return path


@pytest.mark.slow
def test_estimate_from_a_trained_model_writes_a_table_a_config_can_use(
    trained_run: Path, digits_npy: Path, tmp_path: Path, tiny_data: Any
) -> None:
    out = tmp_path / "digit__shape.csv"
    result = run_cli("relatedness", "estimate", "--model", trained_run, "--inputs", digits_npy,
                     "--source", "digit", "--target", "shape", "--alpha", "0", "-o", out)
    assert "on 150 input(s)" in " ".join(result.output.split())
    predictor = load_predictor(trained_run / "checkpoints" / "last.ckpt")
    source = input_source(predictor.card, digits_npy)
    (expected,) = estimate_from_predictions(predictor, [source], [("digit", "shape")], alpha=0.0)
    written = Relatedness.from_csv(out, expected.edge.source, expected.edge.target)
    assert torch.allclose(written.table, expected.edge.table, atol=1e-6)
    # a config edge of kind 'table' reads it
    data = tiny_data(relatedness=[{"source": "digit", "target": "shape", "kind": "table",
                                   "path": str(out)}])
    (edge,) = build_experiment(validate_config(data)).edges
    assert torch.allclose(edge.table, expected.edge.table, atol=1e-6)


@pytest.mark.slow
def test_estimate_from_the_images_of_a_configs_sources(trained_run: Path, tmp_path: Path) -> None:
    config = trained_run / "config.yaml"
    out = tmp_path / "tables"
    result = run_cli("relatedness", "estimate", config, "--model", trained_run, "--split", "test",
                     "--source", "digit", "--target", "ink", "-o", out)
    test_rows = int((build_experiment(load_config(config)).test[0]).__len__())
    assert f"on {test_rows} input(s)" in " ".join(result.output.split())
    assert (out / "digit__ink.csv").is_file()
    # a config whose inputs are normalised otherwise than the model's is refused
    other = yaml.safe_load(config.read_text())
    other["sources"][0]["input"]["mean"] = [0.9]
    other_path = tmp_path / "other.yaml"
    other_path.write_text(yaml.safe_dump(other))
    result = run_cli("relatedness", "estimate", other_path, "--model", trained_run,
                     "--source", "digit", "--target", "ink", "-o", tmp_path / "x.csv", code=2)
    message = " ".join(result.output.split())
    assert "error: source 'digits': input mean [0.9] is not the model's [0.3]" in message


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--inputs", "x.npy"], "--inputs, --root, --array: they need --model"),
        ([], "CONFIG: give a config (or --model with --inputs)"),
        (["--model", "run"], "--model: give either a CONFIG or --inputs"),
    ],
)
def test_estimate_options_that_do_not_go_together(args: list[str], message: str) -> None:
    result = run_cli("relatedness", "estimate", "-o", "t.csv", *args, code=2)
    assert message in " ".join(result.output.split())
