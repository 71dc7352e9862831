"""``dmtl train --resume`` and Ctrl-C, end to end.

The refusals run in-process (typer's CliRunner). Ctrl-C needs a real process: the run's
backbone (``dmtl_test_faults:block``, ``tests/helpers``) writes a marker file and sleeps
inside a training step, so the test sends SIGINT while a step is certainly in progress,
however busy the machine is; every wait is bounded generously and polls, so a slow
machine only makes the test slower.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import Result

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
PATIENCE_S = 300.0
"""The longest any wait on a child process may take before the test fails (never reached
unless something hangs: the waits poll)."""

Invoke = Callable[..., Result]
WriteConfig = Callable[..., Path]


def one_line(text: str) -> str:
    return " ".join(text.split())


def _state(run: Path) -> dict[str, torch.Tensor]:
    path = run / "checkpoints" / "last.ckpt"
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]  # type: ignore[no-any-return]


# ---- refusals ------------------------------------------------------------------------------------


def test_resume_needs_an_existing_run_and_not_overwrite(
    cli: Invoke, tiny_config_file: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "missing"
    result = cli("train", tiny_config_file, "-o", missing, "--resume", code=2)
    assert one_line(result.output) == (
        f"error: cannot resume {missing}: no such folder (start the run without --resume)"
    )
    assert not missing.exists()
    result = cli("train", tiny_config_file, "-o", missing, "--resume", "--overwrite", code=2)
    assert one_line(result.output).startswith(
        "error: --resume and --overwrite cannot be combined"
    )
    result = cli("train", tiny_config_file, "-o", missing, "--allow-config-change", code=2)
    assert "--allow-config-change: only applies with --resume" in one_line(result.output)


def test_resume_refuses_a_changed_config_unless_allowed(
    cli: Invoke, tiny_config_file: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    cli("train", tiny_config_file, "-o", run)
    # a finished run: nothing to do, and it says so
    again = cli("train", tiny_config_file, "-o", run, "--resume")
    assert f"{run} holds a finished run: nothing to resume." in one_line(again.output)
    assert json.loads((run / "metrics.json").read_text())["steps"] == 5
    # -s optim.lr=... is a change: refused, listed, nothing touched
    stamp = (run / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    refused = cli("train", tiny_config_file, "-o", run, "--resume", "-s", "optim.lr=0.001",
                  "-s", "trainer.max_epochs=2", code=2)
    text = one_line(refused.output)
    assert text.startswith(f"error: cannot resume {run}: the config differs from the run's "
                           "(optim.lr: 0.01 -> 0.001; trainer.max_epochs: 1 -> 2)")
    assert "--allow-config-change" in text
    assert (run / "checkpoints" / "last.ckpt").stat().st_mtime_ns == stamp
    # allowed: one more epoch, the change recorded
    cli("train", tiny_config_file, "-o", run, "--resume", "-s", "optim.lr=0.001",
        "-s", "trainer.max_epochs=2", "--allow-config-change")
    assert json.loads((run / "metrics.json").read_text())["steps"] == 10
    changes = json.loads((run / "config_changes.json").read_text())
    assert [c["path"] for c in changes[0]["changes"]] == ["optim.lr", "trainer.max_epochs"]


def test_resume_with_another_architecture_is_one_line(
    cli: Invoke, tiny_config_file: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    cli("train", tiny_config_file, "-o", run)
    (run / "metrics.json").unlink()
    result = cli("train", tiny_config_file, "-o", run, "--resume", "--allow-config-change",
                 "-s", "backbone.options.hidden=[16]", code=2)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot resume from {run}")
    assert "the architecture (backbone, heads, tasks) cannot change on resume" in lines[0]


# ---- Ctrl-C in a real process --------------------------------------------------------------------


def _env(marker: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="200", OMP_NUM_THREADS="1",
               DMTL_TEST_MARKER=str(marker))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HELPERS), env.get("PYTHONPATH")) if p)
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "SLURM_PROCID"):
        env.pop(key, None)
    return env


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the process ended before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {PATIENCE_S:.0f} s")
        time.sleep(0.05)


def _blocking_config(write_config: WriteConfig, tiny_data: Callable[..., dict[str, Any]],
                     at: int, seconds: float) -> Path:
    data = tiny_data(
        trainer={"max_epochs": 2, "steps_per_epoch": 5, "deterministic": True},
        backbone={"name": "dmtl_test_faults:block", "dropout": 0.2,
                  "options": {"hidden": [32], "at": at, "seconds": seconds}},
    )
    return write_config(data)


def _start(config: Path, run: Path, marker: Path, log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dmtl", "train", str(config), "-o", str(run)],
        stdout=log.open("w"), stderr=subprocess.STDOUT, text=True, env=_env(marker),
        cwd=config.parent,
    )


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT to a child process")
def test_ctrl_c_saves_at_the_steps_end_exits_and_resume_is_exact(
    cli: Invoke, write_config: WriteConfig, tiny_data: Callable[..., dict[str, Any]],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _blocking_config(write_config, tiny_data, at=6, seconds=2.0)
    run, marker, log = tmp_path / "interrupted", tmp_path / "marker", tmp_path / "log.txt"
    process = _start(config, run, marker, log)
    try:
        _wait_for(marker.exists, process, "blocking step")  # inside step 6 (epoch 1)
        process.send_signal(signal.SIGINT)
        sent = time.monotonic()
        process.wait(timeout=PATIENCE_S)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log.read_text()
    assert process.returncode == 130, output
    # the step ends (its sleep is 2 s), then it saves and exits: seconds, not minutes
    assert took < 60, f"{took:.0f} s from Ctrl-C to exit"
    assert "Traceback" not in output
    checkpoint = run / "checkpoints" / "interrupted.ckpt"
    assert (f"Interrupted at step 7 (epoch 1); checkpoint saved to {checkpoint}. "
            "Resume with --resume.") in one_line(output)
    assert "Ctrl-C: stopping after this step and saving a checkpoint" in output
    assert not (run / "metrics.json").exists()
    # resume in this process with the same config; the result is the uninterrupted run's
    monkeypatch.setenv("DMTL_TEST_MARKER", str(marker))
    monkeypatch.syspath_prepend(str(HELPERS))
    resumed = cli("train", config, "-o", run, "--resume")
    assert "10 steps in" in one_line(resumed.output)
    cli("train", config, "-o", tmp_path / "straight")
    straight, again = _state(tmp_path / "straight"), _state(run)
    assert all(torch.equal(straight[k], again[k]) for k in straight)


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT to a child process")
def test_a_second_ctrl_c_quits_at_once_without_saving(
    write_config: WriteConfig, tiny_data: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    config = _blocking_config(write_config, tiny_data, at=2, seconds=600.0)  # a step that hangs
    run, marker, log = tmp_path / "run", tmp_path / "marker", tmp_path / "log.txt"
    process = _start(config, run, marker, log)
    try:
        _wait_for(marker.exists, process, "blocking step")
        process.send_signal(signal.SIGINT)
        _wait_for(lambda: "Ctrl-C: stopping after this step" in log.read_text(), process,
                  "answer to the first Ctrl-C")
        time.sleep(1.5)  # a second press, not the first one forwarded by a launcher
        process.send_signal(signal.SIGINT)
        sent = time.monotonic()
        process.wait(timeout=PATIENCE_S)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log.read_text()
    assert process.returncode == 130, output
    assert took < 30, f"{took:.0f} s from the second Ctrl-C to exit"
    assert "Ctrl-C again: quitting now, without saving" in output
    assert "Traceback" not in output
    assert not (run / "checkpoints" / "interrupted.ckpt").exists()
    assert not any(re.search(r"\.tmp$", p.name) for p in run.rglob("*"))
