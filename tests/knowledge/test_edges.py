"""Relatedness edges from plain :class:`EdgeSpec` s (no config): each kind's table, and the
errors naming ``relatedness.<i>``; :func:`dmtl.build.edges.edge_specs` reads the config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dmtl.build.edges import edge_specs
from dmtl.config import EdgeConfig
from dmtl.core.labels import PartialLabels
from dmtl.core.relatedness import Relatedness
from dmtl.core.tasks import BinarySetTask, CategoricalTask
from dmtl.errors import ConfigError
from dmtl.knowledge.edges import EdgeSpec, build_edges

DIGIT = CategoricalTask("digit", ("zero", "one"))
PARITY = BinarySetTask("parity", ("odd", "round"))
TASKS = {"digit": DIGIT, "parity": PARITY}
TABLE = torch.tensor([[0.0, 1.0], [1.0, 0.0]])


def no_labels() -> PartialLabels:
    raise AssertionError("only an 'estimate' edge reads the training labels")


def test_no_spec_takes_every_offered_table() -> None:
    offered = Relatedness(DIGIT, PARITY, TABLE)
    (edge,) = build_edges([], TASKS, [offered], no_labels)
    assert edge is offered


def test_a_table_edge_reads_its_csv(tmp_path: Path) -> None:
    path = tmp_path / "digit__parity.csv"
    Relatedness(DIGIT, PARITY, TABLE).to_csv(path)
    (edge,) = build_edges([EdgeSpec("digit", "parity", "table", path)], TASKS, [], no_labels)
    assert torch.equal(edge.table, TABLE)


def test_errors_name_the_entry() -> None:
    specs = [EdgeSpec("digit", "parity", "knowledge"), EdgeSpec("digit", "colour", "knowledge")]
    with pytest.raises(ConfigError, match=r"relatedness\.0.*no source offers"):
        build_edges(specs, TASKS, [], no_labels)
    with pytest.raises(ConfigError, match=r"relatedness\.0.*no task 'colour'"):
        build_edges(specs[1:], TASKS, [], no_labels)
    with pytest.raises(ConfigError, match=r"relatedness\.0.*needs 'path'"):
        build_edges([EdgeSpec("digit", "parity", "table")], TASKS, [], no_labels)


def test_edge_specs_copy_every_field_of_the_config(tmp_path: Path) -> None:
    config = EdgeConfig(source="a", target="b", kind="table", path=tmp_path / "t.csv", alpha=2.0)
    assert edge_specs([config]) == [EdgeSpec("a", "b", "table", tmp_path / "t.csv", 2.0)]
    assert {f for f in EdgeSpec.__dataclass_fields__} == set(EdgeConfig.model_fields)
