"""``backbone.name: module:function`` with the module next to the config: ``dmtl train``
finds it from another working directory, without PYTHONPATH."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

MODULE = '''
from torch import nn


def tiny(in_channels, image_size, pretrained=False, width=6):
    """A user's backbone: flatten, one linear layer."""
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(width), nn.ReLU()), width
'''


@pytest.fixture
def forget_module() -> Iterator[None]:
    before = list(sys.path)
    yield
    sys.path[:] = before
    sys.modules.pop("user_nets_for_train", None)


@pytest.mark.slow
def test_train_with_a_factory_next_to_the_config(
    cli: Callable[..., Any],
    tiny_data: Callable[..., dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    forget_module: None,
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "user_nets_for_train.py").write_text(textwrap.dedent(MODULE))
    data = tiny_data(output={"dir": str(tmp_path / "run")})
    data["backbone"] = {"name": "user_nets_for_train:tiny", "options": {"width": 5}}
    config = project / "c.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert "user_nets_for_train" not in sys.modules
    cli("train", config)
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
