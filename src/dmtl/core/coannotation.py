r"""Co-annotation through one edge ``A -> B`` (method.md section 5): soft labels from labels.

- ``A -> B``: a sample labelled with class ``c`` for A gets ``R[c, :]`` as B's target on
  the B entries it lacks (binary set: per label; categorical: unlabelled samples);
- ``B -> A``: a sample with B labels but no A label gets the inverse-map posterior
  ``q_A(.|b)`` (only observed labels enter the evidence) as A's target.

Each side learns as its task's kind learns from a soft target (soft cross-entropy for a
categorical task, soft binary cross-entropy for a binary set). Hard co-annotation
thresholds the targets first (each kind's ``harden``). A side with no such sample in the
batch contributes an exact 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor

from dmtl.core.labels import PartialLabels
from dmtl.core.relatedness import Relatedness

CoAnnotationMode = Literal["off", "soft", "hard"]


def co_annotation_losses(
    edge: Relatedness,
    logits: Mapping[str, Tensor],
    labels: PartialLabels,
    mode: CoAnnotationMode = "soft",
    prior: Tensor | None = None,
    eps: float = 0.05,
    tau: float = 1.0,
    hard_threshold: float = 0.5,
) -> dict[str, Tensor]:
    """``{"A->B": loss, "B->A": loss}`` of co-annotation through ``edge`` on one batch.

    ``eps``/``tau``: clamp and temperature of the inverse map with label evidence;
    ``hard_threshold``: the least probability a hard categorical target must have.
    """
    a, b = edge.source, edge.target
    z_a, z_b = logits[a.name], logits[b.name]
    # A task absent from the batch's labels is unlabelled on every sample (e.g. a batch from
    # a source annotated for A only): the other side still gets co-annotation targets.
    n = z_a.shape[0]
    la, lb = labels.get_or_empty(a, n, z_a.device), labels.get_or_empty(b, n, z_a.device)
    precise = torch.promote_types(z_a.dtype, torch.float32)
    table = edge.table.to(z_a.device, precise)
    out: dict[str, Tensor] = {}

    # A -> B: from A's label through R.
    from_a = table[la.target]  # (N, K_B): R[c, :]
    need_b = b.learning_mask(la.mask, lb)  # type: ignore[attr-defined]
    if mode == "hard":
        from_a, kept = b.harden(from_a, hard_threshold)  # type: ignore[attr-defined]
        need_b = need_b & kept
    out[f"{a.name}->{b.name}"] = b.soft_target_loss(z_b, from_a, need_b)  # type: ignore[attr-defined]

    # B -> A: from B's labels through the inverse map.
    need_a = lb.labelled_samples & ~la.mask
    evidence, observed = b.evidence(lb, precise)  # type: ignore[attr-defined]
    q_a = edge.inverse_map(evidence, observed, prior, eps, tau)
    if mode == "hard":
        q_a, kept = a.harden(q_a, hard_threshold)
        need_a = need_a & kept
    out[f"{b.name}->{a.name}"] = a.soft_target_loss(z_a, q_a.detach(), need_a)
    return out


__all__ = ["CoAnnotationMode", "co_annotation_losses"]
