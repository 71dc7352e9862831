"""Task heads: ``HeadSpec`` as the ``head_factory`` of ``MultiTaskModel``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dmtl.core.heads import HeadSpec, mlp_head
from dmtl.core.model import MultiTaskModel
from dmtl.core.tasks import BinarySetTask, CategoricalTask, Task
from dmtl.errors import SpecError

TASKS: list[Task] = [
    CategoricalTask("expression", ["neutral", "happy", "sad"]),
    BinarySetTask("au", ["AU1", "AU2", "AU4", "AU6"]),
]


def build(seed: int, head_factory: HeadSpec | None = None) -> MultiTaskModel:
    torch.manual_seed(seed)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU())
    return MultiTaskModel(backbone, TASKS, feature_dim=8, head_factory=head_factory)


def test_no_hidden_layer_is_exactly_the_default_linear_head() -> None:
    default, spec = build(3), build(3, HeadSpec())
    assert all(type(head) is nn.Linear for head in spec.heads.values())
    assert default.state_dict().keys() == spec.state_dict().keys()
    for key, value in default.state_dict().items():
        assert torch.equal(value, spec.state_dict()[key]), key


def test_hidden_layers_per_task_and_global() -> None:
    spec = HeadSpec(hidden=(16,), per_task={"au": (32, 8)})
    model = build(0, spec)
    layers = {name: [type(m).__name__ for m in head] for name, head in model.heads.items()}
    assert layers == {
        "expression": ["Linear", "ReLU", "Linear"],
        "au": ["Linear", "ReLU", "Linear", "ReLU", "Linear"],
    }
    widths = [
        (m.in_features, m.out_features) for m in model.heads["au"] if isinstance(m, nn.Linear)
    ]
    assert widths == [(8, 32), (32, 8), (8, 4)]
    logits = model(torch.zeros(5, 3, 4))
    assert {name: tuple(z.shape) for name, z in logits.items()} == {
        "expression": (5, 3),
        "au": (5, 4),
    }


def test_per_task_empty_widths_give_that_task_a_linear_head() -> None:
    model = build(0, HeadSpec(hidden=(16,), per_task={"expression": ()}))
    assert type(model.heads["expression"]) is nn.Linear
    assert isinstance(model.heads["au"], nn.Sequential)


def test_dropout_follows_each_hidden_relu_only_when_positive() -> None:
    head = mlp_head(8, 2, (4, 4), dropout=0.25)
    assert [type(m).__name__ for m in head] == [
        "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear",
    ]  # fmt: skip
    assert all(m.p == 0.25 for m in head if isinstance(m, nn.Dropout))
    assert not any(isinstance(m, nn.Dropout) for m in mlp_head(8, 2, (4,), dropout=0.0))


def test_the_head_computes_linear_relu_linear() -> None:
    head = mlp_head(3, 2, (4,)).double()
    x = torch.randn(6, 3, dtype=torch.float64)
    first, last = head[0], head[2]
    expected = (x @ first.weight.T + first.bias).clamp(min=0) @ last.weight.T + last.bias
    torch.testing.assert_close(head(x), expected, rtol=0, atol=1e-14)


def test_lists_from_a_config_are_accepted_and_the_spec_is_hashable() -> None:
    spec = HeadSpec(hidden=[16], per_task={"au": [8]}, dropout=0)  # type: ignore[arg-type]
    assert spec == HeadSpec(hidden=(16,), per_task={"au": (8,)})
    assert hash(spec) == hash(HeadSpec(hidden=(16,), per_task={"au": (8,)}))
    assert spec.widths("au") == (8,) and spec.widths("expression") == (16,)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden": (0,)}, "heads.hidden: layer widths must be positive integers, got 0"),
        ({"hidden": (True,)}, "positive integers, got True"),
        ({"hidden": "256"}, "heads.hidden: expected a list of layer widths"),
        ({"per_task": {"au": (8, -1)}}, "heads.per_task.au: layer widths must be positive"),
        ({"per_task": [("au", (8,))]}, "heads.per_task: expected a mapping"),
        ({"dropout": 1.0}, r"heads.dropout: must lie in \[0, 1\), got 1.0"),
        ({"dropout": "0.1"}, "heads.dropout: expected a number"),
    ],
)
def test_bad_specs_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        HeadSpec(**kwargs)


def test_per_task_names_are_checked_against_the_tasks() -> None:
    spec = HeadSpec(per_task={"au": (8,), "expresion": (8,)})
    with pytest.raises(SpecError, match=r"heads\.per_task names unknown tasks: expresion"):
        spec.check_tasks(t.name for t in TASKS)
    HeadSpec(per_task={"au": (8,)}).check_tasks(t.name for t in TASKS)
