"""The ``dmtl`` command end to end on tiny real data (built-in digits, a few steps).

Most commands run in-process through typer's CliRunner (``cli``); "no traceback" needs a real
process and uses ``python -m dmtl``. Resume and Ctrl-C: ``test_resume.py``.
"""

from __future__ import annotations

import json
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
import torch
import yaml
from click.testing import Result

from dmtl.core.relatedness import Relatedness
from dmtl.data.builtin import load_builtin
from dmtl.data.builtin.digits import DIGIT, INK, SHAPE, SHAPE_LABELS
from dmtl.study.results import load_results

VARIANTS = ("single_task", "mtl", "mtl+ca", "mtl+dm", "mtl+ca+dm")
"""The variants of the tiny config's study (tests/conftest.py)."""

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DIGIT_CLASSES = [str(d) for d in range(10)]
INK_LABELS = ["heavy", "slanted", "wide"]
WriteConfig = Callable[..., Path]
Invoke = Callable[..., Result]


def one_line(text: str) -> str:
    """Whitespace collapsed, for matching messages that rich may break across lines."""
    return " ".join(text.split())


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


def _prediction_columns() -> list[str]:
    return [
        "id",
        "digit",
        *(f"shape/{label}" for label in SHAPE_LABELS),
        *(f"ink/{label}" for label in INK_LABELS),
        *(f"p:digit/{c}" for c in DIGIT_CLASSES),
        *(f"p:shape/{label}" for label in SHAPE_LABELS),
        *(f"p:ink/{label}" for label in INK_LABELS),
    ]


def _check_predictions(frame: pd.DataFrame, n: int) -> None:
    # image inputs also keep the path that was read, right after the id
    assert [c for c in frame.columns if c != "image"] == _prediction_columns()
    assert len(frame) == n
    probs = frame[[f"p:digit/{c}" for c in DIGIT_CLASSES]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert ((probs >= 0) & (probs <= 1)).all()
    # the decisions are the arg-max class and the 0.5 threshold, as a manifest holds labels
    assert (frame["digit"].astype(str).to_numpy() == np.array(DIGIT_CLASSES)[probs.argmax(1)]).all()
    for label in SHAPE_LABELS:
        assert (frame[f"shape/{label}"] == (frame[f"p:shape/{label}"] >= 0.5).astype(int)).all()


# ---- train, evaluate, predict --------------------------------------------------------------------


def test_train_writes_the_run_folder(trained_run: Path) -> None:
    for name in ("config.yaml", "checkpoints/last.ckpt", "logs/metrics.csv", "metrics.json",
                 "relatedness/digit__shape.csv", "regime.json"):
        assert (trained_run / name).is_file(), name
    summary = json.loads((trained_run / "metrics.json").read_text())
    assert set(summary) == {
        "split", "metrics", "steps", "epochs", "best_step", "stopped_early", "wall_s", "checkpoint",
        "val_metrics",
    }
    assert summary["split"] == "test" and summary["steps"] == 5
    assert summary["wall_s"] > 0
    assert Path(summary["checkpoint"]) == trained_run / "checkpoints" / "last.ckpt"
    metrics = summary["metrics"]
    for task, primary in (("digit", "accuracy"), ("shape", "f1_mean"), ("ink", "f1_mean")):
        assert 0.0 <= metrics[f"{task}/{primary}"] <= 1.0
        assert metrics[f"{task}/num_labelled"] == 360
    assert {f"digit/f1/{c}" for c in DIGIT_CLASSES} <= set(metrics)
    regime = json.loads((trained_run / "regime.json").read_text())["digits"]
    assert regime["regime"]["regime"] == "scarce"
    assert set(regime["train_groups"]) == {"digit", "shape+ink"}
    table = Relatedness.from_csv(trained_run / "relatedness" / "digit__shape.csv", DIGIT, SHAPE)
    assert table.table.shape == (10, 6)
    logs = pd.read_csv(trained_run / "logs" / "metrics.csv")
    assert "train/loss_step" in logs.columns and "train/sup/digit_step" in logs.columns


def test_train_prints_the_metrics_and_where_the_outputs_are(
    cli: Invoke, tiny_config_file: Path
) -> None:
    result = cli("train", tiny_config_file, "-s", "trainer.steps_per_epoch=2")
    text = one_line(result.output)
    assert "tiny: test metrics" in text and "digit/accuracy" in text
    assert "2 steps in" in text and "outputs in" in text


@pytest.mark.parametrize("target", ["run_dir", "checkpoint"])
def test_evaluate_a_run_folder_or_a_checkpoint(
    cli: Invoke, trained_run: Path, tmp_path: Path, target: str
) -> None:
    path = trained_run if target == "run_dir" else trained_run / "checkpoints" / "last.ckpt"
    out = tmp_path / "eval.json"
    result = cli("evaluate", path, "--split", "test", "-o", out)
    assert "digit/accuracy" in result.output
    evaluated = json.loads(out.read_text())
    assert evaluated["split"] == "test"
    assert evaluated["checkpoint"] == str(trained_run / "checkpoints" / "last.ckpt")
    trained = json.loads((trained_run / "metrics.json").read_text())["metrics"]
    assert evaluated["metrics"] == pytest.approx(trained)  # the same model on the same split


def test_a_run_folder_means_the_checkpoint_its_metrics_are_for(tmp_path: Path) -> None:
    """Under early stopping the metrics are the best checkpoint's, not last.ckpt's: a run
    folder given to evaluate/export/predict means that one, even after the folder moved."""
    from dmtl.cli.app import _resolve_checkpoint

    run = tmp_path / "moved-run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("best-4-50.ckpt", "last.ckpt"):
        (run / "checkpoints" / name).write_bytes(b"")
    assert _resolve_checkpoint(run) == run / "checkpoints" / "last.ckpt"  # no metrics.json
    (run / "metrics.json").write_text(json.dumps(
        {"checkpoint": "/elsewhere/run/checkpoints/best-4-50.ckpt", "metrics": {}}))
    assert _resolve_checkpoint(run) == run / "checkpoints" / "best-4-50.ckpt"
    (run / "metrics.json").write_text("{not json")
    assert _resolve_checkpoint(run) == run / "checkpoints" / "last.ckpt"
    (run / "metrics.json").write_text(json.dumps({"checkpoint": "gone/best-1-1.ckpt"}))
    assert _resolve_checkpoint(run) == run / "checkpoints" / "last.ckpt"


def test_evaluate_errors(cli: Invoke, trained_run: Path, tmp_path: Path) -> None:
    result = cli("evaluate", trained_run, "--split", "val", code=2)
    assert "has no val split" in one_line(result.output)
    result = cli("evaluate", tmp_path / "nothing", code=2)
    assert one_line(result.output).startswith("error:")
    assert "no such checkpoint or run folder" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no checkpoints/last.ckpt" in cli("evaluate", empty, code=2).output
    cli("evaluate", trained_run, "--split", "train", code=2)


def test_predict_an_exported_manifest(
    cli: Invoke, trained_run: Path, exported_digits: Path, tmp_path: Path
) -> None:
    out = tmp_path / "predictions.csv"
    result = cli("predict", trained_run / "checkpoints" / "last.ckpt", exported_digits, "-o", out)
    assert "20 predictions written" in one_line(result.output)
    frame = pd.read_csv(out)
    _check_predictions(frame, 20)
    manifest = pd.read_csv(exported_digits)
    assert frame["id"].tolist() == manifest["id"].tolist()
    # an existing output is kept unless --overwrite
    before = out.read_bytes()
    result = cli("predict", trained_run, exported_digits, "-o", out, code=2)
    assert "exists; pass --overwrite" in one_line(result.output)
    assert out.read_bytes() == before
    cli("predict", trained_run, exported_digits, "-o", out, "--overwrite")


def test_predict_an_npy_array_and_an_image_folder(
    cli: Invoke, trained_run: Path, exported_digits: Path, tmp_path: Path
) -> None:
    inputs = load_builtin("digits").inputs[:15]
    array = tmp_path / "inputs.npy"
    np.save(array, inputs)
    out = tmp_path / "from_array.csv"
    cli("predict", trained_run, array, "-o", out)
    from_array = pd.read_csv(out)
    _check_predictions(from_array, 15)
    # an image folder gives the same predictions as the exported manifest over it
    folder_out, manifest_out = tmp_path / "from_folder.csv", tmp_path / "from_manifest.csv"
    cli("predict", trained_run, exported_digits.parent / "images", "-o", folder_out)
    cli("predict", trained_run, exported_digits, "-o", manifest_out)
    from_folder, from_manifest = pd.read_csv(folder_out), pd.read_csv(manifest_out)
    _check_predictions(from_folder, 20)
    probabilities = [c for c in from_folder.columns if c.startswith("p:")]
    assert np.allclose(from_folder[probabilities], from_manifest[probabilities], atol=1e-6)
    # the exported PNGs hold the same digits (8-bit), so the first 15 agree with the array
    assert (from_manifest["digit"][:15] == from_array["digit"]).mean() >= 0.9


def test_predict_rejects_inputs_it_cannot_read(
    cli: Invoke, trained_run: Path, tmp_path: Path
) -> None:
    flat = tmp_path / "flat.npy"
    np.save(flat, np.zeros((3, 8, 8), dtype=np.float32))
    result = cli("predict", trained_run, flat, "-o", tmp_path / "p.csv", code=2)
    assert one_line(result.output).startswith("error:")
    result = cli("predict", trained_run, tmp_path / "missing.csv", "-o", tmp_path / "p.csv",
                 code=2)
    assert "no such manifest, folder or array" in one_line(result.output)


# ---- study ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_study_then_resume_without_new_runs(cli: Invoke, tiny_config_file: Path,
                                            tmp_path: Path) -> None:
    out = tmp_path / "study"
    result = cli("study", tiny_config_file, "--seeds", "1", "-o", out)
    assert "study done" in one_line(result.output)
    results = load_results(out / "results.json")
    assert results.seeds == [0]
    single = [r for r in results.runs if r.variant == "single_task"]
    assert sorted(r.task for r in single) == ["digit", "ink", "shape"]  # type: ignore[type-var]
    others = sorted(r.variant for r in results.runs if r.variant != "single_task")
    assert others == sorted(v for v in VARIANTS if v != "single_task")
    assert all(r.status == "done" for r in results.runs), [r.error for r in results.runs]
    # single-task runs carry their task's metrics only, the multi-task runs every task's
    assert set(next(r for r in single if r.task == "ink").metrics) == {
        k for k in results.runs[-1].metrics if k.startswith("ink/")
    }
    # every variant gets the same number of steps (the multi-task epoch length)
    assert {r.steps for r in results.runs} == {5}
    report = (out / "report.md").read_text()
    assert "| variant |" in report and "| negative transfer |" in report
    for variant in VARIANTS:
        assert f"| {variant} |" in report or f"| {variant} (" in report, variant
    for png in ("metric_per_variant.png", "learning_curves.png"):
        assert _is_png(out / png), png
    assert (out / "config.yaml").is_file()
    for run in results.runs:
        assert (out / run.run_dir / "checkpoints" / "last.ckpt").is_file()  # type: ignore[operator]

    # refused without --resume/--overwrite
    refused = cli("study", tiny_config_file, "--seeds", "1", "-o", out, code=2)
    assert "--resume" in one_line(refused.output)

    # --resume on a finished study trains nothing: no run folder is rewritten
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/metrics.json")}
    assert len(stamps) == 7
    cli("study", tiny_config_file, "--seeds", "1", "-o", out, "--resume")
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/metrics.json")} == stamps
    again = load_results(out / "results.json")
    assert [(r.variant, r.task, r.wall_s) for r in again.runs] == [
        (r.variant, r.task, r.wall_s) for r in results.runs
    ]


@pytest.mark.slow
def test_demo_runs_the_study_on_digits(cli: Invoke, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = cli(
        "demo", "--seeds", "1", "-o", out, "-s", "trainer.max_epochs=1",
        "-s", "trainer.steps_per_epoch=2", "-s", "backbone.options.hidden=[16]",
    )
    assert "dmtl demo" in result.output
    results = load_results(out / "results.json")
    single = len(results.tasks) if "single_task" in results.variants else 0
    assert len(results.runs) == single + len(results.variants) - (single > 0)
    assert (out / "report.md").is_file()


# ---- relatedness ---------------------------------------------------------------------------------


@pytest.fixture
def overlap_config(write_config: WriteConfig, tiny_data: Callable[..., dict[str, Any]]) -> Path:
    data = tiny_data(relatedness=[{"source": "digit", "target": "ink", "kind": "estimate"}])
    data["sources"][0]["regime"] = {"name": "overlap", "params": {"fraction": 0.3}}
    return write_config(data, name="overlap.yaml")


def test_relatedness_estimate_writes_a_readable_table(
    cli: Invoke, overlap_config: Path, tmp_path: Path
) -> None:
    from dmtl.build.data import build_experiment
    from dmtl.config import load_config

    out = tmp_path / "digit_ink.csv"
    result = cli("relatedness", "estimate", overlap_config, "-o", out)
    assert "digit->ink: (10, 3) table written" in one_line(result.output)
    edge = Relatedness.from_csv(out, DIGIT, INK)
    expected = build_experiment(load_config(overlap_config)).edges[0]
    assert torch.allclose(edge.table, expected.table, atol=1e-5)
    assert ((edge.table > 0) & (edge.table < 1)).all()  # smoothed (alpha = 1)
    # an existing table is kept unless --overwrite
    cli("relatedness", "estimate", overlap_config, "-o", out, code=2)
    cli("relatedness", "estimate", overlap_config, "-o", out, "--overwrite")


def test_relatedness_estimate_named_edge_into_a_folder(
    cli: Invoke, overlap_config: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "tables"
    cli("relatedness", "estimate", overlap_config, "-o", folder, "--source", "digit",
        "--target", "shape", "--alpha", "0")
    edge = Relatedness.from_csv(folder / "digit__shape.csv", DIGIT, SHAPE)
    from dmtl.data.builtin.digits import SHAPE_TABLE

    assert torch.allclose(edge.table, torch.from_numpy(SHAPE_TABLE), atol=1e-6)


def test_relatedness_estimate_errors(
    cli: Invoke, overlap_config: Path, tiny_config_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "t.csv"
    cli("relatedness", "estimate", tiny_config_file, "-o", out, code=2)  # no estimate edge
    cli("relatedness", "estimate", overlap_config, "-o", out, "--source", "digit", code=2)
    result = cli("relatedness", "estimate", overlap_config, "-o", out, "--source", "ink",
                 "--target", "digit", code=2)
    assert "error: relatedness.0.source" in one_line(result.output)


def test_relatedness_show_prints_the_table_and_draws_a_heatmap(
    cli: Invoke, trained_run: Path, tmp_path: Path
) -> None:
    table = tmp_path / "digit__shape.csv"
    table.write_bytes((trained_run / "relatedness" / "digit__shape.csv").read_bytes())
    result = cli("relatedness", "show", table)
    assert _is_png(table.with_suffix(".png"))
    assert "p(digit class -> column)" in result.output
    assert all(label in result.output for label in SHAPE_LABELS)
    # rows are named by class ("7", not "7.00"); 7 is odd, >= 5, prime
    assert re.search(r"│ 7\s+│\s+0\s+│\s+1\s+│\s+1\s+│", result.output), result.output
    image = tmp_path / "elsewhere" / "heat.png"
    image.parent.mkdir()
    cli("relatedness", "show", table, "-o", image, "--max-columns", "2")
    assert _is_png(image)


def test_relatedness_show_errors(cli: Invoke, tmp_path: Path) -> None:
    assert "no such file" in cli("relatedness", "show", tmp_path / "x.csv", code=2).output
    bad = tmp_path / "bad.csv"
    bad.write_text("digit,a\n0,high\n")
    result = cli("relatedness", "show", bad, code=2)
    assert "not a relatedness table" in one_line(result.output)


# ---- datasets, config ----------------------------------------------------------------------------


def test_datasets_list(cli: Invoke) -> None:
    text = cli("datasets", "list").output
    for name in ("digits", "fashion_mnist", "affectnet", "celeba", "disfa"):
        assert name in text
    assert "train 1437, test 360" in text


def test_datasets_show_a_builtin(cli: Invoke) -> None:
    text = one_line(cli("datasets", "show", "digits").output)
    assert "digits: samples labelled per task" in text
    assert "overlap: samples labelled for both tasks" in text
    assert "class balance of digit" in text
    assert "domain-knowledge edges: digit->shape" in text


def test_datasets_show_a_config_shows_the_strata_after_the_regime(
    cli: Invoke, tiny_config_file: Path
) -> None:
    text = one_line(cli("datasets", "show", tiny_config_file).output)
    assert "training strata, seed 0" in text
    assert "regime scarce" in text
    assert "edge digit->shape: table (10, 6)" in text
    seeded = one_line(cli("datasets", "show", tiny_config_file, "--seed", "3").output)
    assert "training strata, seed 3" in seeded


def test_datasets_show_unknown(cli: Invoke) -> None:
    result = cli("datasets", "show", "mnist", code=2)
    assert "neither a built-in dataset" in one_line(result.output)


def test_datasets_export_then_check(
    cli: Invoke, exported_digits: Path, write_config: WriteConfig, tmp_path: Path
) -> None:
    manifest = pd.read_csv(exported_digits)
    assert len(manifest) == 20
    assert {"id", "image", "split", "digit", "shape/even", "ink/heavy"} <= set(manifest.columns)
    assert all(_is_png(exported_digits.parent / p) for p in manifest["image"])
    # exporting again into the same folder is refused unless --overwrite
    cli("datasets", "export", "digits", exported_digits.parent, "--limit", "20", code=2)
    test_only = tmp_path / "test_only"
    cli("datasets", "export", "digits", test_only, "--split", "test", "--limit", "5")
    assert set(pd.read_csv(test_only / "manifest.csv")["split"]) == {"test"}

    data: dict[str, Any] = {
        "tasks": [
            {"name": "digit", "type": "categorical", "classes": DIGIT_CLASSES},
            {"name": "shape", "type": "binary_set", "labels": list(SHAPE_LABELS)},
            {"name": "ink", "type": "binary_set", "labels": INK_LABELS},
        ],
        "sources": [{"name": "png", "manifest": str(exported_digits)}],
    }
    good = write_config(data, name="good.yaml")
    text = one_line(cli("datasets", "check", good).output)
    assert "sources.0 (png): 20 samples readable" in text
    assert "all sources readable" in text
    broken = dict(data, sources=[*data["sources"], {"name": "bad[1]", "manifest": str(good)}])
    result = cli("datasets", "check", write_config(broken, name="broken.yaml"), code=1)
    text = one_line(result.output)
    assert "sources.0 (png): 20 samples readable" in text
    assert "source 'bad[1]': sources.1:" in text  # markup-like names are printed as they are
    assert "1 source(s) with problems" in text


def test_datasets_check_builtin_config(cli: Invoke, tiny_config_file: Path) -> None:
    text = one_line(cli("datasets", "check", tiny_config_file).output)
    assert "sources.0 (digits): 1797 samples readable" in text
    assert "all sources readable" in text


def test_config_show_applies_overrides(cli: Invoke, tiny_config_file: Path) -> None:
    result = cli("config", "show", tiny_config_file, "-s", "trainer.max_epochs=3",
                 "-s", "method.distribution_matching=true")
    shown = yaml.safe_load(result.output)
    assert shown["trainer"]["max_epochs"] == 3
    assert shown["method"]["distribution_matching"] is True
    assert shown["optim"]["weight_decay"] == 0.0001  # defaults filled in


# ---- errors: one line, exit code 2 ---------------------------------------------------------------


def test_config_problems_are_listed_together(
    cli: Invoke, write_config: WriteConfig, tiny_data: Callable[..., dict[str, Any]]
) -> None:
    data = tiny_data()
    data["trainer"]["max_epochs"] = "many"
    data["sources"][0]["colour"] = "red"
    path = write_config(data)
    for command in (["train"], ["study"], ["config", "show"], ["datasets", "check"]):
        result = cli(*command, path, code=2)
        assert isinstance(result.exception, SystemExit)
        text = result.output
        assert text.startswith(f"error: 2 problems in {path}:"), text
        assert "  trainer.max_epochs: Input should be a valid integer" in text
        assert "  sources.0.colour: Extra inputs are not permitted" in text
        assert "Traceback" not in text


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_epochs", "trainer.max_epochs: an override must look like key.sub=value"),
        ("sources.4.name=x", "sources.4: no such list item"),
        ("relatedness.0.target=colour", "relatedness.0: no task 'colour'"),
        ("relatedness.0.source=ink", "relatedness.0.source: task 'ink' is not categorical"),
        ("sources.0.regime.params.task=colour", "sources.0.regime"),
        ("backbone.name=resnet", "unknown backbone 'resnet'"),
        ("trainer.batch_size=1", "cannot hold a sample of each of 2 sources"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_code_2(
    cli: Invoke, tiny_config_file: Path, override: str, message: str
) -> None:
    result = cli("train", tiny_config_file, "-s", override, code=2)
    assert result.output.startswith("error: ")
    assert message in one_line(result.output)
    assert not (tiny_config_file.parent / "runs" / "tiny" / "metrics.json").exists()


def test_missing_config_file(cli: Invoke, tmp_path: Path) -> None:
    result = cli("train", tmp_path / "nope.yaml", code=2)
    assert "config file not found" in result.output


def test_existing_output_folder_is_refused_then_overwritten(
    cli: Invoke, tiny_config_file: Path, tmp_path: Path
) -> None:
    run = tmp_path / "out"
    run.mkdir()
    (run / "old.txt").write_text("keep me")
    result = cli("train", tiny_config_file, "-o", run, code=2)
    text = one_line(result.output)
    assert text.startswith(f"error: output folder {run} already exists and is not empty")
    assert "--resume" in text and "--overwrite" in text
    assert (run / "old.txt").exists()
    # --overwrite deletes only dmtl's own outputs: a folder with other files is refused
    result = cli("train", tiny_config_file, "-o", run, "--overwrite", code=2)
    assert "holds files dmtl did not write (old.txt)" in one_line(result.output)
    assert (run / "old.txt").exists()
    (run / "old.txt").unlink()
    (run / "metrics.json").write_text("{}")  # an earlier run's output
    cli("train", tiny_config_file, "-o", run, "--overwrite")
    assert (run / "metrics.json").is_file()
    assert json.loads((run / "metrics.json").read_text())["steps"] == 5
    # --resume on a finished run: nothing left to train, nothing rewritten
    before = json.loads((run / "metrics.json").read_text())
    result = cli("train", tiny_config_file, "-o", run, "--resume")
    assert "holds a finished run: nothing to resume" in one_line(result.output)
    assert json.loads((run / "metrics.json").read_text()) == before


def test_nan_loss_names_the_term_the_step_and_the_sources(
    cli: Invoke, tiny_config_file: Path
) -> None:
    result = cli("train", tiny_config_file, "-s", "optim.lr=1e30",
                 "-s", "trainer.steps_per_epoch=20", code=2)
    text = one_line(result.output)
    assert re.search(r"error: loss term '[a-z/>-]+' is (nan|inf|-inf) at step \d+ ", text), text
    assert "sources: digits[digit], digits[shape+ink]" in text
    assert "lower the learning rate" in text


def test_missing_optional_dependency_says_how_to_install_it(
    cli: Invoke, tiny_config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` raises ImportError
    result = cli("train", tiny_config_file, "-s", "backbone.name=timm:resnet18",
                 "-s", "backbone.options={}", code=2)
    text = one_line(result.output)
    assert text.startswith("error: ") and "backbone 'timm:resnet18' needs timm" in text
    assert "pip install 'dmtl[vision]'" in text


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="200", OMP_NUM_THREADS="1")
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "SLURM_PROCID"):
        env.pop(key, None)
    return env


@pytest.mark.slow
def test_a_real_process_prints_no_traceback(write_config: WriteConfig,
                                            tiny_data: Callable[..., dict[str, Any]]) -> None:
    data = tiny_data()
    data["trainer"]["max_epochs"] = "many"
    path = write_config(data)
    done = subprocess.run(
        [sys.executable, "-m", "dmtl", "train", str(path)],
        capture_output=True, text=True, timeout=120, env=_subprocess_env(), cwd=path.parent,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    expected = f"error: {path}: trainer.max_epochs: Input should be a valid integer"
    assert any(line.startswith(expected) for line in lines), lines  # (after any warning)


# ---- timm backbone on exported images ------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.vision
def test_timm_backbone_on_exported_png_images(
    cli: Invoke, write_config: WriteConfig, tmp_path: Path
) -> None:
    pytest.importorskip("timm")
    export = tmp_path / "png"
    cli("datasets", "export", "digits", export, "--limit", "60")
    data: dict[str, Any] = {
        "name": "timm-tiny",
        "tasks": [
            {"name": "digit", "type": "categorical", "classes": DIGIT_CLASSES},
            {"name": "shape", "type": "binary_set", "labels": list(SHAPE_LABELS)},
            {"name": "ink", "type": "binary_set", "labels": INK_LABELS},
        ],
        "sources": [
            {"name": "png", "manifest": str(export / "manifest.csv"),
             "input": {"image_size": 32, "channels": 3},
             "regime": {"name": "overlap", "params": {"fraction": 0.5}}}
        ],
        "relatedness": [{"source": "digit", "target": "shape", "kind": "estimate"}],
        "backbone": {"name": "timm:resnet18", "pretrained": False},
        "trainer": {"max_epochs": 1, "steps_per_epoch": 3, "batch_size": 8,
                    "eval_batch_size": 32, "progress_bar": False, "accelerator": "cpu"},
        "output": {"dir": str(tmp_path / "run")},
    }
    config = write_config(data, name="timm.yaml")
    cli("train", config)
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["steps"] == 3
    assert summary["metrics"]["digit/num_labelled"] > 0
    out = tmp_path / "predictions.csv"
    cli("predict", tmp_path / "run", export / "images", "-o", out)
    _check_predictions(pd.read_csv(out), 60)


def test_predict_ignores_label_columns_the_model_does_not_know(
    cli: Invoke, trained_run: Path, exported_digits: Path, tmp_path: Path
) -> None:
    manifest = pd.read_csv(exported_digits)
    manifest["other/thing"] = 1  # labels of a task this model never had
    labelled = exported_digits.parent / "with_other_task.csv"
    manifest.to_csv(labelled, index=False)
    out = tmp_path / "predictions.csv"
    cli("predict", trained_run, labelled, "-o", out)
    frame = pd.read_csv(out)
    _check_predictions(frame, len(manifest))
    assert "other/thing" not in frame.columns


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_trainer_lightning_cannot_set_up_is_one_clear_error(
    cli: Invoke, tiny_config_file: Path, tmp_path: Path
) -> None:
    result = cli(
        "train", tiny_config_file, "-o", tmp_path / "gpu", "-s", "trainer.accelerator=gpu", code=2
    )
    text = one_line(result.output)
    assert text.startswith("error: trainer:")
    assert "trainer.accelerator='gpu'" in text
    assert "Traceback" not in result.output


def test_predict_resizes_images_and_rejects_arrays_of_another_shape(
    cli: Invoke, trained_run: Path, tmp_path: Path
) -> None:
    from PIL import Image

    folder = tmp_path / "large"
    folder.mkdir()
    for i in range(3):  # 28x28 images for a model trained on 8x8 digits: resized on reading
        Image.fromarray(np.full((28, 28), 40 * i, np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "p.csv"
    cli("predict", trained_run, folder, "-o", out)
    assert len(pd.read_csv(out)) == 3
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 1, 28, 28), np.float32))
    result = cli("predict", trained_run, wrong, "-o", tmp_path / "q.csv", code=2)
    assert "the model was trained on inputs of shape (1, 8, 8)" in one_line(result.output)


def test_more_bad_input_is_one_clear_line(
    cli: Invoke, tiny_config_file: Path, tmp_path: Path
) -> None:
    result = cli("config", "show", tiny_config_file, "-s", "trainer.max_epochs=[1", code=2)
    assert "trainer.max_epochs: the value '[1' is not valid YAML" in one_line(result.output)
    result = cli("predict", tiny_config_file, tmp_path, "-o", tmp_path / "p.csv", code=2)
    assert "not a dmtl checkpoint" in one_line(result.output)
    result = cli("datasets", "export", "nope", tmp_path / "out", code=2)
    assert "unknown built-in dataset 'nope'" in one_line(result.output)
    cli("study", tiny_config_file, "--seeds", "0", code=2)
    assert "Traceback" not in result.output


def test_relatedness_show_keeps_an_existing_png(cli: Invoke, tmp_path: Path) -> None:
    table = tmp_path / "r.csv"
    table.write_text("a,u,v\nx,0.1,0.9\ny,0.5,0.5\n")
    png = tmp_path / "r.png"
    png.write_bytes(b"mine")
    result = cli("relatedness", "show", table, code=2)
    assert "r.png exists; pass --overwrite" in one_line(result.output)
    assert png.read_bytes() == b"mine"
    cli("relatedness", "show", table, "--overwrite")
    assert _is_png(png)
