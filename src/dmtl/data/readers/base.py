"""The readers' common frame: result type, registry, options, locating files.

A *reader* turns one dataset's official folder layout into a dmtl manifest
(see ``docs/manifest.md``): a :class:`pandas.DataFrame` with ``id``, ``image``
(relative to the dataset root), optionally ``split``, one column per
categorical task (class names as strings, missing = NaN) and one
``task/name`` column per binary label or regression target (``float32``;
binary 0/1, regression the value; missing = NaN). Annotation files are parsed
by :mod:`dmtl.data.readers.tables`; manifests are assembled by
:mod:`dmtl.data.readers.columns`.

Readers never open or stat image files; the data layer does that. They do
build the exact relative image paths of the official layout.

>>> sorted(READERS) == sorted(set(READERS))
True
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from dmtl.core.relatedness import Relatedness
from dmtl.core.tasks import Task
from dmtl.data.crops import CropRecipe
from dmtl.errors import DataError, DatasetLayoutError


@dataclass
class ReaderResult:
    """What a reader returns: the manifest, its tasks and an account of what was dropped."""

    manifest: pd.DataFrame
    tasks: list[Task]
    root: Path
    dropped: dict[str, int] = field(default_factory=dict)
    """Counts of labels or rows left out, by reason (see ``docs/datasets.md``)."""
    notes: list[str] = field(default_factory=list)
    """Human-readable remarks: layout variants detected, quirks handled."""
    knowledge: list[Relatedness] = field(default_factory=list)
    """Domain-knowledge relatedness tables shipped with the dataset (e.g. CUB)."""

    def task(self, name: str) -> Task:
        """The task called ``name``."""
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(f"no task {name!r}; tasks: {', '.join(t.name for t in self.tasks)}")

    def summary(self) -> str:
        """One line per fact: rows, tasks, drops and notes."""
        lines = [f"{len(self.manifest)} samples from {self.root}"]
        if "split" in self.manifest.columns:
            counts = self.manifest["split"].value_counts(dropna=False)
            lines.append("splits: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
        for task in self.tasks:
            lines.append(f"task {task.name} ({task.kind}, {task.num_outputs} outputs)")
        for reason, count in self.dropped.items():
            lines.append(f"dropped {reason}: {count}")
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)


Reader = Callable[..., ReaderResult]
"""A reader: ``reader(root: Path, **options) -> ReaderResult``."""

READERS: dict[str, Reader] = {}
"""Registered readers by name."""

CropRule = CropRecipe | Callable[[dict[str, Any]], CropRecipe | None]
"""A reader's face crop recipe: fixed, or a function of the reader's options (with their
defaults filled in), e.g. RAF-DB's aligned or original images."""

CROP_RECIPES: dict[str, CropRule] = {}
"""The face crop recipe of each reader of a face dataset, by reader name."""

R = TypeVar("R", bound=Reader)


def register_reader(name: str, crop: CropRule | None = None) -> Callable[[R], R]:
    """Register ``reader`` under ``name`` (decorator); ``crop``: how the dataset's face
    images were cut from photos (:mod:`dmtl.data.crops`), for a face dataset."""

    def decorate(reader: R) -> R:
        if name in READERS and READERS[name] is not reader:
            raise DataError(f"a reader named {name!r} is already registered")
        READERS[name] = reader
        if crop is not None:
            CROP_RECIPES[name] = crop
        return reader

    return decorate


def reader_crop_recipe(name: str, options: dict[str, Any] | None = None) -> CropRecipe | None:
    """The face crop recipe of the images reader ``name`` gives with ``options``; ``None``
    for a reader of something other than face crops."""
    get_reader(name)
    rule = CROP_RECIPES.get(name)
    if rule is None or isinstance(rule, CropRecipe):
        return rule
    return rule(reader_options(name) | dict(options or {}))


def get_reader(name: str) -> Reader:
    """The reader registered as ``name``; the error lists the known ones."""
    try:
        return READERS[name]
    except KeyError:
        known = ", ".join(sorted(READERS)) or "(none)"
        raise DataError(f"unknown dataset reader {name!r}; known readers: {known}") from None


def reader_options(name: str) -> dict[str, Any]:
    """Options of a reader with their defaults."""
    signature = inspect.signature(get_reader(name))
    return {
        p.name: p.default
        for p in list(signature.parameters.values())[1:]
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def read_dataset(name: str, root: str | Path, **options: Any) -> ReaderResult:
    """Read dataset ``name`` from its folder ``root`` with reader ``options``."""
    reader = get_reader(name)
    known = reader_options(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise DataError(
            f"reader {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"options: {', '.join(known) or '(none)'}"
        )
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(root, f"dataset root folder for {name!r} not found")
    return reader(root, **options)


# ---- locating files ----------------------------------------------------------------------------


def find_file(root: Path, candidates: Sequence[str], what: str) -> Path:
    """First of ``root/candidate`` that is a file; otherwise an error naming the expected path."""
    for candidate in candidates:
        path = root / candidate
        if path.is_file():
            return path
    also = "" if len(candidates) < 2 else f" (also looked for {', '.join(candidates[1:])})"
    raise DatasetLayoutError(root / candidates[0], f"{what} not found{also}")


def find_dir(root: Path, candidates: Sequence[str], what: str) -> Path:
    """First of ``root/candidate`` that is a folder; otherwise an error naming the expected path."""
    for candidate in candidates:
        path = root / candidate
        if path.is_dir():
            return path
    also = "" if len(candidates) < 2 else f" (also looked for {', '.join(candidates[1:])})"
    raise DatasetLayoutError(root / candidates[0], f"{what} not found{also}")


def head_lines(path: Path, count: int) -> list[str]:
    """The first ``count`` lines of a file (without line ends); error if it has fewer."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        lines = [line.rstrip("\r\n") for line in islice(handle, count)]
    if len(lines) < count:
        raise DatasetLayoutError(
            path, f"file has {len(lines)} line(s); expected at least {count}", line=len(lines) + 1
        )
    return lines


def parse_count_line(path: Path, text: str, line: int = 1) -> int:
    """The number on a count line (CelebA, DeepFashion); error otherwise."""
    try:
        return int(text.strip())
    except ValueError:
        raise DatasetLayoutError(
            path, "expected a count line (number of rows)", line=line, value=text
        ) from None


def check_choice(option: str, value: Any, choices: Collection[Any]) -> None:
    """Reject an option value outside ``choices``."""
    if value not in choices:
        raise DataError(
            f"option {option}={value!r} is not one of {', '.join(map(repr, choices))}"
        )




__all__ = [
    "CROP_RECIPES",
    "READERS",
    "Reader",
    "ReaderResult",
    "check_choice",
    "find_dir",
    "find_file",
    "get_reader",
    "head_lines",
    "parse_count_line",
    "read_dataset",
    "reader_crop_recipe",
    "reader_options",
    "register_reader",
]
