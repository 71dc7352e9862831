"""User errors become one clear red line and exit status 2, never a deep traceback."""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from dmtl.errors import DmtlError

__all__ = [
    "console", "err_console", "error_message", "handle_errors", "quiet_lightning", "warn_line",
]

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """:func:`dmtl.training.quiet.quiet_lightning`, imported when entered: a command that
    trains nothing does not load the training package."""
    from dmtl.training.quiet import quiet_lightning as quiet

    with quiet():
        yield


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
            # The message is text, not markup: "dmtl[vision]" or "digits[train]" must survive;
            # soft wrap: the terminal folds a long line, a log keeps it whole.
            err_console.print(
                f"[bold red]error:[/] {escape(error_message(error))}",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


def error_message(error: BaseException) -> str:
    r"""The message of ``error``; for one re-raised from a DataLoader worker, whose message
    holds the worker's traceback, the original message alone.

    >>> error_message(ValueError("Caught DataError in DataLoader worker process 0.\n"
    ...     "Original Traceback (most recent call last):\n  File ...\n"
    ...     "dmtl.errors.DataError: a.png: cannot decode the image\n"))
    'a.png: cannot decode the image'
    """
    text = str(error)
    if "\nOriginal Traceback" not in text:
        return text
    last = [line for line in text.splitlines() if line.strip()][-1]
    kind, _, message = last.partition(": ")
    return message if message and " " not in kind else last


def warn_line(message: str) -> None:
    """Print ``warning: <message>`` on stderr, one line (not markup)."""
    err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


@contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Python warnings raised inside (a source's skipped corrupt images, a model card
    without a crop recipe, ...) printed afterwards as ``warning: <message>`` lines, each
    once, instead of Python's ``file:line: UserWarning:`` format with a source line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        yield
    for message in dict.fromkeys(str(w.message) for w in caught):
        warn_line(message)

