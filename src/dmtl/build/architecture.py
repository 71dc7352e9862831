"""``config.architecture`` -> the shared trunk and the neck of a :class:`MultiTaskModel`.

``shared``: the backbone is the trunk, no neck. ``branch``: the backbone's stages
(:func:`~dmtl.core.stages.split_stages`) below the first branch point are the trunk, a
:class:`~dmtl.core.architectures.BranchNeck` holds the rest. ``mmoe`` / ``ple``: the
trunk is the backbone (or its stages below ``at``), an
:class:`~dmtl.core.architectures.ExpertNeck` the experts and gates.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from dmtl.config import BranchOptions, Config, ExpertOptions
from dmtl.core.architectures import BranchNeck, ExpertNeck, pooled
from dmtl.core.stages import split_stages
from dmtl.errors import SpecError


def build_architecture(
    config: Config,
    backbone: nn.Module,
    feature_dim: int,
    task_names: Sequence[str],
    input_shape: Sequence[int],
) -> tuple[nn.Module, nn.Module | None]:
    """``(trunk, neck)`` for ``config.architecture`` over ``backbone`` (features of width
    ``feature_dim``); ``(backbone, None)`` for ``shared``."""
    architecture = config.architecture
    options = architecture.typed_options()
    if options is None:
        return backbone, None
    example = torch.zeros((2, *input_shape))
    stages = split_stages(backbone, config.backbone.name, example)
    if isinstance(options, BranchOptions):
        return _branches(options, stages, task_names, feature_dim)
    assert isinstance(options, ExpertOptions)
    return _experts(options, backbone, stages, task_names, feature_dim, example)


def _check_point(at: int, stages: Sequence[nn.Module], where: str) -> None:
    if at >= len(stages):
        raise SpecError(
            f"{where}: the backbone has {len(stages)} stages, so a branch point lies in "
            f"0..{len(stages) - 1}, got {at}"
        )


def _branches(
    options: BranchOptions, stages: Sequence[nn.Module], task_names: Sequence[str],
    feature_dim: int,
) -> tuple[nn.Module, nn.Module]:
    if options.auto and not options.branches:
        raise SpecError(
            "architecture.options.auto: the branches are chosen from the measured task "
            "affinity when training starts (dmtl train, dmtl study); build_model needs them given"
        )
    seen: set[str] = set()
    for i, branch in enumerate(options.branches):
        where = f"architecture.options.branches.{i}"
        _check_point(branch.at, stages, f"{where}.at")
        unknown = sorted(set(branch.tasks) - set(task_names))
        repeated = sorted(set(branch.tasks) & seen)
        if unknown or repeated:
            problem = f"unknown tasks {unknown}" if unknown else f"tasks {repeated} in two branches"
            raise SpecError(f"{where}.tasks: {problem}; tasks: {', '.join(task_names)}")
        seen |= set(branch.tasks)
    if not options.branches:
        raise SpecError("architecture.options.branches: give at least one branch (or auto)")
    shared = min(b.at for b in options.branches)
    trunk = nn.Sequential(*stages[:shared]) if shared else nn.Identity()
    neck = BranchNeck(
        stages[shared:],
        [(b.tasks, b.at - shared) for b in options.branches],
        task_names,
        feature_dim,
    )
    return trunk, neck


def _experts(
    options: ExpertOptions,
    backbone: nn.Module,
    stages: Sequence[nn.Module],
    task_names: Sequence[str],
    feature_dim: int,
    example: torch.Tensor,
) -> tuple[nn.Module, nn.Module]:
    width = options.width or feature_dim
    if options.at is None:
        trunk: nn.Module = backbone
        gate_dim = feature_dim

        def make_expert(level: int) -> nn.Module:
            return nn.Sequential(nn.Linear(feature_dim if level == 0 else width, width), nn.ReLU())

    else:
        _check_point(options.at, stages, "architecture.options.at")
        if options.width not in (None, feature_dim):
            raise SpecError(
                "architecture.options.width: experts copied from the backbone give its "
                f"feature width {feature_dim}; leave width out"
            )
        width = feature_dim
        trunk = nn.Sequential(*stages[: options.at]) if options.at else nn.Identity()
        with torch.no_grad():
            gate_dim = int(pooled(trunk.eval()(example)).shape[1])
        trunk.train()
        upper = list(stages[options.at :])

        def make_expert(level: int) -> nn.Module:
            return nn.Sequential(*[copy.deepcopy(s) for s in upper])

    gate_dims = [gate_dim] + [width] * (options.levels - 1)
    neck = ExpertNeck(
        task_names, make_expert, options.shared_experts, options.task_experts,
        options.levels, gate_dims, width,
    )
    return trunk, neck


__all__ = ["build_architecture"]
