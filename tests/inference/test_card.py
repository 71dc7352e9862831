"""The model card: read from a trained module, JSON round trip, validation; decisions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import dmtl
from dmtl.core.relatedness import Relatedness
from dmtl.core.tasks import BinarySetTask, CategoricalTask, RegressionTask
from dmtl.errors import SpecError
from dmtl.inference.card import ModelCard, model_card
from dmtl.inference.predict import decision_columns, prediction_frame
from dmtl.training.module import load_module

from .conftest import MEAN, STD


def _card() -> ModelCard:
    expression = CategoricalTask("expression", ["neutral", "happy", "both"], zero_shot=["both"])
    au = BinarySetTask("au", ["AU6", "AU12"])
    return ModelCard(
        name="toy",
        tasks=(expression, au, RegressionTask("va", ["valence", "arousal"], -1.0, 1.0)),
        input_shape=(3, 16, 16),
        channels=3,
        image_size=16,
        mean=(0.5, 0.4, 0.3),
        std=(0.2, 0.2, 0.2),
        thresholds={"au": (0.4, 0.6)},
        edges=(Relatedness(expression, au, [[0.1, 0.1], [0.9, 0.8], [0.9, 0.9]]),),
    )


def test_the_card_survives_its_json_round_trip() -> None:
    card = _card()
    back = ModelCard.from_json(card.to_json())
    assert back.to_dict() == card.to_dict()
    assert [t.kind for t in back.tasks] == ["categorical", "binary_set", "regression"]
    expression = back.task("expression")
    assert isinstance(expression, CategoricalTask) and expression.zero_shot == ("both",)
    assert back.thresholds == {"au": (0.4, 0.6)}
    assert back.input_shape == (3, 16, 16) and back.mean == (0.5, 0.4, 0.3)
    assert torch.equal(back.edges[0].table, card.edges[0].table)
    assert back.dmtl_version == dmtl.__version__
    document = json.loads(card.to_json())
    assert document["format"] == "dmtl-model-card" and document["outputs"] == "probabilities"


def test_binary_sets_get_a_threshold_of_one_half_by_default() -> None:
    card = ModelCard(name="t", tasks=(BinarySetTask("au", ["AU1", "AU2"]),), input_shape=(4,))
    assert card.thresholds == {"au": (0.5, 0.5)}


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d.update(format="other"), "format"),
        (lambda d: d.update(format_version=99), "newer than this dmtl reads"),
        (lambda d: d["tasks"][1].update(thresholds=[0.5]), "expected 2 thresholds"),
        (lambda d: d["tasks"][0].update(type="ordinal"), "unknown task type 'ordinal'"),
        (lambda d: d["relatedness"][0].update(target="pose"), "relatedness expression->pose"),
        (lambda d: d["relatedness"][0].update(table=[[0.5, 2.0]] * 3), "outside [0, 1]"),
        (lambda d: d.pop("input"), "input"),
    ],
)
def test_a_bad_card_is_one_spec_error_naming_the_file(edit: object, expected: str) -> None:
    document = _card().to_dict()
    edit(document)  # type: ignore[operator]
    with pytest.raises(SpecError) as caught:
        ModelCard.from_json(json.dumps(document), where="model.onnx")
    message = str(caught.value)
    assert message.startswith("model.onnx: ") and expected in message and "\n" not in message


def test_model_card_reads_a_trained_module(trained_run: Path) -> None:
    module = load_module(trained_run / "checkpoints" / "last.ckpt")
    card = model_card(module)
    assert [t.name for t in card.tasks] == [t.name for t in module.tasks]
    assert card.task("digit").names == tuple(str(d) for d in range(10))
    assert card.input_shape == (1, 8, 8) and (card.channels, card.image_size) == (1, 8)
    assert card.mean == (MEAN,) and card.std == (STD,)
    assert card.thresholds == {t.name: (0.5,) * t.num_outputs for t in card.tasks[1:]}
    assert card.edges == ()  # no zero-shot class: the tables stay in the run folder
    assert card.name == "tiny" and card.input_name == "input"


def test_an_input_name_never_clashes_with_an_output() -> None:
    from dmtl.inference.card import _free_name

    assert _free_name("input", {"digit"}) == "input"
    assert _free_name("input", {"input", "_input"}) == "__input"


def test_decisions_use_the_thresholds_of_the_card() -> None:
    au = BinarySetTask("au", ["AU1", "AU2", "AU4"])
    p = torch.tensor([[0.45, 0.45, 0.45], [0.8, 0.1, 0.65]])
    def lists(columns: dict[str, object]) -> dict[str, list[object]]:
        return {name: list(values) for name, values in columns.items()}  # type: ignore[call-overload]

    assert lists(decision_columns(au, p, (0.4, 0.5, 0.7))) == {
        "au/AU1": [1, 1],
        "au/AU2": [0, 0],
        "au/AU4": [0, 0],
    }
    assert lists(decision_columns(au, p)) == {"au/AU1": [0, 1], "au/AU2": [0, 0], "au/AU4": [0, 1]}
    digit = CategoricalTask("digit", ["0", "1", "2"])
    assert lists(decision_columns(digit, torch.tensor([[0.2, 0.5, 0.3]]))) == {"digit": ["1"]}


def test_prediction_frame_orders_decisions_then_probabilities_then_zero_shot_scores() -> None:
    card = _card()
    probs = {
        "expression": torch.tensor([[0.7, 0.2, 0.1]]),
        "au": torch.tensor([[0.95, 0.9]]),
        "va": torch.tensor([[0.1, -0.2]]),
    }
    frame = prediction_frame(card, probs, ids=["a"], images=["a.png"])
    assert list(frame.columns) == [
        "id", "image", "expression", "au/AU6", "au/AU12", "va/valence", "va/arousal",
        "p:expression/neutral", "p:expression/happy", "p:expression/both",
        "p:au/AU6", "p:au/AU12",
        "zs:expression/neutral", "zs:expression/happy", "zs:expression/both", "zs:expression",
    ]  # fmt: skip
    assert frame.loc[0, "expression"] == "neutral" and frame.loc[0, "zs:expression"] == "both"
    # the 0.6 threshold of AU12 keeps 0.9 on, the 0.4 of AU6 keeps 0.95 on
    assert frame.loc[0, "au/AU6"] == 1 and frame.loc[0, "au/AU12"] == 1
    # a regression task's values are its decisions, in the manifest's <task>/<target> columns
    assert frame.loc[0, "va/arousal"] == pytest.approx(-0.2)
