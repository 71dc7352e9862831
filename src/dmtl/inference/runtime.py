"""Models that predict, behind one interface: a checkpoint, an ONNX file, a TorchScript file.

Each is a :class:`Predictor`: a :class:`~dmtl.inference.card.ModelCard` and
``probabilities(x) -> {task: (N, K) tensor}`` for a batch of normalised inputs
``x`` of shape ``(N, *card.input_shape)``: ``softmax(z)`` for a categorical task,
``sigmoid(z)`` per label for a binary set. :func:`load_predictor` picks the kind
from the file: ``.onnx`` runs with onnxruntime on the CPU (``pip install 'dmtl[export]'``),
a TorchScript archive written by ``dmtl export`` with ``torch.jit.load``, anything
else is read as a Lightning checkpoint.
"""

from __future__ import annotations

import dataclasses
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from dmtl.core.model import predictions
from dmtl.core.tasks import Task
from dmtl.errors import MissingDependencyError, SpecError
from dmtl.inference.card import METADATA_KEY, ModelCard, model_card
from dmtl.inference.export_checks import EXPORT_EXTRA

TORCHSCRIPT_CARD = f"{METADATA_KEY}.json"
"""Name of the card in a TorchScript archive's ``_extra_files``."""


class Predictor(Protocol):
    """A model that predicts every task's probabilities from normalised inputs."""

    card: ModelCard

    def probabilities(self, x: Tensor) -> dict[str, Tensor]:
        """``{task: probabilities (N, K)}`` for inputs ``x`` of shape ``(N, *input_shape)``."""
        ...


class TorchPredictor:
    """A PyTorch model ``x -> {task: logits}`` (a :class:`~dmtl.core.model.MultiTaskModel`)
    with its card; probabilities by :func:`~dmtl.core.model.predictions`."""

    def __init__(self, model: nn.Module, card: ModelCard) -> None:
        self.model = model.eval()
        self.card = card
        self.device = next(iter(model.parameters()), torch.empty(0)).device

    @torch.no_grad()
    def probabilities(self, x: Tensor) -> dict[str, Tensor]:
        logits = self.model(x.to(self.device))
        probs = predictions({k: z.float() for k, z in logits.items()}, self.card.tasks)
        return {name: p.cpu() for name, p in probs.items()}


def load_checkpoint(path: Path) -> TorchPredictor:
    """A Lightning checkpoint of a :class:`~dmtl.training.module.MultiTaskModule`, on the CPU
    (its network alone, loaded without Lightning: :func:`~dmtl.build.checkpoint.load_trained`)."""
    from dmtl.build.checkpoint import load_trained

    trained = load_trained(path)
    return TorchPredictor(trained.model, model_card(trained))


def import_onnxruntime(purpose: str) -> Any:
    """``onnxruntime``, or a :class:`MissingDependencyError` saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError(
            f"{purpose} needs onnxruntime, which is not installed; {EXPORT_EXTRA}"
        ) from None
    return onnxruntime


class OnnxPredictor:
    """An ONNX file written by ``dmtl export``, run by onnxruntime on the CPU."""

    def __init__(self, path: Path) -> None:
        ort = import_onnxruntime(f"running the ONNX model {path}")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own exception types
            raise SpecError(f"{path}: cannot load the ONNX model ({error})") from None
        props = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in props:
            raise SpecError(
                f"{path}: no dmtl metadata (metadata_props[{METADATA_KEY!r}]); "
                "export the model with 'dmtl export'"
            )
        self.card = ModelCard.from_json(props[METADATA_KEY], where=str(path))
        self.output_names = [t.name for t in self.card.tasks]
        outputs = {o.name for o in self.session.get_outputs()}
        missing = [n for n in self.output_names if n not in outputs]
        if missing:
            raise SpecError(f"{path}: the model has no output for task(s) {missing}")

    def probabilities(self, x: Tensor) -> dict[str, Tensor]:
        feed = {self.card.input_name: np.ascontiguousarray(x.numpy(), dtype=np.float32)}
        values = self.session.run(self.output_names, feed)
        return {
            name: torch.from_numpy(v) for name, v in zip(self.output_names, values, strict=True)
        }


@contextmanager
def quiet_torchscript() -> Iterator[None]:
    """Silence PyTorch's deprecation warnings of ``torch.jit`` (TorchScript still works)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\..*` is deprecated")
        yield


def is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive carrying a dmtl card."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith(f"/extra/{TORCHSCRIPT_CARD}") for n in archive.namelist())


class TorchScriptPredictor:
    """A TorchScript file written by ``dmtl export --format torchscript``."""

    def __init__(self, path: Path) -> None:
        extra = {TORCHSCRIPT_CARD: ""}
        try:
            with quiet_torchscript():
                self.module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except RuntimeError as error:
            raise SpecError(f"{path}: cannot load the TorchScript model ({error})") from None
        self.card = ModelCard.from_json(extra[TORCHSCRIPT_CARD], where=str(path))
        self.module.eval()

    @torch.no_grad()
    def probabilities(self, x: Tensor) -> dict[str, Tensor]:
        out = self.module(x)
        return {t.name: out[t.name] for t in self.card.tasks}


INPUT_FIELDS = ("input_shape", "channels", "image_size", "mean", "std", "crop_pct", "crop")
"""What models combined by :class:`CombinedPredictor` must agree on: how inputs are made."""


class CombinedPredictor:
    """Several models, each serving some tasks: ``{task: p}`` from the model that serves it.

    What a study recommends when a task keeps its single-task model (``dmtl predict
    STUDY_FOLDER``). The models must make their inputs alike (:data:`INPUT_FIELDS`); the
    card is the first model's with every served task (in ``order``), each task's decision
    thresholds from the model serving it, and the zero-shot edges whose tasks are served.
    """

    def __init__(self, parts: list[tuple[Predictor, list[str]]], order: list[str]) -> None:
        if not parts:
            raise SpecError("combining models: no model given")
        first = parts[0][0].card
        by_task: dict[str, tuple[Predictor, Task]] = {}
        for predictor, served in parts:
            card = predictor.card
            for name in INPUT_FIELDS:
                if getattr(card, name) != getattr(first, name):
                    raise SpecError(
                        f"combining models: {card.name!r} makes its inputs differently from "
                        f"{first.name!r} ({name}: {getattr(card, name)!r} against "
                        f"{getattr(first, name)!r})")
            tasks = {t.name: t for t in card.tasks}
            for task in served:
                if task not in tasks:
                    raise SpecError(f"combining models: {card.name!r} has no task {task!r} "
                                    f"(it has {', '.join(tasks)})")
                by_task[task] = (predictor, tasks[task])
        missing = [t for t in order if t not in by_task]
        if missing:
            raise SpecError(f"combining models: no model serves {', '.join(missing)}")
        self.parts = parts
        self.card = dataclasses.replace(
            first, tasks=tuple(by_task[t][1] for t in order),
            thresholds={t: th for t in order
                        if (th := by_task[t][0].card.thresholds.get(t)) is not None},
            edges=tuple(e for p, _ in parts for e in p.card.edges
                        if e.source.name in by_task and e.target.name in by_task
                        and by_task[e.source.name][0] is p),
        )

    def probabilities(self, x: Tensor) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for predictor, served in self.parts:
            probs = predictor.probabilities(x)
            out.update({task: probs[task] for task in served})
        return {t.name: out[t.name] for t in self.card.tasks}


def load_predictor(path: Path) -> Predictor:
    """A checkpoint, an ONNX file or a TorchScript file, by content (see module docstring)."""
    if path.suffix.lower() == ".onnx":
        return OnnxPredictor(path)
    if path.suffix.lower() != ".ckpt" and is_torchscript(path):
        return TorchScriptPredictor(path)
    return load_checkpoint(path)


__all__ = [
    "EXPORT_EXTRA",
    "CombinedPredictor",
    "OnnxPredictor",
    "Predictor",
    "TorchPredictor",
    "TorchScriptPredictor",
    "import_onnxruntime",
    "load_checkpoint",
    "load_predictor",
]
