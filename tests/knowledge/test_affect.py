"""Built-in affect knowledge: the expression -> AU table of method.md section 7, AU subsets."""

from __future__ import annotations

from importlib import resources

import pytest
import torch

from dmtl.core.relatedness import Relatedness
from dmtl.core.tasks import CategoricalTask
from dmtl.errors import SpecError
from dmtl.knowledge.affect import (
    AU_NAMES,
    BP4D_AUS,
    DISFA_AUS,
    EXPRESSIONS,
    au_code,
    au_label,
    au_name,
    au_task,
    expression_au_relatedness,
    expression_au_table,
    expression_task,
)

# method.md section 7, transcribed by hand: expression -> {AU: weight}; all else 0.
SECTION_7: dict[str, dict[int, float]] = {
    "happiness": {12: 1.0, 25: 1.0, 6: 0.51},
    "sadness": {4: 1.0, 15: 1.0, 1: 0.60, 6: 0.50, 11: 0.26, 17: 0.67},
    "fear": {1: 1.0, 4: 1.0, 20: 1.0, 25: 1.0, 2: 0.57, 5: 0.63, 26: 0.33},
    "anger": {4: 1.0, 7: 1.0, 24: 1.0, 10: 0.26, 17: 0.52, 23: 0.29},
    "surprise": {1: 1.0, 2: 1.0, 25: 1.0, 26: 1.0, 5: 0.66},
    "disgust": {9: 1.0, 10: 1.0, 17: 1.0, 4: 0.31, 24: 0.26},
    "neutral": {},
}


def as_dict(edge: Relatedness) -> dict[str, dict[int, float]]:
    """Non-zero weights of an edge, rounded to the table's two decimals."""
    out: dict[str, dict[int, float]] = {}
    for i, expression in enumerate(edge.source.names):
        row = edge.table[i].tolist()
        out[expression] = {
            au_code(label): round(w, 2)
            for label, w in zip(edge.target.names, row, strict=True)
            if w != 0
        }
    return out


def test_expressions_and_task() -> None:
    assert EXPRESSIONS == (
        "neutral",
        "anger",
        "disgust",
        "fear",
        "happiness",
        "sadness",
        "surprise",
    )
    task = expression_task()
    assert task.name == "expression" and task.classes == EXPRESSIONS
    assert expression_task(contempt=True).classes == (*EXPRESSIONS, "contempt")


def test_full_table_equals_method_section_7_exactly() -> None:
    edge = expression_au_table()
    assert edge.source.classes == EXPRESSIONS
    union = sorted({au for row in SECTION_7.values() for au in row})
    assert [au_code(label) for label in edge.target.names] == union
    assert as_dict(edge) == SECTION_7


def test_csv_is_loadable_with_relatedness_from_csv() -> None:
    resource = resources.files("dmtl.knowledge").joinpath("expression_au.csv")
    header = resource.read_text().splitlines()[0]
    assert header.startswith("expression,AU1,AU2,AU4,")
    with resources.as_file(resource) as path:
        labels = header.split(",")[1:]
        edge = Relatedness.from_csv(path, expression_task(), au_task(labels))
    assert torch.equal(edge.table, expression_au_table().table)


def test_disfa_subset_by_hand() -> None:
    edge = expression_au_relatedness(aus=DISFA_AUS)
    assert edge.target.names == (
        "AU1", "AU2", "AU4", "AU5", "AU6", "AU9", "AU12", "AU15", "AU17", "AU20", "AU25", "AU26",
    )  # fmt: skip
    expected = torch.tensor(
        [
            # AU1  AU2   AU4   AU5   AU6  AU9  AU12 AU15 AU17  AU20 AU25 AU26
            [0.0, 0.00, 0.00, 0.00, 0.00, 0.0, 0.0, 0.0, 0.00, 0.0, 0.0, 0.00],  # neutral
            [0.0, 0.00, 1.00, 0.00, 0.00, 0.0, 0.0, 0.0, 0.52, 0.0, 0.0, 0.00],  # anger
            [0.0, 0.00, 0.31, 0.00, 0.00, 1.0, 0.0, 0.0, 1.00, 0.0, 0.0, 0.00],  # disgust
            [1.0, 0.57, 1.00, 0.63, 0.00, 0.0, 0.0, 0.0, 0.00, 1.0, 1.0, 0.33],  # fear
            [0.0, 0.00, 0.00, 0.00, 0.51, 0.0, 1.0, 0.0, 0.00, 0.0, 1.0, 0.00],  # happiness
            [0.6, 0.00, 1.00, 0.00, 0.50, 0.0, 0.0, 1.0, 0.67, 0.0, 0.0, 0.00],  # sadness
            [1.0, 1.00, 0.00, 0.66, 0.00, 0.0, 0.0, 0.0, 0.00, 0.0, 1.0, 1.00],  # surprise
        ]
    )
    assert torch.allclose(edge.table, expected)


def test_bp4d_subset_by_hand_with_au14_outside_the_table() -> None:
    edge = expression_au_relatedness(aus=BP4D_AUS)
    assert edge.target.names == (
        "AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU14", "AU15", "AU17", "AU23", "AU24",
    )  # fmt: skip
    expected = torch.tensor(
        [
            # AU1  AU2   AU4   AU6  AU7  AU10  AU12 AU14 AU15 AU17  AU23  AU24
            [0.0, 0.00, 0.00, 0.00, 0.0, 0.00, 0.0, 0.0, 0.0, 0.00, 0.00, 0.00],  # neutral
            [0.0, 0.00, 1.00, 0.00, 1.0, 0.26, 0.0, 0.0, 0.0, 0.52, 0.29, 1.00],  # anger
            [0.0, 0.00, 0.31, 0.00, 0.0, 1.00, 0.0, 0.0, 0.0, 1.00, 0.00, 0.26],  # disgust
            [1.0, 0.57, 1.00, 0.00, 0.0, 0.00, 0.0, 0.0, 0.0, 0.00, 0.00, 0.00],  # fear
            [0.0, 0.00, 0.00, 0.51, 0.0, 0.00, 1.0, 0.0, 0.0, 0.00, 0.00, 0.00],  # happiness
            [0.6, 0.00, 1.00, 0.50, 0.0, 0.00, 0.0, 0.0, 1.0, 0.67, 0.00, 0.00],  # sadness
            [1.0, 1.00, 0.00, 0.00, 0.0, 0.00, 0.0, 0.0, 0.0, 0.00, 0.00, 0.00],  # surprise
        ]
    )
    assert torch.allclose(edge.table, expected)


def test_subset_agrees_with_restrict_target() -> None:
    aus = [1, 4, 12, 25]
    restricted = expression_au_table().restrict_target(au_task(aus))
    assert torch.equal(expression_au_relatedness(aus=aus).table, restricted.table)


def test_given_tasks_choose_rows_and_columns() -> None:
    expression = CategoricalTask("emotion", ["happiness", "sadness"])
    aus = au_task(["AU6", "AU12", "AU14"], name="disfa_au")
    edge = expression_au_relatedness(expression=expression, au_task=aus)
    assert edge.name == "emotion->disfa_au"
    assert torch.allclose(edge.table, torch.tensor([[0.51, 1.0, 0.0], [0.5, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="not both"):
        expression_au_relatedness(aus=[1], au_task=aus)


def test_contempt_needs_explicit_zero_row() -> None:
    with pytest.raises(SpecError, match="contempt"):
        expression_au_relatedness(expression=expression_task(contempt=True))
    edge = expression_au_relatedness(
        aus=DISFA_AUS, expression=expression_task(contempt=True), allow_unlisted_expressions=True
    )
    assert edge.table.shape == (8, 12)
    assert float(edge.table[-1].abs().sum()) == 0.0


def test_au_labels_and_names() -> None:
    assert au_task([1, "AU2", "au04", "12"]).labels == ("AU1", "AU2", "AU4", "AU12")
    assert au_label("AU 25") == "AU25"
    expected_names = {
        1: "Inner brow raiser", 2: "Outer brow raiser", 4: "Brow lowerer", 5: "Upper lid raiser",
        6: "Cheek raiser", 7: "Lid tightener", 9: "Nose wrinkler", 10: "Upper lip raiser",
        11: "Nasolabial deepener", 12: "Lip corner puller", 14: "Dimpler",
        15: "Lip corner depressor", 16: "Lower lip depressor", 17: "Chin raiser",
        20: "Lip stretcher", 23: "Lip tightener", 24: "Lip pressor", 25: "Lips part",
        26: "Jaw drop", 27: "Mouth stretch", 43: "Eyes closed",
    }  # fmt: skip
    assert {code: AU_NAMES[code] for code in expected_names} == expected_names
    assert au_name("AU12") == "Lip corner puller"
    for bad in (3, "AU3", "smile", 0):
        with pytest.raises(ValueError):
            au_code(bad)


def test_non_au_label_in_given_task_is_rejected() -> None:
    from dmtl.core.tasks import BinarySetTask

    with pytest.raises(SpecError, match="smile"):
        expression_au_relatedness(au_task=BinarySetTask("au", ["AU1", "smile"]))
