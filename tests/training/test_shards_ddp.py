"""Packed sources in real processes: two DDP ranks (torchrun, gloo) read disjoint rows whose
union is the training set, in as many batches each; a streamed run stopped by Ctrl-C in the
middle of an epoch resumes exactly (docs/distributed.md).

The inputs of the DDP test are row numbers (``x[i, 0, 0, 0] = i``), and the backbone
(``tests/helpers/dmtl_test_rows.py``) writes down the rows of every training batch on its
rank. One epoch of 256 training rows in global batches of 32 is 8 steps; the sampler draws
one permutation of the rows per epoch and gives each rank its half of every step.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

pytest.importorskip("litdata")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
        reason="needs torch.distributed with gloo",
    ),
    pytest.mark.skipif(os.name != "posix", reason="torchrun and signals on POSIX only here"),
]

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
PATIENCE_S = 300
TRAIN_ROWS, TEST_ROWS = 256, 64


def _pack(config: Path, out: Path) -> Path:
    from dmtl.cli import app

    result = CliRunner().invoke(app, ["datasets", "pack", str(config), "-o", str(out),
                                      "--rows-per-part", "100", "--chunk-mb", "0.002"])
    assert result.exit_code == 0, result.output
    return out


def _row_number_pack(tmp_path: Path) -> Path:
    """A pack of 320 rows whose input is the row number (256 train, 64 test)."""
    n = TRAIN_ROWS + TEST_ROWS
    array = np.zeros((n, 1, 2, 2), np.float32)
    array[:, 0, 0, 0] = np.arange(n)
    np.save(tmp_path / "rows.npy", array)
    pd.DataFrame({
        "index": np.arange(n), "split": ["train"] * TRAIN_ROWS + ["test"] * TEST_ROWS,
        "c": [str(i % 2) for i in range(n)],
    }).to_csv(tmp_path / "rows.csv", index=False)
    config = tmp_path / "original.yaml"
    config.write_text(yaml.safe_dump({
        "name": "rows",
        "tasks": [{"name": "c", "type": "categorical", "classes": ["0", "1"]}],
        "sources": [{"name": "rows", "manifest": "rows.csv", "array": "rows.npy"}],
    }))
    return _pack(config, tmp_path / "pack") / "rows"


def _torchrun() -> list[str]:
    script = Path(sys.executable).parent / "torchrun"
    if script.is_file():
        return [str(script)]
    found = shutil.which("torchrun")
    return [found] if found else [sys.executable, "-m", "torch.distributed.run"]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="1000", OMP_NUM_THREADS="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HELPERS), env.get("PYTHONPATH")) if p)
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID"):
        env.pop(key, None)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _launch(layout: str, config: Path, out: Path, env: dict[str, str]) -> list[str]:
    """Run ``dmtl train`` as 2 processes: one torchrun on one node, two torchruns as nodes 0
    and 1 of one process each, or two SLURM tasks (docs/distributed.md's recipes, on one
    machine). Returns the outputs."""
    train = ["-m", "dmtl", "train", str(config), "-o", str(out), "-s", "trainer.strategy=ddp"]
    if layout == "slurm":
        return _slurm(train, config, env)
    if layout == "one node":
        commands = [[*_torchrun(), "--standalone", "--nproc-per-node", "2", *train,
                     "-s", "trainer.devices=2"]]
    else:
        port = str(_free_port())
        commands = [[*_torchrun(), "--nnodes", "2", "--nproc-per-node", "1",
                     "--node-rank", str(node), "--master-addr", "127.0.0.1",
                     "--master-port", port, *train, "-s", "trainer.devices=1",
                     "-s", "trainer.num_nodes=2"] for node in (0, 1)]
    return _wait_all([_start(c, env, config.parent, i) for i, c in enumerate(commands)])


def _start(command: list[str], env: dict[str, str], folder: Path, index: int) -> _Process:
    """Start ``command`` with its output in ``folder/output<index>.txt`` (a pipe nobody
    reads while waiting for the others could fill and block it)."""
    log = folder / f"output{index}.txt"
    with log.open("w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                                   env={**env, "PYTHONFAULTHANDLER": "1"}, cwd=folder)
    return _Process(process, log)


def _slurm(train: list[str], config: Path, env: dict[str, str]) -> list[str]:
    """Two tasks as ``srun`` starts them on one node (docs/distributed.md's SLURM recipe):
    ``python -m dmtl train`` per task with SLURM's variables, no torchrun; Lightning takes
    the ranks and the master address from them."""
    port = str(_free_port())
    processes = []
    for rank in (0, 1):
        slurm = {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2", "SLURM_NNODES": "1",
                 "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank), "SLURM_NODEID": "0",
                 "SLURM_JOB_NAME": "dmtl-test", "SLURM_JOB_ID": "4242",
                 "SLURM_NODELIST": "127.0.0.1", "MASTER_PORT": port}
        processes.append(_start([sys.executable, *train, "-s", "trainer.devices=2"],
                                {**env, **slurm}, config.parent, rank))
    return _wait_all(processes)


class _Process(NamedTuple):
    popen: subprocess.Popen[bytes]
    log: Path


def _wait_all(processes: list[_Process]) -> list[str]:
    """Wait for every process at once; their outputs. Fails as soon as one fails (the
    others would wait for it in a collective until DDP's timeout), or after
    ``PATIENCE_S``: the processes still running first print every thread's Python stack
    (``faulthandler`` on SIGABRT), then the outputs of all of them are shown."""
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        codes = [p.popen.poll() for p in processes]
        if all(code == 0 for code in codes) or any(code not in (None, 0) for code in codes):
            break
        time.sleep(0.2)
    for process in processes:
        if process.popen.poll() is None:
            process.popen.send_signal(signal.SIGABRT)
            try:
                process.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()
    outputs = [p.log.read_text(errors="replace") for p in processes]
    codes = [p.popen.returncode for p in processes]
    report = "\n".join(f"--- process {i} (exit {code}) ---\n{text[-4000:]}"
                       for i, (code, text) in enumerate(zip(codes, outputs, strict=True)))
    assert all(code == 0 for code in codes), report
    return outputs


@pytest.mark.parametrize("layout", ["one node", "two nodes", "slurm"])
def test_two_ranks_read_disjoint_rows_whose_union_is_the_training_set(
    tmp_path: Path, layout: str
) -> None:
    pack = _row_number_pack(tmp_path)
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump({
        "name": "rows",
        "sources": [{"name": "rows", "shards": str(pack)}],
        "backbone": {"name": "dmtl_test_rows:recorder", "options": {"hidden": [8]}},
        "optim": {"name": "adamw", "lr": 0.01, "schedule": "none"},
        "trainer": {"max_epochs": 1, "batch_size": 32, "num_workers": 1,
                    "progress_bar": False, "accelerator": "cpu"},
        "study": {"seeds": 1, "variants": ["mtl"]},
    }))
    rows_dir = tmp_path / "rows"
    rows_dir.mkdir()
    _launch(layout, config, tmp_path / "run", _env(DMTL_TEST_ROWS=str(rows_dir)))
    batches = {
        rank: [[int(v) for v in line.split()]
               for line in (rows_dir / f"rank{rank}.txt").read_text().splitlines()]
        for rank in (0, 1)
    }
    assert len(batches[0]) == len(batches[1]) == TRAIN_ROWS // 32  # as many batches each
    assert all(len(b) == 16 for rank in (0, 1) for b in batches[rank])  # half of each step
    seen = {rank: [r for b in batches[rank] for r in b] for rank in (0, 1)}
    assert not set(seen[0]) & set(seen[1])  # disjoint
    assert sorted(seen[0] + seen[1]) == list(range(TRAIN_ROWS))  # the training set, once


def test_a_streamed_run_stopped_mid_epoch_resumes_exactly(
    tmp_path: Path, tiny_data: Callable[..., dict[str, Any]]
) -> None:
    from dmtl.cli import app

    original = tmp_path / "original.yaml"
    original.write_text(yaml.safe_dump(tiny_data()))
    pack = _pack(original, tmp_path / "pack") / "digits"
    data = tiny_data(
        trainer={"max_epochs": 2, "steps_per_epoch": 5, "deterministic": True,
                 "num_workers": 1},
        backbone={"name": "dmtl_test_faults:block", "dropout": 0.2,
                  "options": {"hidden": [32], "at": 6, "seconds": 2.0}},
    )
    source = {k: v for k, v in data["sources"][0].items() if k != "builtin"}
    data["sources"] = [{**source, "shards": str(pack)}]
    config = tmp_path / "streamed.yaml"
    config.write_text(yaml.safe_dump(data))
    marker, log, run = tmp_path / "marker", tmp_path / "log.txt", tmp_path / "interrupted"
    process = subprocess.Popen(
        [sys.executable, "-m", "dmtl", "train", str(config), "-o", str(run)],
        stdout=log.open("w"), stderr=subprocess.STDOUT, text=True,
        env=_env(DMTL_TEST_MARKER=str(marker)), cwd=tmp_path,
    )
    try:
        _wait_for(marker.exists, process)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=PATIENCE_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, log.read_text()
    assert (run / "checkpoints" / "interrupted.ckpt").is_file()
    os.environ["DMTL_TEST_MARKER"] = str(marker)
    sys.path.insert(0, str(HELPERS))
    try:
        for args in (["-o", str(run), "--resume"], ["-o", str(tmp_path / "straight")]):
            result = CliRunner().invoke(app, ["train", str(config), *args])
            assert result.exit_code == 0, result.output
    finally:
        sys.path.remove(str(HELPERS))
        os.environ.pop("DMTL_TEST_MARKER")
    straight = torch.load(tmp_path / "straight" / "checkpoints" / "last.ckpt", weights_only=False)
    resumed = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    for key, value in straight["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        assert process.poll() is None, "the run ended before its blocking step"
        assert time.monotonic() < deadline, f"no blocking step within {PATIENCE_S} s"
        time.sleep(0.05)
