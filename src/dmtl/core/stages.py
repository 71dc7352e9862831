r"""A backbone as a chain of stages: ``backbone(x) == S_{K-1}(... S_1(S_0(x)))``.

Task-specific capacity (``core/architectures.py``) copies the upper stages of a backbone
for a task or a group of tasks, so it needs the backbone's own structure. The split is
read from the module, by what it has:

- ``nn.Sequential`` (``mlp``, ``small_cnn``, most user backbones): a new stage starts at
  every weight layer (``Linear``, ``Conv*``) after the first;
- ResNets (torchvision and timm: ``conv1``, ``layer1``..``layer4``): the stem, then one
  stage per ``layerN`` (the pooling joins the last);
- ``stem`` + ``stages`` (timm ConvNeXt, RegNet, ...) and torchvision ConvNeXt
  (``features`` of 8: stem/stage, downsample/stage pairs): one stage per stage;
- Vision Transformers (torchvision ``encoder.layers``, timm ``blocks``): the patch
  embedding, then one stage per block (the final norm and the class token or pooling
  join the last).

Every split is checked by a forward pass in eval mode: the chained stages must give the
backbone's features (to ``1e-4``), so a model whose forward does something the split
missed is refused with a clear message rather than trained as another network.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from dmtl.errors import SpecError

_WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TIMM_HEAD_PARTS = ("global_pool", "head_drop", "fc", "head", "fc_norm", "classifier")


class _Chain(nn.Sequential):
    """A stage made of several modules, applied in order."""


class _TorchvisionViTEmbed(nn.Module):
    """Patches, class token, position embedding and dropout of a torchvision ViT."""

    def __init__(self, vit: Any) -> None:
        super().__init__()
        self.conv_proj = vit.conv_proj
        self.class_token = vit.class_token
        self.pos_embedding = vit.encoder.pos_embedding
        self.dropout = vit.encoder.dropout
        self.patch_size = int(vit.patch_size)
        self.hidden_dim = int(vit.hidden_dim)

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        x = self.conv_proj(x).reshape(n, self.hidden_dim, -1).permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        return self.dropout(x + self.pos_embedding)


class _ClassToken(nn.Module):
    """The final norm, then the class token (``x[:, 0]``) and the (identity) head."""

    def __init__(self, norm: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.norm = norm
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.norm(x)[:, 0])


class _TimmForwardFeatures(nn.Module):
    """A timm model cut down to what its ``forward_features`` does before the blocks."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model.forward_features(x)  # type: ignore[operator]


class _TimmForwardHead(nn.Module):
    """The final norm, then a timm model's ``forward_head`` (pooling, identity classifier)."""

    def __init__(self, norm: nn.Module, model: nn.Module) -> None:
        super().__init__()
        self.norm = norm
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model.forward_head(self.norm(x))  # type: ignore[operator]


def split_stages(backbone: nn.Module, name: str, example: Tensor) -> list[nn.Module]:
    """The stages of ``backbone`` (see the module), checked on ``example`` (a small batch).

    The stages share ``backbone``'s modules (no copy); modules the features do not use
    (a classifier replaced by ``Identity``) are kept only where the forward needs them.
    """
    stages = _split(backbone, name)
    if len(stages) < 2:
        raise SpecError(
            f"backbone {name!r} has one stage only: task-specific capacity needs at least "
            "two (architecture: branches, mmoe and ple split the backbone into stages)"
        )
    _check_split(backbone, stages, name, example)
    return stages


def _split(backbone: nn.Module, name: str) -> list[nn.Module]:
    if isinstance(backbone, nn.Sequential):
        return _split_sequential(backbone)
    if all(hasattr(backbone, f"layer{i}") for i in (1, 2, 3, 4)) and hasattr(backbone, "conv1"):
        return _split_resnet(backbone)
    if isinstance(getattr(backbone, "stages", None), nn.Sequential) and hasattr(backbone, "stem"):
        return _split_timm_stages(backbone)
    features = getattr(backbone, "features", None)
    if isinstance(features, nn.Sequential) and len(features) == 8 and hasattr(backbone, "avgpool"):
        return _split_torchvision_convnext(backbone)
    encoder = getattr(backbone, "encoder", None)
    if encoder is not None and hasattr(encoder, "layers") and hasattr(backbone, "conv_proj"):
        return _split_torchvision_vit(backbone)
    if isinstance(getattr(backbone, "blocks", None), nn.Sequential) and hasattr(
        backbone, "patch_embed"
    ):
        return _split_timm_vit(backbone)
    raise SpecError(
        f"backbone {name!r}: cannot split {type(backbone).__name__} into stages; "
        "architecture supports nn.Sequential backbones (mlp, small_cnn), ResNets, ConvNeXt "
        "and ViTs (timm, torchvision), or a backbone factory returning an nn.Sequential"
    )


def _split_sequential(backbone: nn.Sequential) -> list[nn.Module]:
    modules = list(backbone)
    starts = [i for i, m in enumerate(modules) if isinstance(m, _WEIGHT_LAYERS)]
    cuts = [0, *starts[1:], len(modules)]
    return [_Chain(*modules[a:b]) for a, b in itertools.pairwise(cuts) if b > a]


def _split_resnet(backbone: Any) -> list[nn.Module]:
    stem = [
        getattr(backbone, part)
        for part in ("conv1", "bn1", "relu", "act1", "maxpool")
        if isinstance(getattr(backbone, part, None), nn.Module)
    ]
    layers = [getattr(backbone, f"layer{i}") for i in (1, 2, 3, 4)]
    if hasattr(backbone, "forward_head"):  # timm: global pool, head dropout, identity fc
        tail: list[nn.Module] = [_TimmForwardHead(nn.Identity(), _head_only(backbone))]
    else:  # torchvision
        tail = [backbone.avgpool, nn.Flatten(1), backbone.fc]
    return [_Chain(*stem), *layers[:3], _Chain(layers[3], *tail)]


def _split_timm_stages(backbone: Any) -> list[nn.Module]:
    stages = list(backbone.stages)
    norm = getattr(backbone, "norm_pre", nn.Identity())
    head = _TimmForwardHead(norm, _head_only(backbone))
    if len(stages) == 1:
        return [_Chain(backbone.stem), _Chain(stages[0], head)]
    return [_Chain(backbone.stem, stages[0]), *stages[1:-1], _Chain(stages[-1], head)]


def _split_torchvision_convnext(backbone: Any) -> list[nn.Module]:
    f = list(backbone.features)
    tail = [backbone.avgpool, backbone.classifier]
    return [_Chain(*f[0:2]), _Chain(*f[2:4]), _Chain(*f[4:6]), _Chain(*f[6:8], *tail)]


def _split_torchvision_vit(backbone: Any) -> list[nn.Module]:
    layers = list(backbone.encoder.layers)
    last = _Chain(layers[-1], _ClassToken(backbone.encoder.ln, backbone.heads))
    return [_TorchvisionViTEmbed(backbone), *layers[:-1], last]


def _split_timm_vit(backbone: Any) -> list[nn.Module]:
    blocks = list(backbone.blocks)
    embed = copy.copy(backbone)  # shallow: the same parameters, its own module table
    embed._modules = dict(embed._modules)
    embed.blocks = nn.Sequential()
    embed.norm = nn.Identity()
    head = _TimmForwardHead(backbone.norm, _head_only(backbone))
    return [_TimmForwardFeatures(_only(embed, exclude=_TIMM_HEAD_PARTS)), *blocks[:-1],
            _Chain(blocks[-1], head)]


def _head_only(model: nn.Module) -> nn.Module:
    """A shallow copy of a timm model that keeps only the modules ``forward_head`` uses."""
    return _only(model, keep=_TIMM_HEAD_PARTS)


def _only(model: nn.Module, keep: Sequence[str] = (), exclude: Sequence[str] = ()) -> nn.Module:
    """A shallow copy of ``model`` with the same attributes, registering only the child
    modules named in ``keep`` (or all but ``exclude``) and no direct parameters unless
    ``exclude`` is used (so a stage holds only what it runs)."""
    shallow = copy.copy(model)
    if keep:
        shallow._modules = {k: v for k, v in model._modules.items() if k in keep}
        shallow._parameters = {}
        shallow._buffers = {}
    else:
        shallow._modules = {k: v for k, v in model._modules.items() if k not in exclude}
    return shallow


def _check_split(
    backbone: nn.Module, stages: Sequence[nn.Module], name: str, example: Tensor
) -> None:
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            expected = backbone(example)
            found = example
            for stage in stages:
                stage.eval()
                found = stage(found)
    finally:
        backbone.train(was_training)
        for stage in stages:
            stage.train(was_training)
    if found.shape != expected.shape or not torch.allclose(found, expected, atol=1e-4, rtol=1e-3):
        raise SpecError(
            f"backbone {name!r}: its stages ({len(stages)}) do not reproduce its features "
            f"(shape {tuple(found.shape)} vs {tuple(expected.shape)}); its forward does more "
            "than the split found, so architecture cannot branch it"
        )


__all__ = ["split_stages"]
