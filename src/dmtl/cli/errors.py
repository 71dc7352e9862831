"""User errors become one clear red line and exit status 2, never a deep traceback."""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from dmtl.errors import (
    DmtlError,
)

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(function: F) -> F:
    """Run a command; turn a :class:`~dmtl.errors.DmtlError` into ``error: <message>``, exit 2."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except DmtlError as error:
            if os.environ.get("DMTL_DEBUG"):
                raise
            if getattr(error, "relayed_to_rank_zero", False):  # DDP: rank 0 prints it once
                raise typer.Exit(code=2) from None
            # The message is text, not markup: "dmtl[vision]" or "digits[train]" must survive.
            err_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's info lines and known harmless warnings (the run is still logged)."""
    names = ("lightning.pytorch", "lightning.fabric", "lightning")
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.WARNING)
    with warnings.catch_warnings():
        for pattern in (
            ".*does not have many workers.*",
            ".*You defined a `validation_step` but have no `val_dataloader`.*",
            ".*LeafSpec.*",
            ".*isinstance\\(treespec, LeafSpec\\).*",
            ".*The number of training batches.*",
            ".*Checkpoint directory.*exists and is not empty.*",
            ".*`training_step` returned `None`.*",
            # Task metrics are torchmetrics objects, already synchronised across ranks.
            ".*when logging on epoch level in distributed setting.*",
        ):
            warnings.filterwarnings("ignore", message=pattern)
        try:
            yield
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
