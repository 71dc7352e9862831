"""``dmtl export`` and ``dmtl predict`` on exported files, from the command line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import Result
from typer.testing import CliRunner

from dmtl.cli import app
from dmtl.cli.errors import console, err_console

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def dmtl(*args: str | Path, code: int = 0) -> Result:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, f"{args}: exit {result.exit_code}\n{result.output}"
    return result


def one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(autouse=True)
def wide_consoles() -> Iterator[None]:
    widths = (console.width, err_console.width)
    console.width = err_console.width = 1000
    yield
    console.width, err_console.width = widths


@pytest.fixture
def run(trained_run: Path, tmp_path: Path) -> Path:
    """A copy of the trained run's checkpoint in a run folder of this test's own."""
    folder = tmp_path / "run"
    (folder / "checkpoints").mkdir(parents=True)
    shutil.copy(trained_run / "checkpoints" / "last.ckpt", folder / "checkpoints")
    return folder


@pytest.fixture(scope="module")
def digits_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 built-in digits as PNG files listed in ``manifest.csv``."""
    folder = tmp_path_factory.mktemp("digits") / "digits20"
    dmtl("datasets", "export", "digits", folder, "--limit", "20")
    return folder / "manifest.csv"


@pytest.mark.slow
def test_export_writes_beside_the_checkpoints_and_never_overwrites_unasked(run: Path) -> None:
    result = dmtl("export", run)
    target = run / "model.onnx"
    assert target.is_file()
    text = one_line(result.output)
    assert f"exported to {target}" in text and "opset 18" in text and "dynamic batch" in text
    before = target.read_bytes()
    refused = dmtl("export", run, code=2)
    assert one_line(refused.output) == f"error: {target} exists; pass --overwrite to replace it"
    assert target.read_bytes() == before
    dmtl("export", run, "--overwrite")
    custom = run / "elsewhere" / "digits.pt"
    dmtl("export", run / "checkpoints" / "last.ckpt", "--format", "torchscript", "-o", custom)
    assert custom.is_file()


@pytest.mark.parametrize(("fmt", "name"), [("onnx", "model.onnx"), ("torchscript", "model.pt")])
def test_predict_from_an_exported_file_equals_predict_from_the_checkpoint(
    run: Path, digits_manifest: Path, tmp_path: Path, fmt: str, name: str
) -> None:
    dmtl("export", run, "-f", fmt)
    from_checkpoint, from_file = tmp_path / "ckpt.csv", tmp_path / "file.csv"
    dmtl("predict", run / "checkpoints" / "last.ckpt", digits_manifest, "-o", from_checkpoint)
    result = dmtl("predict", run / name, digits_manifest, "-o", from_file)
    assert "20 predictions written" in one_line(result.output)
    want, got = pd.read_csv(from_checkpoint), pd.read_csv(from_file)
    assert list(got.columns) == list(want.columns)
    probabilities = [c for c in want.columns if c.startswith("p:")]
    assert len(probabilities) == 10 + 6 + 3
    np.testing.assert_allclose(got[probabilities], want[probabilities], atol=1e-4, rtol=0)
    decisions = [c for c in want.columns if c not in probabilities]
    assert got[decisions].equals(want[decisions])


def test_an_opset_below_18_is_refused_before_any_work(run: Path) -> None:
    result = dmtl("export", run, "--opset", "13", code=2)
    assert one_line(result.output).startswith("error: --opset: must lie in [18, ")
    assert not (run / "model.onnx").exists()


@pytest.mark.slow
def test_without_the_extra_export_and_predict_name_it(
    run: Path, digits_manifest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dmtl("export", run)
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if not installed
    result = dmtl("export", run, "-o", run / "other.onnx", code=2)
    assert result.output.count("\n") == 1
    assert one_line(result.output) == (
        "error: ONNX export needs onnxscript, not installed; pip install 'dmtl[export]'"
    )
    assert not (run / "other.onnx").exists()
    dmtl("export", run, "-f", "torchscript")  # TorchScript needs no extra
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    result = dmtl("predict", run / "model.onnx", digits_manifest, "-o", run / "p.csv", code=2)
    assert one_line(result.output) == (
        f"error: running the ONNX model {run / 'model.onnx'} needs onnxruntime, which is not "
        "installed; pip install 'dmtl[export]'"
    )


@pytest.mark.slow
def test_help_imports_no_onnx_package() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from dmtl.cli import app\n"
        "for args in (['--help'], ['export', '--help']):\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0\n"
        "print(sorted(m for m in ('onnx', 'onnxruntime', 'onnxscript') if m in sys.modules))\n"
    )
    src = str(Path(__file__).parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.strip() == "[]"
