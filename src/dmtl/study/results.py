"""The results of a study (``results.json``, schema version 1): a pydantic model and its I/O.

One file per study holds every run: for each seed, each ablation variant
(``single_task`` once per task, then each multi-task variant, in the study's
order), with its status, flat metrics (``<task>/<metric>``, ``None`` = n/a),
how long it trained and where its files are. The schema is documented in
``docs/results-schema.md``; fields added since the first files are optional, so
every schema-1 file still loads.

A resumed study rewrites the same file: :func:`upsert_run` replaces the run
with the same key ``(variant, seed, task)`` so a run is never listed twice,
:func:`completed` says which runs can be skipped, and :func:`save_results`
writes atomically (temporary file + ``os.replace``), so an interrupted save
never leaves a truncated file behind.

>>> r = StudyResults(study="demo", tasks={"digit": TaskInfo(kind="categorical",
...     primary_metric="accuracy", names=["0", "1"])}, variants=["single_task", "mtl"], seeds=[0])
>>> _ = upsert_run(r, RunRecord(variant="mtl", seed=0, status="done",
...     metrics={"digit/accuracy": 0.9}))
>>> completed(r, "mtl", 0), completed(r, "single_task", 0, "digit")
(True, False)
"""

from __future__ import annotations

import json
import math
import os
import platform as _platform
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dmtl._version import __version__
from dmtl.config import ALL_VARIANTS, TaskKind
from dmtl.errors import ResultsError

if TYPE_CHECKING:
    from dmtl.core.tasks import Task

SCHEMA_VERSION = 1
"""Version of the ``results.json`` layout this module reads and writes."""

BASELINE = "single_task"
"""The variant every other variant is compared with (one model per task)."""

VARIANTS: tuple[str, ...] = ALL_VARIANTS
"""The variants a study runs by default (``config.ALL_VARIANTS``); a study's own are
``StudyResults.variants``, which may name others."""

RunStatus = Literal["done", "failed"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class TaskInfo(_Strict):
    """A task as the study saw it: kind, headline metric and class/label names (logit order)."""

    kind: TaskKind
    primary_metric: str
    names: list[str]

    @classmethod
    def from_task(cls, task: Task) -> TaskInfo:
        """From a :class:`~dmtl.core.tasks.Task`: its kind, primary metric and output names."""
        return cls(
            kind=task.kind,  # type: ignore[arg-type]
            primary_metric=task.primary_metric,
            names=list(task.names),
        )


class Hardware(_Strict):
    """Where the study ran (for the report; never used to compute anything)."""

    platform: str = Field(default_factory=_platform.platform)
    python: str | None = Field(default_factory=_platform.python_version)
    cpu_count: int | None = Field(default_factory=os.cpu_count)
    torch: str | None = None
    device: str | None = None


def collect_hardware(device: str | None = None) -> Hardware:
    """The current machine: platform, Python, CPU count, torch version and ``device``."""
    try:
        import torch

        torch_version: str | None = str(torch.__version__)
    except ImportError:  # pragma: no cover - torch is a dependency
        torch_version = None
    return Hardware(torch=torch_version, device=device)


class RunRecord(_Strict):
    """One trained model: variant, seed and, for ``single_task`` runs only, its task.

    ``metrics`` are flat (``digit/accuracy``, ``shape/f1/<label>``) on ``split``;
    ``None`` (or NaN, stored as ``None``) means n/a, e.g. nothing labelled.
    ``run_dir`` is relative to the folder that holds ``results.json``. ``epochs``
    (epochs trained), ``best_step`` (the step of the checkpoint evaluated) and
    ``stopped_early`` are ``None`` where the trainer did not report them. ``groups``
    (with ``study.group_by``): the primary metrics per group on ``split``, the worst group
    and the gap (:meth:`dmtl.study.groups.GroupTable.to_dict`); ``None`` otherwise.
    """

    variant: str
    seed: int
    task: str | None = None
    status: RunStatus
    metrics: dict[str, float | None] = Field(default_factory=dict)
    split: str = "test"
    wall_s: float | None = None
    steps: int | None = None
    epochs: int | None = None
    best_step: int | None = None
    stopped_early: bool | None = None
    run_dir: str | None = None
    error: str | None = None
    groups: dict[str, Any] | None = None
    val_metrics: dict[str, float | None] = Field(default_factory=dict)
    """The same checkpoint's metrics on the validation split (labels as the regime left
    them): what a choice between variants may read (never ``metrics`` on test)."""

    @field_validator("metrics", "val_metrics")
    @classmethod
    def _nan_is_none(cls, metrics: dict[str, float | None]) -> dict[str, float | None]:
        for name in metrics:
            if "/" not in name:
                raise ValueError(f"metric name {name!r} is not of the form '<task>/<metric>'")
        return {k: None if v is None or math.isnan(v) else v for k, v in metrics.items()}

    @model_validator(mode="after")
    def _task_iff_single(self) -> RunRecord:
        if self.variant == BASELINE and self.task is None:
            raise ValueError(f"a {BASELINE!r} run must name its task")
        if self.variant != BASELINE and self.task is not None:
            raise ValueError(f"only {BASELINE!r} runs name a task; got task={self.task!r}")
        return self

    @property
    def key(self) -> tuple[str, int, str | None]:
        """``(variant, seed, task)``: what identifies a run within a study."""
        return (self.variant, self.seed, self.task)

    def label(self) -> str:
        """Short human name, e.g. ``mtl+dm seed 0`` or ``single_task[digit] seed 1``."""
        name = self.variant if self.task is None else f"{self.variant}[{self.task}]"
        return f"{name} seed {self.seed}"


class StudyResults(_Strict):
    """The whole ``results.json`` (see ``docs/results-schema.md``).

    ``regime`` records the label-hiding regime per seed (free-form, keys are
    the seeds as strings). ``commands`` lists every command that produced the
    results (the first, then each resume); ``command`` keeps the first for older
    readers (a file with ``command`` only gets ``commands = [command]``).
    ``config`` (the effective config: the file with the command's overrides, seeds and
    variants, under the study's protocol) and ``protocol`` (how runs were trained and
    validated, e.g. ``{"name": "early_stopping", "budget_epochs": 60, "patience": 5}``)
    are for the report. ``wall_s`` is the study's elapsed wall time, summed over its
    commands; ``warnings`` the lines the study warned of, each once.
    """

    schema_version: Literal[1] = 1
    study: str
    created: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    dmtl_version: str = __version__
    command: str | None = None
    commands: list[str] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)
    recommendation: dict[str, Any] | None = None
    """The variant to use, chosen on validation labels (``study/recommend.py``), with its
    checks and test gains; written with the report."""
    protocol: dict[str, Any] | None = None
    tasks: dict[str, TaskInfo]
    variants: list[str]
    seeds: list[int]
    runs: list[RunRecord] = Field(default_factory=list)
    regime: dict[str, Any] = Field(default_factory=dict)
    hardware: Hardware = Field(default_factory=Hardware)
    wall_s: float | None = None
    warnings: list[str] = Field(default_factory=list)
    affinity: dict[str, Any] | None = None
    """The task affinity measured once per study (``study.affinity``): ``seed``, ``epochs``,
    ``every``, ``steps``, ``wall_s``, ``branches`` and ``rows`` (as ``affinity.csv``)."""

    @field_validator("regime", mode="before")
    @classmethod
    def _seed_keys_as_str(cls, regime: Any) -> Any:
        if isinstance(regime, dict):
            return {str(k): v for k, v in regime.items()}
        return regime

    @model_validator(mode="after")
    def _first_command(self) -> StudyResults:
        if self.command is not None and not self.commands:
            self.commands = [self.command]
        if self.command is None and self.commands:
            self.command = self.commands[0]
        return self

    @model_validator(mode="after")
    def _consistent(self) -> StudyResults:
        for what, values in (("variants", self.variants), ("seeds", self.seeds)):
            if len(set(values)) != len(values):
                raise ValueError(f"duplicated {what}: {values}")
        seen: set[tuple[str, int, str | None]] = set()
        for run in self.runs:
            _check_run(self, run)
            if run.key in seen:
                raise ValueError(f"run {run.label()} is listed twice")
            seen.add(run.key)
        return self

    def primary_metrics(self) -> dict[str, str]:
        """``{task: "<task>/<primary metric>"}``, in task order."""
        return {t: f"{t}/{info.primary_metric}" for t, info in self.tasks.items()}


def record_command(results: StudyResults, command: str | None) -> StudyResults:
    """Append ``command`` to ``results.commands`` (not when it repeats the last one).

    ``results.command`` stays the first command. Mutates and returns ``results``.
    """
    if command and (not results.commands or results.commands[-1] != command):
        results.commands.append(command)
    if results.command is None and results.commands:
        results.command = results.commands[0]
    return results


def record_warning(results: StudyResults, line: str) -> bool:
    """Add ``line`` to ``results.warnings`` unless it is there; whether it was new."""
    if line in results.warnings:
        return False
    results.warnings.append(line)
    return True


def _check_run(results: StudyResults, run: RunRecord) -> None:
    if run.variant not in results.variants:
        raise ResultsError(f"run {run.label()}: variant not among {results.variants}")
    if run.seed not in results.seeds:
        raise ResultsError(f"run {run.label()}: seed not among {results.seeds}")
    if run.task is not None and run.task not in results.tasks:
        raise ResultsError(f"run {run.label()}: task not among {list(results.tasks)}")


def load_results(path: str | Path) -> StudyResults:
    """Read and validate a ``results.json``; :class:`ResultsError` says what is wrong."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ResultsError(f"cannot read results file {path}: {exc}") from exc
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if version != SCHEMA_VERSION:
        raise ResultsError(
            f"{path}: schema_version {version!r} is not supported (expected {SCHEMA_VERSION})"
        )
    try:
        return StudyResults.model_validate(raw)
    except ValidationError as exc:
        raise ResultsError(f"{path}: invalid results file:\n{exc}") from exc


def save_results(results: StudyResults, path: str | Path) -> Path:
    """Validate and write ``results`` to ``path`` atomically (temp file, fsync, ``os.replace``).

    The runner decides whether ``path`` may be overwritten (same study); this
    function only guarantees that readers see either the old or the new file.
    """
    path = Path(path)
    # Re-validate: runs appended without upsert_run must not produce an unloadable file.
    try:
        StudyResults.model_validate(results.model_dump())
    except ValidationError as exc:
        raise ResultsError(f"refusing to save inconsistent results:\n{exc}") from exc
    text = results.model_dump_json(indent=2) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def find_run(
    results: StudyResults, variant: str, seed: int, task: str | None = None
) -> RunRecord | None:
    """The run with key ``(variant, seed, task)``, or ``None``."""
    for run in results.runs:
        if run.key == (variant, seed, task):
            return run
    return None


def upsert_run(results: StudyResults, run: RunRecord) -> StudyResults:
    """Insert ``run``, or replace (in place, same position) the run with the same key.

    Idempotent: upserting the same run twice leaves one copy. Mutates and
    returns ``results``. Raises :class:`ResultsError` for an unknown variant,
    seed or task (extend ``results.variants``/``seeds`` first).
    """
    _check_run(results, run)
    for i, old in enumerate(results.runs):
        if old.key == run.key:
            results.runs[i] = run
            return results
    results.runs.append(run)
    return results


def completed(results: StudyResults, variant: str, seed: int, task: str | None = None) -> bool:
    """Whether the run ``(variant, seed, task)`` finished (``status == "done"``).

    Failed runs are not completed, so a resumed study retries them.
    """
    run = find_run(results, variant, seed, task)
    return run is not None and run.status == "done"


def expected_runs(results: StudyResults) -> list[tuple[str, int, str | None]]:
    """Every planned run key: per seed, ``single_task`` once per task, other variants once."""
    keys: list[tuple[str, int, str | None]] = []
    for seed in results.seeds:
        for variant in results.variants:
            if variant == BASELINE:
                keys += [(variant, seed, t) for t in results.tasks]
            else:
                keys.append((variant, seed, None))
    return keys


def missing_runs(results: StudyResults) -> list[tuple[str, int, str | None]]:
    """Planned run keys with no record at all (neither done nor failed)."""
    have = {run.key for run in results.runs}
    return [k for k in expected_runs(results) if k not in have]


__all__ = [
    "BASELINE",
    "SCHEMA_VERSION",
    "VARIANTS",
    "Hardware",
    "ResultsError",
    "RunRecord",
    "RunStatus",
    "StudyResults",
    "TaskInfo",
    "collect_hardware",
    "completed",
    "expected_runs",
    "find_run",
    "load_results",
    "missing_runs",
    "record_command",
    "record_warning",
    "save_results",
    "upsert_run",
]
