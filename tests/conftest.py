"""Shared fixtures: a tiny digits config (seconds to train on a CPU), written to ``tmp_path``.

``TINY``: built-in digits, 10% of the digit labels kept (``scarce``; shape and ink on
the rest), the ``digit -> shape`` knowledge edge, an MLP with one hidden layer of 32,
one epoch of 5 steps of 32 samples, no progress bar, one study seed, the five original
variants of the study.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

TINY: dict[str, Any] = {
    "name": "tiny",
    "sources": [
        {
            "name": "digits",
            "builtin": "digits",
            "regime": {
                "name": "scarce",
                "params": {"task": "digit", "fraction": 0.1, "others_on": "rest"},
            },
        }
    ],
    "relatedness": [{"source": "digit", "target": "shape", "kind": "knowledge"}],
    "backbone": {"name": "mlp", "options": {"hidden": [32]}},
    "optim": {"name": "adamw", "lr": 0.01, "schedule": "none"},
    "trainer": {
        "max_epochs": 1,
        "steps_per_epoch": 5,
        "batch_size": 32,
        "progress_bar": False,
        "log_every_n_steps": 1,
        "accelerator": "cpu",
    },
    "output": {"dir": "runs/tiny"},
    "study": {"seeds": 1, "variants": ["single_task", "mtl", "mtl+ca", "mtl+dm", "mtl+ca+dm"]},
}

WriteConfig = Callable[..., Path]


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> None:
    """One intra-op thread per test process: the suite runs as ``pytest -n 2`` on 2 cores,
    the models are tiny, and oversubscribed threads made the same run 10x slower here."""
    import torch

    torch.set_num_threads(1)


def tiny_config_data(**sections: Any) -> dict[str, Any]:
    """A deep copy of :data:`TINY`; each keyword replaces or (for dicts) updates a section."""
    data = copy.deepcopy(TINY)
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    return data


@pytest.fixture
def write_config(tmp_path: Path) -> WriteConfig:
    """``write_config(data=None, name="tiny.yaml", **sections)``: a YAML config under ``tmp_path``.

    ``output.dir`` is made absolute under ``tmp_path`` unless the caller sets it.
    """

    def write(data: dict[str, Any] | None = None, name: str = "tiny.yaml", **sections: Any) -> Path:
        content = copy.deepcopy(data) if data is not None else tiny_config_data(**sections)
        output = content.setdefault("output", {})
        if output.get("dir") == TINY["output"]["dir"]:
            output["dir"] = str(tmp_path / "runs" / Path(name).stem)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(content, sort_keys=False))
        return path

    return write


@pytest.fixture
def tiny_config_file(write_config: WriteConfig) -> Path:
    """:data:`TINY` as a YAML file (output folder under ``tmp_path``)."""
    return write_config()


@pytest.fixture(scope="session")
def tiny_data() -> Callable[..., dict[str, Any]]:
    """:func:`tiny_config_data`, for tests that build a config mapping in Python."""
    return tiny_config_data
