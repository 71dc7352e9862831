"""A backbone that records which rows it trains on, for the DDP tests of packed sources.

Use as ``backbone.name: dmtl_test_rows:recorder`` with this folder on ``PYTHONPATH``, on
inputs whose first value is the row number: every training forward pass appends those
numbers, one line per batch, to ``$DMTL_TEST_ROWS/rank<RANK>.txt`` (``SLURM_PROCID``
without ``RANK``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from dmtl.backbones import mlp


class _Recorder(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            rows = x.flatten(1)[:, 0].round().long().tolist()
            rank = os.environ.get("RANK") or os.environ.get("SLURM_PROCID", "0")
            path = Path(os.environ["DMTL_TEST_ROWS"]) / f"rank{rank}.txt"
            with path.open("a") as handle:
                handle.write(" ".join(map(str, rows)) + "\n")
        features: Tensor = self.inner(x)
        return features


def recorder(
    in_channels: int, image_size: int | None, pretrained: bool = False, **options: Any
) -> tuple[nn.Module, int]:
    inner, dim = mlp(in_channels, image_size, pretrained, **options)
    return _Recorder(inner), dim
