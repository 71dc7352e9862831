"""Backbone registry and factory: built-ins, timm, torchvision, user factories, errors."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch
from torch import nn

from dmtl.backbones import create_backbone, list_backbones, register_backbone, unregister_backbone
from dmtl.core.model import MultiTaskModel
from dmtl.core.tasks import CategoricalTask
from dmtl.errors import MissingDependencyError, SpecError

HAS_TIMM = importlib.util.find_spec("timm") is not None
HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None
THIS_MODULE = __name__


# ---- user factories, referenced as "<this module>:<function>" -----------------------------------


def factory_returning_tuple(
    in_channels: int, image_size: int | None, pretrained: bool, width: int = 6
) -> tuple[nn.Module, int]:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(in_channels * (image_size or 1) ** 2, width)
    ), width


class WithFeatureDim(nn.Module):
    feature_dim = 3

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.LazyLinear(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def factory_with_attribute(in_channels: int, image_size: int | None, pretrained: bool) -> nn.Module:
    return WithFeatureDim()


def factory_plain_module(in_channels: int, image_size: int | None, pretrained: bool) -> nn.Module:
    return nn.Sequential(nn.Conv2d(in_channels, 7, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def factory_bad_return(in_channels: int, image_size: int | None, pretrained: bool) -> str:
    return "not a module"


NOT_CALLABLE = 3


# ---- built-ins --------------------------------------------------------------------------------


def test_list_backbones_has_builtins() -> None:
    assert {"mlp", "small_cnn"} <= set(list_backbones())


def test_mlp_defaults_and_options() -> None:
    module, dim = create_backbone("mlp", in_channels=1, image_size=8)
    assert dim == 128
    assert module(torch.randn(4, 1, 8, 8)).shape == (4, 128)
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 256), (256, 128)]
    module, dim = create_backbone("mlp", 1, 28, hidden=(32, 16, 8), dropout=0.2)
    assert dim == 8 and module(torch.randn(2, 1, 28, 28)).shape == (2, 8)
    assert any(isinstance(m, nn.Dropout) for m in module.modules())


def test_mlp_on_tabular_features() -> None:
    module, dim = create_backbone("mlp", in_channels=12, image_size=None, hidden=(5,))
    assert dim == 5 and module(torch.randn(3, 12)).shape == (3, 5)


@pytest.mark.parametrize("image_size", [8, 28])
def test_small_cnn_on_small_grey_images(image_size: int) -> None:
    module, dim = create_backbone("small_cnn", in_channels=1, image_size=image_size)
    assert dim == 128
    assert module(torch.randn(3, 1, image_size, image_size)).shape == (3, 128)
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3
    assert sum(isinstance(m, nn.BatchNorm2d) for m in module.modules()) == 3


def test_small_cnn_options() -> None:
    module, dim = create_backbone("small_cnn", 3, 1, channels=(8,), feature_dim=24, dropout=0.1)
    assert dim == 24 and module(torch.randn(2, 3, 1, 1)).shape == (2, 24)
    with pytest.raises(SpecError, match="image_size"):
        create_backbone("small_cnn", 1, None)


def test_builtins_have_no_pretrained_weights() -> None:
    with pytest.raises(SpecError, match="pretrained"):
        create_backbone("mlp", 1, 8, pretrained=True)


def test_backbone_plugs_into_multi_task_model() -> None:
    module, dim = create_backbone("small_cnn", 1, 8)
    model = MultiTaskModel(module, [CategoricalTask("digit", list("0123456789"))], feature_dim=dim)
    assert model(torch.randn(2, 1, 8, 8))["digit"].shape == (2, 10)


# ---- registry ---------------------------------------------------------------------------------


def test_register_backbone_and_duplicates() -> None:
    @register_backbone("test_identity")
    def identity(
        in_channels: int, image_size: int | None, pretrained: bool = False
    ) -> tuple[nn.Module, int]:
        return nn.Flatten(), in_channels

    try:
        assert "test_identity" in list_backbones()
        assert create_backbone("test_identity", 5, None)[1] == 5
        with pytest.raises(SpecError, match="already registered"):
            register_backbone("test_identity")(identity)
    finally:
        unregister_backbone("test_identity")
    with pytest.raises(SpecError, match="':'"):
        register_backbone("a:b")


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet'.*mlp, small_cnn"):
        create_backbone("resnet", 3, 32)


# ---- user factories ---------------------------------------------------------------------------


def test_user_factory_returning_module_and_dim() -> None:
    module, dim = create_backbone(f"{THIS_MODULE}:factory_returning_tuple", 1, 4, width=9)
    assert dim == 9 and module(torch.randn(2, 1, 4, 4)).shape == (2, 9)


def test_user_factory_with_feature_dim_attribute() -> None:
    module, dim = create_backbone(f"{THIS_MODULE}:factory_with_attribute", 1, 4)
    assert dim == 3 and isinstance(module, WithFeatureDim)


def test_user_factory_dim_by_dummy_forward() -> None:
    _, dim = create_backbone(f"{THIS_MODULE}:factory_plain_module", 2, 6)
    assert dim == 7


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no_such_package.mod:make", "cannot import module 'no_such_package.mod'"),
        (f"{THIS_MODULE}:missing_function", "no callable 'missing_function'"),
        (f"{THIS_MODULE}:NOT_CALLABLE", "no callable 'NOT_CALLABLE'"),
        (f"{THIS_MODULE}:factory_bad_return", "returned str"),
    ],
)
def test_bad_user_factory_is_named(name: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as info:
        create_backbone(name, 1, 4)
    assert name in str(info.value)


# ---- optional libraries -----------------------------------------------------------------------


@pytest.mark.vision
@pytest.mark.skipif(not HAS_TIMM, reason="timm not installed")
def test_timm_resnet18() -> None:
    module, dim = create_backbone("timm:resnet18", in_channels=1, image_size=32)
    assert dim == 512
    module.eval()
    assert module(torch.randn(2, 1, 32, 32)).shape == (2, 512)
    with pytest.raises(SpecError, match="timm:not_a_model"):
        create_backbone("timm:not_a_model", 3, 32)


@pytest.mark.vision
@pytest.mark.skipif(not HAS_TORCHVISION, reason="torchvision not installed")
@pytest.mark.parametrize("in_channels", [1, 3])
def test_torchvision_resnet18(in_channels: int) -> None:
    module, dim = create_backbone("torchvision:resnet18", in_channels=in_channels, image_size=32)
    assert dim == 512
    assert isinstance(module.fc, nn.Identity)
    assert module.conv1.in_channels == in_channels  # type: ignore[union-attr]
    module.eval()
    assert module(torch.randn(2, in_channels, 32, 32)).shape == (2, 512)


@pytest.mark.vision
@pytest.mark.skipif(not HAS_TORCHVISION, reason="torchvision not installed")
def test_torchvision_classifier_in_a_sequential() -> None:
    _, dim = create_backbone("torchvision:mobilenet_v3_small", in_channels=3, image_size=32)
    assert dim == 1024
    with pytest.raises(SpecError, match="list_models"):
        create_backbone("torchvision:not_a_model", 3, 32)


@pytest.mark.parametrize(
    ("name", "package"), [("timm:resnet18", "timm"), ("torchvision:resnet18", "torchvision")]
)
def test_missing_optional_dependency_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, name: str, package: str
) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # makes `import package` raise ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'dmtl\[vision\]'") as info:
        create_backbone(name, 3, 32)
    assert isinstance(info.value, ImportError)


def test_unknown_backbone_options_name_the_accepted_ones() -> None:
    with pytest.raises(SpecError, match=r"'small_cnn' has no option\(s\) hidden.*channels"):
        create_backbone("small_cnn", in_channels=1, image_size=8, hidden=(32,))
