"""dmtl.training: the Lightning module, the trainer and one training run.

The names below are imported on first use (Lightning takes seconds to import), so that
light helpers such as :mod:`dmtl.training.quiet` load without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dmtl._lazy import lazy_exports

_EXPORTS = {
    "MultiTaskModule": "dmtl.training.module",
    "RunResult": "dmtl.training.run",
    "run_training": "dmtl.training.run",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from dmtl.training.module import MultiTaskModule
    from dmtl.training.run import RunResult, run_training

__all__ = ["MultiTaskModule", "RunResult", "run_training"]
