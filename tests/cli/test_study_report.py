"""``dmtl study`` end to end, read as a user reads it: the report's links, the effective
config, one wall time, each warning once, the curves of every seed, per-class tables."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import Result
from PIL import Image

from dmtl.study.results import load_results

Invoke = Callable[..., Result]
LINK = re.compile(r"\]\(([^)\s]+)\)")
"""A Markdown link or image target."""


def one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.slow
def test_study_report_as_a_user_reads_it(
    cli: Invoke, tiny_data: Callable[..., dict[str, Any]], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # a study folder relative to where the command runs
    Path("tiny.yaml").write_text(yaml.safe_dump(tiny_data(output={"dir": "runs/file"})))
    result = cli("study", "tiny.yaml", "--seeds", "2", "--variants", "single_task,mtl",
                 "-s", "optim.lr=0.02", "-s", "study.budget_epochs=2", "-o", "runs/rel")
    out = Path("runs/rel")
    report = (out / "report.md").read_text(encoding="utf-8")
    results = load_results(out / "results.json")

    # every link resolves relative to report.md (the relatedness heat map included)
    links = LINK.findall(report)
    assert "relatedness_digit__shape.png" in links and "validation_curves.png" in links
    for link in links:
        assert not Path(link).is_absolute(), link
        assert (out / link).is_file(), link
    # the effective config: the override, the seeds, the variants and the folder that ran
    config = results.config
    assert config["optim"]["lr"] == 0.02
    assert config["study"]["seeds"] == 2 and config["study"]["variants"] == ["single_task", "mtl"]
    assert config["output"]["dir"] == "runs/rel"
    assert '"lr": 0.02' in report and '"seeds": 2' in report
    # one wall-time figure, the same on the terminal and in the report
    shown = re.search(r"study done in (\d+) s", one_line(result.output))
    assert shown is not None
    assert f"- Wall time: {shown.group(1)} s (elapsed from the start of the study" in report
    assert "total wall time" not in report
    # the budget warning (no run can stop early in 2 epochs): once on the terminal, once in
    # the report
    assert one_line(result.output).count("trained to the budget without stopping early") == 1
    assert report.count("trained to the budget without stopping early") == 1
    # per-class and per-label tables
    assert "### digit: F1 per class (10)\n\n| class | single_task | mtl |" in report
    assert "### ink: F1 per label (3)" in report
    # the curves of every run and seed, losses and validation metrics
    curves = pd.read_csv(out / "training_curves.csv")
    series = set(map(tuple, curves[["run", "seed", "term"]].drop_duplicates().to_numpy()))
    for seed in (0, 1):
        for term in ("train/loss", "train/sup/digit", "train/sup/shape", "val/loss",
                     "val/selection", "val/digit/accuracy", "val/shape/f1_mean"):
            assert ("mtl", seed, term) in series, (seed, term)
        assert ("single_task[digit]", seed, "val/digit/accuracy") in series
        assert ("single_task[ink]", seed, "train/sup/ink") in series
    # two epochs of 5 steps: the loss at every step, the validation metrics once an epoch
    mtl0 = curves[(curves["run"] == "mtl") & (curves["seed"] == 0)]
    assert sorted(mtl0[mtl0["term"] == "train/loss"]["step"]) == list(range(10))
    assert len(mtl0[mtl0["term"] == "val/selection"]) == 2


def _corrupt_image_study(folder: Path) -> Path:
    """40 tiny images (one of them not an image) with two tasks; ``skip_corrupt`` on."""
    (folder / "images").mkdir()
    rows = ["id,image,split,digit,attr/x,attr/y"]
    for i in range(40):
        Image.fromarray(np.full((8, 8), 6 * i, np.uint8)).save(folder / f"images/{i}.png")
        split = "train" if i < 30 else "test"
        rows.append(f"{i},images/{i}.png,{split},{'abc'[i % 3]},{i % 2},{(i // 2) % 2}")
    (folder / "images/3.png").write_bytes(b"GIF89a not an image")
    (folder / "m.csv").write_text("\n".join(rows) + "\n")
    config = {
        "name": "corrupt",
        "tasks": [{"name": "digit", "type": "categorical", "classes": ["a", "b", "c"]},
                  {"name": "attr", "type": "binary_set", "labels": ["x", "y"]}],
        "sources": [{"name": "s", "manifest": "m.csv", "skip_corrupt": True}],
        "backbone": {"name": "mlp", "options": {"hidden": [8]}},
        "trainer": {"max_epochs": 1, "steps_per_epoch": 2, "batch_size": 4,
                    "progress_bar": False, "accelerator": "cpu"},
        "output": {"dir": str(folder / "study")},
        "study": {"seeds": 1, "variants": ["single_task", "mtl"]},
    }
    path = folder / "c.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.slow
def test_a_data_warning_is_printed_once_with_parallel_runs(tmp_path: Path) -> None:
    """The worker processes load the data again: they used to repeat its warnings."""
    config = _corrupt_image_study(tmp_path)
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    done = subprocess.run(
        [sys.executable, "-m", "dmtl", "study", str(config), "--jobs", "2"],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    printed = done.stdout + done.stderr
    assert printed.count("skipped 1 corrupt image(s) of 40") == 1, printed
    assert "warning: source 's': skipped 1 corrupt image(s) of 40" in one_line(printed)
    assert "UserWarning" not in printed  # a warning line, not Python's warning format
    report = (tmp_path / "study" / "report.md").read_text(encoding="utf-8")
    assert report.count("skipped 1 corrupt image(s) of 40") == 1
    assert load_results(tmp_path / "study" / "results.json").warnings == [
        f"source 's': skipped 1 corrupt image(s) of 40, e.g. {tmp_path / 'images' / '3.png'}"
    ]


def test_train_prints_a_data_warning_as_one_warning_line(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    config = _corrupt_image_study(tmp_path)
    result = cli("train", config, "-o", tmp_path / "run")
    assert "warning: source 's': skipped 1 corrupt image(s) of 40" in one_line(result.output)
    assert "UserWarning" not in result.output
