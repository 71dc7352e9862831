"""Work items in parallel worker processes, with progress, failures and Ctrl-C handled.

:func:`run_parallel` runs ``fn(item, report)`` for every item in at most ``jobs`` worker
processes and yields what happens, in the order it happens:

- ``("started", i, None)``: item ``i`` was handed to a worker;
- ``("progress", i, data)``: the worker called ``report(data)`` while working on it;
- ``("done", i, result)``: ``fn`` returned ``result`` (it must pickle);
- ``("error", i, text)``: ``fn`` raised; ``text`` is ``"Type: message"`` plus the traceback;
- ``("died", i, exit_code)``: the worker process ended while working on it (killed, out
  of memory, a crash); another worker takes the remaining items.

Each worker is handed one item at a time, so the parent always knows what each worker
holds. Workers start from a fork server that has imported ``preload`` once (torch and
Lightning take seconds to import), ignore Ctrl-C (the terminal sends it to the whole
process group; the parent decides), and exit when the parent process is gone. When the
consumer stops iterating (Ctrl-C raises ``KeyboardInterrupt`` in the parent, an error,
``break``), the workers still alive are terminated (SIGTERM, then SIGKILL after
``grace_s``).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any, Literal

STUDY_PRELOAD = ("dmtl.study.study", "dmtl.training.run")
"""What the fork server of ``dmtl study --jobs`` imports once for all its workers (torch,
Lightning): named here, in a light module, so that the command line can start it first."""

EventKind = Literal["started", "progress", "done", "error", "died"]
Event = tuple[EventKind, int, Any]
Report = Callable[[Any], None]


def run_parallel(
    fn: Callable[[Any, Report], Any],
    items: Sequence[Any],
    jobs: int,
    *,
    preload: Sequence[str] = (),
    grace_s: float = 10.0,
) -> Generator[Event, None, None]:
    """Run ``fn(item, report)`` for each item in up to ``jobs`` processes; yield the events.

    ``fn`` must be a module-level function (workers import it by name); items and results
    must pickle. ``preload``: modules the fork server imports once for every worker.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    context = _context(preload)
    queue = deque(enumerate(items))
    workers: list[_Worker] = []
    try:
        for _ in range(min(jobs, len(queue))):
            worker = _Worker.start(context, fn)
            workers.append(worker)
            yield from _hand_next(worker, queue)
        while workers:
            ready = set(wait([w.conn for w in workers] + [w.process.sentinel for w in workers]))
            for worker in list(workers):
                if worker.conn in ready:
                    yield from _receive(worker, queue)
                if worker.process.sentinel in ready or worker.closed:
                    yield from _reap(worker, workers, queue, context, fn)
    finally:
        _stop(workers, grace_s)


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    held: int | None = None
    closed: bool = False

    @classmethod
    def start(cls, context: BaseContext, fn: Callable[[Any, Report], Any]) -> _Worker:
        parent_end, child_end = context.Pipe()
        process = context.Process(  # type: ignore[attr-defined]
            target=_worker_main, args=(fn, child_end, os.getpid()), daemon=False
        )
        process.start()
        child_end.close()
        return cls(process, parent_end)


def warm_up(preload: Sequence[str]) -> None:
    """Start the fork server now, importing ``preload`` once, while this process does other
    work; the workers of a later :func:`run_parallel` then start at once."""
    context = _context(preload)
    if context.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def _context(preload: Sequence[str]) -> BaseContext:
    """A fork server (imports ``preload`` once) where there is one, else spawn."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        if preload:
            context.set_forkserver_preload(list(preload))
        return context
    return multiprocessing.get_context("spawn")


def _hand_next(worker: _Worker, queue: deque[tuple[int, Any]]) -> Generator[Event, None, None]:
    """Give the worker the next item (or tell it to exit when none is left)."""
    if not queue:
        _send(worker, None)
        return
    index, item = queue.popleft()
    worker.held = index
    if _send(worker, (index, item)):
        yield ("started", index, None)


def _send(worker: _Worker, message: Any) -> bool:
    try:
        worker.conn.send(message)
    except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
        worker.closed = True  # it died; _reap reports what it held
        return False
    return True


def _receive(worker: _Worker, queue: deque[tuple[int, Any]]) -> Generator[Event, None, None]:
    """Every message the worker has sent; hand it a new item after a result."""
    while not worker.closed and worker.conn.poll():
        try:
            kind, index, data = worker.conn.recv()
        except (EOFError, OSError):
            worker.closed = True
            return
        yield (kind, index, data)
        if kind in ("done", "error"):
            worker.held = None
            yield from _hand_next(worker, queue)


def _reap(
    worker: _Worker,
    workers: list[_Worker],
    queue: deque[tuple[int, Any]],
    context: BaseContext,
    fn: Callable[[Any, Report], Any],
) -> Generator[Event, None, None]:
    """A worker that ended: report what it held; replace it while items are left."""
    if worker.process.is_alive() and not worker.closed:
        return
    yield from _receive(worker, queue)  # what it sent before it ended
    worker.process.join(timeout=1.0)
    if worker.process.is_alive():  # its pipe broke but it runs on: it cannot be reached
        worker.process.kill()
        worker.process.join(timeout=5.0)
    workers.remove(worker)
    worker.conn.close()
    if worker.held is not None:
        yield ("died", worker.held, worker.process.exitcode)
        worker.held = None
    if queue:
        replacement = _Worker.start(context, fn)
        workers.append(replacement)
        yield from _hand_next(replacement, queue)


def _stop(workers: list[_Worker], grace_s: float) -> None:
    """Terminate the workers still running (SIGTERM, then SIGKILL after ``grace_s``)."""
    for worker in workers:
        _send(worker, None)
        if worker.process.is_alive() and worker.held is not None:
            worker.process.terminate()
    deadline = time.monotonic() + grace_s
    for worker in workers:
        worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(timeout=5.0)
        worker.conn.close()


# ------------------------------------------------------------------------------- worker side


def _worker_main(fn: Callable[[Any, Report], Any], conn: Connection, parent: int) -> None:
    """A worker's loop: take an item, run it, send the result; exit on None or EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        index, item = message

        def report(data: Any, index: int = index) -> None:
            conn.send(("progress", index, data))

        try:
            reply: Event = ("done", index, fn(item, report))
        except Exception as error:  # the parent records it; the worker takes the next item
            reply = ("error", index, f"{type(error).__name__}: {error}\n{traceback.format_exc()}")
        try:
            conn.send(reply)
        except Exception as error:  # e.g. a result that does not pickle
            conn.send(("error", index, f"{type(error).__name__}: {error}"))


def _exit_with_parent(parent: int, every_s: float = 1.0) -> None:
    """End this worker when the parent process is gone (killed without cleaning up)."""
    while True:
        time.sleep(every_s)
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:  # pragma: no cover - the pid was reused by another user
            os._exit(1)


__all__ = ["STUDY_PRELOAD", "Event", "EventKind", "Report", "run_parallel", "warm_up"]
