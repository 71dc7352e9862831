"""dmtl.training: the Lightning module, the trainer and one training run.

The names below are imported on first use (Lightning takes seconds to import), so that
light helpers such as :mod:`dmtl.training.quiet` load without it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "MultiTaskModule": "dmtl.training.module",
    "RunResult": "dmtl.training.run",
    "run_training": "dmtl.training.run",
}


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dmtl.training' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from dmtl.training.module import MultiTaskModule
    from dmtl.training.run import RunResult, run_training

__all__ = ["MultiTaskModule", "RunResult", "run_training"]
