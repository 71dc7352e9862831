"""docs/images.md: its config is valid and its custom transform works as the doc says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml

from dmtl.config import Config
from dmtl.data.transforms import train_transform

DOC = Path(__file__).parents[2] / "docs" / "images.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_config_of_the_page_is_valid() -> None:
    (block,) = _blocks("yaml")
    config = Config.model_validate(yaml.safe_load(block))
    assert config.optim.backbone_lr_scale == 0.1
    assert config.sources[0].balance == "expression"
    assert config.output.loggers == ["csv", "mlflow"]


def test_the_custom_transform_of_the_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torchvision")
    (block,) = _blocks("python")
    (tmp_path / "doc_augment.py").write_text(block)
    monkeypatch.syspath_prepend(str(tmp_path))
    transform = train_transform("doc_augment:build", (16, 16), 3)
    assert transform is not None
    assert transform(torch.rand(3, 20, 20)).shape == (3, 16, 16)
