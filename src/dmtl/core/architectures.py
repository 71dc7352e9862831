r"""Task-specific capacity between the shared trunk and the heads (a *neck*).

A neck maps the shared trunk's output :math:`h` to one feature vector per task,
``{task: (N, D_t)}``; :class:`~dmtl.core.model.MultiTaskModel` then applies each task's
head. The backbone is a chain of stages :math:`S_0, \dots, S_{K-1}`
(:func:`dmtl.core.stages.split_stages`).

**Branches** (:class:`BranchNeck`). Group :math:`g` leaves at stage :math:`b_g` with its
own copy :math:`\tilde S^{g}` of the stages from there on; the trunk keeps
:math:`S_0..S_{m-1}` with :math:`m = \min_g b_g`, and the tasks in no group keep the
backbone's own stages:

.. math::

    a_0 = h,\quad a_{k+1} = S_{m+k}(a_k), \qquad
    f_t = \tilde S^{g}_{K-1} \circ \dots \circ \tilde S^{g}_{b_g}(a_{b_g - m})
    \ (t \in g), \qquad f_t = a_{K-m}\ (t \text{ in no group}).

**Experts** (:class:`ExpertNeck`; MMoE, Ma et al. KDD 2018; CGC/PLE, Tang et al. RecSys
2020). Shared experts :math:`E^s_1..E^s_{n_s}`, each task's own
:math:`E^t_1..E^t_{n_t}`, and one gate per task:

.. math::

    w_t = \operatorname{softmax}(G_t\, \bar x_t), \qquad
    f_t = \sum_e w_{t,e}\, E_e(x_t) \quad e \in \{E^t_\cdot, E^s_\cdot\},

:math:`\bar x` the input pooled to a vector (global average over space or tokens). MMoE:
:math:`n_t = 0`; CGC: one level; PLE: levels stacked, each inner level also mixing all its
experts for the next level's shared experts with a shared gate. An expert is a
``Linear -> ReLU`` over the pooled features or a copy of the backbone's stages from a
point on.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn


def pooled(x: Tensor) -> Tensor:
    """``x`` as one vector per row: ``(N, D)`` as is, ``(N, C, H, W)`` averaged over space,
    ``(N, L, D)`` (tokens) averaged over tokens, anything else flattened."""
    if x.dim() == 2:
        return x
    if x.dim() == 4:
        return x.mean(dim=(2, 3))
    if x.dim() == 3:
        return x.mean(dim=1)
    return x.flatten(1)


def _chain(stages: Sequence[nn.Module]) -> nn.Module:
    return nn.Sequential(*stages) if stages else nn.Identity()


class BranchNeck(nn.Module):
    """Branches over the stages ``upper`` (the backbone's stages ``m..K-1``; see the module).

    Args:
        upper: the stages above the shared trunk, in order (the originals: the tasks in no
            branch keep them; every branch gets a deep copy).
        branches: ``[(tasks, at)]`` with ``at`` counted from the start of ``upper``
            (``0 <= at < len(upper)``).
        task_names: every task, in the model's order.
        feature_dim: the width of the features the last stage gives.
    """

    def __init__(
        self,
        upper: Sequence[nn.Module],
        branches: Sequence[tuple[Sequence[str], int]],
        task_names: Sequence[str],
        feature_dim: int,
    ) -> None:
        super().__init__()
        grouped = [t for tasks, _ in branches for t in tasks]
        self.rest = [t for t in task_names if t not in grouped]
        points = [at for _, at in branches]
        needed = len(upper) if self.rest else max(points, default=0)
        self.main = nn.ModuleList(upper[:needed])
        self.branch_tasks = [list(tasks) for tasks, _ in branches]
        self.branch_points = points
        self.branches = nn.ModuleList(
            [_chain([copy.deepcopy(s) for s in upper[at:]]) for _, at in branches]
        )
        self.feature_dims = dict.fromkeys(task_names, feature_dim)

    def forward(self, h: Tensor) -> dict[str, Tensor]:
        activations = [h]
        for stage in self.main:
            activations.append(stage(activations[-1]))
        out = dict.fromkeys(self.rest, activations[-1])
        for tasks, at, branch in zip(self.branch_tasks, self.branch_points, self.branches,
                                     strict=True):
            features = branch(activations[at])
            out.update(dict.fromkeys(tasks, features))
        return out


ExpertFactory = Callable[[int], nn.Module]
"""``make_expert(level) -> expert``: a module mapping its input to ``(N, width)``."""


class _ExpertLevel(nn.Module):
    def __init__(
        self,
        task_names: Sequence[str],
        make_expert: Callable[[], nn.Module],
        shared: int,
        own: int,
        gate_dim: int,
        shared_gate: bool,
    ) -> None:
        super().__init__()
        self.shared = nn.ModuleList([make_expert() for _ in range(shared)])
        self.own = nn.ModuleDict(
            {t: nn.ModuleList([make_expert() for _ in range(own)]) for t in task_names}
        )
        self.gates = nn.ModuleDict({t: nn.Linear(gate_dim, shared + own) for t in task_names})
        everyone = shared + own * len(task_names)
        self.shared_gate = nn.Linear(gate_dim, everyone) if shared_gate else None

    def forward(
        self, inputs: Mapping[str, Tensor], shared_input: Tensor
    ) -> tuple[dict[str, Tensor], Tensor | None]:
        common = [expert(shared_input) for expert in self.shared]
        own: dict[str, list[Tensor]] = {}
        for task, experts in self.own.items():
            assert isinstance(experts, nn.ModuleList)
            own[task] = [expert(inputs[task]) for expert in experts]
        out = {
            t: _mix(gate(pooled(inputs[t])), [*own[t], *common]) for t, gate in self.gates.items()
        }
        if self.shared_gate is None:
            return out, None
        every = [e for t in own for e in own[t]] + common
        return out, _mix(self.shared_gate(pooled(shared_input)), every)


def _mix(gate_logits: Tensor, experts: Sequence[Tensor]) -> Tensor:
    """:math:`\\sum_e \\operatorname{softmax}(g)_e\\, E_e`: ``(N, E)`` weights on ``E`` outputs."""
    weights = torch.softmax(gate_logits, dim=-1)
    return torch.einsum("ne,new->nw", weights, torch.stack(list(experts), dim=1))


class ExpertNeck(nn.Module):
    """MMoE / CGC / PLE (see the module).

    Args:
        task_names: every task.
        make_expert: ``make_expert(level)`` builds one expert of that level (0 first).
        shared_experts, task_experts: :math:`n_s`, :math:`n_t` per level.
        levels: extraction levels (1: MMoE or CGC).
        gate_dims: the pooled input width of each level's gates.
        width: the experts' output width (the tasks' feature width).
    """

    def __init__(
        self,
        task_names: Sequence[str],
        make_expert: ExpertFactory,
        shared_experts: int,
        task_experts: int,
        levels: int,
        gate_dims: Sequence[int],
        width: int,
    ) -> None:
        super().__init__()
        if shared_experts + task_experts < 1:
            raise ValueError("an expert neck needs at least one expert per gate")
        if len(gate_dims) != levels:
            raise ValueError(f"gate_dims gives {len(gate_dims)} widths for {levels} levels")
        self.levels = nn.ModuleList(
            [
                _ExpertLevel(
                    task_names,
                    functools.partial(make_expert, level),
                    shared_experts,
                    task_experts,
                    gate_dims[level],
                    shared_gate=level < levels - 1,
                )
                for level in range(levels)
            ]
        )
        self.feature_dims = dict.fromkeys(task_names, width)

    def forward(self, h: Tensor) -> dict[str, Tensor]:
        inputs: dict[str, Tensor] = dict.fromkeys(self.feature_dims, h)
        shared: Tensor | None = h
        for level in self.levels:
            assert shared is not None
            inputs, shared = level(inputs, shared)
        return inputs


__all__ = ["BranchNeck", "ExpertFactory", "ExpertNeck", "pooled"]
