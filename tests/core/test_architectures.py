"""Task-specific capacity: stages of a backbone, branches, MMoE and CGC/PLE necks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dmtl.backbones import create_backbone
from dmtl.core.architectures import BranchNeck, ExpertNeck, pooled
from dmtl.core.stages import split_stages
from dmtl.errors import SpecError


def _chain(stages, x):
    for stage in stages:
        x = stage(x)
    return x


@pytest.mark.parametrize(("name", "shape", "count"), [
    ("mlp", (1, 8, 8), 2), ("small_cnn", (1, 8, 8), 3),
])
def test_built_in_backbones_split_into_their_blocks(name, shape, count) -> None:
    backbone, _ = create_backbone(name, in_channels=shape[0], image_size=shape[-1])
    x = torch.randn(4, *shape)
    stages = split_stages(backbone, name, x)
    assert len(stages) == count
    backbone.eval()
    assert torch.allclose(_chain(stages, x), backbone(x), atol=1e-6)


def test_a_backbone_without_structure_is_refused_clearly() -> None:
    class Opaque(nn.Module):
        def forward(self, x):
            return x.flatten(1)

    with pytest.raises(SpecError, match="cannot split Opaque into stages"):
        split_stages(Opaque(), "pkg:opaque", torch.zeros(2, 4))
    with pytest.raises(SpecError, match="one stage only"):
        split_stages(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), "one", torch.zeros(2, 4))


def test_a_split_that_misses_part_of_the_forward_is_refused() -> None:
    class Doubling(nn.Sequential):
        def forward(self, x):
            return 2 * super().forward(x)

    backbone = Doubling(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 3))
    with pytest.raises(SpecError, match="do not reproduce its features"):
        split_stages(backbone, "doubling", torch.randn(3, 4))


def test_branch_neck_hand_built() -> None:
    # stages: x -> x + 1 -> 2x; a branch for "b" from stage 1 gets its own copy of 2x
    class Add(nn.Module):
        def forward(self, x):
            return x + 1

    upper = [Add(), nn.Linear(1, 1, bias=False)]
    with torch.no_grad():
        upper[1].weight.fill_(2.0)
    neck = BranchNeck(upper, [(["b"], 1)], ["a", "b"], feature_dim=1)
    with torch.no_grad():
        neck.branches[0][0].weight.fill_(3.0)  # the copy is its own parameter
    out = neck(torch.tensor([[1.0]]))
    assert out["a"].item() == pytest.approx(4.0) and out["b"].item() == pytest.approx(6.0)
    assert neck.main[1].weight.item() == pytest.approx(2.0)


def test_branch_from_the_input_shares_nothing() -> None:
    upper = [nn.Linear(2, 3), nn.Linear(3, 3)]
    neck = BranchNeck(upper, [(["b"], 0)], ["a", "b"], feature_dim=3)
    shared = {id(p) for p in neck.main.parameters()}
    assert not shared & {id(p) for p in neck.branches.parameters()}


def test_expert_neck_with_zero_gates_averages_its_experts() -> None:
    experts = iter([nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2)])
    neck = ExpertNeck(["a", "b"], lambda level: next(experts), shared_experts=2,
                      task_experts=1, levels=1, gate_dims=[2], width=2)
    for gate in neck.levels[0].gates.values():
        nn.init.zeros_(gate.weight)
        nn.init.zeros_(gate.bias)
    x = torch.randn(5, 2)
    level = neck.levels[0]
    out = neck(x)
    for task in ("a", "b"):
        parts = [level.own[task][0](x), level.shared[0](x), level.shared[1](x)]
        assert torch.allclose(out[task], sum(parts) / 3, atol=1e-6)


def test_ple_levels_and_pooling() -> None:
    neck = ExpertNeck(["a", "b"], lambda level: nn.Sequential(nn.LazyLinear(4), nn.ReLU()),
                      shared_experts=1, task_experts=1, levels=2, gate_dims=[6, 4], width=4)
    out = neck(torch.randn(3, 6))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"a": (3, 4), "b": (3, 4)}
    assert neck.levels[0].shared_gate is not None and neck.levels[1].shared_gate is None
    assert pooled(torch.ones(2, 3, 4, 4)).shape == (2, 3)
    assert pooled(torch.ones(2, 5, 7)).shape == (2, 7)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["timm:resnet18", "torchvision:resnet18",
                                  "timm:convnext_atto", "torchvision:convnext_tiny"])
def test_vision_backbones_split_by_their_stages(name) -> None:
    pytest.importorskip(name.split(":")[0])
    backbone, _ = create_backbone(name, in_channels=3, image_size=32)
    x = torch.randn(2, 3, 32, 32)
    stages = split_stages(backbone, name, x)
    assert len(stages) >= 4


@pytest.mark.slow
def test_vision_transformers_split_into_blocks() -> None:
    pytest.importorskip("timm")
    torchvision = pytest.importorskip("torchvision")
    timm_vit, _ = create_backbone("timm:vit_tiny_patch16_224", 3, 32, img_size=32, depth=3)
    assert len(split_stages(timm_vit, "timm:vit", torch.randn(2, 3, 32, 32))) == 4
    vit = torchvision.models.VisionTransformer(32, 16, num_layers=2, num_heads=2,
                                              hidden_dim=16, mlp_dim=32)
    vit.heads = nn.Identity()
    assert len(split_stages(vit, "torchvision:vit", torch.randn(2, 3, 32, 32))) == 3
