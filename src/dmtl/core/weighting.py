r"""Loss weighting: per-task losses ``L_t`` -> one total ``L`` to backpropagate.

Every weighting is a small ``nn.Module`` with one interface::

    total, weights = weighting(task_losses, present=None)

``task_losses`` maps every task name to a scalar loss (in dmtl, task t's loss gathers
the terms that train its head: ``L_t = w_t sup/t + lambda_ca sum ca/*->t + lambda_dm sum
dm/*->t``); ``weights`` maps every task to the Python float it was weighted by in this
call (for logging).

==================  ============================================================  =========
name                total                                                         state
==================  ============================================================  =========
``fixed``           ``L = sum_t w_t L_t`` (``w_t = 1``: the plain sum)            none
``uncertainty``     ``L = sum_t exp(-s_t) L_t + s_t`` (Kendall et al. 2018)       ``s_t``
``dwa``             ``L = sum_t w_t(k) L_t``, ``w_t(k)`` from epoch-average       history
                    losses of the two previous epochs (Liu et al. 2019)
==================  ============================================================  =========

**Tasks absent from a batch.** With partial labels a task often has no labelled sample
in a batch; its loss is then an exact 0 that still carries a (zero) gradient. A task
is *present* where ``present[t]`` says so, and, for tasks that ``present`` does not
name, where its loss is not exactly 0 (checked on the device, without a host sync).
An absent task adds nothing: uncertainty weighting drops both ``exp(-s_t) L_t`` and
``s_t``, so ``dL/ds_t = 0`` and an unlabelled task's log-variance is not pushed down
(its weight up) by the regulariser alone; DWA leaves the batch out of the task's epoch
average (a task labelled in one batch out of ten keeps the average of its labelled
batches, not a tenth of it); a task that ``present`` marks ``False`` is left out of
every total, whatever its loss.

TorchJD 0.18 ships ``torchjd.scalarization.UW`` and ``DWA``; they are not used here
because neither knows of a task absent from a batch (``UW`` keeps ``s_t`` in the sum,
so ``dL/ds_t = 1/2`` for an unlabelled task; ``DWA`` averages the zeros into the epoch).

**With gradient aggregation** (:mod:`dmtl.core.aggregation`, an aggregator other than
``sum``), the loop passes the weighted losses ``{t: weights[t] * L_t}`` to
``backward_tasks``; that works for ``fixed`` and ``dwa``, whose weights are constants.
Uncertainty weighting does not combine with it: the gradient of ``s_t`` needs the whole
total, regulariser included, which the aggregation does not backpropagate.

>>> import torch
>>> losses = {"digit": torch.tensor(2.0), "shape": torch.tensor(0.5)}
>>> total, weights = build_weighting("fixed", ["digit", "shape"])(losses)
>>> float(total), weights
(2.5, {'digit': 1.0, 'shape': 1.0})
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from dmtl.errors import SpecError

WeightingResult = tuple[Tensor, dict[str, float]]
"""``(total loss, {task: weight})``."""


def _check_task_names(task_names: Sequence[str]) -> tuple[str, ...]:
    names = tuple(task_names)
    if not names:
        raise SpecError("a loss weighting needs at least one task")
    for name in names:
        if not isinstance(name, str) or not name:
            raise SpecError(f"loss weighting: task names must be non-empty strings, got {name!r}")
    if len(set(names)) != len(names):
        duplicated = sorted({n for n in names if names.count(n) > 1})
        raise SpecError(f"loss weighting: duplicated task names: {', '.join(duplicated)}")
    return names


class LossWeighting(nn.Module, ABC):
    """Base of the weightings: ``forward(task_losses, present) -> (total, weights)``.

    Subclasses implement :meth:`combine` on the stacked losses ``(T,)`` (in
    :attr:`task_names` order) and the presence mask ``(T,)``.
    """

    def __init__(self, task_names: Sequence[str]) -> None:
        super().__init__()
        self.task_names: tuple[str, ...] = _check_task_names(task_names)

    def stack(self, task_losses: Mapping[str, Tensor]) -> Tensor:
        """The losses as one vector ``(T,)`` in :attr:`task_names` order (checked)."""
        missing = [name for name in self.task_names if name not in task_losses]
        unknown = sorted(set(task_losses) - set(self.task_names))
        if missing or unknown:
            parts = [f"missing {', '.join(missing)}"] if missing else []
            parts += [f"unknown {', '.join(unknown)}"] if unknown else []
            raise SpecError(
                f"loss weighting over tasks {', '.join(self.task_names)}: task losses "
                f"{'; '.join(parts)} (give one loss per task, 0 for a task without labels)"
            )
        for name in self.task_names:
            loss = task_losses[name]
            if not isinstance(loss, Tensor) or loss.dim() != 0:
                shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
                raise SpecError(f"loss of task {name!r} must be a scalar tensor, got {shape}")
        return torch.stack([task_losses[name] for name in self.task_names])

    def presence(self, losses: Tensor, present: Mapping[str, bool] | None) -> tuple[Tensor, Tensor]:
        """Boolean masks ``(T,)``: ``(labelled, included)``.

        ``labelled``: ``present[t]`` where given, else ``L_t != 0``; ``included``: not
        marked absent by ``present`` (a loss that is 0 of itself adds 0 to a weighted sum,
        and keeps its gradient path, so only an explicit ``False`` removes it).
        """
        labelled = losses.detach() != 0
        included = torch.ones_like(labelled)
        if present:
            unknown = sorted(set(present) - set(self.task_names))
            if unknown:
                raise SpecError(f"present names unknown tasks: {', '.join(unknown)}")
            given = [i for i, name in enumerate(self.task_names) if name in present]
            values = torch.tensor(
                [bool(present[self.task_names[i]]) for i in given], device=labelled.device
            )
            labelled[given] = values
            included[given] = values
        return labelled, included

    def forward(
        self, task_losses: Mapping[str, Tensor], present: Mapping[str, bool] | None = None
    ) -> WeightingResult:
        """``(total, {task: weight})`` for one batch (see the module docstring)."""
        losses = self.stack(task_losses)
        return self.combine(losses, *self.presence(losses, present))

    @abstractmethod
    def combine(self, losses: Tensor, labelled: Tensor, included: Tensor) -> WeightingResult:
        """Total of the stacked ``losses`` ``(T,)`` given the masks of :meth:`presence`."""

    def end_epoch(self, reduce: Callable[[Tensor], Tensor] | None = None) -> None:
        """Called once at the end of every training epoch; a no-op unless the weighting
        keeps a history (:class:`DynamicWeightAverage`)."""

    def _named(self, values: Sequence[float]) -> dict[str, float]:
        return dict(zip(self.task_names, (float(v) for v in values), strict=True))


class FixedWeighting(LossWeighting):
    r"""Constant weights: :math:`L = \sum_t w_t L_t` (tasks marked absent left out).

    ``weights`` maps task names to ``w_t >= 0``; unnamed tasks get 1, so the default is
    the plain sum of the task losses (the same total, and gradients, as ``sum(...)``).

    >>> w = FixedWeighting(["a", "b"], {"b": 0.5})
    >>> total, weights = w({"a": torch.tensor(1.0), "b": torch.tensor(4.0)})
    >>> float(total), weights
    (3.0, {'a': 1.0, 'b': 0.5})
    """

    weight_vector: Tensor

    def __init__(self, task_names: Sequence[str], weights: Mapping[str, float] | None = None):
        super().__init__(task_names)
        given = dict(weights or {})
        unknown = sorted(set(given) - set(self.task_names))
        if unknown:
            raise SpecError(f"fixed weighting: weights name unknown tasks: {', '.join(unknown)}")
        for name, value in given.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SpecError(f"fixed weighting: weight of {name!r} must be a number")
            if not math.isfinite(value) or value < 0:
                raise SpecError(f"fixed weighting: weight of {name!r} must be finite and >= 0")
        self.weights: dict[str, float] = {n: float(given.get(n, 1.0)) for n in self.task_names}
        self.register_buffer(
            "weight_vector",
            torch.tensor([self.weights[n] for n in self.task_names]),
            persistent=False,
        )

    def combine(self, losses: Tensor, labelled: Tensor, included: Tensor) -> WeightingResult:
        terms = self.weight_vector.to(losses.dtype) * losses
        total = torch.where(included, terms, torch.zeros_like(terms)).sum()
        return total, dict(self.weights)


class UncertaintyWeighting(LossWeighting):
    r"""Homoscedastic-uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018).

    One learned log-variance :math:`s_t = \log \sigma_t^2` per task:

    .. math::

        L = \sum_{t \text{ present}} \left( e^{-s_t} L_t + s_t \right), \qquad
        \frac{\partial L}{\partial s_t} = 1 - e^{-s_t} L_t, \qquad
        \text{weight}_t = e^{-s_t}.

    This is exactly twice the paper's Gaussian form (eq. 7 with :math:`s = \log\sigma^2`,
    :math:`\tfrac12 e^{-s_t} L_t + \tfrac12 s_t`): the same minimiser in :math:`s_t`
    (:math:`s_t^* = \log L_t`, i.e. weight :math:`1 / L_t` at equilibrium) and the same
    learned weights, with gradients twice as large. It is the form chosen because at the
    initial :math:`s_t = 0` it *is* the default equal-weight sum (same total, same
    gradients), so switching it on changes nothing at step 0 and a learning rate tuned
    for the sum carries over. The paper's classification form
    (:math:`e^{-s} L + \tfrac12 s`, eq. 10-12) differs only by a global factor of the
    weights at equilibrium (:math:`1 / 2L_t`).

    The log-variances are the parameter ``log_variance`` ``(T,)``: give
    ``weighting.parameters()`` to the optimizer (preferably without weight decay, which
    would pull every ``s_t`` to 0). An absent task contributes neither term, so its
    :math:`s_t` gets no gradient from a batch without its labels.

    >>> w = UncertaintyWeighting(["a", "b"])
    >>> total, weights = w({"a": torch.tensor(2.0), "b": torch.tensor(0.5)})
    >>> float(total.detach()), weights       # s = 0: the plain sum
    (2.5, {'a': 1.0, 'b': 1.0})
    """

    def __init__(
        self, task_names: Sequence[str], init_log_variance: float | Mapping[str, float] = 0.0
    ) -> None:
        super().__init__(task_names)
        if isinstance(init_log_variance, Mapping):
            unknown = sorted(set(init_log_variance) - set(self.task_names))
            if unknown:
                raise SpecError(
                    f"uncertainty weighting: init_log_variance names unknown tasks: "
                    f"{', '.join(unknown)}"
                )
            values = [float(init_log_variance.get(n, 0.0)) for n in self.task_names]
        else:
            values = [float(init_log_variance)] * len(self.task_names)
        if not all(math.isfinite(v) for v in values):
            raise SpecError("uncertainty weighting: init_log_variance must be finite")
        self.log_variance = nn.Parameter(torch.tensor(values))

    def combine(self, losses: Tensor, labelled: Tensor, included: Tensor) -> WeightingResult:
        s = self.log_variance.to(losses.dtype)
        terms = torch.exp(-s) * losses + s
        total = torch.where(labelled, terms, torch.zeros_like(terms)).sum()
        return total, self._named(torch.exp(-self.log_variance.detach()).tolist())


class DynamicWeightAverage(LossWeighting):
    r"""Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019), temperature ``T``.

    In epoch :math:`k` (1-based) the batch total is :math:`L = \sum_t w_t(k) L_t` with

    .. math::

        w_t(k) = \frac{K \exp(r_t(k-1) / T)}{\sum_i \exp(r_i(k-1) / T)}, \qquad
        r_t(k-1) = \frac{\bar L_t(k-1)}{\bar L_t(k-2)},

    :math:`K` the number of tasks and :math:`\bar L_t(k)` task t's average loss over the
    training batches of epoch :math:`k` *in which it was present*; :math:`w_t = 1` in
    epochs 1 and 2. A ratio that is undefined (the task was absent for a whole epoch, or
    :math:`\bar L_t(k-2) = 0`) is taken as 1 (no change). The weights sum to :math:`K`.

    The epoch averages are accumulated by every call in training mode
    (``weighting.train()``; calls in eval mode, e.g. validation, are not counted).
    **Call** :meth:`end_epoch` **once at the end of every training epoch**: it closes the
    epoch's averages and computes the next epoch's weights. Sums, counts, the two last
    averages and the weights are buffers, so a checkpoint resumes the schedule.

    >>> dwa = DynamicWeightAverage(["a", "b"], temperature=2.0)
    >>> for epoch_losses in ([2.0, 1.0], [1.0, 1.0]):        # epochs 1 and 2: weights 1
    ...     _ = dwa({"a": torch.tensor(epoch_losses[0]), "b": torch.tensor(epoch_losses[1])})
    ...     dwa.end_epoch()
    >>> {k: round(v, 4) for k, v in dwa.weights().items()}  # r = (0.5, 1)
    {'a': 0.8756, 'b': 1.1244}
    """

    epoch_totals: Tensor
    epoch_averages: Tensor
    epochs_done: Tensor
    weight_vector: Tensor

    def __init__(self, task_names: Sequence[str], temperature: float = 2.0) -> None:
        super().__init__(task_names)
        if isinstance(temperature, bool) or not isinstance(temperature, int | float):
            raise SpecError(f"dwa: temperature must be a number, got {temperature!r}")
        if not math.isfinite(temperature) or temperature <= 0:
            raise SpecError(f"dwa: temperature must be finite and > 0, got {temperature}")
        self.temperature = float(temperature)
        count = len(self.task_names)
        # Row 0: per-task loss sums of the running epoch; row 1: batches counted.
        self.register_buffer("epoch_totals", torch.zeros(2, count, dtype=torch.float64))
        # Row 0: average of epoch k-2; row 1: of epoch k-1 (NaN: unknown).
        self.register_buffer(
            "epoch_averages", torch.full((2, count), math.nan, dtype=torch.float64)
        )
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        self.register_buffer("weight_vector", torch.ones(count, dtype=torch.float64))
        self._weights_cache: list[float] | None = None
        self.register_load_state_dict_post_hook(_forget_cached_weights)

    def weights(self) -> dict[str, float]:
        """The weights ``w_t(k)`` of the running epoch."""
        if self._weights_cache is None:
            self._weights_cache = self.weight_vector.tolist()
        return self._named(self._weights_cache)

    def combine(self, losses: Tensor, labelled: Tensor, included: Tensor) -> WeightingResult:
        if self.training:
            detached = losses.detach().to(self.epoch_totals.dtype)
            self.epoch_totals[0] += torch.where(labelled, detached, torch.zeros_like(detached))
            self.epoch_totals[1] += labelled.to(self.epoch_totals.dtype)
        terms = self.weight_vector.to(losses.dtype) * losses
        total = torch.where(included, terms, torch.zeros_like(terms)).sum()
        return total, self.weights()

    def end_epoch(self, reduce: Callable[[Tensor], Tensor] | None = None) -> None:
        """Close the epoch: roll its average losses into the history, set the next weights.

        ``reduce``: under data parallelism, a sum over processes of a tensor (e.g.
        ``lambda t: trainer.strategy.reduce(t, reduce_op="sum")``), applied to the sums and
        counts first, so that every process computes the same weights.
        """
        totals = self.epoch_totals if reduce is None else reduce(self.epoch_totals.clone())
        sums, counts = totals[0], totals[1]
        average = torch.where(counts > 0, sums / counts.clamp(min=1), math.nan)
        self.epoch_averages.copy_(torch.stack([self.epoch_averages[1], average]))
        self.epochs_done += 1
        self.epoch_totals.zero_()
        self.weight_vector.copy_(
            dwa_weights(self.epoch_averages[1], self.epoch_averages[0], self.temperature)
            if int(self.epochs_done) >= 2
            else torch.ones_like(self.weight_vector)
        )
        self._weights_cache = None

    def extra_repr(self) -> str:
        return f"tasks={list(self.task_names)}, temperature={self.temperature}"


def _forget_cached_weights(module: nn.Module, _incompatible: Any) -> None:
    if isinstance(module, DynamicWeightAverage):
        module._weights_cache = None


def dwa_weights(last: Tensor, before_last: Tensor, temperature: float = 2.0) -> Tensor:
    r"""DWA weights from two epoch-average loss vectors ``(K,)``.

    :math:`w = K \operatorname{softmax}(r / T)`, :math:`r_t = \bar L_t(k-1) / \bar L_t(k-2)`,
    with :math:`r_t = 1` where the ratio is undefined (NaN, or :math:`\bar L_t(k-2) \le 0`).

    >>> w = dwa_weights(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 2.0]), 2.0)
    >>> [round(v, 4) for v in w.tolist()]     # 2 / (1 + e^{1/4}), 2 e^{1/4} / (1 + e^{1/4})
    [0.8756, 1.1244]
    """
    ratio = last / before_last
    defined = torch.isfinite(ratio) & (before_last > 0) & torch.isfinite(last)
    ratio = torch.where(defined, ratio, torch.ones_like(ratio))
    return ratio.numel() * torch.softmax(ratio / temperature, dim=0)


WEIGHTINGS: dict[str, type[LossWeighting]] = {
    "fixed": FixedWeighting,
    "uncertainty": UncertaintyWeighting,
    "dwa": DynamicWeightAverage,
}
"""The weightings :func:`build_weighting` knows, by config name."""


def build_weighting(name: str, task_names: Sequence[str], **options: Any) -> LossWeighting:
    """The weighting called ``name`` over ``task_names``; ``options`` go to its constructor.

    ``fixed``: ``weights`` (``{task: w_t}``, default 1); ``uncertainty``:
    ``init_log_variance`` (a number or ``{task: s_t}``, default 0); ``dwa``:
    ``temperature`` (default 2).

    >>> build_weighting("dwa", ["a", "b"], temperature=1.0).temperature
    1.0
    >>> build_weighting("gradnorm", ["a"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dmtl.errors.SpecError: unknown loss weighting 'gradnorm'; expected one of: fixed, ...
    """
    cls = WEIGHTINGS.get(name)
    if cls is None:
        raise SpecError(
            f"unknown loss weighting {name!r}; expected one of: {', '.join(WEIGHTINGS)}"
        )
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self",)]
    accepted.remove("task_names")
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise SpecError(
            f"loss weighting {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"options: {', '.join(accepted) or 'none'}"
        )
    return cls(task_names, **options)


__all__ = [
    "WEIGHTINGS",
    "DynamicWeightAverage",
    "FixedWeighting",
    "LossWeighting",
    "UncertaintyWeighting",
    "WeightingResult",
    "build_weighting",
    "dwa_weights",
]
