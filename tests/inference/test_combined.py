"""CombinedPredictor: each task's probabilities from the model that serves it (what
``dmtl predict STUDY_FOLDER`` uses when the study keeps a task's single-task model)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from dmtl.core.tasks import BinarySetTask, CategoricalTask
from dmtl.errors import SpecError
from dmtl.inference.card import ModelCard
from dmtl.inference.runtime import CombinedPredictor

DIGIT = CategoricalTask("digit", ["0", "1"])
INK = BinarySetTask("ink", ["heavy", "wide"])


class Constant:
    """A model that answers ``value`` for every task it has, whatever the input."""

    def __init__(self, card: ModelCard, value: float) -> None:
        self.card, self.value = card, value

    def probabilities(self, x: Tensor) -> dict[str, Tensor]:
        return {t.name: torch.full((len(x), t.num_outputs), self.value) for t in self.card.tasks}


def _card(name: str, *tasks: CategoricalTask | BinarySetTask, size: int = 8,
          thresholds: dict[str, tuple[float, ...]] | None = None) -> ModelCard:
    return ModelCard(name=name, tasks=tasks, input_shape=(1, size, size), channels=1,
                     image_size=size, thresholds=thresholds or {})


def test_each_task_comes_from_the_model_that_serves_it() -> None:
    shared = Constant(_card("mtl", DIGIT, INK, thresholds={"ink": (0.3, 0.3)}), 0.25)
    alone = Constant(_card("ink-alone", INK, thresholds={"ink": (0.7, 0.6)}), 0.75)
    combined = CombinedPredictor([(shared, ["digit"]), (alone, ["ink"])], ["digit", "ink"])
    probs = combined.probabilities(torch.zeros(3, 1, 8, 8))
    assert list(probs) == ["digit", "ink"]
    assert torch.equal(probs["digit"], torch.full((3, 2), 0.25))
    assert torch.equal(probs["ink"], torch.full((3, 2), 0.75))
    assert [t.name for t in combined.card.tasks] == ["digit", "ink"]
    assert combined.card.thresholds == {"ink": (0.7, 0.6)}  # the serving model's


def test_models_that_make_their_inputs_differently_are_refused() -> None:
    shared = Constant(_card("mtl", DIGIT, INK), 0.5)
    bigger = Constant(_card("ink-alone", INK, size=16), 0.5)
    with pytest.raises(SpecError, match=r"'ink-alone' makes its inputs differently .*input_shape"):
        CombinedPredictor([(shared, ["digit"]), (bigger, ["ink"])], ["digit", "ink"])


def test_a_task_no_model_has_or_serves_is_refused() -> None:
    shared = Constant(_card("mtl", DIGIT), 0.5)
    with pytest.raises(SpecError, match="'mtl' has no task 'ink'"):
        CombinedPredictor([(shared, ["digit", "ink"])], ["digit", "ink"])
    with pytest.raises(SpecError, match="no model serves ink"):
        CombinedPredictor([(shared, ["digit"])], ["digit", "ink"])
