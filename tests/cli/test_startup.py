"""The command line starts fast: its modules, ``--help``, ``config show`` and ``datasets list``
load no torch (nor pandas, Lightning, torchmetrics); neither does the refusal of a bad
argument (an existing output folder, a missing checkpoint, a bad option); the reader list
matches the readers.

Each check runs a fresh interpreter (a subprocess), where nothing was imported before,
and reads ``sys.modules`` at the end. No timing is asserted (the machine may be busy);
the README states the measured time of ``dmtl --help``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
HEAVY = ("torch", "lightning", "torchmetrics", "pandas", "torchvision", "timm", "PIL")


def _loaded_after(code: str) -> list[str]:
    """The heavy packages imported by running ``code`` in a fresh interpreter."""
    return _modules_after(code, HEAVY)


@pytest.mark.parametrize("module", ["dmtl", "dmtl.cli", "dmtl.config", "dmtl.data",
                                    "dmtl.data.builtin", "dmtl.data.readers"])
def test_importing_loads_no_heavy_package(module: str) -> None:
    assert _loaded_after(f"import {module}") == []


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["train", "--help"], ["config", "show", "{config}"], ["datasets", "list"]],
)
def test_light_commands_load_no_heavy_package(argv: list[str]) -> None:
    config = SRC / "dmtl" / "configs" / "digits-demo.yaml"
    args = [a.format(config=config) for a in argv]
    code = (
        "import sys\nfrom dmtl.cli import main\n"
        f"sys.argv = ['dmtl', *{args!r}]\n"
        "try:\n    main()\nexcept SystemExit as stop:\n    assert not stop.code, stop.code\n"
    )
    assert _loaded_after(code) == []


def _run_cli(argv: list[str], code: int) -> str:
    """Python code running ``dmtl *argv`` and checking that it exits with ``code``."""
    return (
        "import sys\nfrom dmtl.cli import main\n"
        f"sys.argv = ['dmtl', *{argv!r}]\n"
        "try:\n    main()\nexcept SystemExit as stop:\n"
        f"    assert stop.code == {code}, stop.code\nelse:\n    raise AssertionError('no exit')\n"
    )


REFUSALS = {
    "train into a used folder": ["train", "{config}", "--out", "{used}"],
    "study into a used folder": ["study", "{config}", "--out", "{used}"],
    "demo into a used folder": ["demo", "--out", "{used}"],
    "resume with overwrite": ["train", "{config}", "--out", "{used}", "--resume", "--overwrite"],
    "evaluate a missing checkpoint": ["evaluate", "{missing}"],
    "evaluate a bad split": ["evaluate", "{used}", "--split", "train"],
    "evaluate over an existing file": ["evaluate", "{used}", "-o", "{file}"],
    "predict with a missing checkpoint": ["predict", "{missing}", "{used}", "-o", "{free}"],
    "predict over an existing file": ["predict", "{used}", "{used}", "-o", "{file}"],
    "export a missing checkpoint": ["export", "{missing}"],
    "export a run folder without checkpoint": ["export", "{used}"],
    "export at a bad opset": ["export", "{used}", "--opset", "13"],
}


@pytest.mark.parametrize("argv", list(REFUSALS.values()), ids=list(REFUSALS))
def test_refusals_load_no_heavy_package(argv: list[str], tmp_path: Path) -> None:
    """A bad argument is refused (exit 2) before torch or Lightning is imported."""
    used = tmp_path / "used"
    used.mkdir()
    (used / "metrics.json").write_text("{}")
    places = {"config": SRC / "dmtl" / "configs" / "digits-demo.yaml", "used": used,
              "missing": tmp_path / "missing.ckpt", "file": used / "metrics.json",
              "free": tmp_path / "predictions.csv"}
    args = [a.format(**places) for a in argv]
    assert _loaded_after(_run_cli(args, code=2)) == []


def test_the_listed_readers_are_the_registered_ones() -> None:
    from dmtl.data.readers import READER_SUMMARIES, READERS

    assert sorted(READER_SUMMARIES) == sorted(READERS)
    for name, reader in READERS.items():
        first = (reader.__doc__ or "").strip().splitlines()[0]
        assert READER_SUMMARIES[name] == first, name


def _modules_after(code: str, names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` are imported once ``code`` has run in a fresh interpreter."""
    probe = (
        f"{code}\nimport json, sys\n"
        f"print(json.dumps([m for m in {names!r} if m in sys.modules]))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


EVALUATE_SKIPS = ("torchjd", "lightning", "torchmetrics", "torchvision", "torch._dynamo",
                  "scipy", "sklearn", "matplotlib", "timm")
"""What ``dmtl evaluate`` (on the built-in digits) does not import: it sums the metric
kernels without torchmetrics (whose package root imports torchvision, and with it
``torch._dynamo``, SciPy's signal and matplotlib) and reads the digits without importing
scikit-learn (SciPy's stats)."""

EXPORT_SKIPS = ("torchjd", "lightning", "torchmetrics", "torchvision", "torch._dynamo",
                "onnxscript", "scipy", "pandas", "matplotlib", "timm")
"""What ``dmtl export`` (to ONNX) does not import: the TorchScript-based exporter needs
neither ``torch._dynamo`` nor ``onnxscript`` (the ``torch.export``-based one, only its
fallback, imports both), and the card imports no reader (pandas) for a built-in source."""


@pytest.mark.slow
def test_evaluate_predict_export_load_only_what_they_need(
    trained_run: Path, exported_digits: Path, tmp_path: Path
) -> None:
    """``evaluate`` and ``export`` leave out :data:`EVALUATE_SKIPS` and :data:`EXPORT_SKIPS`
    (seconds of their start); ``predict`` on an ONNX file loads neither Lightning,
    torchmetrics, TorchJD nor SciPy."""
    onnx_file = tmp_path / "model.onnx"
    export = _modules_after(
        _run_cli(["export", str(trained_run), "-o", str(onnx_file)], code=0), EXPORT_SKIPS
    )
    assert export == []
    evaluate = _modules_after(
        _run_cli(["evaluate", str(trained_run), "-o", str(tmp_path / "e.json")], code=0),
        EVALUATE_SKIPS,
    )
    assert evaluate == []
    predict = _modules_after(
        _run_cli(["predict", str(onnx_file), str(exported_digits),
                  "-o", str(tmp_path / "p.csv")], code=0),
        ("torchjd", "scipy", "lightning", "torchmetrics", "torchvision", "matplotlib", "timm"),
    )
    assert predict == []
