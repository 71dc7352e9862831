"""``backbone.weights: PATH`` loads a local state dict; pretrained weights that cannot be
downloaded are one line, at once (the network is simulated away: nothing is reached)."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from dmtl.backbones import create_backbone, load_weights
from dmtl.build import build_model
from dmtl.config import Config
from dmtl.core.tasks import CategoricalTask
from dmtl.errors import SpecError


def _same(a: nn.Module, b: nn.Module) -> bool:
    left, right = a.state_dict(), b.state_dict()
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def test_mlp_weights_from_a_local_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    trained, _ = create_backbone("mlp", in_channels=1, image_size=8, hidden=(16,))
    path = tmp_path / "mlp.pt"
    torch.save(trained.state_dict(), path)
    torch.manual_seed(1)
    loaded, _ = create_backbone("mlp", 1, 8, weights=path, hidden=(16,))
    assert _same(trained, loaded)


def test_weights_through_the_config(tmp_path: Path) -> None:
    """The config's ``backbone.weights`` reaches the model's backbone."""
    torch.manual_seed(0)
    trained, _ = create_backbone("small_cnn", 1, 8, channels=(4,), feature_dim=8)
    path = tmp_path / "cnn.pt"
    torch.save({"state_dict": trained.state_dict()}, path)  # a wrapper is unwrapped
    config = Config.model_validate({
        "sources": [{"name": "d", "builtin": "digits"}],
        "backbone": {"name": "small_cnn", "weights": str(path),
                     "options": {"channels": [4], "feature_dim": 8}},
    })
    model = build_model(config, [CategoricalTask("digit", list("0123456789"))], (1, 8, 8))
    assert _same(trained, model.backbone)


def test_timm_weights_from_a_local_file(tmp_path: Path) -> None:
    """timm reads the file itself (``pretrained_cfg_overlay``), dropping the classifier."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    full = timm.create_model("test_resnet", num_classes=10)
    path = tmp_path / "test_resnet.pth"
    torch.save(full.state_dict(), path)
    module, _ = create_backbone("timm:test_resnet", 3, 32, weights=path)
    for key, value in module.state_dict().items():
        assert torch.equal(value, full.state_dict()[key]), key


def test_torchvision_weights_from_a_local_file(tmp_path: Path) -> None:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    full = torchvision.models.get_model("squeezenet1_1", weights=None)
    path = tmp_path / "squeezenet.pth"
    torch.save(full.state_dict(), path)
    module, _ = create_backbone("torchvision:squeezenet1_1", 3, 32, weights=path)
    conv = module.features[0]
    assert torch.equal(conv.weight, full.features[0].weight)


def test_weights_that_do_not_fit_are_one_line(tmp_path: Path) -> None:
    other, _ = create_backbone("mlp", 1, 8, hidden=(4,))
    path = tmp_path / "other.pt"
    torch.save(other.state_dict(), path)
    module, _ = create_backbone("mlp", 1, 8, hidden=(16,))
    with pytest.raises(SpecError, match="does not fit backbone") as caught:
        load_weights(module, path, "mlp")
    assert "\n" not in str(caught.value)


def test_weights_that_hold_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "pickle.pt"
    torch.save({"weights": nn.Linear(2, 2)}, path)  # a module object, not a state dict
    module, _ = create_backbone("mlp", 1, 8, hidden=(4,))
    with pytest.raises(SpecError, match="is not a state dict"):
        load_weights(module, path, "mlp")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every connection fails at once; empty caches (nothing is downloaded or reached)."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError("network is unreachable (simulated by the test)")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))


@pytest.mark.parametrize("name", ["timm:test_resnet", "torchvision:squeezenet1_1"])
def test_pretrained_offline_is_one_line_at_once(no_network: None, name: str) -> None:
    pytest.importorskip(name.partition(":")[0])
    start = time.perf_counter()
    with pytest.raises(SpecError) as caught:
        create_backbone(name, 3, 32, pretrained=True)
    message = str(caught.value)
    assert "\n" not in message
    assert "could not be downloaded" in message and "backbone.weights" in message
    assert time.perf_counter() - start < 30  # no minute of retries (a loose bound)


def test_a_checkpoint_does_not_read_the_initial_weights_again(tmp_path: Path) -> None:
    """Training starts from ``backbone.weights``; a model rebuilt from its checkpoint's spec
    reads neither that file (it may be gone) nor downloads anything."""
    from dmtl.build import ModelSpec
    from dmtl.training.module import MultiTaskModule

    torch.manual_seed(0)
    initial, _ = create_backbone("mlp", 1, 8, hidden=(16,))
    path = tmp_path / "initial.pt"
    torch.save(initial.state_dict(), path)
    config = Config.model_validate({
        "sources": [{"name": "d", "builtin": "digits"}],
        "backbone": {"name": "mlp", "weights": str(path), "options": {"hidden": [16]}},
    })
    task = CategoricalTask("digit", list("0123456789"))
    spec = ModelSpec(config.model_dump(mode="json"), [task.to_dict()], [], [1, 8, 8])
    fresh = MultiTaskModule.from_spec(spec)
    assert _same(initial, fresh.model.backbone)
    path.unlink()
    rebuilt = MultiTaskModule.from_spec(ModelSpec.from_dict(spec.to_dict()))
    assert rebuilt.spec is not None and rebuilt.spec.trained
    assert "trained" not in rebuilt.spec.to_dict()
