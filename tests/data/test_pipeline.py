"""Experiment assembly: splits, regimes, strata and weights, single-task restriction, edges."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from dmtl.build.data import Experiment, build_experiment
from dmtl.config import Config, validate_config
from dmtl.core.labels import MISSING_CLASS
from dmtl.core.relatedness import Relatedness
from dmtl.data.builtin.digits import SHAPE_TABLE
from dmtl.errors import ConfigError, DataError
from dmtl.knowledge.affect import EXPRESSIONS

DIGITS_TRAIN, DIGITS_TEST = 1437, 360


def _config(tiny_data: Callable[..., dict[str, Any]], **sections: Any) -> Config:
    return validate_config(tiny_data(**sections))


def _labelled(source: Any, task: str) -> np.ndarray:
    values = source.labels[task]
    if values.ndim == 1:
        return np.asarray(values != MISSING_CLASS)
    return np.asarray(~np.isnan(values).all(axis=1))


@pytest.fixture
def scarce(tiny_data: Callable[..., dict[str, Any]]) -> Experiment:
    return build_experiment(_config(tiny_data))


def test_scarce_regime_makes_one_stratum_per_label_pattern(scarce: Experiment) -> None:
    names = {s.name: s for s in scarce.train}
    assert set(names) == {"digits[digit]", "digits[shape+ink]"}
    digit, rest = names["digits[digit]"], names["digits[shape+ink]"]
    # the digit stratum: digit labels only; the rest: shape and ink only (others_on="rest")
    assert _labelled(digit, "digit").all()
    assert not _labelled(digit, "shape").any() and not _labelled(digit, "ink").any()
    assert not _labelled(rest, "digit").any()
    assert _labelled(rest, "shape").all() and _labelled(rest, "ink").all()
    # 10% of the 1,437 training digits, every class kept at least once
    assert len(digit) == round(0.1 * DIGITS_TRAIN)
    assert len(digit) + len(rest) == DIGITS_TRAIN
    assert set(digit.labels["digit"].tolist()) == set(range(10))
    assert not set(digit.ids) & set(rest.ids)
    record = scarce.records["digits"]
    assert record["train_groups"] == {"shape+ink": len(rest), "digit": len(digit)}
    assert record["unlabelled_rows"] == 0
    assert record["regime"]["tasks"]["digit"]["after"] == len(digit)


def test_a_source_weight_is_shared_equally_among_its_strata(
    tiny_data: Callable[..., dict[str, Any]],
) -> None:
    data = tiny_data()
    data["sources"][0]["weight"] = 3.0
    experiment = build_experiment(validate_config(data))
    assert experiment.train_weights == pytest.approx([1.5, 1.5])


def test_two_sources_get_their_weights_split_over_their_own_strata(
    tiny_data: Callable[..., dict[str, Any]],
) -> None:
    data = tiny_data()
    second = dict(data["sources"][0], name="more", weight=2.0)
    second["regime"] = {"name": "full"}
    data["sources"].append(second)
    experiment = build_experiment(validate_config(data))
    weights = dict(zip((s.name for s in experiment.train), experiment.train_weights, strict=True))
    assert weights == pytest.approx(
        {"digits[shape+ink]": 0.5, "digits[digit]": 0.5, "more[digit+shape+ink]": 2.0}
    )


def test_test_split_is_untouched_by_the_regime(scarce: Experiment) -> None:
    (test,) = scarce.test
    assert test.name == "digits[test]"
    assert len(test) == DIGITS_TEST
    for task in ("digit", "shape", "ink"):
        assert _labelled(test, task).all(), task
    train_ids = {i for s in scarce.train for i in s.ids}
    assert not train_ids & set(test.ids)


def test_val_fraction_is_carved_from_the_training_rows(
    tiny_data: Callable[..., dict[str, Any]], scarce: Experiment
) -> None:
    data = tiny_data()
    data["sources"][0]["val_fraction"] = 0.2
    experiment = build_experiment(validate_config(data))
    (val,) = experiment.val
    assert val.name == "digits[val]"
    assert len(val) == round(0.2 * DIGITS_TRAIN)
    train_ids = [i for s in experiment.train for i in s.ids]
    assert len(train_ids) + len(val) == DIGITS_TRAIN
    assert not set(train_ids) & set(val.ids)
    # carved before the regime: the regime's record counts exactly the rows trained on, and
    # validation gets the regime on its own rows (10% of the digit labels, shape on the rest)
    assert not (_labelled(val, "digit") & _labelled(val, "shape")).any()
    val_digits = int(_labelled(val, "digit").sum())
    assert 10 <= val_digits <= 0.15 * len(val)  # at least one per class, about 10%
    assert experiment.records["digits"]["validation_regime"]["digits[val]"]["regime"] == "scarce"
    record = experiment.records["digits"]["regime"]
    assert record["num_samples"] == len(train_ids)
    trained_digit = sum(int(_labelled(s, "digit").sum()) for s in experiment.train)
    assert record["tasks"]["digit"]["after"] == trained_digit
    # the test split does not move, and without val_fraction there is no validation
    assert [len(s) for s in experiment.test] == [DIGITS_TEST]
    assert scarce.val == []
    # seeded: the same seed carves the same rows, another seed other rows
    again = build_experiment(validate_config(data))
    assert list(again.val[0].ids) == list(val.ids)
    other = build_experiment(validate_config(data), seed=1)
    assert list(other.val[0].ids) != list(val.ids)


def test_single_task_keeps_exactly_that_tasks_labels(scarce: Experiment) -> None:
    digit = scarce.single_task("digit")
    assert [t.name for t in digit.tasks] == ["digit"]
    assert digit.edges == []
    assert [s.name for s in digit.train] == ["digits[digit]"]
    assert len(digit.train) == len(digit.train_weights)
    assert set(digit.train[0].labels) == {"digit"}
    assert all(set(s.labels) == {"digit"} for s in digit.test)
    assert [len(s) for s in digit.test] == [DIGITS_TEST]
    shape = scarce.single_task("shape")
    assert [s.name for s in shape.train] == ["digits[shape+ink]"]
    assert _labelled(shape.train[0], "shape").all()
    # the multi-task experiment itself is unchanged
    assert len(scarce.tasks) == 3 and len(scarce.edges) == 1


def test_single_task_without_labels_is_an_error(scarce: Experiment) -> None:
    digit_only = dataclasses.replace(
        scarce,
        train=[s for s in scarce.train if s.name == "digits[digit]"],
        train_weights=[0.5],
    )
    with pytest.raises(DataError, match="no training sample is labelled for task 'shape'"):
        digit_only.single_task("shape")


def test_unknown_regime_parameter_names_the_source(
    tiny_data: Callable[..., dict[str, Any]],
) -> None:
    data = tiny_data()
    data["sources"][0]["regime"]["params"]["task"] = "colour"
    with pytest.raises(DataError, match=r"sources\.0\.regime"):
        build_experiment(validate_config(data))


def test_train_split_without_rows_is_an_error(tiny_data: Callable[..., dict[str, Any]]) -> None:
    data = tiny_data()
    data["sources"][0]["train_split"] = "training"
    with pytest.raises(DataError, match=r"sources\.0\.train_split.*'test', 'train'"):
        build_experiment(validate_config(data))


def test_max_samples_subsamples_before_splitting(tiny_data: Callable[..., dict[str, Any]]) -> None:
    data = tiny_data()
    data["sources"][0]["max_samples"] = 300
    experiment = build_experiment(validate_config(data))
    total = sum(len(s) for s in experiment.train) + sum(len(s) for s in experiment.test)
    assert total == 300


# ---- edges ---------------------------------------------------------------------------------------


def test_knowledge_edge_is_the_datasets_table(scarce: Experiment) -> None:
    (edge,) = scarce.edges
    assert (edge.source.name, edge.target.name) == ("digit", "shape")
    assert torch.equal(edge.table, torch.from_numpy(SHAPE_TABLE))


def test_no_relatedness_listed_takes_every_knowledge_edge(
    tiny_data: Callable[..., dict[str, Any]],
) -> None:
    experiment = build_experiment(_config(tiny_data, relatedness=[]))
    assert [e.name for e in experiment.edges] == ["digit->shape"]


def test_table_edge_reads_the_csv(tiny_data: Callable[..., dict[str, Any]], scarce: Experiment,
                                  tmp_path: Path) -> None:
    digit, ink = scarce.task_map["digit"], scarce.task_map["ink"]
    table = torch.linspace(0.05, 0.95, 30).reshape(10, 3)
    path = tmp_path / "digit_ink.csv"
    Relatedness(digit, ink, table).to_csv(path)
    edges = [{"source": "digit", "target": "ink", "kind": "table", "path": str(path)}]
    experiment = build_experiment(_config(tiny_data, relatedness=edges))
    (edge,) = experiment.edges
    assert edge.target.name == "ink"
    assert torch.allclose(edge.table, table, atol=1e-6)


def test_estimate_edge_comes_from_the_co_annotated_rows(
    tiny_data: Callable[..., dict[str, Any]],
) -> None:
    data = tiny_data(relatedness=[{"source": "digit", "target": "shape", "kind": "estimate",
                                   "alpha": 0.0}])
    data["sources"][0]["regime"] = {"name": "overlap", "params": {"fraction": 0.3}}
    experiment = build_experiment(validate_config(data))
    (edge,) = experiment.edges
    # shape is a function of the digit: the estimate from co-annotated rows is the 0/1 table
    assert torch.allclose(edge.table, torch.from_numpy(SHAPE_TABLE), atol=1e-6)
    both = sum(
        int((_labelled(s, "digit") & _labelled(s, "shape")).sum()) for s in experiment.train
    )
    assert both == round(0.3 * DIGITS_TRAIN)


@pytest.mark.parametrize(
    ("edge", "match"),
    [
        ({"source": "digit", "target": "colour"}, r"^relatedness\.0: no task 'colour'"),
        ({"source": "colour", "target": "digit"}, r"^relatedness\.0: no task 'colour'"),
        ({"source": "shape", "target": "digit"}, r"^relatedness\.0\.source: .*not categorical"),
        ({"source": "digit", "target": "ink", "kind": "knowledge"},
         r"^relatedness\.0: no source offers .*digit->ink.*digit->shape"),
        ({"source": "digit", "target": "ink", "kind": "affect"},
         r"^relatedness\.0: expression classes"),
    ],
)
def test_edge_errors_name_the_edge(
    tiny_data: Callable[..., dict[str, Any]], edge: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        build_experiment(_config(tiny_data, relatedness=[edge]))


def test_table_edge_of_the_wrong_shape_names_the_edge(
    tiny_data: Callable[..., dict[str, Any]], scarce: Experiment, tmp_path: Path
) -> None:
    path = tmp_path / "digit_shape.csv"
    Relatedness(scarce.task_map["digit"], scarce.task_map["ink"], torch.full((10, 3), 0.5)).to_csv(
        path
    )
    edges = [{"source": "digit", "target": "shape", "kind": "table", "path": str(path)}]
    with pytest.raises(ConfigError, match=r"^relatedness\.0: "):
        build_experiment(_config(tiny_data, relatedness=edges))


def test_second_edge_error_names_its_index(tiny_data: Callable[..., dict[str, Any]]) -> None:
    edges = [
        {"source": "digit", "target": "shape", "kind": "knowledge"},
        {"source": "digit", "target": "nothing"},
    ]
    with pytest.raises(ConfigError, match=r"^relatedness\.1: "):
        build_experiment(_config(tiny_data, relatedness=edges))


def test_affect_edge_from_a_manifest_with_expressions_and_aus(tmp_path: Path) -> None:
    n = 14
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((n, 1, 4, 4), dtype=np.float32))
    frame = pd.DataFrame(
        {
            "index": range(n),
            "split": ["train"] * 10 + ["test"] * 4,
            "expression": [EXPRESSIONS[i % 7] for i in range(n)],
            "au/AU1": [i % 2 for i in range(n)],
            "au/AU12": [(i + 1) % 2 for i in range(n)],
        }
    )
    frame.to_csv(tmp_path / "faces.csv", index=False)
    config = validate_config(
        {
            "tasks": [
                {"name": "expression", "type": "categorical", "classes": list(EXPRESSIONS)},
                {"name": "au", "type": "binary_set", "labels": ["AU1", "AU12"]},
            ],
            "sources": [
                {"name": "faces", "manifest": str(tmp_path / "faces.csv"),
                 "array": str(tmp_path / "x.npy"), "regime": {"name": "disjoint"}}
            ],
            "relatedness": [{"source": "expression", "target": "au", "kind": "affect"}],
        }
    )
    experiment = build_experiment(config)
    (edge,) = experiment.edges
    table = dict(zip(EXPRESSIONS, edge.table.tolist(), strict=True))
    # happiness: AU12 prototypical; surprise: AU1 prototypical; neutral: none
    assert table["happiness"][1] == pytest.approx(1.0)
    assert table["surprise"][0] == pytest.approx(1.0)
    assert table["neutral"] == pytest.approx([0.0, 0.0])
    assert sorted(s.name for s in experiment.train) == ["faces[au]", "faces[expression]"]


def test_priors_and_balanced_weights_follow_the_config(
    tiny_data: Callable[..., dict[str, Any]],
) -> None:
    uniform = build_experiment(_config(tiny_data))
    assert uniform.priors() == {}
    assert all(getattr(t, "pos_weight", None) is None for t in uniform.tasks)
    experiment = build_experiment(
        _config(
            tiny_data,
            method={"prior": "frequency", "pos_weight": "balanced"},
            tasks=[{"name": "digit", "type": "categorical", "class_weight": "balanced"}],
        )
    )
    prior = experiment.priors()["digit"]
    assert len(prior) == 10 and sum(prior) == pytest.approx(1.0)
    tasks = experiment.task_map
    # w+_j = n_neg / n_pos over the training labels; w_c = n / (C n_c)
    shape = experiment.train_values("shape")
    expected = (shape == 0).sum(0) / (shape == 1).sum(0)
    assert tasks["shape"].pos_weight == pytest.approx(tuple(expected))  # type: ignore[attr-defined]
    digits = experiment.train_values("digit")
    counts = np.bincount(digits[digits >= 0], minlength=10)
    expected_w = (counts.sum() / (10 * counts)).tolist()
    assert tasks["digit"].class_weight == pytest.approx(expected_w)  # type: ignore[attr-defined]


def test_a_pattern_covered_by_a_larger_one_joins_it_instead_of_its_own_stratum() -> None:
    from dmtl.core.tasks import BinarySetTask, CategoricalTask
    from dmtl.data.pipeline import group_by_pattern
    from dmtl.data.sources import ArraySource

    a, b = CategoricalTask("a", ["x", "y"]), BinarySetTask("b", ["u"])
    n = 1000
    inputs, b_all = np.zeros((n, 2), np.float32), np.ones((n, 1), np.float32)
    # 5 rows lack a's label: they stay with their dataset (one stratum, not half of each batch)
    a_mostly = np.zeros(n, np.int64)
    a_mostly[:5] = -1
    source = ArraySource("s", [a, b], inputs, {"a": a_mostly, "b": b_all})
    assert [(k, len(v)) for k, v in group_by_pattern(source, [a, b])] == [("a+b", 1000)]
    # a scarce task on a few rows (labelled for both): not absorbed by the larger pattern
    a_scarce = np.full(n, -1, np.int64)
    a_scarce[:43] = 0
    source = ArraySource("s", [a, b], inputs, {"a": a_scarce, "b": b_all})
    assert [(k, len(v)) for k, v in group_by_pattern(source, [a, b])] == [("b", 957), ("a+b", 43)]


def test_full_validation_labels_keep_every_label(tiny_data: Callable[..., dict[str, Any]]) -> None:
    data = tiny_data(trainer={"validation_labels": "full"})
    data["sources"][0]["val_fraction"] = 0.2
    (val,) = build_experiment(validate_config(data)).val
    assert (_labelled(val, "digit") & _labelled(val, "shape") & _labelled(val, "ink")).all()


def test_rows_labelled_for_nothing_become_their_own_stratum(
    tiny_data: Callable[..., dict[str, Any]],
) -> None:
    regime = {"name": "unlabelled", "params": {"fraction": 0.5, "then": {
        "name": "scarce", "params": {"task": "digit", "fraction": 0.1}}}}
    data = tiny_data()
    data["sources"][0]["regime"] = regime
    experiment = build_experiment(validate_config(data))
    names = [s.name for s in experiment.train]
    assert names[-1] == "digits[unlabelled]"
    unlabelled = experiment.train[-1]
    assert len(unlabelled) == round(0.5 * DIGITS_TRAIN)
    assert not any(_labelled(unlabelled, t.name).any() for t in experiment.tasks)
    # it gets one labelled group's share, and a method without distribution matching drops it
    assert experiment.train_weights[-1] == experiment.train_weights[0]
    lean = experiment.without_unlabelled()
    assert [s.name for s in lean.train] == names[:-1]
    assert lean.train_weights == experiment.train_weights[:-1]
    assert experiment.records["digits"]["unlabelled_rows"] == len(unlabelled)


def test_heads_per_task_must_name_tasks(tiny_data: Callable[..., dict[str, Any]]) -> None:
    with pytest.raises(ConfigError, match=r"heads\.per_task: no task 'inq'"):
        build_experiment(_config(tiny_data, heads={"per_task": {"inq": [8]}}))
