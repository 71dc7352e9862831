r"""Distribution matching through one edge ``A -> B`` (method.md section 6), on every sample.

- ``A -> B`` (forward): ``q_B = softmax(z_A) @ R`` is B's soft target;
- ``B -> A`` (inverse): ``q_A`` from B's predictions through Bayes' rule (binary set: soft
  evidence ``s = sigmoid(z_B)`` with clamp ``eps`` and temperature ``tau``) is A's target.

Each side learns as its kind learns from a soft target: a categorical task by
``mean_x CE(q, softmax(z))``, a binary set by ``mean_x mean_j BCE(q_j, sigmoid(z_j))``.
With ``stop_gradient`` (the default) targets are detached, so each task teaches the
other as a teacher would.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from dmtl.core.maps import forward_map
from dmtl.core.relatedness import Relatedness


def distribution_matching_losses(
    edge: Relatedness,
    logits: Mapping[str, Tensor],
    prior: Tensor | None = None,
    eps: float = 0.05,
    tau: float = 3.0,
    stop_gradient: bool = True,
    forward: bool = True,
    inverse: bool = True,
    weight: Tensor | None = None,
) -> dict[str, Tensor]:
    """``{"A->B": loss, "B->A": loss}`` of distribution matching through ``edge``.

    ``forward``/``inverse`` switch each direction; ``weight`` ``(N,)`` optionally
    restricts (or weighs) the samples.
    """
    a, b = edge.source, edge.target
    z_a, z_b = logits[a.name], logits[b.name]
    out: dict[str, Tensor] = {}
    if weight is None:
        weight = torch.ones(z_a.shape[0], dtype=z_a.dtype, device=z_a.device)
    if forward:
        q_b = forward_map(a.predict(z_a), edge.table)  # clamped to [0, 1]
        if stop_gradient:
            q_b = q_b.detach()
        out[f"{a.name}->{b.name}"] = b.soft_target_loss(z_b, q_b, weight)  # type: ignore[attr-defined]
    if inverse:
        q_a = edge.inverse_map(b.predict(z_b), prior=prior, eps=eps, tau=tau)
        if stop_gradient:
            q_a = q_a.detach()
        out[f"{b.name}->{a.name}"] = a.soft_target_loss(z_a, q_a, weight)
    return out


__all__ = ["distribution_matching_losses"]
