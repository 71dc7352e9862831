"""Task specifications: valid tasks, look-ups, and every specification error."""

from __future__ import annotations

import pytest

from dmtl.core.tasks import BinarySetTask, CategoricalTask, check_unique_task_names
from dmtl.errors import SpecError


def test_categorical_task_basics() -> None:
    task = CategoricalTask("expr", ["neutral", "happy", "sad"])
    assert task.kind == "categorical"
    assert task.classes == ("neutral", "happy", "sad")
    assert task.num_classes == task.num_outputs == 3
    assert task.index("sad") == 2
    assert task.trained_classes == task.classes


def test_binary_set_task_basics() -> None:
    task = BinarySetTask("au", ["AU1", "AU2", "AU4"])
    assert task.kind == "binary_set"
    assert task.labels == ("AU1", "AU2", "AU4")
    assert task.num_labels == task.num_outputs == 3
    assert task.index("AU4") == 2
    # A single label is a valid binary set.
    assert BinarySetTask("one", ["l"]).num_labels == 1


def test_index_of_unknown_name_names_task_and_choices() -> None:
    with pytest.raises(KeyError, match=r"task 'expr' has no class 'angry'; expected one of: a, b"):
        CategoricalTask("expr", ["a", "b"]).index("angry")
    with pytest.raises(KeyError, match=r"task 'au' has no label 'AU9'"):
        BinarySetTask("au", ["AU1"]).index("AU9")


def test_zero_shot_classes() -> None:
    task = CategoricalTask("expr", ["a", "b", "c"], zero_shot=["c"])
    assert task.zero_shot == ("c",)
    assert task.trained_classes == ("a", "b")
    with pytest.raises(SpecError, match=r"zero-shot classes \['q'\] are not among its classes"):
        CategoricalTask("expr", ["a", "b"], zero_shot=["q"])


def test_tasks_are_frozen_hashable_and_compare_by_value() -> None:
    assert CategoricalTask("a", ["x", "y"]) == CategoricalTask("a", ["x", "y"])
    assert CategoricalTask("a", ["x", "y"]) != CategoricalTask("a", ["y", "x"])
    assert len({BinarySetTask("b", ["u"]), BinarySetTask("b", ["u"])}) == 1
    with pytest.raises(AttributeError):
        CategoricalTask("a", ["x", "y"]).name = "other"  # type: ignore[misc]


@pytest.mark.parametrize("cls", [CategoricalTask, BinarySetTask])
@pytest.mark.parametrize("name", ["", "   "])
def test_empty_task_name(cls: type, name: str) -> None:
    with pytest.raises(SpecError, match="a task name must be a non-empty string"):
        cls(name, ["p", "q"])


def test_non_string_task_name() -> None:
    with pytest.raises(SpecError, match="a task name must be a non-empty string, got 3"):
        CategoricalTask(3, ["p", "q"])  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", [CategoricalTask, BinarySetTask])
def test_slash_in_task_name(cls: type) -> None:
    with pytest.raises(SpecError, match=r"task 'au/disfa': a task name may not contain '/'"):
        cls("au/disfa", ["p", "q"])


def test_too_few_classes() -> None:
    with pytest.raises(SpecError, match=r"task 'a': expected at least 2 classes, got 1"):
        CategoricalTask("a", ["only"])
    with pytest.raises(SpecError, match=r"task 'a': expected at least 2 classes, got 0"):
        CategoricalTask("a", [])
    with pytest.raises(SpecError, match=r"task 'b': expected at least 1 labels, got 0"):
        BinarySetTask("b", [])


@pytest.mark.parametrize("bad", ["", "  ", None, 7])
def test_empty_or_non_string_class_name(bad: object) -> None:
    with pytest.raises(SpecError, match=r"task 'a': classes #1 must be a non-empty string"):
        CategoricalTask("a", ["x", bad, "z"])  # type: ignore[list-item]
    with pytest.raises(SpecError, match=r"task 'b': labels #0 must be a non-empty string"):
        BinarySetTask("b", [bad, "u"])  # type: ignore[list-item]


def test_duplicated_names_are_listed() -> None:
    with pytest.raises(SpecError, match=r"task 'a': duplicated classes: x, y$"):
        CategoricalTask("a", ["y", "x", "z", "x", "y"])
    with pytest.raises(SpecError, match=r"task 'b': duplicated labels: u$"):
        BinarySetTask("b", ["u", "v", "u"])


def test_check_unique_task_names() -> None:
    a, b = CategoricalTask("a", ["x", "y"]), BinarySetTask("b", ["u"])
    assert check_unique_task_names([a, b]) == {"a": a, "b": b}
    with pytest.raises(SpecError, match="two tasks are named 'a'"):
        check_unique_task_names([a, b, BinarySetTask("a", ["u"])])
