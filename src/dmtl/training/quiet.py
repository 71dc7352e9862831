"""Lightning without its chatter: its info lines and known harmless warnings silenced.

Used around every command that trains or evaluates, and in the worker processes of a
parallel study (their output would break the parent's progress display). Nothing here
imports torch or Lightning.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning")

HARMLESS_WARNINGS = (
    ".*does not have many workers.*",
    ".*You defined a `validation_step` but have no `val_dataloader`.*",
    ".*LeafSpec.*",
    ".*isinstance\\(treespec, LeafSpec\\).*",
    ".*The number of training batches.*",
    ".*Checkpoint directory.*exists and is not empty.*",
    ".*`training_step` returned `None`.*",
    # Task metrics are torchmetrics objects, already synchronised across ranks.
    ".*when logging on epoch level in distributed setting.*",
)
"""Warnings Lightning gives about choices dmtl makes on purpose."""


def silence_lightning() -> None:
    """For the rest of this process: Lightning logs warnings only; harmless warnings hidden."""
    for name in LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """:func:`silence_lightning` inside the block only (the run is still logged to files)."""
    levels = {name: logging.getLogger(name).level for name in LIGHTNING_LOGGERS}
    with warnings.catch_warnings():
        silence_lightning()
        try:
            yield
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)


__all__ = ["HARMLESS_WARNINGS", "quiet_lightning", "silence_lightning"]
