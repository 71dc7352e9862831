"""MultiTaskModel: heads per task, feature-dim inference, head factories, probabilities."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dmtl.core.model import MultiTaskModel, infer_feature_dim, predictions
from dmtl.core.tasks import BinarySetTask, CategoricalTask, Task

TASKS: list[Task] = [
    CategoricalTask("digit", [str(i) for i in range(10)]),
    BinarySetTask("attr", ["even", "big", "round"]),
]


def small_backbone() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def test_forward_gives_logits_per_task() -> None:
    model = MultiTaskModel(small_backbone(), TASKS, feature_dim=4)
    logits = model(torch.randn(5, 1, 8, 8))
    assert list(logits) == ["digit", "attr"]
    assert logits["digit"].shape == (5, 10)
    assert logits["attr"].shape == (5, 3)
    assert isinstance(model.heads["digit"], nn.Linear)
    head = model.heads["attr"]
    assert isinstance(head, nn.Linear) and head.in_features == 4


def test_feature_dim_inferred_without_touching_batch_norm_or_mode() -> None:
    backbone = small_backbone()
    batch_norm = backbone[1]
    assert isinstance(batch_norm, nn.BatchNorm2d)
    assert batch_norm.running_mean is not None
    before = batch_norm.running_mean.clone()
    model = MultiTaskModel(backbone, TASKS, input_shape=(1, 8, 8))
    assert model.feature_dim == 4
    assert model.training and backbone.training
    assert torch.equal(batch_norm.running_mean, before)
    assert batch_norm.num_batches_tracked is not None
    assert int(batch_norm.num_batches_tracked) == 0


def test_feature_dim_from_backbone_attribute() -> None:
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(6, 5))
    backbone.num_features = 5  # type: ignore[assignment]
    assert MultiTaskModel(backbone, TASKS).feature_dim == 5


def test_missing_feature_dim_is_explained() -> None:
    with pytest.raises(ValueError, match="input_shape"):
        MultiTaskModel(nn.Flatten(), TASKS)


def test_infer_feature_dim_rejects_non_flat_features() -> None:
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        infer_feature_dim(nn.Conv2d(1, 2, 3), (1, 8, 8))
    with pytest.raises(ValueError, match="dummy forward"):
        infer_feature_dim(nn.Linear(3, 2), (4,))


def test_head_factory_and_dropout() -> None:
    calls: list[tuple[int, str]] = []

    def mlp_head(feature_dim: int, task: Task) -> nn.Module:
        calls.append((feature_dim, task.name))
        return nn.Sequential(nn.Linear(feature_dim, 16), nn.ReLU(), nn.Linear(16, task.num_outputs))

    model = MultiTaskModel(
        small_backbone(), TASKS, feature_dim=4, head_factory=mlp_head, dropout=0.5
    )
    assert calls == [(4, "digit"), (4, "attr")]
    assert isinstance(model.dropout, nn.Dropout) and model.dropout.p == 0.5
    model.eval()
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(model(x)["digit"], model(x)["digit"])  # dropout off in eval
    assert model(x)["attr"].shape == (3, 3)


def test_wrong_head_output_names_the_task() -> None:
    with pytest.raises(ValueError, match="attr"):
        MultiTaskModel(
            small_backbone(),
            TASKS,
            feature_dim=4,
            head_factory=lambda dim, task: nn.Linear(dim, 2 if task.name == "attr" else 10),
        )


def test_task_names_that_cannot_key_a_module_dict() -> None:
    with pytest.raises(ValueError, match="rename"):
        MultiTaskModel(small_backbone(), [CategoricalTask("type", ["x", "y"])], feature_dim=4)
    with pytest.raises(ValueError, match="rename"):
        MultiTaskModel(small_backbone(), [CategoricalTask("a.b", ["x", "y"])], feature_dim=4)


def test_predictions() -> None:
    model = MultiTaskModel(small_backbone(), TASKS, feature_dim=4)
    logits = model(torch.randn(4, 1, 8, 8))
    probs = predictions(logits, TASKS)
    assert torch.allclose(probs["digit"].sum(dim=1), torch.ones(4))
    assert torch.allclose(probs["attr"], torch.sigmoid(logits["attr"]))
    model.eval()
    x = torch.randn(2, 1, 8, 8)
    assert torch.allclose(model.predict(x)["digit"], torch.softmax(model(x)["digit"], -1))
    with pytest.raises(KeyError, match="other"):
        predictions({"other": torch.zeros(1, 2)}, TASKS)


def test_gradients_reach_backbone_and_every_head() -> None:
    model = MultiTaskModel(small_backbone(), TASKS, feature_dim=4)
    logits = model(torch.randn(6, 1, 8, 8))
    (logits["digit"].sum() + logits["attr"].sum()).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_state_dict_keys_use_task_names() -> None:
    keys = MultiTaskModel(small_backbone(), TASKS, feature_dim=4).state_dict()
    assert "heads.digit.weight" in keys and "heads.attr.bias" in keys
