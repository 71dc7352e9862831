"""Resuming a run: what may change, what is recorded, what a checkpoint must fit.

A resume continues the run *as it was configured*: the config given now is compared
with the run folder's ``config.yaml``, and any difference is refused, listed as
``dotted.path: old -> new``, unless it is explicitly allowed (``--allow-config-change``);
an allowed change is recorded in ``config_changes.json``. A few settings that change
neither the model nor what it is trained on may differ freely
(:data:`RESUME_FREE_KEYS`). The checkpoint's weights must fit the model the config
builds: a changed architecture is one clear error, before training starts.

Exactness: :class:`ExactResume` saves every random generator a step draws from
(torch CPU and CUDA, numpy, Python) in each checkpoint and restores them when
training resumes; together with the loader's place in the epoch
(:class:`~dmtl.data.batching.ResumableDataLoader`) and Lightning's own loop, optimiser
and scheduler state, a resumed run repeats the uninterrupted one step for step.
"""

from __future__ import annotations

import copy
import functools
import json
import pickle
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import yaml
from pydantic import ValidationError
from torch import nn

from dmtl.config import Config
from dmtl.errors import OutputError, RunError
from dmtl.training.rundir import CHANGES_FILE

RESUME_FREE_KEYS: tuple[str, ...] = (
    "output.dir",
    "output.tensorboard",
    "trainer.progress_bar",
    "trainer.num_workers",
    "trainer.num_threads",
)
"""Settings a resume may change without ``--allow-config-change``: where the outputs go,
how progress is shown, how many loader workers and threads do the work."""

SCHEDULE_KEYS = frozenset({"trainer.max_epochs", "trainer.steps_per_epoch", "trainer.batch_size"})
"""Settings that set the length of the cosine learning-rate schedule."""



@dataclass(frozen=True)
class ConfigChange:
    """One setting that differs: its dotted path, the run's value and the new one."""

    path: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.path}: {_show(self.old)} -> {_show(self.new)}"

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "old": self.old, "new": self.new}


_UNSET = "<unset>"


def _show(value: Any) -> str:
    return value if value == _UNSET else json.dumps(value, default=str)


def config_differences(old: Any, new: Any, path: str = "") -> list[ConfigChange]:
    """Every leaf that differs between two plain-data configs, by dotted path.

    Mappings are compared key by key (a key on one side only is ``<unset>`` on the
    other), lists of equal length item by item (``sources.0.name``); anything else,
    including lists of different lengths, as a whole.

    >>> old, new = {"a": {"b": 1, "c": [1, 2]}}, {"a": {"b": 2, "c": [1, 3]}, "d": 0}
    >>> [str(change) for change in config_differences(old, new)]
    ['a.b: 1 -> 2', 'a.c.1: 2 -> 3', 'd: <unset> -> 0']
    """
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        changes: list[ConfigChange] = []
        for key in [*old, *(k for k in new if k not in old)]:
            changes += config_differences(
                old.get(key, _UNSET), new.get(key, _UNSET), f"{path}.{key}" if path else str(key)
            )
        return changes
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [
            change
            for i, (a, b) in enumerate(zip(old, new, strict=True))
            for change in config_differences(a, b, f"{path}.{i}" if path else str(i))
        ]
    return [] if old == new else [ConfigChange(path, old, new)]


def _normalised(data: Mapping[str, Any]) -> dict[str, Any]:
    """A config mapping with every default filled in (as written), or as is if it no longer
    validates (a config of another dmtl version: its keys are compared as they are)."""
    try:
        return Config.model_validate(dict(data)).model_dump(mode="json")
    except ValidationError:
        return dict(data)


@functools.lru_cache(maxsize=4)
def _saved_run_config(text: str) -> dict[str, Any] | None:
    """A run folder's saved ``config.yaml`` (its text), parsed and normalised; ``None`` when
    it is not a mapping. Cached by text: the command line checks a resume before the data
    loads and :func:`run_training` again when it starts, and the saved config is validated
    once."""
    stored = yaml.safe_load(text)
    return _normalised(stored) if isinstance(stored, Mapping) else None


def run_config_changes(
    run_dir: Path, config: Config, ignore: Sequence[str] = RESUME_FREE_KEYS
) -> list[ConfigChange]:
    """How ``config`` differs from the run folder's ``config.yaml`` (settings in ``ignore``
    and their sub-keys left out)."""
    path = Path(run_dir) / "config.yaml"
    try:
        stored = _saved_run_config(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise OutputError(f"cannot resume {run_dir}: {path} is unreadable ({error})") from None
    if stored is None:
        raise OutputError(f"cannot resume {run_dir}: {path} is not a config mapping")
    changes = config_differences(copy.deepcopy(stored), config.model_dump(mode="json"))
    return [
        c for c in changes if not any(c.path == k or c.path.startswith(k + ".") for k in ignore)
    ]


def describe_changes(changes: Sequence[ConfigChange], config: Config) -> str:
    """The changes on one line; the ones that reshape the cosine schedule say so."""
    notes = []
    for change in changes:
        text = str(change)
        if change.path in SCHEDULE_KEYS and config.optim.schedule == "cosine":
            text += " (it sets the length of the cosine learning-rate schedule)"
        notes.append(text)
    return "; ".join(notes)


def check_resume(
    run_dir: Path,
    config: Config,
    allow_config_change: bool = False,
    ignore: Sequence[str] = RESUME_FREE_KEYS,
) -> list[ConfigChange]:
    """Refuse to resume ``run_dir`` with ``config`` unless it is that run, as configured.

    Raises :class:`~dmtl.errors.OutputError` if the folder does not exist, holds no run
    (no ``config.yaml``), or was configured otherwise (every difference listed, unless
    ``allow_config_change``). Returns the allowed changes (empty if none).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise OutputError(
            f"cannot resume {run_dir}: no such folder (start the run without --resume)"
        )
    if not (run_dir / "config.yaml").is_file():
        raise OutputError(
            f"cannot resume {run_dir}: it holds no run (no config.yaml); start the run "
            "without --resume"
        )
    changes = run_config_changes(run_dir, config, ignore)
    if changes and not allow_config_change:
        raise OutputError(
            f"cannot resume {run_dir}: the config differs from the run's "
            f"({describe_changes(changes, config)}); resume with the run's config, or pass "
            f"--allow-config-change to go on with the new one (the change is recorded in "
            f"{run_dir / CHANGES_FILE})"
        )
    return changes


def record_config_changes(
    run_dir: Path, changes: Sequence[ConfigChange], checkpoint: Path | None
) -> None:
    """Append an allowed change to ``config_changes.json``; a final ``metrics.json``, now out
    of date, moves into the record (nothing is lost)."""
    path = Path(run_dir) / CHANGES_FILE
    history: list[Any] = json.loads(path.read_text()) if path.is_file() else []
    entry: dict[str, Any] = {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "resumed_from": str(checkpoint) if checkpoint else None,
        "changes": [c.to_dict() for c in changes],
    }
    summary = Path(run_dir) / "metrics.json"
    if summary.is_file():
        entry["metrics_before"] = json.loads(summary.read_text())
    history.append(entry)
    _write_atomically(path, json.dumps(history, indent=2, default=str))
    summary.unlink(missing_ok=True)


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    temporary.replace(path)


def finished_summary(run_dir: Path) -> dict[str, Any] | None:
    """The final summary (``metrics.json``) of a run that finished, else ``None``."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    keys = {"split", "metrics", "steps", "wall_s", "checkpoint"}
    return summary if isinstance(summary, dict) and keys <= set(summary) else None


def check_checkpoint_fits(model: nn.Module, path: Path) -> None:
    """Refuse a checkpoint whose weights do not fit ``model`` (a changed architecture).

    Names the first parameters missing, unexpected or of another shape. The file is
    read with ``weights_only=True`` and memory-mapped, so this costs little.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        saved: Mapping[str, torch.Tensor] = checkpoint["state_dict"]
    except (OSError, RuntimeError, EOFError, KeyError, TypeError, ValueError,
            pickle.UnpicklingError) as error:
        first = (str(error).strip().splitlines() or [""])[0][:200]
        raise RunError(
            f"cannot resume from {path}: not a readable checkpoint ({type(error).__name__}: "
            f"{first}); delete it to resume from the one before, or start the run afresh"
        ) from None
    own = model.state_dict()
    problems = [f"missing {k}" for k in own if k not in saved]
    problems += [f"unexpected {k}" for k in saved if k not in own]
    problems += [
        f"{k} is {list(saved[k].shape)} in the checkpoint, {list(own[k].shape)} now"
        for k in own
        if k in saved and saved[k].shape != own[k].shape
    ]
    if problems:
        more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        shown = "; ".join(problems[:3]) + more
        raise RunError(
            f"cannot resume from {path}: its weights do not fit the model this config builds "
            f"({shown}); the architecture (backbone, heads, tasks) cannot change on resume: "
            "start a new run"
        )


class ExactResume(pl.Callback):
    """What an exact resume needs beyond Lightning's own checkpoint contents.

    - **Random generators.** Every generator a step draws from is saved in checkpoints:
      torch's CPU generator (dropout, augmentation in the main process), the current CUDA
      device's, numpy's and Python's global ones, as plain tensors and numbers (the
      checkpoint stays loadable with ``weights_only=True``).
    - **The loader's place in the epoch.** Lightning saves the training loader's
      ``state_dict`` (:class:`~dmtl.data.batching.ResumableDataLoader`) but does not give
      it back when ``configure_optimizers`` asked for ``trainer.estimated_stepping_batches``
      before the checkpoint was read (the cosine schedule does; Lightning issue #20550).
      It is given back here (again, if Lightning did: loading it twice changes nothing;
      at an epoch's end the next ``set_epoch`` supersedes it).

    Both are restored at ``on_train_start``: after everything that is rebuilt on resume
    (the model's initialisation draws too), before the first batch is drawn.

    Under DDP the checkpoint holds rank 0's generators and every rank gets them back:
    the ranks share one seed and draw alike, so their generators are equal.
    Augmentation in loader *workers* draws from the workers' own generators, which are
    not saved: with ``trainer.num_workers > 0`` a resumed run is not bit-exact.
    """

    def __init__(self) -> None:
        self._random: dict[str, Any] | None = None
        self._loader: Mapping[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        keys_name, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
        assert isinstance(keys, np.ndarray)
        version, python_state, python_gauss = random.getstate()
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": {"name": str(keys_name), "keys": torch.from_numpy(keys.astype(np.int64)),
                      "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python": {"version": version, "state": list(python_state), "gauss": python_gauss},
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._random = state_dict

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        fit_loop = checkpoint.get("loops", {}).get("fit_loop", {})
        states = fit_loop.get("state_dict", {}).get("combined_loader") or []
        self._loader = states[0] if len(states) == 1 else None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loader, self._loader = self._loader, None
        target = trainer.train_dataloader
        if loader is not None and callable(getattr(target, "load_state_dict", None)):
            target.load_state_dict(loader)  # type: ignore[union-attr]
        state, self._random = self._random, None
        if state:
            _set_random_state(state)


def _set_random_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    numpy = state["numpy"]
    np.random.set_state((numpy["name"], numpy["keys"].numpy().astype(np.uint32),
                         numpy["pos"], numpy["has_gauss"], numpy["gauss"]))
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss"]))


__all__ = [
    "CHANGES_FILE",
    "RESUME_FREE_KEYS",
    "ConfigChange",
    "ExactResume",
    "check_checkpoint_fits",
    "check_resume",
    "config_differences",
    "describe_changes",
    "finished_summary",
    "record_config_changes",
    "run_config_changes",
]
