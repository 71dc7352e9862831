r"""Losses: masked supervised, co-annotation (labels) and distribution matching (predictions).

All losses take logits (never probabilities) and are numerically stable for
logits up to ``±1e4``. Every average is over what is observed; a loss with
nothing to act on returns an exact ``0`` that still carries a (zero) gradient
to the logits, never NaN.

Notation: ``z`` logits, ``q`` a (soft) target distribution, ``m`` a mask.

- masked cross-entropy:        ``L = sum_i m_i CE(z_i, y_i) / sum_i m_i``
- soft cross-entropy:          ``L = sum_i w_i (- sum_c q_ic log softmax(z_i)_c) / sum_i w_i``
- masked (soft) binary CE:     ``L = sum_ij m_ij BCE(q_ij, sigmoid(z_ij)) / sum_ij m_ij``,
  ``BCE(q, p) = -[w+ q log p + (1 - q) log(1 - p)]`` with optional positive weights ``w+``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from dmtl.core.labels import PartialLabels, TaskLabels
from dmtl.core.relatedness import Relatedness, forward_map
from dmtl.core.tasks import CategoricalTask, Task

CoAnnotationMode = Literal["off", "soft", "hard"]


def _masked_mean(values: Tensor, weight: Tensor) -> Tensor:
    """``sum(w * v) / sum(w)``, and exactly 0 (with gradient) when ``sum(w) == 0``."""
    weight = weight.to(values.dtype)
    total = weight.sum()
    return (values * weight).sum() / torch.where(total > 0, total, torch.ones_like(total))


def soft_cross_entropy(logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """``sum_i w_i (-sum_c q_ic log softmax(z_i)_c) / sum_i w_i`` for soft targets ``q`` ``(N, C)``.

    >>> soft_cross_entropy(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]))
    tensor(0.6931)
    """
    per_sample = -(target * torch.log_softmax(logits, dim=-1)).sum(dim=-1)
    if weight is None:
        weight = torch.ones_like(per_sample)
    return _masked_mean(per_sample, weight)


def masked_cross_entropy(logits: Tensor, labels: TaskLabels) -> Tensor:
    """``sum_i m_i CE(z_i, y_i) / sum_i m_i`` over the labelled samples of a categorical task.

    >>> from dmtl.core.labels import TaskLabels
    >>> labels = TaskLabels(torch.tensor([1, 0]), torch.tensor([True, False]))
    >>> masked_cross_entropy(torch.zeros(2, 4), labels)
    tensor(1.3863)
    """
    # Masked-out targets may hold any filler (e.g. -1): never read them.
    target = torch.where(labels.mask, labels.target, torch.zeros_like(labels.target))
    per_sample = F.cross_entropy(logits, target, reduction="none")
    return _masked_mean(per_sample, labels.mask)


def masked_binary_cross_entropy(
    logits: Tensor, target: Tensor, mask: Tensor | None = None, pos_weight: Tensor | None = None
) -> Tensor:
    """``sum_ij m_ij BCE(q_ij, sigmoid(z_ij)) / sum_ij m_ij``; ``q`` may be soft (in [0, 1]).

    >>> masked_binary_cross_entropy(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]))
    tensor(0.6931)
    """
    target = target.to(logits.dtype)
    if mask is None:
        mask = torch.ones_like(target, dtype=torch.bool)
    else:
        # Masked-out targets may hold any filler (NaN in the encoded form): never read them.
        target = torch.where(mask, target, torch.zeros_like(target))
    per_entry = F.binary_cross_entropy_with_logits(
        logits, target, reduction="none", pos_weight=pos_weight
    )
    return _masked_mean(per_entry, mask)


# ---- co-annotation ------------------------------------------------------------------------------


def hard_binary_targets(soft: Tensor, threshold: float = 0.5) -> Tensor:
    """Hard co-annotation for binary sets: ``1[q_j >= threshold]``."""
    return (soft >= threshold).to(soft.dtype)


def hard_categorical_targets(soft: Tensor, threshold: float = 0.5) -> tuple[Tensor, Tensor]:
    """Hard categorical co-annotation: one-hot arg-max, kept where its probability ``>= threshold``.

    Returns the one-hot targets and a ``(N,)`` mask of the rows kept.
    """
    best, index = soft.max(dim=-1)
    return F.one_hot(index, soft.shape[-1]).to(soft.dtype), best >= threshold


def _labels_or_unlabelled(
    labels: PartialLabels, task: Task, batch_size: int, device: torch.device
) -> TaskLabels:
    """The task's labels, or all-unlabelled ones if the task is absent from the batch."""
    if task.name in labels:
        return labels[task.name]
    shape = (batch_size,) if isinstance(task, CategoricalTask) else (batch_size, task.num_outputs)
    dtype = torch.long if isinstance(task, CategoricalTask) else torch.float32
    return TaskLabels(
        torch.zeros(shape, dtype=dtype, device=device),
        torch.zeros(shape, dtype=torch.bool, device=device),
    )


def co_annotation_losses(
    edge: Relatedness,
    logits: dict[str, Tensor],
    labels: PartialLabels,
    mode: CoAnnotationMode = "soft",
    prior: Tensor | None = None,
    eps: float = 0.05,
    tau: float = 1.0,
    hard_threshold: float = 0.5,
) -> dict[str, Tensor]:
    """Co-annotation through one edge A -> B (method.md section 5).

    - ``A->B``: a sample labelled with class c for A gets ``R[c, :]`` as B's target, on
      the B entries it lacks (binary sets: per label; categorical: unlabelled samples).
    - ``B->A``: a sample with B labels but no A label gets the inverse-map posterior
      ``q_A(.|b)`` (only observed labels enter the evidence) as A's target.

    Losses have the supervised form (soft BCE / soft CE) against these targets.
    Returns ``{"A->B": loss, "B->A": loss}``; a side with no such sample gives 0.
    """
    a, b = edge.source, edge.target
    out: dict[str, Tensor] = {}
    z_a, z_b = logits[a.name], logits[b.name]
    # A task absent from the batch's labels is unlabelled on every sample (e.g. a batch from
    # a source annotated for A only): the other side still gets co-annotation targets.
    la = _labels_or_unlabelled(labels, a, z_a.shape[0], z_a.device)
    lb = _labels_or_unlabelled(labels, b, z_a.shape[0], z_a.device)
    table = edge.table.to(z_a.device, z_a.dtype)

    # A -> B: from A's label through R.
    from_a = table[la.target]  # (N, K_B): R[c, :]
    if edge.target_is_categorical:
        need = la.mask & ~lb.mask
        if mode == "hard":
            from_a, kept = hard_categorical_targets(from_a, hard_threshold)
            need = need & kept
        out[f"{a.name}->{b.name}"] = soft_cross_entropy(z_b, from_a, need)
    else:
        need_entries = la.mask[:, None] & ~lb.mask
        if mode == "hard":
            from_a = hard_binary_targets(from_a, 0.5)
        out[f"{a.name}->{b.name}"] = masked_binary_cross_entropy(z_b, from_a, need_entries)

    # B -> A: from B's labels through the inverse map.
    need_a = lb.labelled_samples & ~la.mask
    if edge.target_is_categorical:
        evidence = F.one_hot(lb.target, b.num_outputs).to(z_a.dtype)
        q_a = edge.inverse_map(evidence, prior=prior)
    else:
        q_a = edge.inverse_map(
            lb.target.to(z_a.dtype), observed=lb.mask, prior=prior, eps=eps, tau=tau
        )
    if mode == "hard":
        q_a, kept = hard_categorical_targets(q_a, hard_threshold)
        need_a = need_a & kept
    out[f"{b.name}->{a.name}"] = soft_cross_entropy(z_a, q_a.detach(), need_a)
    return out


# ---- distribution matching ----------------------------------------------------------------------


def distribution_matching_losses(
    edge: Relatedness,
    logits: dict[str, Tensor],
    prior: Tensor | None = None,
    eps: float = 0.05,
    tau: float = 3.0,
    stop_gradient: bool = True,
    forward: bool = True,
    inverse: bool = True,
    weight: Tensor | None = None,
) -> dict[str, Tensor]:
    """Distribution matching through one edge A -> B (method.md section 6), on every sample.

    - ``A->B`` (forward): ``q_B = softmax(z_A) @ R``; binary set:
      ``mean_x mean_j BCE(q_B,j, sigmoid(z_B,j))``, categorical: ``mean_x CE(q_B, softmax(z_B))``.
    - ``B->A`` (inverse): ``q_A`` from B's predictions through Bayes' rule (binary:
      soft evidence ``s = sigmoid(z_B)`` with ``eps``/``tau``); ``mean_x CE(q_A, softmax(z_A))``.

    With ``stop_gradient`` (default) the target is detached, so each task teaches
    the other as a teacher would. ``weight`` ``(N,)`` optionally restricts the samples.
    """
    a, b = edge.source, edge.target
    z_a, z_b = logits[a.name], logits[b.name]
    out: dict[str, Tensor] = {}
    if weight is None:
        weight = torch.ones(z_a.shape[0], dtype=z_a.dtype, device=z_a.device)
    table = edge.table.to(z_a.device, z_a.dtype)
    if forward:
        q_b = forward_map(torch.softmax(z_a, dim=-1), table)  # clamped to [0, 1]
        if stop_gradient:
            q_b = q_b.detach()
        if edge.target_is_categorical:
            out[f"{a.name}->{b.name}"] = soft_cross_entropy(z_b, q_b, weight)
        else:
            per_sample = F.binary_cross_entropy_with_logits(z_b, q_b, reduction="none").mean(dim=-1)
            out[f"{a.name}->{b.name}"] = _masked_mean(per_sample, weight)
    if inverse:
        if edge.target_is_categorical:
            q_a = edge.inverse_map(torch.softmax(z_b, dim=-1), prior=prior)
        else:
            q_a = edge.inverse_map(torch.sigmoid(z_b), prior=prior, eps=eps, tau=tau)
        if stop_gradient:
            q_a = q_a.detach()
        out[f"{b.name}->{a.name}"] = soft_cross_entropy(z_a, q_a, weight)
    return out
