"""dmtl's errors: one base, :class:`DmtlError`, and a few kinds of it.

Every error dmtl raises for bad input or a refused operation is a
:class:`DmtlError` whose message is one line naming the file, field, row or
option at fault and what was expected. The command line prints it as
``error: <message>`` and exits with status 2; anything else is a bug and keeps
its traceback.

=========================  ===========================================================
kind                       raised for
=========================  ===========================================================
:class:`ConfigError`       a config file, an override, a command-line option
:class:`DataError`         manifests, images, arrays, dataset folders, regimes
:class:`SpecError`         tasks, labels, relatedness tables, backbones, method settings
:class:`OutputError`       an output that exists, or a resume that cannot be honoured
:class:`RunError`          training that cannot start or go on (trainer, checkpoint, NaN)
:class:`ResultsError`      a study's ``results.json``
=========================  ===========================================================

The kinds that describe a bad value also derive from :class:`ValueError`, so
code that catches ``ValueError`` keeps working.

>>> issubclass(DataError, DmtlError) and issubclass(DataError, ValueError)
True
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


class DmtlError(Exception):
    """Bad input or a refused operation: the message alone tells the user what to fix."""


class ConfigError(DmtlError, ValueError):
    """An invalid config, override or option; ``problems`` lists ``(dotted path, message)``.

    >>> print(ConfigError([("trainer.max_epochs", "must be >= 1")], "run.yaml"))
    run.yaml: trainer.max_epochs: must be >= 1
    """

    def __init__(self, problems: Sequence[tuple[str, str]] | str, file: str | Path | None = None):
        if isinstance(problems, str):
            problems = [("", problems)]
        self.problems = list(problems)
        self.file = str(file) if file is not None else None
        where = f"{self.file}: " if self.file else ""
        if len(self.problems) == 1:
            path, message = self.problems[0]
            text = f"{where}{path + ': ' if path else ''}{message}"
        else:
            lines = [f"{len(self.problems)} problems{' in ' + self.file if self.file else ''}:"]
            lines += [f"  {path or '<root>'}: {message}" for path, message in self.problems]
            text = "\n".join(lines)
        super().__init__(text)


class DataError(DmtlError, ValueError):
    """Bad data: a manifest, an image or array, a dataset folder, a label regime."""


class DatasetLayoutError(DataError):
    """A dataset folder does not match its official layout.

    The message names the file, the line (1-based, counting every line of the
    file) and the offending value where they are known.
    """

    _UNSET: Any = object()

    def __init__(
        self,
        path: Path | str | None,
        message: str,
        line: int | None = None,
        value: Any = _UNSET,
    ) -> None:
        if type(value).__module__ == "numpy" and hasattr(value, "item"):
            value = value.item()  # numpy scalars print as plain numbers
        self.path = None if path is None else Path(path)
        self.line = line
        self.value = None if value is self._UNSET else value
        where = [str(path)] if path is not None else []
        if line is not None:
            where.append(f"line {line}")
        text = message if value is self._UNSET else f"{message}: {value!r}"
        super().__init__(f"{', '.join(where)}: {text}" if where else text)


class SpecError(DmtlError, ValueError):
    """Tasks, labels, relatedness tables, backbones or method settings that do not fit."""


class OutputError(DmtlError):
    """An output would be lost or overwritten unasked, or a resume cannot be honoured."""


class RunError(DmtlError, RuntimeError):
    """Training cannot start or go on: trainer set-up, an unreadable checkpoint, a NaN."""


class NonFiniteLossError(RunError):
    """A loss term became NaN or infinite; names the term, the step and the batch's sources."""


class ResultsError(DmtlError, ValueError):
    """A study's results file is unreadable or inconsistent."""


class MissingDependencyError(DmtlError, ImportError):
    """An optional dependency is not installed; the message says how to get it."""


__all__ = [
    "ConfigError",
    "DataError",
    "DatasetLayoutError",
    "DmtlError",
    "MissingDependencyError",
    "NonFiniteLossError",
    "OutputError",
    "ResultsError",
    "RunError",
    "SpecError",
]
