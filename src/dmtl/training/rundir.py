"""A run's (or study's) output folder: whether it may be used, and preparing it.

Plain file-system checks, importing neither torch nor Lightning, so that the command
line refuses an output folder at once, before it loads anything heavy
(:func:`check_run_dir`); :func:`prepare_run_dir` then deletes (``--overwrite``) or
creates it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from dmtl.errors import OutputError

CHANGES_FILE = "config_changes.json"
"""Where the changes a resume was allowed to make are recorded, in the run folder."""

OUTPUT_NAMES = frozenset(
    {"config.yaml", "checkpoints", "logs", "metrics.json", "regime.json", "relatedness",
     "results.json", "report.md", "runs", "lightning_logs", "wandb", CHANGES_FILE,
     "training_curves.csv", "affinity.csv"}
)
"""What dmtl writes in a run or study folder (plus ``*.png`` plots and hidden temp files)."""


def launch_rank() -> int:
    """This process's global rank as its launcher set it (torchrun, SLURM, Lightning), else 0.

    Known before any process group exists: the variables Lightning itself reads
    (``RANK``, ``LOCAL_RANK``, ``SLURM_PROCID``, ``JSM_NAMESPACE_RANK``), first one set.
    """
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        value = os.environ.get(key)
        if value is not None and value.strip().isdigit():
            return int(value)
    return 0


def _foreign_entries(run_dir: Path) -> list[str]:
    """Entries of ``run_dir`` that dmtl did not write."""
    return sorted(
        p.name for p in run_dir.iterdir()
        if p.name not in OUTPUT_NAMES and p.suffix != ".png" and not p.name.startswith(".")
    )


def refuse_resume_with_overwrite(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """:class:`~dmtl.errors.OutputError` if both are asked for (they contradict each other)."""
    if resume and overwrite:
        raise OutputError(
            "--resume and --overwrite cannot be combined: --resume continues the run in "
            f"{run_dir}, --overwrite deletes it; choose one"
        )


def _check_deletable(run_dir: Path) -> None:
    """Refuse ``--overwrite`` of the current folder (or one above it), or of a folder
    holding files that dmtl did not write."""
    resolved, here = run_dir.resolve(), Path.cwd().resolve()
    if resolved == here or resolved in here.parents:
        raise OutputError(
            f"output folder {run_dir} is the current folder or above it; "
            "refusing to delete it (choose another output.dir)"
        )
    foreign = _foreign_entries(run_dir)
    if foreign:
        raise OutputError(
            f"output folder {run_dir} holds files dmtl did not write "
            f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}); "
            "refusing to delete it with --overwrite (choose another output.dir)"
        )


def check_run_dir(run_dir: Path, resume: bool = False, overwrite: bool = False) -> bool:
    """Refuse what :func:`prepare_run_dir` would refuse, changing nothing on disk.

    Returns whether the folder holds outputs that ``overwrite`` is to delete.
    """
    run_dir = Path(run_dir)
    refuse_resume_with_overwrite(run_dir, resume, overwrite)
    if resume and not run_dir.is_dir():
        raise OutputError(
            f"cannot resume {run_dir}: no such folder (start the run without --resume)"
        )
    if not (run_dir.is_dir() and any(run_dir.iterdir())):
        return False
    if overwrite:
        _check_deletable(run_dir)
        return True
    if not resume:
        raise OutputError(
            f"output folder {run_dir} already exists and is not empty; pass --resume to "
            "continue it or --overwrite to replace it (its results will be deleted)"
        )
    return False


def prepare_run_dir(run_dir: Path, resume: bool = False, overwrite: bool = False) -> Path:
    """Refuse to reuse a non-empty output folder unless ``resume`` or ``overwrite`` is given.

    ``resume`` needs the folder to exist (see :func:`~dmtl.training.resume.check_resume`
    for the rest of what it needs) and cannot be combined with ``overwrite``.
    ``overwrite`` deletes only a folder that holds dmtl's outputs and nothing else, and
    never the current folder or one above it.
    """
    run_dir = Path(run_dir)
    if check_run_dir(run_dir, resume, overwrite):
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


__all__ = [
    "CHANGES_FILE",
    "OUTPUT_NAMES",
    "check_run_dir",
    "launch_rank",
    "prepare_run_dir",
    "refuse_resume_with_overwrite",
]
