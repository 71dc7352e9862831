"""Two CPU processes (DDP over gloo, launched with torchrun as the README says) against one.

Why the two runs should agree: the multi-source sampler draws the same *global* batch of
``trainer.batch_size`` rows at every step whatever the number of processes, and gives each
rank its slice (16 + 16 rows here). The strata are homogeneous in which tasks they label,
and every rank gets the same number of rows of each stratum, so each task's masked mean
over a rank's slice has as many terms on both ranks; DDP's average of the two ranks'
gradients is then the gradient of the global batch's loss. The initial weights are the
same (same seed). So the two runs differ only by floating-point summation order: we
allow 1e-4 on every weight and 0.01 on every test metric (3 of the 360 test samples
flipping at an arg-max or 0.5 tie), where a sharding or synchronisation bug (each rank
training on its half alone, metrics of one rank's half of the test set) would be far
outside. Measured: weights within 1e-6, metrics equal.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from dmtl.config import load_config
from dmtl.data.pipeline import build_experiment
from dmtl.training.run import run_training

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
        reason="needs torch.distributed with gloo",
    ),
    pytest.mark.skipif(os.name != "posix", reason="torchrun on POSIX only here"),
]

STEPS_PER_EPOCH, EPOCHS = 100, 2


def _torchrun() -> list[str]:
    script = Path(sys.executable).parent / "torchrun"
    if script.is_file():
        return [str(script)]
    found = shutil.which("torchrun")
    return [found] if found else [sys.executable, "-m", "torch.distributed.run"]


def _state(run: Path) -> dict[str, torch.Tensor]:
    path = run / "checkpoints" / "last.ckpt"
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]  # type: ignore[no-any-return]


def _first_loss(run: Path) -> float:
    logs = pd.read_csv(run / "logs" / "metrics.csv")
    rows = logs[logs["train/loss_step"].notna()]
    return float(rows.loc[rows["step"] == 0, "train/loss_step"].iloc[0])


def test_two_process_ddp_matches_one_process_with_the_same_global_batch(
    write_config: Callable[..., Path], tiny_data: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    data = tiny_data(trainer={"max_epochs": EPOCHS, "steps_per_epoch": STEPS_PER_EPOCH,
                              "batch_size": 32})
    config = write_config(data)
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="200")
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    done = subprocess.run(
        [*_torchrun(), "--standalone", "--nproc-per-node", "2", "-m", "dmtl", "train",
         str(config), "-o", str(ddp_dir), "-s", "trainer.accelerator=cpu",
         "-s", "trainer.devices=2", "-s", "trainer.strategy=ddp"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    # rank 0 alone reports and writes the run folder
    assert done.stdout.count("tiny: test metrics") == 1, done.stdout
    for name in ("config.yaml", "regime.json", "metrics.json", "checkpoints/last.ckpt",
                 "logs/metrics.csv", "relatedness/digit__shape.csv"):
        assert (ddp_dir / name).is_file(), name
    ddp = json.loads((ddp_dir / "metrics.json").read_text())
    assert ddp["steps"] == EPOCHS * STEPS_PER_EPOCH

    single = run_training(build_experiment(load_config(config)), single_dir, quiet=True)
    assert single.steps == ddp["steps"]

    # every test sample counted once across the two ranks
    for task in ("digit", "shape", "ink"):
        assert ddp["metrics"][f"{task}/num_labelled"] == 360
    for key, value in single.metrics.items():
        assert ddp["metrics"][key] == pytest.approx(value, abs=0.01), key
    # and the models themselves agree
    ddp_state, single_state = _state(ddp_dir), _state(single_dir)
    assert ddp_state.keys() == single_state.keys()
    for key in single_state:
        assert torch.allclose(ddp_state[key], single_state[key], rtol=0, atol=1e-4), key
    # the global batch was split: at step 0 (same weights) rank 0's loss is over its half
    # only, so it differs from the loss over the whole batch
    assert abs(_first_loss(ddp_dir) - _first_loss(single_dir)) > 1e-6
