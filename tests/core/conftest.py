"""Fixtures of the core tests: the hand-checkable tasks and tables of the "dmtl core" issue.

- ``task_a``: categorical A with classes ``x, y, z``;
- ``task_b``: binary set B with labels ``u, v``;
- ``task_c``: categorical C with classes ``d0, d1``;
- ``edge_ab``: A -> B with ``R = [[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]]``;
- ``edge_ac``: A -> C with ``T = [[0.8, 0.2], [0.3, 0.7], [0.5, 0.5]]`` (rows sum to 1).

Tasks are immutable, hence session-scoped (usable from hypothesis tests); edges are
function-scoped because ``Objective.double()`` converts their tables in place.
"""

from __future__ import annotations

import pytest
import torch

from dmtl.core.relatedness import Relatedness
from dmtl.core.tasks import BinarySetTask, CategoricalTask

R_BINARY = ((0.9, 0.1), (0.5, 0.5), (0.2, 0.8))
T_CATEGORICAL = ((0.8, 0.2), (0.3, 0.7), (0.5, 0.5))


@pytest.fixture(scope="session")
def task_a() -> CategoricalTask:
    return CategoricalTask("a", ["x", "y", "z"])


@pytest.fixture(scope="session")
def task_b() -> BinarySetTask:
    return BinarySetTask("b", ["u", "v"])


@pytest.fixture(scope="session")
def task_c() -> CategoricalTask:
    return CategoricalTask("c", ["d0", "d1"])


@pytest.fixture
def edge_ab(task_a: CategoricalTask, task_b: BinarySetTask) -> Relatedness:
    return Relatedness(task_a, task_b, torch.tensor(R_BINARY))


@pytest.fixture
def edge_ac(task_a: CategoricalTask, task_c: CategoricalTask) -> Relatedness:
    return Relatedness(task_a, task_c, torch.tensor(T_CATEGORICAL))
