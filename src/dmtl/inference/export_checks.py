"""What ``dmtl export`` checks before it exports: formats, opsets, dependencies, file names.

Nothing here imports torch, onnx or onnxruntime (an installed package is looked up, not
imported), so the command refuses a bad option or a missing dependency at once;
:mod:`dmtl.inference.export` re-exports these names.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path
from typing import Literal

from dmtl.errors import ConfigError, MissingDependencyError

EXPORT_EXTRA = "pip install 'dmtl[export]'"
ExportFormat = Literal["onnx", "torchscript"]
SUFFIXES: dict[str, str] = {"onnx": ".onnx", "torchscript": ".pt"}
DEFAULT_OPSET = 18
"""ONNX opset written by default: the lowest PyTorch's exporter writes natively, read by
onnxruntime >= 1.14 and most other runtimes."""
MIN_OPSET = 18


def require_export_dependencies(fmt: ExportFormat) -> None:
    """Fail early, with one line naming the extra, when ONNX export cannot run."""
    if fmt != "onnx":
        return
    missing = [p for p in ("onnx", "onnxscript", "onnxruntime") if find_spec(p) is None]
    if missing:
        raise MissingDependencyError(
            f"ONNX export needs {', '.join(missing)}, not installed; {EXPORT_EXTRA}"
        )


def check_opset(opset: int) -> int:
    """``opset`` if PyTorch's exporter and the installed ``onnx`` can write it.

    ``onnx`` is imported (to read the newest opset it knows) only when ``opset`` is not
    the lowest one, :data:`MIN_OPSET`, or is refused.
    """
    if opset == MIN_OPSET:
        return opset
    import onnx

    newest = int(onnx.defs.onnx_opset_version())
    if not MIN_OPSET <= opset <= newest:
        raise ConfigError(
            [("--opset", f"must lie in [{MIN_OPSET}, {newest}] (onnx {onnx.__version__}), "
              f"got {opset}")]
        )
    return opset


def default_output(checkpoint: Path, fmt: ExportFormat) -> Path:
    """``<run>/model.onnx`` (or ``.pt``) for ``<run>/checkpoints/*.ckpt``, else beside the file."""
    folder = checkpoint.parent
    if folder.name == "checkpoints":
        return folder.parent / f"model{SUFFIXES[fmt]}"
    return checkpoint.with_suffix(SUFFIXES[fmt])


__all__ = [
    "DEFAULT_OPSET",
    "EXPORT_EXTRA",
    "MIN_OPSET",
    "SUFFIXES",
    "ExportFormat",
    "check_opset",
    "default_output",
    "require_export_dependencies",
]
