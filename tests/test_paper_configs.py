"""The paper's example configs: valid, and runnable end to end on the readers' fixtures.

Each config's dataset roots are pointed at the small fixture trees of
``tests/data/readers/fixtures`` (copied, with a tiny blank image written for every
image path the reader builds), then the experiment is assembled and one training step
runs with a small backbone.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from dmtl.build.data import build_experiment
from dmtl.config import load_config
from dmtl.data.readers import read_dataset
from dmtl.training.run import run_training

CONFIGS = sorted((Path(__file__).parents[1] / "configs" / "paper").glob("*.yaml"))
FIXTURES = Path(__file__).parent / "data" / "readers" / "fixtures"


def _fixture_root(reader: str, tmp_path: Path, options: dict[str, Any]) -> Path:
    """A copy of the reader's fixture tree with a blank image at every manifest path."""
    src = FIXTURES / reader
    root = tmp_path / reader
    shutil.copytree(src, root)
    if reader == "cub":
        root = root / "CUB_200_2011"
    result = read_dataset(reader, root, **options)
    for rel in result.manifest["image"]:
        path = root / str(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((20, 20, 3), 128, np.uint8)).save(path, format="PNG")
    return root


def _overrides(config: Path, tmp_path: Path) -> list[str]:
    import yaml

    raw = yaml.safe_load(config.read_text())
    out = []
    for i, source in enumerate(raw["sources"]):
        root = _fixture_root(source["reader"], tmp_path, source.get("options", {}))
        out.append(f"sources.{i}.root={root}")
        out.append(f"sources.{i}.input.image_size=16")
        if source.get("regime", {}).get("name") == "overlap":
            out.append(f"sources.{i}.regime.params.fraction=0.5")
        if source["reader"] in ("disfa", "bp4d"):
            out.append(f"sources.{i}.options.test_subjects=[]")
    return out


def test_every_case_study_has_a_config() -> None:
    names = {c.stem for c in CONFIGS}
    assert {"affectnet+disfa", "rafdb+bp4d", "affwild2", "celeba", "cub", "ut-zappos",
            "deepfashion"} <= names


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_paper_config_runs_on_fixtures(config: Path, tmp_path: Path) -> None:
    overrides = [
        *_overrides(config, tmp_path),
        "backbone.name=small_cnn",
        "backbone.pretrained=false",
        "trainer.max_epochs=1",
        "trainer.steps_per_epoch=1",
        "trainer.batch_size=4",
        "trainer.eval_batch_size=4",
        "trainer.num_workers=0",
        "trainer.precision=32-true",
        "trainer.accelerator=cpu",
        "trainer.progress_bar=false",
        f"output.dir={tmp_path / 'run'}",
    ]
    cfg = load_config(config, overrides)
    experiment = build_experiment(cfg)
    assert experiment.edges, "each case study relates its tasks"
    result = run_training(experiment, tmp_path / "run", quiet=True, progress_bar=False)
    assert result.steps == 1
