"""The LightningModule: rebuildable from its hyper-parameters, losses, NaN guard, optimisers."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import torch

from dmtl.build import ModelSpec, edge_from_dict, edge_to_dict
from dmtl.build.data import Experiment, build_experiment
from dmtl.build.loaders import train_loader
from dmtl.config import validate_config
from dmtl.core.objective import Objective
from dmtl.core.tasks import BinarySetTask, CategoricalTask, task_from_dict
from dmtl.data.batching import Batch
from dmtl.errors import NonFiniteLossError
from dmtl.training.module import MultiTaskModule
from dmtl.training.run import make_module


@pytest.fixture
def experiment(tiny_data: Callable[..., dict[str, Any]]) -> Experiment:
    return build_experiment(validate_config(tiny_data()))


def _module(experiment: Experiment, **method: Any) -> MultiTaskModule:
    if method:
        config = experiment.config.model_copy(
            update={"method": experiment.config.method.model_copy(update=method)}
        )
        experiment = dataclasses.replace(experiment, config=config)
    return make_module(experiment, steps_per_epoch=5)


def _batch(experiment: Experiment) -> Batch:
    return next(iter(train_loader(experiment)))


def test_task_and_edge_specs_round_trip(experiment: Experiment) -> None:
    for task in experiment.tasks:
        assert task_from_dict(task.to_dict()) == task
    zero_shot = CategoricalTask("c", ["a", "b", "z"], zero_shot=["z"], label_smoothing=0.1)
    again = task_from_dict(zero_shot.to_dict())
    assert again == zero_shot and again.label_smoothing == 0.1
    (edge,) = experiment.edges
    again = edge_from_dict(edge_to_dict(edge), experiment.task_map)
    assert again.name == edge.name and torch.equal(again.table, edge.table)


def test_forward_gives_one_logit_tensor_per_task(experiment: Experiment) -> None:
    module = _module(experiment)
    batch = _batch(experiment)
    logits = module(batch.x)
    assert {k: tuple(v.shape) for k, v in logits.items()} == {
        "digit": (32, 10),
        "shape": (32, 6),
        "ink": (32, 3),
    }
    assert module.source_names == ["digits[shape+ink]", "digits[digit]"]
    assert module.input_shape == (1, 8, 8)


def test_module_is_rebuilt_from_its_spec(experiment: Experiment) -> None:
    module = _module(experiment)
    assert module.spec is not None
    twin = MultiTaskModule.from_spec(ModelSpec.from_dict(module.spec.to_dict()))
    twin.load_state_dict(module.state_dict())
    x = _batch(experiment).x
    for name, value in module(x).items():
        assert torch.equal(value, twin(x)[name])
    assert [t.name for t in twin.tasks] == ["digit", "shape", "ink"]
    assert twin.config == module.config


def test_training_step_returns_the_objectives_loss(experiment: Experiment) -> None:
    module = _module(experiment, co_annotation="soft", distribution_matching=True)
    module.on_train_epoch_start()
    batch = _batch(experiment)
    loss, terms = module.objective(module(batch.x), batch.labels, dm_scale=1.0)
    assert {"sup/digit", "sup/shape", "sup/ink", "ca/digit->shape", "dm/digit->shape",
            "dm/shape->digit"} <= set(terms)
    assert torch.allclose(_logless_step(module, batch), loss)
    # the epoch means accumulate every term
    assert set(module._epoch_sums) == {"loss", *terms} and module._epoch_steps == 1


def _logless_step(module: MultiTaskModule, batch: Batch) -> torch.Tensor:
    """``training_step`` without a Trainer (``log_dict`` would need one)."""
    module.log_dict = lambda *args, **kwargs: None  # type: ignore[method-assign]
    return module.training_step(batch, 0)


@pytest.mark.parametrize("term", ["sup/shape", "dm/digit->shape"])
def test_non_finite_term_is_named_with_step_and_sources(
    experiment: Experiment, monkeypatch: pytest.MonkeyPatch, term: str
) -> None:
    module = _module(experiment, distribution_matching=True)
    module.on_train_epoch_start()
    forward = Objective.forward

    def broken(self: Objective, *args: Any, **kwargs: Any) -> Any:
        loss, terms = forward(self, *args, **kwargs)
        terms[term] = terms[term] * float("nan")
        return loss + terms[term], terms

    monkeypatch.setattr(Objective, "forward", broken)
    with pytest.raises(NonFiniteLossError) as error:
        _logless_step(module, _batch(experiment))
    message = str(error.value)
    assert f"loss term '{term}' is nan at step 0" in message
    assert "sources: digits[digit], digits[shape+ink]" in message
    assert "lower the learning rate" in message


def test_infinite_total_is_caught_too(
    experiment: Experiment, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _module(experiment)
    module.on_train_epoch_start()
    forward = Objective.forward

    def broken(self: Objective, *args: Any, **kwargs: Any) -> Any:
        loss, terms = forward(self, *args, **kwargs)
        return loss * float("inf"), terms

    monkeypatch.setattr(Objective, "forward", broken)
    with pytest.raises(NonFiniteLossError, match="loss term 'loss' is inf at step 0"):
        _logless_step(module, _batch(experiment))


def test_dm_warmup_is_linear_over_the_given_epochs(
    experiment: Experiment, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _module(experiment, distribution_matching=True, dm_warmup_epochs=2.0)
    steps = iter([0, 4, 9, 30])
    monkeypatch.setattr(MultiTaskModule, "global_step", property(lambda self: next(steps)))
    # 2 epochs of 5 steps: (step + 1) / 10, capped at 1
    assert [module.dm_scale() for _ in range(4)] == pytest.approx([0.1, 0.5, 1.0, 1.0])
    assert _module(experiment).dm_scale() == 1.0


@pytest.mark.parametrize(("name", "kind"), [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                            ("adamw", torch.optim.AdamW)])
def test_optimisers(experiment: Experiment, name: str, kind: type) -> None:
    config = experiment.config.model_copy(
        update={"optim": experiment.config.optim.model_copy(update={"name": name, "lr": 0.1})}
    )
    module = make_module(dataclasses.replace(experiment, config=config), 5)
    optimizer = module.configure_optimizers()
    assert isinstance(optimizer, kind)
    assert optimizer.param_groups[0]["lr"] == 0.1


def test_cosine_schedule_steps_per_step(experiment: Experiment) -> None:
    config = experiment.config.model_copy(
        update={"optim": experiment.config.optim.model_copy(update={"schedule": "cosine"})}
    )
    module = make_module(dataclasses.replace(experiment, config=config), 5)
    out = module.configure_optimizers()
    assert isinstance(out["optimizer"], torch.optim.AdamW)
    assert out["lr_scheduler"]["interval"] == "step"


def test_unknown_source_index_is_shown_as_a_number(experiment: Experiment) -> None:
    module = _module(experiment)
    assert module._source_name(1) == "digits[digit]"
    assert module._source_name(7) == "7"


def test_binary_only_module(experiment: Experiment) -> None:
    only = experiment.single_task("shape")
    module = make_module(only, 5)
    assert [t.name for t in module.tasks] == ["shape"]
    assert isinstance(module.tasks[0], BinarySetTask)
    assert module.edges == []
