"""The relatedness heat map: small tables annotated, large ones drawn, bad shapes refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dmtl.knowledge.heatmap import MAX_TICKS, _tick_positions, plot_relatedness

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    assert path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


def test_plot_relatedness(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    small = rng.random((7, 12))
    small[0, 0] = np.nan
    rows = ["neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise"]
    cols = [f"AU{i}" for i in range(12)]
    assert_png(plot_relatedness(small, rows, cols, tmp_path / "small.png", "p(AU | expression)"))
    big = rng.random((50, 30))
    names = [f"compound_{i}" for i in range(50)]
    assert_png(plot_relatedness(big, names, [f"AU{i}" for i in range(30)], tmp_path / "big.png"))
    with pytest.raises(ValueError, match="does not match"):
        plot_relatedness(small, rows[:3], cols, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="2-D"):
        plot_relatedness(np.zeros(3), rows[:3], cols, tmp_path / "flat.png")


def test_many_names_label_an_evenly_spaced_subset() -> None:
    assert _tick_positions(5) == [0, 1, 2, 3, 4]
    ticks = _tick_positions(10_177)
    assert len(ticks) == MAX_TICKS and ticks[0] == 0 and ticks[-1] == 10_176


@pytest.mark.slow
def test_relatedness_show_needs_neither_the_study_nor_the_training_layer(tmp_path: Path) -> None:
    table = tmp_path / "digit__shape.csv"
    table.write_text("digit,round,straight\n0,0.9,0.1\n1,0.2,0.8\n")
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from dmtl.cli.relatedness import show\n"
        f"show(Path({str(table)!r}), image=None, max_columns=20, max_rows=50, overwrite=False)\n"
        "bad = [m for m in sys.modules if m.startswith(('dmtl.study', 'dmtl.training'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    assert_png(table.with_suffix(".png"))
