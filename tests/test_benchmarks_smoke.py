"""Smoke test of ``python -m benchmarks``: every section runs (``--quick``: 1 seed, 1 epoch,
tiny sizes, a couple of timing iterations) and writes JSON of the documented layout, and the
report renders from it. It checks that the scripts work, never what they measure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _run(*args: str, results: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", *args, "--quick", "--results", str(results),
         "--doc", str(results / "benchmarks.md")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bench")
    _run("quality", results=folder)
    _run("cost", "--cases", "small_cnn-28", "celeba-heads", results=folder)
    _run("ddp", results=folder)
    _run("loader", results=folder)
    return folder


def _load(folder: Path, name: str) -> dict[str, Any]:
    data = json.loads((folder / f"{name}.json").read_text())
    for key in ("schema", "name", "command", "quick", "finished", "hardware"):
        assert key in data, f"{name}.json lacks {key!r}"
    assert data["name"] == name and data["quick"] is True
    assert data["command"].startswith(f"python -m benchmarks {name}")
    for key in ("cpu", "cores", "torch", "device"):
        assert key in data["hardware"]
    return data


def test_quality_json(results: Path) -> None:
    data = _load(results, "quality")
    assert data["settings"]["seeds"] == 1
    (study,) = data["studies"]
    assert study["name"] == "digits-scarce-3"
    assert study["command"].startswith("dmtl study configs/digits-scarce.yaml --seeds 1")
    assert set(study["tasks"]) == {"digit", "shape", "ink"}
    for variant in ("single_task", "mtl", "mtl+ca", "mtl+dm", "mtl+ca+dm"):
        for task in study["tasks"]:
            cell = study["variants"][variant][task]
            assert set(cell) == {"mean", "std", "n", "values"}
            assert cell["n"] == 1 and 0.0 <= cell["mean"] <= 1.0
        if variant != "single_task":
            assert isinstance(study["verdicts"][variant], str)
    assert study["failed"] == []
    (target,) = [t for t in data["targets"] if t["target"].startswith("digits 3")]
    assert isinstance(target["reached"], bool)
    assert set(study["recommendation"]["per_task"]) == set(study["tasks"])


def test_recommendation_section(results: Path) -> None:
    from benchmarks.quality import resummarise
    from benchmarks.report import recommendation_section

    before = _load(results, "quality")
    resummarise(results / "quality.json")  # the summaries again, from the studies' results
    data = _load(results, "quality")
    assert "resummarised" in data
    assert [s["recommendation"] for s in data["studies"]] == [
        s["recommendation"] for s in before["studies"]]
    (section,) = recommendation_section(data, results / "benchmarks.md")
    (row,) = [line for line in section.splitlines() if line.startswith("| digits-scarce-3 ")]
    assert all(f"{task}: " in row for task in ("digit", "shape", "ink"))
    assert "regimes; no task below single-task by more than 0.01 in" in section


def test_cost_json(results: Path) -> None:
    data = _load(results, "cost")
    names = [c["case"]["name"] for c in data["cases"]]
    assert names == ["small_cnn-28", "celeba-heads"]
    for case in data["cases"]:
        assert set(case["step_s"]) == {"full", "mtl", "single", "upgrad"}
        assert all(t > 0 for t in case["step_s"].values())
        for pair in ("full/mtl", "full/single", "mtl/single", "upgrad/full"):
            ratio = case["ratios"][pair]
            assert ratio["min"] <= ratio["median"] <= ratio["max"]
            assert len(ratio["values"]) == case["repeats"]
    memory = data["cases"][0]["memory"]
    assert set(memory) == {"full", "mtl", "single", "upgrad"}
    assert all("delta_mib" in m and "method" in m for m in memory.values())
    assert data["cases"][1]["target_full_over_mtl"] == 1.10
    e2e = data["end_to_end"]
    assert e2e["ratio"] > 0 and e2e["target"] == 1.10
    first = e2e["repeats"][0]
    assert first["dmtl"]["steps"] == first["hand"]["steps"] == e2e["steps"]
    assert first["lightning"]["steps"] == e2e["steps"] and e2e["lightning_epoch_s"] > 0
    assert e2e["dmtl_epoch_s"] > 0 and e2e["hand_epoch_s"] > 0 and e2e["dmtl_load_s"] > 0
    step = data["objective_step"]
    assert step["ratio"] > 0 and step["target"] == 1.15
    assert len(step["pair_ratios"]) == data["cases"][0]["repeats"]
    demo = data["demo_run"]
    assert demo["variant"] == "mtl+ca+dm" and demo["run_s"] > 0 and demo["steps"] > 0


def test_ddp_json(results: Path) -> None:
    data = _load(results, "ddp")
    assert set(data["runs"]) == {"1", "2"}
    for nproc in ("1", "2"):
        (run,) = data["runs"][nproc]
        assert run["world_size"] == int(nproc)
        assert run["samples_per_s"] > 0 and run["steps_timed"] > 0
        assert "digit/accuracy" in run["metrics"]
    assert data["speedup"] > 0 and data["target"] == 1.7


def test_loader_json(results: Path) -> None:
    data = _load(results, "loader")
    assert data["loader_command"].startswith("python benchmarks/loader.py")
    assert data["loader"]["loaders"] and data["loader"]["train_step"]["samples_per_s"] > 0
    paths = [row["path"] for row in data["loader"]["loaders"]]
    assert "manifest + PNG, cache: memory" in paths
    jpeg = data["loader"]["jpeg"]
    assert jpeg["size"] == 224 and jpeg["train_size"] == 112
    assert {row["path"] for row in jpeg["loaders"]} == {"JPEG files", "cache: memory"}
    assert all(row["samples_per_s"] > 0 for row in jpeg["loaders"])
    assert isinstance(jpeg["keeps_up"], bool) and jpeg["resnet18"][0]["samples_per_s"] > 0


def test_report(results: Path) -> None:
    page = (results / "benchmarks.md").read_text()
    for heading in ("# Benchmarks", "## 1. Quality", "## 2. Cost", "## 3. Scale-out",
                    "## 4. GPU", "## 5. Loader", "not run on a gpu yet"):
        assert heading.lower() in page.lower(), heading
    assert "digits-scarce.yaml" in page
    for section in ("### End to end", "### One step", "### One run of the demo",
                    "### JPEG decoding"):
        assert section in page, section
    assert (results / "benchmarks" / "cost-ratios.png").is_file()
    assert (results / "benchmarks" / "quality-digits.png").is_file()


def test_faces_json_and_section(tmp_path: Path) -> None:
    pytest.importorskip("av")
    pytest.importorskip("skimage")
    _run("faces", results=tmp_path)
    data = _load(tmp_path, "faces")
    (detector,) = data["detectors"]
    assert detector["frames"] == data["settings"]["frames"] == 20
    assert detector["fps"] > 0 and detector["cpu_fps"] > 0
    assert set(detector["stage_share"]) == {"decode", "detect", "track", "crop", "model"}
    assert detector["slowest"] in detector["stage_share"]
    assert len(data["load_before"]) == 3 and len(data["load_after"]) == 3
    page = (tmp_path / "benchmarks.md").read_text()
    assert "## 6. Faces in the wild" in page and detector["detector"] in page
