"""Label statistics."""

from __future__ import annotations

import numpy as np
import pytest

from dmtl.core.tasks import CategoricalTask, Task
from dmtl.data.inspect import class_balance, label_counts, task_overlap
from dmtl.data.sources import ArraySource
from dmtl.errors import DataError


def source(tasks: list[Task]) -> ArraySource:
    return ArraySource(
        "s", tasks, np.zeros((4, 1), np.float32),
        {
            "digit": np.array([0, 2, 2, -1]),
            "attr": np.array([[1, np.nan], [0, 1], [np.nan, np.nan], [1, 0]], np.float32),
        },
    )


def test_label_counts(tasks: list[Task]) -> None:
    table = label_counts(source(tasks))
    assert list(table.columns) == ["source", "task", "kind", "label", "labelled", "positives"]
    rows = {(r.task, r.label): (r.labelled, r.positives) for r in table.itertuples()}
    assert rows == {
        ("digit", "zero"): (3, 1), ("digit", "one"): (3, 0), ("digit", "two"): (3, 2),
        ("attr", "even"): (3, 2), ("attr", "big"): (2, 1),
    }


def test_task_overlap_per_source_and_total(tasks: list[Task]) -> None:
    other = ArraySource(
        "o", [tasks[0]], np.zeros((3, 1), np.float32), {"digit": np.array([1, 1, -1])}
    )
    table = task_overlap([source(tasks), other])
    both = {(r.source, r.task_a, r.task_b): r.both for r in table.itertuples()}
    assert both[("s", "digit", "attr")] == 2  # rows 0 and 1
    assert both[("s", "digit", "digit")] == 3 and both[("s", "attr", "attr")] == 3
    assert both[("o", "digit", "attr")] == 0 and both[("o", "digit", "digit")] == 2
    assert both[("total", "digit", "digit")] == 5 and both[("total", "digit", "attr")] == 2
    assert len(table) == 3 * 3


def test_class_balance(tasks: list[Task]) -> None:
    digits = class_balance(source(tasks), "digit")
    assert digits["count"].tolist() == [1, 0, 2]
    np.testing.assert_allclose(digits["fraction"], [1 / 3, 0, 2 / 3])
    attr = class_balance(source(tasks), "attr")
    assert attr["observed"].tolist() == [3, 2] and attr["negatives"].tolist() == [1, 1]
    np.testing.assert_allclose(attr["positive_rate"], [2 / 3, 1 / 2])
    empty = ArraySource(
        "e", [CategoricalTask("c", ["a", "b"])], np.zeros((1, 1), np.float32), {}
    )
    assert class_balance(empty, "c")["fraction"].isna().all()
    with pytest.raises(DataError, match="no task 'colour'"):
        class_balance(source(tasks), "colour")
