"""Backbones that misbehave on cue, for tests that run ``dmtl`` in a real process.

Use as ``backbone.name: dmtl_test_faults:<factory>`` with this folder on ``PYTHONPATH``.
Each wraps the built-in ``mlp`` and acts at its ``at``-th training forward pass (0-based)
on the process whose ``RANK`` (as ``torchrun`` sets it; 0 without one) is ``rank``:

- ``nan_features``: the features become NaN, so every loss term is NaN;
- ``raise_error``: raises a ``RuntimeError``;
- ``send_sigint``: sends SIGINT to its own process (Ctrl-C on that rank alone);
- ``block``: writes the file ``$DMTL_TEST_MARKER`` and sleeps for ``seconds`` (a step
  that does not end).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dmtl.backbones import mlp


class _OnCue(nn.Module):
    def __init__(self, inner: nn.Module, action: str, at: int, rank: int, seconds: float):
        super().__init__()
        self.inner = inner
        self.action, self.at, self.rank, self.seconds = action, at, rank, seconds
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        features: Tensor = self.inner(x)
        if not self.training:
            return features
        due = self.calls == self.at and int(os.environ.get("RANK", "0")) == self.rank
        self.calls += 1
        if not due:
            return features
        if self.action == "nan_features":
            return features * torch.nan
        if self.action == "raise_error":
            raise RuntimeError(f"injected failure on rank {self.rank}")
        if self.action == "send_sigint":
            os.kill(os.getpid(), signal.SIGINT)
        elif self.action == "block":
            Path(os.environ["DMTL_TEST_MARKER"]).write_text("blocking")
            time.sleep(self.seconds)
        return features


def _factory(action: str) -> Callable[..., tuple[nn.Module, int]]:
    def make(
        in_channels: int,
        image_size: int | None,
        pretrained: bool = False,
        at: int = 2,
        rank: int = 0,
        seconds: float = 600.0,
        **options: Any,
    ) -> tuple[nn.Module, int]:
        inner, dim = mlp(in_channels, image_size, pretrained, **options)
        return _OnCue(inner, action, at, rank, seconds), dim

    return make


nan_features = _factory("nan_features")
raise_error = _factory("raise_error")
send_sigint = _factory("send_sigint")
block = _factory("block")
