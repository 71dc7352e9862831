"""A trained model from its checkpoint alone, without Lightning.

A checkpoint is a ``torch.save`` dictionary that Lightning writes; dmtl adds the model's
recipe (:class:`~dmtl.build.ModelSpec`, plain data) under :data:`SPEC_KEY`. It is read
with ``torch.load(weights_only=True)`` (tensors and plain data only, so nothing in the
file can execute code) and the network is rebuilt from the spec. Commands that only use
the network (``dmtl evaluate``, ``predict``, ``export``) load it with
:func:`load_trained`, which imports neither Lightning nor the training code;
:func:`dmtl.training.module.load_module` rebuilds the whole LightningModule.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dmtl.build import ModelSpec, build_model
from dmtl.config import Config
from dmtl.core.model import MultiTaskModel
from dmtl.core.relatedness import Relatedness
from dmtl.core.tasks import Task
from dmtl.errors import RunError

SPEC_KEY = "dmtl_model_spec"
"""Where a checkpoint keeps the :class:`~dmtl.build.ModelSpec` (plain data)."""

MODEL_PREFIX = "model."
"""The network's weights in a checkpoint's ``state_dict`` (the module's ``model`` field)."""


def read_checkpoint(path: str | Path) -> tuple[dict[str, Any], ModelSpec]:
    """The checkpoint's dictionary and its model spec, or a :class:`~dmtl.errors.RunError`
    naming the file when it is no dmtl checkpoint."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a file that is no checkpoint
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise RunError(
            f"{path}: not a dmtl checkpoint ({type(error).__name__}: {first[:200]})"
        ) from None
    if not isinstance(checkpoint, dict) or SPEC_KEY not in checkpoint:
        raise RunError(f"{path}: not a dmtl checkpoint (no model spec in it)")
    return checkpoint, ModelSpec.from_dict(checkpoint[SPEC_KEY], str(path))


@dataclass(frozen=True)
class TrainedModel:
    """A trained network (in evaluation mode, on the CPU) with what describes it."""

    spec: ModelSpec
    config: Config
    model: MultiTaskModel
    tasks: list[Task]
    edges: list[Relatedness]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One input's shape, as trained."""
        return tuple(self.spec.input_shape)


def load_trained(path: str | Path) -> TrainedModel:
    """The network of a checkpoint written by ``dmtl train``, its weights loaded (strictly)."""
    checkpoint, spec = read_checkpoint(path)
    config = spec.build_config()
    tasks = spec.build_tasks()
    model = build_model(config, tasks, spec.input_shape)
    try:
        state = checkpoint["state_dict"]
        weights = {
            k.removeprefix(MODEL_PREFIX): v for k, v in state.items() if k.startswith(MODEL_PREFIX)
        }
        model.load_state_dict(weights)
    except (KeyError, RuntimeError, AttributeError) as error:
        raise RunError(f"{path}: the weights do not fit the model ({error})") from None
    return TrainedModel(spec, config, model.eval(), tasks, spec.build_edges(tasks))


__all__ = ["SPEC_KEY", "TrainedModel", "load_trained", "read_checkpoint"]
