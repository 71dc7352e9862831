r"""Export a trained model to ONNX or TorchScript, with its model card inside.

The exported graph maps a batch of normalised inputs ``x`` of shape
``(N, *input_shape)`` (``N`` dynamic) to one output per task, named after the task,
holding **probabilities**:

- categorical task: ``p(c|x) = softmax(z)_c``, shape ``(N, C)``;
- binary-set task: ``p_j(x) = sigmoid(z_j)``, shape ``(N, K)``.

Preprocessing stays outside the graph and is described in the card: decode the image
to ``channels`` and ``image_size``, scale 8-bit pixels to [0, 1], then
``(x - mean) / std`` per channel. The card (:class:`~dmtl.inference.card.ModelCard`,
JSON) is stored as ONNX ``metadata_props["dmtl"]`` or TorchScript
``_extra_files["dmtl.json"]``.

ONNX is written at opset :data:`DEFAULT_OPSET` unless told otherwise (18 is the lowest
accepted) by PyTorch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``,
deprecated since PyTorch 2.9 but kept): it traces the network in well under a second
and imports neither ``torch._dynamo`` nor ``onnxscript``, where the ``torch.export``-based
one (``dynamo=True``) spends about 4 s of a 2-core CPU on those imports, its operator
registry and ``torch.export`` (what made ``dmtl export`` take 6.6 s). Where the
TorchScript-based exporter fails (an operator it lacks, an opset it cannot write, a
PyTorch that removed it), the ``torch.export``-based one writes the file.
After writing, the file is loaded back and run on batches of 1 and 3 (the dynamic batch
axis) against PyTorch, whichever exporter wrote it: :func:`export_model` returns the
largest difference it saw.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from dmtl.core.model import predictions
from dmtl.core.tasks import Task
from dmtl.errors import OutputError, RunError
from dmtl.inference.card import METADATA_KEY, ModelCard
from dmtl.inference.export_checks import (
    DEFAULT_OPSET,
    MIN_OPSET,
    ExportFormat,
    check_opset,
    default_output,
    require_export_dependencies,
)
from dmtl.inference.runtime import (
    TORCHSCRIPT_CARD,
    OnnxPredictor,
    Predictor,
    TorchScriptPredictor,
    quiet_torchscript,
)

CHECK_TOLERANCE = 1e-4
"""Largest difference of probabilities between PyTorch and the exported file that passes."""


class ProbabilityModel(nn.Module):
    """``x -> (p_task for task in tasks)``: the model's heads turned into probabilities."""

    def __init__(self, model: nn.Module, tasks: tuple[Task, ...]) -> None:
        super().__init__()
        self.model = model
        self.tasks = tasks

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        probs = predictions(self.model(x), self.tasks)
        return tuple(probs[t.name] for t in self.tasks)


class _NamedOutputs(nn.Module):
    """``x -> {task: probabilities}`` (TorchScript keeps the names in a dict)."""

    def __init__(self, model: ProbabilityModel) -> None:
        super().__init__()
        self.model = model
        self.names = [t.name for t in model.tasks]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return dict(zip(self.names, self.model(x), strict=True))


OnnxExporter = Literal["torchscript", "dynamo"]
"""PyTorch's ONNX exporters: TorchScript-based (``dynamo=False``) or ``torch.export``-based."""


@dataclass(frozen=True)
class ExportResult:
    """Where the file went and how closely it reproduces PyTorch (max |p - p_torch|); for
    ONNX, the opset and which of PyTorch's exporters wrote it."""

    path: Path
    format: ExportFormat
    max_difference: float
    opset: int | None
    exporter: OnnxExporter | None = None


def export_model(
    model: nn.Module,
    card: ModelCard,
    output: Path,
    fmt: ExportFormat = "onnx",
    opset: int = DEFAULT_OPSET,
    overwrite: bool = False,
) -> ExportResult:
    """Write ``model`` (``x -> {task: logits}``) with ``card`` to ``output`` and check it.

    ``model`` is put in eval mode, on the CPU, in float32 (in place).
    The file is written under a temporary name and moved into place only once it loads
    back and matches PyTorch within :data:`CHECK_TOLERANCE`, so a failed export never
    replaces an existing file. An existing ``output`` is refused unless ``overwrite``.
    """
    if output.exists() and not overwrite:
        raise OutputError(f"{output} exists; pass --overwrite to replace it")
    if output.exists() and not output.is_file():
        raise OutputError(f"{output} is a folder, not a file it can replace")
    require_export_dependencies(fmt)
    if fmt == "onnx":
        check_opset(opset)
    wrapped = ProbabilityModel(model, card.tasks).eval().to("cpu", torch.float32)
    example = torch.zeros((2, *card.input_shape))
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f".{output.stem}.partial-{os.getpid()}{output.suffix}")
    exporter: OnnxExporter | None = None
    try:
        if fmt == "onnx":
            exporter = _write_onnx(wrapped, card, example, temporary, opset)
        else:
            _write_torchscript(wrapped, card, example, temporary)
        difference = check_export(wrapped, card, temporary, fmt)
        os.replace(temporary, output)
    finally:
        temporary.unlink(missing_ok=True)
    return ExportResult(output, fmt, difference, opset if fmt == "onnx" else None, exporter)


def _write_onnx(
    model: ProbabilityModel, card: ModelCard, example: Tensor, path: Path, opset: int
) -> OnnxExporter:
    """Write the ONNX file with the TorchScript-based exporter, or where it fails with the
    ``torch.export``-based one (module docstring); which one wrote it."""
    try:
        _write_onnx_torchscript(model, card, example, path, opset)
        return "torchscript"
    except Exception as error:  # the legacy exporter raises many kinds (or is gone)
        first = f"{type(error).__name__}: {_first_line(error)}"
    try:
        _write_onnx_dynamo(model, card, example, path, opset)
    except RunError as error:
        raise RunError(f"{error} (the TorchScript-based exporter: {first})") from error
    return "dynamo"


def _description(card: ModelCard) -> str:
    return (
        f"dmtl {card.dmtl_version} model {card.name!r}: outputs are per-task probabilities; "
        f"metadata_props[{METADATA_KEY!r}] holds the model card (JSON)"
    )


def _write_onnx_torchscript(
    model: ProbabilityModel, card: ModelCard, example: Tensor, path: Path, opset: int
) -> None:
    import onnx

    outputs = [t.name for t in card.tasks]
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # Its deprecation notice, and the tracer's: check_export tries other batch sizes.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # Into memory (it accepts a file object): a model over 2 GB cannot be written there
        # and falls to the other exporter, which says so, instead of leaving external data.
        torch.onnx.export(
            model,
            (example,),
            buffer,  # type: ignore[arg-type]
            input_names=[card.input_name],
            output_names=outputs,
            opset_version=opset,
            dynamo=False,
            dynamic_axes={name: {0: "batch"} for name in (card.input_name, *outputs)},
        )
    proto = onnx.load_from_string(buffer.getvalue())
    proto.metadata_props.add(key=METADATA_KEY, value=card.to_json())
    proto.doc_string = _description(card)
    onnx.save(proto, str(path))


def _write_onnx_dynamo(
    model: ProbabilityModel, card: ModelCard, example: Tensor, path: Path, opset: int
) -> None:
    batch = torch.export.Dim("batch")
    try:
        program: Any = torch.onnx.export(
            model,
            (example,),
            input_names=[card.input_name],
            output_names=[t.name for t in card.tasks],
            opset_version=opset,
            dynamo=True,
            dynamic_shapes=({0: batch},),
            verbose=False,
        )
    except Exception as error:  # torch.export / onnxscript raise many kinds
        raise RunError(
            f"ONNX export failed ({type(error).__name__}: {_first_line(error)}); "
            "try --format torchscript"
        ) from error
    program.model.metadata_props[METADATA_KEY] = card.to_json()
    program.model.doc_string = _description(card)
    try:
        # One self-contained file: weights beside it (external data) would not move with it.
        program.save(str(path), external_data=False)
    except ValueError as error:  # protobuf's 2 GB limit
        raise RunError(
            f"cannot write a single ONNX file ({_first_line(error)}); models over 2 GB are "
            "not supported, try --format torchscript"
        ) from None


def _write_torchscript(
    model: ProbabilityModel, card: ModelCard, example: Tensor, path: Path
) -> None:
    try:
        with quiet_torchscript(), torch.no_grad(), warnings.catch_warnings():
            # check_export runs the file on other batch sizes: a constant the trace kept shows.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            traced = torch.jit.trace(_NamedOutputs(model), (example,), strict=False)
            torch.jit.save(traced, str(path), _extra_files={TORCHSCRIPT_CARD: card.to_json()})
    except Exception as error:  # tracing raises many kinds
        raise RunError(
            f"TorchScript export failed ({type(error).__name__}: {_first_line(error)})"
        ) from error


def check_export(model: ProbabilityModel, card: ModelCard, path: Path, fmt: ExportFormat) -> float:
    """Largest ``|p_file - p_torch|`` over batches of 1 and 3 random inputs; fails above
    :data:`CHECK_TOLERANCE` (or when the batch size is not dynamic)."""
    loader: Callable[[Path], Predictor] = OnnxPredictor if fmt == "onnx" else TorchScriptPredictor
    exported = loader(path)
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for batch in (1, 3):
        x = torch.randn((batch, *card.input_shape), generator=generator)
        with torch.no_grad():
            expected = model(x)
        try:
            got = exported.probabilities(x)
        except Exception as error:  # the runtime's own errors
            raise RunError(
                f"the exported {fmt} model fails on a batch of {batch} ({_first_line(error)})"
            ) from error
        for task, want in zip(card.tasks, expected, strict=True):
            have = got[task.name]
            if tuple(have.shape) != tuple(want.shape):
                raise RunError(
                    f"the exported {fmt} model gives task {task.name!r} shape "
                    f"{tuple(have.shape)} for a batch of {batch}, expected {tuple(want.shape)}"
                )
            worst = max(worst, float((have.float() - want).abs().max()))
    if worst > CHECK_TOLERANCE:
        raise RunError(
            f"the exported {fmt} model differs from PyTorch by {worst:.2g} "
            f"(more than {CHECK_TOLERANCE:g}); the file was not written"
        )
    return worst


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


__all__ = [
    "DEFAULT_OPSET",
    "MIN_OPSET",
    "ExportFormat",
    "ExportResult",
    "OnnxExporter",
    "ProbabilityModel",
    "check_export",
    "check_opset",
    "default_output",
    "export_model",
    "require_export_dependencies",
]
