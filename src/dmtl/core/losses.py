r"""Loss kernels: masked supervised losses on logits, for every task kind.

All classification losses take logits (never probabilities) and are numerically
stable for logits up to ``±1e4``. Every average is over what is observed; a loss
with nothing to act on returns an exact ``0`` that still carries a (zero) gradient
to its input, never NaN.

Notation: ``z`` logits (or, for regression, predicted values), ``y`` targets, ``q`` a
soft target distribution, ``m`` a mask, ``w`` weights.

- masked cross-entropy:     ``L = sum_i m_i w_{y_i} CE(z_i, y_i) / sum_i m_i w_{y_i}``
  (class weights ``w``, default 1; optional label smoothing ``eps``:
  ``CE = -(1 - eps) log p_{y} - (eps / C) sum_c log p_c``, as in ``torch``);
- soft cross-entropy:       ``L = sum_i w_i (- sum_c q_ic log softmax(z_i)_c) / sum_i w_i``;
- masked (soft) binary CE:  ``L = sum_ij m_ij BCE(q_ij, sigmoid(z_ij)) / sum_ij m_ij``,
  ``BCE(q, p) = -[w+ q log p + (1 - q) log(1 - p)]`` with optional positive weights ``w+``;
- masked squared error:     ``L = sum_ij m_ij (z_ij - y_ij)^2 / sum_ij m_ij``;
- concordance loss:         ``L = mean_j (1 - CCC_j)`` over the target dimensions ``j`` with at
  least two observed entries in the batch, where, over those entries,
  ``CCC_j = 2 s_zy / (s_z^2 + s_y^2 + (mean_z - mean_y)^2)`` with population moments
  (Lin's concordance correlation coefficient).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dmtl.core.labels import TaskLabels


def masked_mean(values: Tensor, weight: Tensor) -> Tensor:
    """``sum(w * v) / sum(w)``, and exactly 0 (with gradient) when ``sum(w) == 0``.

    >>> masked_mean(torch.tensor([1.0, 3.0]), torch.tensor([True, False]))
    tensor(1.)
    """
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
    return masked_mean(per_sample, weight)


def masked_cross_entropy(
    logits: Tensor,
    labels: TaskLabels,
    class_weight: Tensor | None = None,
    label_smoothing: float = 0.0,
) -> Tensor:
    """``sum_i m_i w_{y_i} CE(z_i, y_i) / sum_i m_i w_{y_i}`` over the labelled samples.

    >>> from dmtl.core.labels import TaskLabels
    >>> labels = TaskLabels(torch.tensor([1, 0]), torch.tensor([True, False]))
    >>> masked_cross_entropy(torch.zeros(2, 4), labels)
    tensor(1.3863)
    """
    # Masked-out targets may hold any filler (e.g. -1): never read them.
    target = torch.where(labels.mask, labels.target, torch.zeros_like(labels.target))
    per_sample = F.cross_entropy(
        logits, target, reduction="none", label_smoothing=label_smoothing
    )
    if class_weight is None:
        return masked_mean(per_sample, labels.mask)
    weight = class_weight.to(per_sample.device, per_sample.dtype)[target]
    return masked_mean(per_sample, labels.mask.to(per_sample.dtype) * weight)


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
    if pos_weight is not None:
        pos_weight = pos_weight.to(logits.device, logits.dtype)
    per_entry = F.binary_cross_entropy_with_logits(
        logits, target, reduction="none", pos_weight=pos_weight
    )
    return masked_mean(per_entry, mask)


def masked_squared_error(predictions: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """``sum_ij m_ij (z_ij - y_ij)^2 / sum_ij m_ij``.

    >>> masked_squared_error(torch.tensor([[0.5, 0.0]]), torch.tensor([[1.0, 9.0]]),
    ...                      torch.tensor([[True, False]]))
    tensor(0.2500)
    """
    target = torch.where(mask, target.to(predictions.dtype), torch.zeros_like(predictions))
    return masked_mean((predictions - target) ** 2, mask)


def concordance_loss(predictions: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """``mean_j (1 - CCC_j)`` over the dimensions with at least two observed entries.

    A perfect prediction scores 0, an uncorrelated one 1, an anti-correlated one up to 2.

    >>> y = torch.tensor([[0.1], [0.5], [-0.3]])
    >>> concordance_loss(y, y, torch.ones(3, 1, dtype=torch.bool))
    tensor(0.)
    """
    weight = mask.to(predictions.dtype)
    count = weight.sum(dim=0)  # (K,)
    safe = count.clamp_min(1.0)
    target = torch.where(mask, target.to(predictions.dtype), torch.zeros_like(predictions))
    mean_z = (predictions * weight).sum(0) / safe
    mean_y = (target * weight).sum(0) / safe
    dz, dy = (predictions - mean_z) * weight, (target - mean_y) * weight
    covariance = (dz * dy).sum(0) / safe
    var_z, var_y = (dz * dz).sum(0) / safe, (dy * dy).sum(0) / safe
    denominator = var_z + var_y + (mean_z - mean_y) ** 2
    ccc = 2 * covariance / denominator.clamp_min(torch.finfo(predictions.dtype).tiny)
    usable = count >= 2
    return masked_mean(1.0 - ccc, usable)


__all__ = [
    "concordance_loss",
    "masked_binary_cross_entropy",
    "masked_cross_entropy",
    "masked_mean",
    "masked_squared_error",
    "soft_cross_entropy",
]
