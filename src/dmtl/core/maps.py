r"""The maps between two related tasks (method.md section 4), as batched, differentiable kernels.

An edge ``A -> B`` carries a table ``R`` (``C_A x K_B``): ``R[c, j] = p(b_j = 1 | a = c)``
when B is a binary set, ``R[c, d] = p(b = d | a = c)`` when B is categorical.

**Forward** (A -> B, marginalising over A's classes)::

    q_B(x) = p_A(x) @ R            i.e.  q_B[j] = sum_c p_A(c|x) R[c, j]

**Inverse** (B -> A, Bayes' rule with a prior ``pi`` over A's classes):

- B binary set, soft evidence ``s_j`` in [0, 1], observation mask ``m_j``,
  ``R~ = clamp(R, eps, 1 - eps)``::

    log q_A(c|x) = log pi_c + (1/tau) sum_j m_j [s_j log R~[c,j] + (1 - s_j) log(1 - R~[c,j])]

  normalised over c by a log-softmax (never a product of probabilities);
- B categorical::

    q_A(c|x) = sum_d p_B(d|x) pi_c R[c,d] / sum_c' pi_c' R[c',d]

The maps always compute in at least float32, with autocast off: under 16-bit mixed
precision a 200 x 312 table and its logarithms would otherwise be rounded to 16 bits.

>>> forward_map(torch.tensor([[0.5, 0.5]]), torch.tensor([[0.9], [0.2]]))
tensor([[0.5500]])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import torch
from torch import Tensor

from dmtl.errors import SpecError

ROW_SUM_TOLERANCE = 1e-4
"""How far from 1 a row of a table into a categorical task may sum."""

_F = TypeVar("_F", bound=Callable[..., Any])


def full_precision(function: _F) -> _F:
    """Run ``function`` with autocast off and its 16-bit tensor arguments cast to float32."""

    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        def widen(value: Any) -> Any:
            if isinstance(value, Tensor) and value.dtype in (torch.float16, torch.bfloat16):
                return value.float()
            return value

        args = tuple(widen(a) for a in args)
        kwargs = {k: widen(v) for k, v in kwargs.items()}
        device = next((a.device.type for a in args if isinstance(a, Tensor)), "cpu")
        with torch.autocast(device_type=device, enabled=False):
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def check_eps_tau(eps: float, tau: float, where: str = "") -> None:
    """``eps`` must lie in (0, 0.5) and ``tau`` be > 0."""
    prefix = f"{where}: " if where else ""
    if not (isinstance(eps, (int, float)) and 0.0 < eps < 0.5):
        raise SpecError(f"{prefix}eps must lie in (0, 0.5), got {eps!r}")
    if not (isinstance(tau, (int, float)) and tau > 0.0 and math.isfinite(tau)):
        raise SpecError(f"{prefix}tau must be a positive finite number, got {tau!r}")


def check_prior(prior: Tensor, num_classes: int, where: str = "prior") -> Tensor:
    """Validate a class prior: shape ``(C,)``, positive, summing to 1."""
    prior = torch.as_tensor(prior, dtype=torch.float64 if prior.dtype == torch.float64 else None)
    if prior.shape != (num_classes,):
        raise SpecError(f"{where}: expected shape ({num_classes},), got {tuple(prior.shape)}")
    if bool(torch.isnan(prior).any()) or bool((prior <= 0).any()):
        raise SpecError(f"{where}: every class needs a positive prior probability")
    if abs(float(prior.sum()) - 1.0) > ROW_SUM_TOLERANCE:
        raise SpecError(f"{where}: must sum to 1, sums to {float(prior.sum()):.6f}")
    return prior


def frequency_prior(counts: Tensor, smoothing: float = 1.0) -> Tensor:
    """``pi_c = (n_c + smoothing) / (N + C * smoothing)``: A's label frequencies, kept positive."""
    counts = counts.to(torch.float32) + smoothing
    return counts / counts.sum()


@full_precision
def forward_map(p_source: Tensor, table: Tensor) -> Tensor:
    """``q_B = p_A @ R``: what A's class distribution says about B. Shapes ``(N, C) -> (N, K)``.

    Clamped to [0, 1]: in float32 a softmax may sum to ``1 + ulp``, and a target above 1
    would make a binary cross-entropy against it negative.
    """
    return (p_source @ table.to(p_source.device, p_source.dtype)).clamp(0.0, 1.0)


@full_precision
def inverse_binary_log_posterior(
    evidence: Tensor,
    table: Tensor,
    observed: Tensor | None = None,
    log_prior: Tensor | None = None,
    eps: float = 0.05,
    tau: float = 1.0,
) -> Tensor:
    """``log q_A(c|x)`` from binary-set evidence ``s`` (``(N, K)``, in [0, 1]); returns ``(N, C)``.

    ``log q_A(c) ∝ log pi_c + (1/tau) sum_j m_j [s_j log R~[c,j] + (1-s_j) log(1-R~[c,j])]``,
    with ``R~ = clamp(R, eps, 1-eps)``; only observed labels (``m_j = 1``) enter the sum.
    """
    check_eps_tau(eps, tau, "inverse map")
    table = table.to(evidence.device, evidence.dtype).clamp(eps, 1.0 - eps)
    if observed is None:
        weight = torch.ones_like(evidence)
    else:
        weight = observed.to(evidence.dtype)
        # Unobserved entries may hold any filler (NaN in the encoded form): never read them.
        evidence = torch.where(weight != 0, evidence, torch.zeros_like(evidence))
    log_r, log_not_r = table.log(), (1.0 - table).log()
    log_likelihood = (evidence * weight) @ log_r.T + ((1.0 - evidence) * weight) @ log_not_r.T
    logits = log_likelihood / tau
    if log_prior is not None:
        logits = logits + log_prior.to(evidence.device, evidence.dtype)
    return torch.log_softmax(logits, dim=-1)


def categorical_posterior(table: Tensor, prior: Tensor | None = None) -> Tensor:
    """``P[d, c] = pi_c R[c,d] / sum_c' pi_c' R[c',d]``, shape ``(C_B, C_A)``.

    A B-class that no A-class leads to (an all-zero column) gets the prior as its row.
    """
    num_a = table.shape[0]
    pi = torch.full((num_a,), 1.0 / num_a, dtype=table.dtype) if prior is None else prior
    pi = pi.to(table.device, table.dtype)
    joint = pi[:, None] * table  # (C_A, C_B)
    total = joint.sum(dim=0)  # (C_B,)
    safe = torch.where(total > 0, total, torch.ones_like(total))
    posterior = torch.where(total[None, :] > 0, joint / safe, pi[:, None].expand_as(joint))
    return posterior.T


@full_precision
def inverse_categorical_map(p_target: Tensor, table: Tensor, prior: Tensor | None = None) -> Tensor:
    """``q_A(c|x) = sum_d p_B(d|x) P[d, c]`` (:func:`categorical_posterior`); ``(N, C_A)``."""
    return p_target @ categorical_posterior(table.to(p_target.device, p_target.dtype), prior)


__all__ = [
    "ROW_SUM_TOLERANCE",
    "categorical_posterior",
    "check_eps_tau",
    "check_prior",
    "forward_map",
    "frequency_prior",
    "full_precision",
    "inverse_binary_log_posterior",
    "inverse_categorical_map",
]
