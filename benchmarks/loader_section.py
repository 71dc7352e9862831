"""Loader section: runs ``benchmarks/loader.py`` (its own CLI) and keeps its result as JSON.

``loader.py`` (manifest + PNG path with 0/1/2 workers, cached in memory, vs the in-memory
array path, with a tiny CNN's train step for scale; 224 px JPEGs against a resnet18 step
at 112 px) is called through its ``main(argv)``; its result goes into
``benchmarks/results/loader.json`` under ``"loader"``, with the equivalent command.
``--workers-per-gpu`` (``benchmarks/gpu.sh``) writes ``gpu-loader.json`` instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import QUICK_DIR, RESULTS_DIR, command_line, write_result
from dmtl.errors import DataError

FASHION_PNG = Path("runs/benchmarks/fashion-mnist-png")
"""10,000 Fashion-MNIST test images exported as PNG + manifest (made once, reused)."""


def fashion_png_dir() -> Path | None:
    """The exported Fashion-MNIST PNGs, exported now if needed; None without the dataset."""
    if (FASHION_PNG / "manifest.csv").is_file():
        return FASHION_PNG
    import numpy as np

    from dmtl.data.builtin import load_builtin
    from dmtl.data.export import export_source
    from dmtl.data.sources import ArraySource

    try:
        data = load_builtin("fashion_mnist", splits=("test",))
    except (DataError, OSError):
        return None
    source = ArraySource("fashion", data.tasks, data.inputs, data.labels, splits=data.split)
    export_source(source.subset(np.arange(len(source))), FASHION_PNG, overwrite=True)
    return FASHION_PNG


def loader_argv(quick: bool) -> list[str]:
    if quick:
        return ["--synthetic", "300", "--seconds", "0.2", "--workers", "0", "--device", "cpu",
                "--jpeg", "64"]
    data = fashion_png_dir()
    source = ["--data-dir", str(data)] if data is not None else ["--synthetic", "10000"]
    return [*source, "--seconds", "3", "--workers", "0", "1", "2", "--device", "auto",
            "--jpeg", "1024"]


def main(argv: Sequence[str] | None = None, results_dir: Path | None = None) -> Path:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks loader")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--results", type=Path, default=None)
    args, extra = parser.parse_known_args(argv)
    from benchmarks import loader

    gpu = "--workers-per-gpu" in extra
    inner = extra if gpu else loader_argv(args.quick) + extra
    result = loader.main(inner)
    out = args.results or results_dir or (QUICK_DIR if args.quick else RESULTS_DIR)
    payload = {"loader": result, "loader_command": "python benchmarks/loader.py " + " ".join(inner)}
    name = "gpu-loader" if gpu else "loader"
    return write_result(out, name, payload, command_line("loader", argv), args.quick)


if __name__ == "__main__":
    main()
