r"""Gradient aggregation over the shared trunk, through TorchJD (Jacobian descent).

What a training loop calls instead of ``total.backward()``::

    features = model.features(x)                               # shared trunk, (N, D)
    logits = {t: model.heads[t](model.dropout(features)) for t in model.heads}
    task_losses = ...                                          # {task: scalar L_t}
    backward_tasks(task_losses, features, build_aggregator("upgrad"),
                   model.backbone.parameters(), model.heads.parameters())
    optimizer.step()

Let :math:`Z` be the shared features, :math:`\theta` the trunk's parameters and
:math:`\phi_t` task t's head. Every head gets the plain gradient of
:math:`\sum_t L_t` (a head is reached by its own task's loss only, so
:math:`\nabla_{\phi_t} L_t`). The trunk gets an aggregation :math:`A` of the
Jacobian of the task losses, at one of two levels:

- ``level="features"`` (default; cost close to one backward pass): the rows
  :math:`g_t = \nabla_Z L_t` (each ``N·D`` long) are computed by one backward per
  task through its head only (``torch.autograd.grad`` up to :math:`Z`), aggregated,
  :math:`g = A([g_1; \dots; g_m])`, and :math:`g` is backpropagated **once**
  through the trunk: :math:`\nabla_\theta = (\partial Z / \partial \theta)^\top g`.
  This is the "upper bound" of Sener & Koltun (NeurIPS 2018, MGDA-UB): conflicts are
  resolved between the gradients at the features rather than at the parameters. It is
  exact for fixed-weight aggregators (``sum``, ``mean``) and an approximation for the
  others (for MGDA, Sener & Koltun show that with a full-rank :math:`\partial Z /
  \partial \theta` the result is still either 0 or a direction that decreases every
  task's loss).
- ``level="parameters"`` (TorchJD's own Jacobian descent): ``torchjd.autojac.mtl_backward``
  computes the full Jacobian :math:`[\nabla_\theta L_1; \dots; \nabla_\theta L_m]` (``m``
  vectorised backward passes through the trunk, ``m × |θ|`` memory) and
  ``torchjd.autojac.jac_to_grad`` aggregates it into ``.grad``.

``sum`` skips the Jacobian: it is one ``backward`` of :math:`\sum_t L_t`, i.e. exactly
``total.backward()`` on the given parameters.

**Tasks absent from the batch.** A task is left out of the aggregation (its row is
dropped) where ``present[t]`` is false, its loss has no graph, or its row is exactly
zero: a task with no label contributes an exact 0 loss with a zero gradient, and a
zero row would otherwise stop MGDA (the min-norm point of a hull holding 0 is 0) and
shrink mean-based aggregators. When no row is left the trunk gets a zero gradient
(still through autograd, so that DDP sees every parameter).

**Precision.** Rows in float16/bfloat16 (``torch.autocast``) are aggregated in float32,
with autocast switched off (also when this is called inside the forward's autocast
region, as under Lightning's mixed precision), and the result cast back for the trunk's
backward. A row that is not finite (an
overflow under a ``GradScaler`` scale) makes the trunk gradient the plain sum, which
keeps the inf/NaN in ``.grad`` so that ``GradScaler.step`` skips the step and lowers the
scale (the aggregators themselves would fail or hide it). The aggregators below are
positively homogeneous, :math:`A(cJ) = c\,A(J)` for :math:`c > 0`, so scaling the losses
by the loss scale and unscaling the gradients afterwards is exact, except ``fairgrad``,
whose result scales as :math:`c^{(1-\alpha)/(1+\alpha)}`: use it with bfloat16 (no
scaler), not with a float16 ``GradScaler``.

Aggregators (TorchJD 0.18; option names as in :func:`build_aggregator`):

===============  ============================================================  ==============
name             what it does                                                  options
===============  ============================================================  ==============
``sum``          :math:`\sum_t g_t` (plain backward; the default)              --
``mean``         :math:`\frac1m \sum_t g_t`                                    --
``upgrad``       mean of each :math:`g_t` projected onto the dual cone of       ``norm_eps``,
                 the rows: no task's loss increases, to first order             ``reg_eps``
                 (Quinton & Rey 2024)
``dualproj``     the mean projected onto the dual cone                          ``norm_eps``,
                                                                                ``reg_eps``
``mgda``         min-norm point of the rows' convex hull (Désidéri 2012;        ``epsilon``,
                 Frank-Wolfe of Sener & Koltun 2018)                            ``max_iters``
``pcgrad``       projecting conflicting gradients (Yu et al. 2020)             --
``imtl_g``       impartial MTL, gradient part (Liu et al. 2021)                --
``aligned_mtl``  Aligned-MTL (Senushkin et al. 2023)                           ``scale_mode``
``config``       ConFIG (Liu et al. 2024)                                      --
``graddrop``     gradient sign dropout (Chen et al. 2020), meant for the        --
                 features level
``random``       random loss weighting (Lin et al. 2021), a baseline           --
``cagrad``       conflict-averse gradient (Liu et al. 2021)                    ``c``
                 (needs ``pip install "torchjd[cagrad]"``)
``fairgrad``     α-fair resource allocation (Ban & Ji 2024)                     ``alpha``,
                                                                                ``max_iters``
===============  ============================================================  ==============

``upgrad`` and ``dualproj`` solve their projection with quadprog (the
``torchjd[quadprog-projector]`` extra, a dependency of dmtl). Left out on purpose:
``krum`` and ``trimmed_mean`` (robustness to Byzantine workers, not multi-task),
``constant`` (use :class:`~dmtl.core.weighting.FixedWeighting`), and the stateful
``nash_mtl``, ``gradvac``, ``excess_mtl`` and ``pcd``, whose state assumes the same
tasks in every batch, which partial labels break.

**Outside a plain loop.** Lightning: manual optimisation (``automatic_optimization =
False``); ``self.manual_backward`` cannot be used (it backpropagates one tensor). Under
``16-mixed`` scale the losses with the precision plugin's ``scaler.scale`` before
calling this, and step with ``self.optimizers().step()``, which unscales, skips
non-finite steps and updates the scale. DDP: at the ``features`` level (and for
``sum``) every parameter's gradient is accumulated by an autograd backward, exactly
once, so DDP's reducer hooks fire and average it as usual (under Lightning, call
``trainer.strategy.pre_backward(loss)`` first, as ``manual_backward`` does, and
``post_backward`` after); each process aggregates its own batch's Jacobian, and DDP
averages the aggregated gradients. At the ``parameters`` level TorchJD writes ``.grad``
directly, bypassing the reducer (the processes' gradients would silently differ), so
that level raises :class:`~dmtl.errors.RunError` under ``torch.distributed``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torchjd.aggregation import (
    IMTLG,
    MGDA,
    Aggregator,
    AlignedMTL,
    CAGrad,
    ConFIG,
    DualProj,
    FairGrad,
    GradDrop,
    Mean,
    PCGrad,
    Random,
    Sum,
    UPGrad,
    WeightedAggregator,
)
from torchjd.autojac import jac_to_grad, mtl_backward
from torchjd.linalg import QuadprogProjector

from dmtl.errors import MissingDependencyError, RunError, SpecError

AggregationLevel = Literal["features", "parameters"]
LEVELS: tuple[AggregationLevel, ...] = ("features", "parameters")


def _upgrad(norm_eps: float = 1e-4, reg_eps: float = 1e-4) -> Aggregator:
    return UPGrad(projector=QuadprogProjector(norm_eps=norm_eps, reg_eps=reg_eps))


def _dualproj(norm_eps: float = 1e-4, reg_eps: float = 1e-4) -> Aggregator:
    return DualProj(projector=QuadprogProjector(norm_eps=norm_eps, reg_eps=reg_eps))


def _mgda(epsilon: float = 1e-3, max_iters: int = 100) -> Aggregator:
    return MGDA(epsilon=epsilon, max_iters=max_iters)


def _aligned_mtl(scale_mode: Literal["min", "median", "rmse"] = "min") -> Aggregator:
    return AlignedMTL(scale_mode=scale_mode)


def _cagrad(c: float) -> Aggregator:
    return CAGrad(c=c)


def _fairgrad(alpha: float, max_iters: int | None = None) -> Aggregator:
    return FairGrad(alpha=alpha, max_iters=max_iters)


@dataclass(frozen=True)
class AggregatorEntry:
    """One registered aggregator: its factory (keyword options) and the torchjd extra it needs."""

    build: Callable[..., Aggregator]
    extra: str | None = None


AGGREGATORS: dict[str, AggregatorEntry] = {
    "sum": AggregatorEntry(Sum),
    "mean": AggregatorEntry(Mean),
    "upgrad": AggregatorEntry(_upgrad, "quadprog-projector"),
    "dualproj": AggregatorEntry(_dualproj, "quadprog-projector"),
    "mgda": AggregatorEntry(_mgda),
    "pcgrad": AggregatorEntry(PCGrad),
    "imtl_g": AggregatorEntry(IMTLG),
    "aligned_mtl": AggregatorEntry(_aligned_mtl),
    "config": AggregatorEntry(ConFIG),
    "graddrop": AggregatorEntry(GradDrop),
    "random": AggregatorEntry(Random),
    "cagrad": AggregatorEntry(_cagrad, "cagrad"),
    "fairgrad": AggregatorEntry(_fairgrad, "fairgrad"),
}
"""The aggregators :func:`build_aggregator` knows, by config name."""


def build_aggregator(name: str, **options: Any) -> Aggregator:
    """The TorchJD aggregator called ``name`` (see the module table), built with ``options``.

    >>> build_aggregator("mgda", max_iters=50)
    MGDA(epsilon=0.001, max_iters=50)
    >>> build_aggregator("nash_mtl")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dmtl.errors.SpecError: unknown aggregator 'nash_mtl'; expected one of: sum, mean, upgrad, ...
    """
    entry = AGGREGATORS.get(name)
    if entry is None:
        raise SpecError(f"unknown aggregator {name!r}; expected one of: {', '.join(AGGREGATORS)}")
    parameters = inspect.signature(entry.build).parameters
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        raise SpecError(
            f"aggregator {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"options: {', '.join(parameters) or 'none'}"
        )
    required = [p for p, v in parameters.items() if v.default is inspect.Parameter.empty]
    missing = [p for p in required if p not in options]
    if missing:
        raise SpecError(f"aggregator {name!r} needs option {', '.join(missing)}")
    try:
        return entry.build(**options)
    except ImportError as error:
        raise MissingDependencyError(
            f"aggregator {name!r} needs extra packages: pip install 'torchjd[{entry.extra}]' "
            f"({error})"
        ) from None
    except ValueError as error:
        raise SpecError(f"aggregator {name!r}: {error}") from None


Params = Tensor | nn.Module | Iterable[Tensor] | Mapping[str, Tensor | nn.Module | Iterable[Tensor]]
"""Parameters given as a tensor, a module, an iterable of tensors, or ``{task: any of these}``."""


def _flatten_params(params: Params, what: str) -> Iterator[Tensor]:
    if isinstance(params, Tensor):
        yield params
    elif isinstance(params, nn.Module):
        yield from params.parameters()
    elif isinstance(params, Mapping):
        for value in params.values():
            yield from _flatten_params(value, what)
    else:
        for param in params:
            if isinstance(param, nn.Module | Mapping):
                yield from _flatten_params(param, what)
            elif not isinstance(param, Tensor):
                raise SpecError(f"{what}: expected tensors or modules, got {type(param).__name__}")
            else:
                yield param


def _param_list(params: Params, what: str) -> list[Tensor]:
    """The distinct tensors of ``params`` that require grad, in order."""
    seen: set[int] = set()
    unique = []
    for param in _flatten_params(params, what):
        if param.requires_grad and id(param) not in seen:
            seen.add(id(param))
            unique.append(param)
    return unique


def _check_losses(task_losses: Mapping[str, Tensor]) -> None:
    if not task_losses:
        raise SpecError("backward_tasks: no task losses given")
    for name, loss in task_losses.items():
        if not isinstance(loss, Tensor) or loss.dim() != 0:
            shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise SpecError(f"loss of task {name!r} must be a scalar tensor, got {shape}")


def backward_tasks(
    task_losses: Mapping[str, Tensor],
    features: Tensor,
    aggregator: Aggregator,
    shared_params: Params,
    head_params: Params,
    *,
    present: Mapping[str, bool] | None = None,
    level: AggregationLevel = "features",
) -> dict[str, float]:
    r"""Accumulate ``.grad`` of the trunk (aggregated) and of the heads (plain); see the module.

    Args:
        task_losses: ``{task: scalar loss}``; every loss is a function of ``features``
            through the task's head.
        features: the shared trunk's output every head reads.
        aggregator: a TorchJD aggregator (:func:`build_aggregator`).
        shared_params: the trunk's parameters, or the trunk itself (only parameters that
            require grad are used).
        head_params: every task-specific parameter: the heads' ``nn.ModuleDict``, an
            iterable of tensors, or ``{task: module or tensors}``.
        present: ``{task: False}`` leaves a task out of the aggregation (tasks not named
            are present unless their loss has no graph or their row is exactly zero).
        level: ``"features"`` or ``"parameters"`` (see the module).

    Returns:
        ``{task: weight}`` of the aggregation for weighted aggregators (0 for an absent
        task; 1 for every task with ``sum``), ``{}`` for the others (``graddrop``,
        ``config``) and when a row is not finite.
    """
    if level not in LEVELS:
        raise SpecError(f"aggregation level must be one of {', '.join(LEVELS)}, got {level!r}")
    _check_losses(task_losses)
    unknown = sorted(set(present or {}) - set(task_losses))
    if unknown:
        raise SpecError(f"present names tasks without a loss: {', '.join(unknown)}")
    if level == "parameters" and _distributed():
        raise RunError(
            "aggregation level 'parameters' writes .grad outside autograd, so DDP would not "
            "average it across processes; use level='features' under torch.distributed"
        )
    shared = _param_list(shared_params, "shared_params")
    heads = _param_list(head_params, "head_params")
    if {id(p) for p in shared} & {id(p) for p in heads}:
        raise SpecError("backward_tasks: a parameter is both shared and task-specific")
    names = [name for name, loss in task_losses.items() if loss.requires_grad]
    losses = [task_losses[name] for name in names]
    if not losses:
        return {}
    if not shared and not heads:
        return {}
    if isinstance(aggregator, Sum):
        torch.autograd.backward(torch.stack(losses).sum(), inputs=shared + heads)
        return dict.fromkeys(task_losses, 1.0)
    trunk = shared if features.requires_grad else []
    if heads:
        torch.autograd.backward(torch.stack(losses).sum(), inputs=heads, retain_graph=bool(trunk))
    weights = None
    # A loop may call this inside its forward's autocast (Lightning's mixed precision
    # does): the Gramian and the solvers must not run in float16/bfloat16.
    with torch.autocast(features.device.type, enabled=False):
        if trunk and level == "parameters":
            weights = _parameter_level(names, losses, features, aggregator, trunk, present)
        elif trunk:
            weights = _feature_level(names, losses, features, aggregator, trunk, present)
    if weights is None:
        return {}
    return {name: float(weights.get(name, 0.0)) for name in task_losses}


def _distributed() -> bool:
    return bool(
        torch.distributed.is_available()
        and torch.distributed.is_initialized()
        and torch.distributed.get_world_size() > 1
    )


def _kept_rows(
    names: list[str], row_norms: Tensor, present: Mapping[str, bool] | None
) -> list[int]:
    nonzero = (row_norms != 0).tolist()
    return [i for i, name in enumerate(names) if nonzero[i] and (present or {}).get(name, True)]


def _aggregate(matrix: Tensor, aggregator: Aggregator) -> tuple[Tensor, Tensor | None]:
    """``(A(matrix), weights or None)``; a non-finite matrix is summed (see the module)."""
    if matrix.dtype in (torch.float16, torch.bfloat16):
        matrix = matrix.float()
    if not bool(torch.isfinite(matrix).all()):
        return matrix.sum(dim=0), None
    if isinstance(aggregator, WeightedAggregator):
        weights = aggregator.weighting(matrix)
        return weights @ matrix, weights
    return aggregator(matrix), None


def _feature_gradient(loss: Tensor, features: Tensor) -> Tensor:
    """``dL/dZ`` through the heads only (zeros if ``L`` does not read ``Z``)."""
    (gradient,) = torch.autograd.grad(
        loss, features, retain_graph=True, allow_unused=True, materialize_grads=True
    )
    return gradient


def _feature_level(
    names: list[str],
    losses: list[Tensor],
    features: Tensor,
    aggregator: Aggregator,
    trunk: list[Tensor],
    present: Mapping[str, bool] | None,
) -> dict[str, float] | None:
    rows = torch.stack([_feature_gradient(loss, features).reshape(-1) for loss in losses])
    kept = _kept_rows(names, rows.abs().sum(dim=1), present)
    if not kept:
        features.backward(torch.zeros_like(features), inputs=trunk)
        return dict.fromkeys(names, 0.0)
    vector, weights = _aggregate(rows[kept], aggregator)
    features.backward(vector.reshape(features.shape).to(features.dtype), inputs=trunk)
    if weights is None:
        return None
    return dict(zip((names[i] for i in kept), weights.tolist(), strict=True))


def _parameter_level(
    names: list[str],
    losses: list[Tensor],
    features: Tensor,
    aggregator: Aggregator,
    trunk: list[Tensor],
    present: Mapping[str, bool] | None,
) -> dict[str, float] | None:
    # The heads got their gradient already (backward_tasks); here only the trunk's Jacobian.
    # retain_graph: a loss may read another task's head (distribution matching without
    # stop-gradient), and mtl_backward differentiates the losses one after the other.
    mtl_backward(
        losses,
        features=features,
        tasks_params=[[]] * len(losses),
        shared_params=trunk,
        retain_graph=True,
    )
    # mtl_backward leaves each trunk parameter's Jacobian (m, *shape) in its ``.jac`` field.
    jacobians = [getattr(param, "jac") for param in trunk]  # noqa: B009
    row_norms = torch.stack([j.reshape(len(losses), -1).abs().sum(dim=1) for j in jacobians])
    kept = _kept_rows(names, row_norms.sum(dim=0), present)
    nonfinite = not all(bool(torch.isfinite(j).all()) for j in jacobians)
    for param, jacobian in zip(trunk, jacobians, strict=True):
        if not kept:
            delattr(param, "jac")
            param.grad = torch.zeros_like(param) if param.grad is None else param.grad
        elif nonfinite:
            param.jac = jacobian[kept].sum(dim=0, keepdim=True)  # type: ignore[attr-defined]
        else:
            param.jac = jacobian[kept]  # type: ignore[attr-defined]
    if not kept:
        return dict.fromkeys(names, 0.0)
    weights = jac_to_grad(trunk, Sum() if nonfinite else aggregator)
    if weights is None or nonfinite:
        return None
    return dict(zip((names[i] for i in kept), weights.tolist(), strict=True))


__all__ = [
    "AGGREGATORS",
    "LEVELS",
    "AggregationLevel",
    "AggregatorEntry",
    "backward_tasks",
    "build_aggregator",
]
