"""The worker pool of parallel runs: its events, failures and clean stops.

This module imports nothing heavy: the workers import it to find :func:`work`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dmtl.study.parallel import run_parallel

SRC = Path(__file__).resolve().parents[2] / "src"


def work(item: Any, report: Callable[[Any], None]) -> Any:
    """A work item for the pool: doubles numbers, fails, dies or sleeps on demand."""
    if item == "boom":
        raise ValueError("boom")
    if item == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    if item == "sleep":
        report(os.getpid())
        time.sleep(120)
    report(("half", item))
    return item * 2


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie, ended but not reaped yet, does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_every_item_is_reported_once_with_its_outcome() -> None:
    events = list(run_parallel(work, [1, "boom", 3, "die", 5], 2))
    finals = {i: (kind, data) for kind, i, data in events if kind not in ("started", "progress")}
    assert finals[0] == ("done", 2) and finals[2] == ("done", 6) and finals[4] == ("done", 10)
    assert finals[1][0] == "error" and finals[1][1].startswith("ValueError: boom")
    assert finals[3] == ("died", -signal.SIGKILL)
    assert sorted(i for kind, i, _ in events if kind == "started") == [0, 1, 2, 3, 4]
    for i in (0, 2, 4):  # progress comes between an item's start and its result
        mine = [kind for kind, j, _ in events if j == i]
        assert mine == ["started", "progress", "done"]


def test_stopping_early_terminates_the_workers() -> None:
    events = run_parallel(work, ["sleep", "sleep", 1], 2, grace_s=5.0)
    pids = []
    for kind, _, data in events:
        if kind == "progress":
            pids.append(data)
        if len(pids) == 2:
            break
    events.close()  # what a KeyboardInterrupt in the consumer does, through closing()
    assert not any(_alive(pid) for pid in pids)


def test_ctrl_c_stops_the_parent_and_its_workers(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_parallel import work\n"
        "import signal\n"
        "from contextlib import closing\n"
        "from dmtl.study.parallel import run_parallel\n"
        "if __name__ == '__main__':\n"
        "    # Ctrl-C raises KeyboardInterrupt, as in a terminal, even where this test runs in\n"
        "    # the background (a shell without job control starts it with SIGINT ignored)\n"
        "    signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "    # as the study consumes it: closed wherever Ctrl-C lands, even between events\n"
        "    with closing(run_parallel(work, ['sleep', 'sleep'], 2, grace_s=5.0)) as events:\n"
        "        for kind, i, data in events:\n"
        "            if kind == 'progress':\n"
        "                print(data, flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              env=env, start_new_session=True)
    assert parent.stdout is not None
    pids = [int(parent.stdout.readline()) for _ in range(2)]
    os.killpg(parent.pid, signal.SIGINT)  # what the terminal does: the whole process group
    assert parent.wait(timeout=60) != 0
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in pids)
