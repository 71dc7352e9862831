"""The network of a checkpoint, loaded without Lightning (``build.checkpoint.load_trained``),
is the one ``load_module`` rebuilds; ``dmtl evaluate``'s loop gives the run's own metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dmtl.build.checkpoint import load_trained
from dmtl.errors import RunError
from dmtl.inference.card import model_card
from dmtl.inference.evaluate import evaluate_checkpoint
from dmtl.training.module import load_module


def test_load_trained_is_the_modules_network(trained_run: Path) -> None:
    path = trained_run / "checkpoints" / "last.ckpt"
    trained, module = load_trained(path), load_module(path)
    ours, theirs = trained.model.state_dict(), module.model.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert not trained.model.training
    assert model_card(trained).to_json() == model_card(module).to_json()
    x = torch.randn(3, *trained.input_shape)
    module.model.eval()
    with torch.no_grad():
        expected, got = module.model(x), trained.model(x)
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_load_trained_refuses_what_is_no_checkpoint(tmp_path: Path) -> None:
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(RunError, match=r"junk\.ckpt: not a dmtl checkpoint"):
        load_trained(junk)
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {}}, plain)
    with pytest.raises(RunError, match="no model spec in it"):
        load_trained(plain)


def test_evaluation_gives_the_runs_own_test_metrics(trained_run: Path) -> None:
    """Bit for bit: the same network, batches and metric states as the run's evaluation."""
    metrics = evaluate_checkpoint(trained_run / "checkpoints" / "last.ckpt", "test")
    assert metrics == json.loads((trained_run / "metrics.json").read_text())["metrics"]
