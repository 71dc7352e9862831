"""User errors become one clear red line and exit status 2, never a deep traceback."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from dmtl.errors import (
    DmtlError,
)
from dmtl.training.quiet import quiet_lightning

__all__ = ["console", "err_console", "handle_errors", "quiet_lightning"]

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
            # The message is text, not markup: "dmtl[vision]" or "digits[train]" must survive.
            err_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]
