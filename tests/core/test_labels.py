"""Partial labels: encoding, collation, validation with its messages, neutral fillers."""

from __future__ import annotations

import math

import pytest
import torch

from dmtl.core.labels import (
    MISSING_CLASS,
    PartialLabels,
    TaskLabels,
    collate_labels,
    empty_labels,
    encode_sample,
)
from dmtl.core.tasks import BinarySetTask, CategoricalTask
from dmtl.errors import SpecError

NAN = math.nan


def test_collate_mixed_samples(task_a: CategoricalTask, task_b: BinarySetTask) -> None:
    tasks = [task_a, task_b]
    batch = collate_labels(
        tasks,
        [
            {"a": "z"},  # A by name, B missing
            {"a": 1, "b": {"v": 1}},  # A by index, B partially observed
            {"b": [0, None]},  # sequence with an unobserved entry
            {},
        ],
    )
    assert batch.batch_size == 4
    assert batch["a"].target.tolist() == [2, 1, 0, 0]
    assert batch["a"].mask.tolist() == [True, True, False, False]
    assert batch["b"].target.tolist() == [[0, 0], [0, 1], [0, 0], [0, 0]]
    assert batch["b"].mask.tolist() == [
        [False, False],
        [False, True],
        [True, False],
        [False, False],
    ]
    assert batch["b"].labelled_samples.tolist() == [False, True, True, False]
    assert batch["a"].labelled_samples.tolist() == [True, True, False, False]
    assert "2/4 labelled" in repr(batch)


def test_encoded_round_trip(task_a: CategoricalTask, task_b: BinarySetTask) -> None:
    tasks = [task_a, task_b]
    encoded = {
        "a": torch.tensor([2, MISSING_CLASS, 0]),
        "b": torch.tensor([[1.0, NAN], [NAN, NAN], [0.0, 1.0]]),
    }
    batch = PartialLabels.from_encoded(tasks, encoded)
    back = batch.encoded()
    assert back["a"].tolist() == [2, -1, 0]
    torch.testing.assert_close(back["b"], encoded["b"], equal_nan=True)
    # Collating already-encoded samples gives the same batch.
    samples = [{k: v[i] for k, v in encoded.items()} for i in range(3)]
    again = collate_labels(tasks, samples)
    assert torch.equal(again["b"].mask, batch["b"].mask)
    assert torch.equal(again["a"].target, batch["a"].target)


def test_encode_sample(task_a: CategoricalTask, task_b: BinarySetTask) -> None:
    out = encode_sample([task_a, task_b], {"a": "y", "b": torch.tensor([1.0, 0.0])})
    assert int(out["a"]) == 1
    assert out["b"].tolist() == [1.0, 0.0]
    out = encode_sample([task_a, task_b], {"a": None, "b": None})
    assert int(out["a"]) == MISSING_CLASS
    assert bool(torch.isnan(out["b"]).all())


def test_empty_labels_and_empty_collate(task_a: CategoricalTask, task_b: BinarySetTask) -> None:
    for batch in (empty_labels([task_a, task_b], 3), collate_labels([task_a, task_b], [])):
        assert not bool(batch["a"].mask.any()) and not bool(batch["b"].mask.any())
    assert empty_labels([task_a, task_b], 3).batch_size == 3
    assert collate_labels([task_a, task_b], []).batch_size == 0
    assert collate_labels([task_a, task_b], [])["b"].target.shape == (0, 2)


def test_to_moves_and_keeps_validation(task_a: CategoricalTask, task_b: BinarySetTask) -> None:
    batch = collate_labels([task_a, task_b], [{"a": 0, "b": [1, 0]}])
    moved = batch.to(torch.device("cpu"))
    assert isinstance(moved, PartialLabels)
    assert moved["b"].target.tolist() == [[1.0, 0.0]]


def test_masked_fillers_are_normalised(task_a: CategoricalTask, task_b: BinarySetTask) -> None:
    """Fillers under the mask (-1, NaN, anything) are replaced by class 0 / value 0.

    Regression: a NaN filler used to pass validation and poison every loss reading it.
    """
    batch = PartialLabels(
        [task_a, task_b],
        {
            "a": TaskLabels(torch.tensor([-1, 2, 7]), torch.tensor([False, True, False])),
            "b": TaskLabels(
                torch.tensor([[NAN, 1.0], [0.0, 5.0], [NAN, NAN]]),
                torch.tensor([[False, True], [True, False], [False, False]]),
            ),
        },
    )
    assert batch["a"].target.tolist() == [0, 2, 0]
    assert batch["b"].target.tolist() == [[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]


# ---- errors -------------------------------------------------------------------------------------


def test_categorical_index_out_of_range(task_a: CategoricalTask) -> None:
    with pytest.raises(SpecError, match=r"task 'a', row 1: class index 3 out of range \[0, 2\]"):
        PartialLabels([task_a], {"a": TaskLabels(torch.tensor([0, 3]), torch.tensor([True, True]))})
    with pytest.raises(SpecError, match=r"task 'a', row 0: class index -2 out of range"):
        PartialLabels([task_a], {"a": TaskLabels(torch.tensor([-2]), torch.tensor([True]))})
    with pytest.raises(SpecError, match=r"task 'a': class index 5 out of range \[0, 2\]"):
        encode_sample([task_a], {"a": 5})
    with pytest.raises(SpecError, match=r"class index -3 out of range"):
        collate_labels([task_a], [{"a": -3}])
    with pytest.raises(KeyError, match=r"task 'a' has no class 'w'"):
        encode_sample([task_a], {"a": "w"})


def test_binary_value_out_of_range(task_b: BinarySetTask) -> None:
    with pytest.raises(SpecError, match=r"task 'b', row 1, label 'v': value 2.0 outside \[0, 1\]"):
        PartialLabels(
            [task_b],
            {
                "b": TaskLabels(
                    torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.ones(2, 2, dtype=torch.bool)
                )
            },
        )
    with pytest.raises(SpecError, match=r"label 'u': value -1.0 outside"):
        PartialLabels(
            [task_b],
            {"b": TaskLabels(torch.tensor([[-1.0, 0.0]]), torch.ones(1, 2, dtype=torch.bool))},
        )
    with pytest.raises(SpecError, match=r"label 'u': value nan outside"):
        PartialLabels(
            [task_b],
            {"b": TaskLabels(torch.tensor([[NAN, 0.0]]), torch.ones(1, 2, dtype=torch.bool))},
        )
    with pytest.raises(SpecError, match=r"task 'b', label 'v': expected 0 or 1, got 2"):
        encode_sample([task_b], {"b": {"v": 2}})
    with pytest.raises(SpecError, match=r"task 'b', label 'u': expected 0 or 1, got 0.5"):
        collate_labels([task_b], [{"b": [0.5, 1]}])
    with pytest.raises(SpecError, match=r"task 'b': expected 2 label values, got 3"):
        encode_sample([task_b], {"b": [0, 1, 1]})


def test_mask_and_target_shapes_must_match(task_a: CategoricalTask, task_b: BinarySetTask) -> None:
    with pytest.raises(
        SpecError, match=r"task 'a': target shape \(3,\) does not match mask shape \(2,\)"
    ):
        PartialLabels(
            [task_a],
            {"a": TaskLabels(torch.zeros(3, dtype=torch.long), torch.ones(2, dtype=torch.bool))},
        )
    with pytest.raises(
        SpecError, match=r"task 'b': target shape \(2, 2\) does not match mask shape \(2, 1\)"
    ):
        PartialLabels(
            [task_b], {"b": TaskLabels(torch.zeros(2, 2), torch.ones(2, 1, dtype=torch.bool))}
        )


def test_other_label_errors(task_a: CategoricalTask, task_b: BinarySetTask) -> None:
    with pytest.raises(SpecError, match=r"task 'a': mask must be bool, got torch.int64"):
        PartialLabels(
            [task_a],
            {"a": TaskLabels(torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.long))},
        )
    with pytest.raises(SpecError, match=r"task 'a': class indices must be integers"):
        PartialLabels([task_a], {"a": TaskLabels(torch.zeros(2), torch.ones(2, dtype=torch.bool))})
    with pytest.raises(SpecError, match=r"task 'a': categorical targets must have shape \(N,\)"):
        PartialLabels(
            [task_a],
            {
                "a": TaskLabels(
                    torch.zeros(2, 1, dtype=torch.long), torch.ones(2, 1, dtype=torch.bool)
                )
            },
        )
    with pytest.raises(
        SpecError, match=r"task 'b': binary-set targets must have shape \(N, 2\), got \(2, 3\)"
    ):
        PartialLabels(
            [task_b], {"b": TaskLabels(torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool))}
        )
    with pytest.raises(SpecError, match=r"labels given for unknown tasks: q"):
        PartialLabels([task_a], {"q": TaskLabels(torch.zeros(1), torch.ones(1, dtype=torch.bool))})
    with pytest.raises(SpecError, match=r"tasks disagree on the batch size: \[1, 2\]"):
        PartialLabels(
            [task_a, task_b],
            {
                "a": TaskLabels(torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.bool)),
                "b": TaskLabels(torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool)),
            },
        )
