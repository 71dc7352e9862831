r"""A guard on co-training: each relatedness term's weight follows what it does on validation.

Every co-annotation or distribution-matching term ``d`` trains one task ``t`` (the
target of its direction). The guard keeps a weight ``w_d`` in ``[floor, 1]`` per term
(per edge and per direction), starting at 1, and updates it from validation:

- ``g_val = grad_theta L_t(V)``: the gradient of task t's supervised loss on validation
  samples ``V`` labelled for t (labels as the regime leaves them), with ``theta`` the
  shared trunk and t's head;
- ``g_d = grad_theta L_d(B)``: the gradient of the term on a training batch ``B``;
- a step along ``-g_d`` changes the validation loss by ``-eta <g_d, g_val>`` to first
  order, so the term helps its target when ``cos(g_d, g_val) > 0`` and hurts it when
  ``cos(g_d, g_val) < 0``.

The rule, applied once per validation (so after every epoch)::

    c_d <- cos(g_d, g_val)           (averaged over processes under DDP)
    w_d <- min(1, 2 w_d)      if c_d > margin
    w_d <- max(floor, w_d / 2) if c_d < -margin
    w_d unchanged             otherwise (or when t has no validation label)

A direction that keeps pointing against its target's validation loss fades out
geometrically (to ``floor`` = 1/16 after four epochs, by default); one that helps is
restored as fast. The supervised terms are never weighted by the guard.

>>> guard = RelatednessGuard({"ca/a->b": "b", "dm/b->a": "a"})
>>> guard.update({"ca/a->b": -0.4, "dm/b->a": 0.9})
{'ca/a->b': 0.5, 'dm/b->a': 1.0}
>>> guard.update({"ca/a->b": -0.1, "dm/b->a": None})
{'ca/a->b': 0.25, 'dm/b->a': 1.0}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from dmtl.errors import SpecError


class RelatednessGuard:
    """Weights of relatedness terms from the alignment of their gradients with validation.

    Args:
        targets: ``{term name: the task it trains}`` (``Objective.relatedness_terms()``).
        floor: the least weight a term keeps (> 0, so that it can recover).
        margin: cosines within ``[-margin, margin]`` leave the weight as it is.
        max_validation: validation samples used per update (the first ones).
    """

    def __init__(
        self,
        targets: Mapping[str, str],
        floor: float = 1.0 / 16,
        margin: float = 0.0,
        max_validation: int = 512,
    ) -> None:
        if not 0.0 < floor <= 1.0:
            raise SpecError(f"guard: floor must lie in (0, 1], got {floor}")
        if not 0.0 <= margin < 1.0:
            raise SpecError(f"guard: margin must lie in [0, 1), got {margin}")
        if max_validation < 1:
            raise SpecError(f"guard: max_validation must be >= 1, got {max_validation}")
        self.targets = dict(targets)
        self.floor, self.margin, self.max_validation = floor, margin, max_validation
        self.weights: dict[str, float] = dict.fromkeys(self.targets, 1.0)

    def update(self, cosines: Mapping[str, float | None]) -> dict[str, float]:
        """Apply the rule of the module docstring; ``None`` (no evidence) keeps a weight."""
        for name, cosine in cosines.items():
            if name not in self.weights or cosine is None:
                continue
            if cosine > self.margin:
                self.weights[name] = min(1.0, 2.0 * self.weights[name])
            elif cosine < -self.margin:
                self.weights[name] = max(self.floor, self.weights[name] / 2.0)
        return dict(self.weights)

    def state_dict(self) -> dict[str, float]:
        return dict(self.weights)

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        self.weights.update({k: float(v) for k, v in state.items() if k in self.weights})


def gradient_cosines(
    term_losses: Mapping[str, Tensor],
    targets: Mapping[str, str],
    validation_losses: Mapping[str, Tensor],
    params: Mapping[str, Sequence[Tensor]],
) -> dict[str, float | None]:
    """``cos(grad L_d, grad L_t(V))`` per term ``d``, over the parameters of its target t.

    ``term_losses``: the relatedness terms on a training batch; ``validation_losses``: each
    target task's supervised loss on validation (absent: no validation label, cosine
    ``None``); ``params[t]``: the parameters that train task t (trunk and t's head).
    Gradients are taken with ``torch.autograd.grad`` (no ``.grad`` is touched).
    """
    out: dict[str, float | None] = {}
    reference: dict[str, Tensor] = {}
    for name, loss in term_losses.items():
        task = targets[name]
        if task not in validation_losses or not loss.requires_grad:
            out[name] = None
            continue
        if task not in reference:
            reference[task] = _flat_grad(validation_losses[task], params[task])
        direction = _flat_grad(loss, params[task])
        norms = direction.norm() * reference[task].norm()
        out[name] = float(direction @ reference[task] / norms) if norms > 0 else None
    return out


def _flat_grad(loss: Tensor, params: Sequence[Tensor]) -> Tensor:
    grads = torch.autograd.grad(loss, list(params), retain_graph=True, allow_unused=True)
    return torch.cat(
        [(g if g is not None else torch.zeros_like(p)).reshape(-1).float() for g, p in zip(
            grads, params, strict=True)]
    )


__all__ = ["RelatednessGuard", "gradient_cosines"]
