"""Zero-shot classes: scored through the inverse map of an edge leaving their task."""

from __future__ import annotations

import numpy as np
import torch

from dmtl.core.relatedness import Relatedness
from dmtl.core.tasks import BinarySetTask, CategoricalTask
from dmtl.inference.predict import probability_columns, zero_shot_columns


def _edge() -> Relatedness:
    expression = CategoricalTask(
        "expression",
        ["neutral", "happiness", "surprise", "happily_surprised"],
        zero_shot=["happily_surprised"],
    )
    au = BinarySetTask("au", ["AU2", "AU12", "AU25"])
    # A user-supplied profile: happily surprised = surprise's AU2 + happiness' AU12, lips parted.
    table = torch.tensor(
        [
            [0.0, 0.0, 0.0],  # neutral
            [0.0, 1.0, 1.0],  # happiness
            [1.0, 0.0, 1.0],  # surprise
            [1.0, 1.0, 1.0],  # happily surprised
        ]
    )
    return Relatedness(expression, au, table)


def test_zero_shot_class_wins_when_the_aus_match_its_profile() -> None:
    edge = _edge()
    probs = {"au": torch.tensor([[0.95, 0.95, 0.95], [0.02, 0.97, 0.96]])}
    columns = zero_shot_columns(edge, probs)
    assert columns["zs:expression"] == ["happily_surprised", "happily_surprised"]
    posterior = torch.tensor(
        np.array([columns[f"zs:expression/{c}"] for c in edge.source.classes])
    ).T  # (N, C)
    assert torch.allclose(posterior.sum(1), torch.ones(2), atol=1e-5)
    # First sample: every AU on, the zero-shot profile is the most likely class.
    assert int(posterior[0].argmax()) == 3
    # Second sample: AU2 off, so happiness beats the zero-shot class.
    assert int(posterior[1].argmax()) == 1


def test_no_zero_shot_columns_without_zero_shot_classes() -> None:
    edge = _edge()
    plain = Relatedness(
        CategoricalTask("expression", edge.source.classes), edge.target, edge.table
    )
    assert zero_shot_columns(plain, {"au": torch.full((1, 3), 0.5)}) == {}


def test_many_classes_get_their_top_five_instead_of_one_column_each() -> None:
    identity = CategoricalTask("identity", [f"id{i}" for i in range(300)])
    p = torch.softmax(torch.arange(300.0).repeat(2, 1), dim=-1)
    columns = probability_columns(identity, p)
    assert list(columns) == [c for k in range(1, 6) for c in (f"identity@{k}", f"p:identity@{k}")]
    assert columns["identity@1"] == ["id299", "id299"]
    assert columns["identity@5"] == ["id295", "id295"]
    small = CategoricalTask("digit", ["0", "1"])
    assert list(probability_columns(small, torch.full((1, 2), 0.5))) == ["p:digit/0", "p:digit/1"]
