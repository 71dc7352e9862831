"""Scale-out: training samples/s of 1 against 2 DDP processes on CPU (gloo), one thread each.

Both runs are launched the README's way, with ``torchrun --nproc-per-node N``, and each
process trains through :func:`dmtl.training.run.run_training` (what ``dmtl train`` calls),
with ``trainer.accelerator=cpu trainer.devices=N trainer.strategy=ddp`` (N = 2) and
``OMP_NUM_THREADS=1`` / ``trainer.num_threads=1``. The only difference from
``torchrun ... -m dmtl train`` is the entry module, ``benchmarks.ddp --worker``, which adds
a callback recording the wall time at the end of every training step on rank 0.

Steady state: the first ``warmup`` steps of every epoch are left out, and so are the
intervals that span an epoch's end (checkpointing); samples/s = global batch x steps
timed / their total time. The global batch is the same for both runs (each of 2
processes takes half of it), so the runs take the same number of optimiser steps on
the same samples and their test metrics should agree up to floating-point reduction
order and per-process batch-norm statistics.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import (
    QUICK_DIR,
    REPO,
    RESULTS_DIR,
    command_line,
    hardware,
    now,
    write_result,
)

TARGET = 1.7


def workload(quick: bool) -> tuple[str, list[str]]:
    """Config and overrides of the timed training run."""
    from benchmarks.common import fashion_available, fashion_overrides

    common = ["trainer.progress_bar=false", "trainer.num_threads=1", "trainer.accelerator=cpu",
              "trainer.log_every_n_steps=10"]
    if quick:
        return "configs/digits-scarce.yaml", [*common, "trainer.max_epochs=1",
                                              "trainer.steps_per_epoch=6"]
    if fashion_available():
        return "configs/fashion-disjoint.yaml", [
            *common, "sources.0.max_samples=12000", "trainer.max_epochs=2",
            "method.co_annotation=soft", "method.distribution_matching=true",
            *fashion_overrides(),
        ]
    return "configs/digits-scarce.yaml", [*common, "trainer.max_epochs=3"]


# --------------------------------------------------------------------------- worker


def worker(config_path: str, overrides: list[str], out: Path, run_dir: Path) -> None:
    """One torchrun process: train with a step-timing callback; rank 0 writes ``out``."""
    import lightning.pytorch as pl
    import torch

    from dmtl.build.data import build_experiment
    from dmtl.config import load_config
    from dmtl.training.run import run_training

    torch.set_num_threads(1)

    class StepTimer(pl.Callback):
        def __init__(self) -> None:
            self.marks: list[tuple[int, int, float]] = []

        def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
            self.marks.append((trainer.current_epoch, trainer.global_step, time.perf_counter()))

    timer = StepTimer()
    config = load_config(REPO / config_path, overrides)
    experiment = build_experiment(config)
    start = time.perf_counter()
    result = run_training(experiment, run_dir, overwrite=True, quiet=True, progress_bar=False,
                          callbacks=[timer])
    total = time.perf_counter() - start
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        out.write_text(json.dumps({
            "marks": timer.marks, "metrics": result.metrics, "steps": result.steps,
            "fit_s": result.wall_s, "total_s": total,
            "batch_size": config.trainer.batch_size,
            "world_size": int(os.environ.get("WORLD_SIZE", "1")),
            "torch_threads": torch.get_num_threads(),
        }))


def steady_rate(marks: Sequence[Sequence[float]], batch_size: int, warmup: int) -> dict[str, Any]:
    """Samples/s over the steps after ``warmup`` in each epoch (no interval across epochs)."""
    by_epoch: dict[int, list[float]] = {}
    for epoch, _step, t in marks:
        by_epoch.setdefault(int(epoch), []).append(float(t))
    intervals: list[float] = []
    for times in by_epoch.values():
        kept = times[warmup:]
        intervals += [b - a for a, b in itertools.pairwise(kept)]
    if not intervals:
        return {"steps_timed": 0, "samples_per_s": None, "step_s_median": None}
    intervals.sort()
    mid = intervals[len(intervals) // 2]
    return {
        "steps_timed": len(intervals),
        "samples_per_s": batch_size * len(intervals) / sum(intervals),
        "step_s_median": mid,
        "samples_per_s_median_step": batch_size / mid,
    }


# --------------------------------------------------------------------------- driver


def launch(nproc: int, config_path: str, overrides: list[str], scratch: Path,
           timeout: float) -> dict[str, Any]:
    devices = [f"trainer.devices={nproc}"]
    if nproc > 1:
        devices.append("trainer.strategy=ddp")
    all_overrides = [*overrides, *devices]
    out = scratch / f"ddp{nproc}.json"
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
            "--master-port", str(29500 + nproc + (os.getpid() % 200) * 3),
            "-m", "benchmarks.ddp", "--worker", "--config", config_path,
            "--out", str(out), "--run-dir", str(scratch / f"run{nproc}")]
    for item in all_overrides:
        argv += ["-s", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                       os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0 or not out.is_file():
        tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
        raise RuntimeError(f"torchrun with {nproc} process(es) failed:\n" + "\n".join(tail))
    data = json.loads(out.read_text())
    shown = "torchrun --nproc-per-node {} -m benchmarks.ddp --worker --config {} {}".format(
        nproc, config_path, " ".join(f"-s '{o}'" for o in all_overrides))
    return {"command": f"OMP_NUM_THREADS=1 {shown}", "launcher_wall_s": wall, **data}


def run(results_dir: Path, command: str, quick: bool, repeats: int, warmup: int | None) -> Path:
    config_path, overrides = workload(quick)
    warmup = warmup if warmup is not None else (1 if quick else 5)
    started = now()
    runs: dict[str, list[dict[str, Any]]] = {"1": [], "2": []}
    with tempfile.TemporaryDirectory() as scratch:
        for r in range(repeats):
            order = (1, 2) if r % 2 == 0 else (2, 1)
            for nproc in order:
                data = launch(nproc, config_path, overrides, Path(scratch), timeout=900)
                rate = steady_rate(data.pop("marks"), data["batch_size"], warmup)
                runs[str(nproc)].append({**data, **rate})
                print(f"[ddp] repeat {r + 1}/{repeats}, {nproc} process(es): "
                      f"{rate['samples_per_s'] or float('nan'):.0f} samples/s", flush=True)
    speedups = []
    for one, two in zip(runs["1"], runs["2"], strict=True):
        if one["samples_per_s"] and two["samples_per_s"]:
            speedups.append(two["samples_per_s"] / one["samples_per_s"])
    speedups_sorted = sorted(speedups)
    speedup = speedups_sorted[len(speedups_sorted) // 2] if speedups else None
    document = {
        "started": started,
        "launcher": "torchrun (torch.distributed.run), gloo backend via Lightning DDP",
        "config": config_path,
        "overrides": overrides,
        "warmup_steps_per_epoch": warmup,
        "repeats": repeats,
        "runs": runs,
        "speedups": speedups,
        "speedup": speedup,
        "target": TARGET,
        "hardware": hardware("cpu"),
    }
    return write_result(results_dir, "ddp", document, command, quick)


def main(argv: Sequence[str] | None = None, results_dir: Path | None = None) -> Path | None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks ddp")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=None,
                        help="pairs of (1-process, 2-process) runs (default 3; quick 1)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="steps left out at the start of each epoch (default 5)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("-s", dest="overrides", action="append", default=[],
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.config, args.overrides, args.out, args.run_dir)
        return None
    out = args.results or results_dir or (QUICK_DIR if args.quick else RESULTS_DIR)
    repeats = args.repeats or (1 if args.quick else 3)
    return run(out, command_line("ddp", argv), args.quick, repeats, args.warmup)


if __name__ == "__main__":
    main()
