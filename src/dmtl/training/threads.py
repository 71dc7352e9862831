"""torch's thread count from ``trainer.num_threads``: a number, ``auto`` or left alone.

``auto`` counts the cores this process may run on (``os.sched_getaffinity``: a container's
CPU set, ``taskset``, SLURM's allocation), not the machine's, and shares them among the
training processes started on the machine (DDP ranks, or the parallel runs of
``dmtl study --jobs``): with more threads than cores, torch's workers spin while waiting
for a core another process holds, and a step can take ten times longer.

>>> usable_cores() >= 1
True
>>> resolve_threads(3, processes=2)
3
>>> resolve_threads("auto", processes=10**6)
1
"""

from __future__ import annotations

import os
from typing import Literal

import torch

from dmtl.errors import ConfigError


def usable_cores() -> int:
    """Cores this process may run on (``sched_getaffinity``), else ``os.cpu_count()``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def resolve_threads(setting: int | Literal["auto"] | None, processes: int = 1) -> int | None:
    """The thread count ``setting`` asks for; ``auto``: ``usable_cores() // processes``, at
    least 1; None stays None (torch's own choice)."""
    if setting is None or isinstance(setting, int):
        if isinstance(setting, int) and setting < 1:
            raise ConfigError([("trainer.num_threads", f"must be >= 1, got {setting}")])
        return setting
    if setting != "auto":
        raise ConfigError([("trainer.num_threads", f"a number or 'auto', got {setting!r}")])
    return max(1, usable_cores() // max(1, processes))


def set_threads(setting: int | Literal["auto"] | None, processes: int = 1) -> int:
    """Apply :func:`resolve_threads` to torch; return the thread count in force."""
    threads = resolve_threads(setting, processes)
    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return torch.get_num_threads()


__all__ = ["resolve_threads", "set_threads", "usable_cores"]
