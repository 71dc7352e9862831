"""``dmtl export RUN``: a trained model as one ONNX or TorchScript file, its model card inside.

Registered in ``dmtl.cli`` as ``app.command("export")(export)``. Heavy imports
(torch, onnx, onnxruntime) happen when the command runs, never at ``dmtl --help``.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from dmtl.cli.app import _resolve_checkpoint
from dmtl.cli.errors import console, handle_errors, quiet_lightning
from dmtl.cli.options import Overwrite
from dmtl.cli.outputs import check_output_file
from dmtl.inference.export_checks import (
    DEFAULT_OPSET,
    ExportFormat,
    check_opset,
    default_output,
    require_export_dependencies,
)


class Format(str, Enum):
    """The file formats ``dmtl export`` writes."""

    onnx = "onnx"
    torchscript = "torchscript"


@handle_errors
def export(
    run: Annotated[Path, typer.Argument(help="Run folder or checkpoint file.")],
    format_: Annotated[
        Format, typer.Option("--format", "-f", help="File format (ONNX is recommended).")
    ] = Format.onnx,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Output file (default: RUN/model.onnx or RUN/model.pt)."
        ),
    ] = None,
    opset: Annotated[
        int, typer.Option(help="ONNX opset (18 or newer); ignored for TorchScript.")
    ] = DEFAULT_OPSET,
    overwrite: Overwrite = False,
) -> None:
    """Export a trained model: every task's probabilities, for any batch size, with its card.

    The card (tasks, class and label names, input shape, mean/std, thresholds, zero-shot
    relatedness tables, dmtl version) is ONNX metadata_props["dmtl"] or the TorchScript
    extra file dmtl.json. The file is checked against PyTorch before it is written.
    """
    fmt: ExportFormat = "onnx" if format_ is Format.onnx else "torchscript"
    require_export_dependencies(fmt)
    if fmt == "onnx":
        check_opset(opset)
    checkpoint = _resolve_checkpoint(run)
    target = check_output_file(output or default_output(checkpoint, fmt), overwrite)

    from dmtl.build.checkpoint import load_trained
    from dmtl.inference.card import model_card
    from dmtl.inference.export import export_model

    with quiet_lightning(), console.status(f"exporting {escape(str(checkpoint))} to {fmt}"):
        trained = load_trained(checkpoint)
        result = export_model(
            trained.model, model_card(trained), target, fmt, opset=opset, overwrite=overwrite
        )
    details = f"opset {result.opset}, " if result.opset is not None else ""
    if result.exporter == "dynamo":
        details += "torch.export-based exporter, "
    console.print(
        f"exported to [bold]{escape(str(result.path))}[/] ({fmt}, {details}dynamic batch; "
        f"max |p - p_torch| = {result.max_difference:.1e})"
    )
