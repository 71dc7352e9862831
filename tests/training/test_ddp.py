"""Two CPU processes (DDP over gloo, launched with torchrun as the README says) against one;
a NaN, an error or Ctrl-C on one rank stops both, with one message.

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

from dmtl.build.data import build_experiment
from dmtl.config import load_config
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
HELPERS = Path(__file__).resolve().parents[1] / "helpers"
PATIENCE_S = 300


def _torchrun() -> list[str]:
    script = Path(sys.executable).parent / "torchrun"
    if script.is_file():
        return [str(script)]
    found = shutil.which("torchrun")
    return [found] if found else [sys.executable, "-m", "torch.distributed.run"]


def _torchrun_train(config: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``torchrun --nproc-per-node 2 -m dmtl train CONFIG -o OUT ARGS`` on the CPU (gloo).

    The timeout is generous: these runs take about 20 s on a busy 2-core machine, and a
    hang (what the fault tests guard against) would meet it."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="1000", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HELPERS), env.get("PYTHONPATH")) if p)
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return subprocess.run(
        [*_torchrun(), "--standalone", "--nproc-per-node", "2", "-m", "dmtl", "train",
         str(config), "-o", str(out), "-s", "trainer.accelerator=cpu",
         "-s", "trainer.devices=2", "-s", "trainer.strategy=ddp", *args],
        capture_output=True, text=True, timeout=PATIENCE_S, env=env, cwd=config.parent,
    )


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
    done = _torchrun_train(config, ddp_dir)
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


# ---- a fault on one rank stops every rank --------------------------------------------------------


def _faulty_config(write_config: Callable[..., Path], tiny_data: Callable[..., dict[str, Any]],
                   fault: str, at: int, name: str = "tiny.yaml") -> Path:
    """The tiny config whose backbone (``tests/helpers/dmtl_test_faults.py``) misbehaves at
    its ``at``-th training step on rank 1 only."""
    data = tiny_data(
        trainer={"max_epochs": 2, "steps_per_epoch": 10, "batch_size": 32,
                 "deterministic": True},
        backbone={"name": f"dmtl_test_faults:{fault}", "dropout": 0.2,
                  "options": {"hidden": [32], "at": at, "rank": 1}},
    )
    return write_config(data, name=name)


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("nan_features", "rank 1 failed: NonFiniteLossError: loss term 'sup/digit' is nan at "
                         "step 5"),
        ("raise_error", "rank 1 failed: RuntimeError: injected failure on rank 1"),
    ],
)
def test_a_failure_on_one_rank_stops_every_rank_with_one_message(
    write_config: Callable[..., Path], tiny_data: Callable[..., dict[str, Any]], tmp_path: Path,
    fault: str, message: str,
) -> None:
    config = _faulty_config(write_config, tiny_data, fault, at=5)
    done = _torchrun_train(config, tmp_path / "run")  # a hang would meet the timeout
    output = done.stdout + done.stderr
    assert done.returncode != 0
    # rank 0 says what rank 1 said, once; the other rank stays silent about it
    lines = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, output[-5000:]
    assert lines[0].startswith(f"error: training stopped on every rank: {message}"), lines
    assert "Connection closed by peer" not in output  # rank 0 did not die of rank 1's exit
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_ctrl_c_on_one_rank_stops_every_rank_and_the_run_resumes_exactly(
    write_config: Callable[..., Path], tiny_data: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    interrupted = _torchrun_train(
        _faulty_config(write_config, tiny_data, "send_sigint", at=12), run
    )
    output = interrupted.stdout + interrupted.stderr
    assert interrupted.returncode != 0
    checkpoint = run / "checkpoints" / "interrupted.ckpt"
    said = (f"Interrupted at step 13 (epoch 1); checkpoint saved to {checkpoint}. "
            "Resume with --resume.")
    assert output.count(said) == 1, output[-3000:]  # rank 0 says it, once
    assert "Ctrl-C: stopping after this step" in output  # rank 1, as soon as it got SIGINT
    assert torch.load(checkpoint, map_location="cpu", weights_only=True)["global_step"] == 13
    # the same config resumes (the fault fires at the 12th step *of a process*: the resumed
    # process runs 7), and gives what a run that was never interrupted gives
    resumed = _torchrun_train(run / "config.yaml", run, "--resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-5000:]
    assert json.loads((run / "metrics.json").read_text())["steps"] == 20
    never = _faulty_config(write_config, tiny_data, "send_sigint", at=1000, name="never.yaml")
    straight = _torchrun_train(never, tmp_path / "straight")
    assert straight.returncode == 0, straight.stdout[-3000:] + straight.stderr[-5000:]
    want, have = _state(tmp_path / "straight"), _state(run)
    assert all(torch.equal(want[k], have[k]) for k in want)
