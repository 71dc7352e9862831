"""Relatedness edges from the config's ``relatedness`` list: where each table comes from.

An edge spec (:class:`EdgeSpec`, plain data: :func:`dmtl.build.edges.edge_specs` makes
them from the config's ``relatedness`` list) names a source task, a target task and a
``kind``:

- ``knowledge``: a table a built-in dataset or reader ships (restricted to the
  target's labels when the target has fewer);
- ``affect``: the built-in expression -> AU table (:mod:`dmtl.knowledge.affect`);
- ``table``: a CSV file written by hand or by ``dmtl relatedness estimate``;
- ``estimate``: counted from the training samples labelled for both tasks
  (:class:`~dmtl.core.estimation.RelatednessEstimator`).

With no spec at all, every knowledge table offered becomes an edge.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dmtl.core.estimation import RelatednessEstimator
from dmtl.core.labels import PartialLabels
from dmtl.core.relatedness import Relatedness
from dmtl.core.tasks import BinarySetTask, CategoricalTask, Task
from dmtl.errors import ConfigError, SpecError

TrainLabels = Callable[[], PartialLabels]
"""Gives the training labels (called only by ``estimate`` edges)."""

Offered = Mapping[tuple[str, str], Relatedness]

EdgeKind = Literal["knowledge", "affect", "table", "estimate"]


@dataclass(frozen=True)
class EdgeSpec:
    """One edge ``source -> target`` to build: where its table comes from (``kind``), the
    CSV file of a ``table`` edge, the smoothing ``alpha`` of an ``estimate`` edge."""

    source: str
    target: str
    kind: EdgeKind = "estimate"
    path: Path | None = None
    alpha: float = 1.0


def _knowledge(
    spec: EdgeSpec, source: CategoricalTask, target: Task, offered: Offered, _: TrainLabels
) -> Relatedness:
    edge = offered.get((spec.source, spec.target))
    if edge is None:
        names = [f"{a}->{b}" for a, b in offered] or "none"
        raise SpecError(
            f"no source offers a domain-knowledge table {spec.source}->{spec.target}; "
            f"offered: {names}"
        )
    return edge if edge.target == target else edge.restrict_target(target)


def _affect(
    spec: EdgeSpec, source: CategoricalTask, target: Task, offered: Offered, _: TrainLabels
) -> Relatedness:
    from dmtl.knowledge.affect import expression_au_relatedness

    if not isinstance(target, BinarySetTask):
        raise SpecError(f"kind 'affect' needs a binary-set AU task as target, not {target.kind}")
    return expression_au_relatedness(expression=source, au_task=target)


def _table(
    spec: EdgeSpec, source: CategoricalTask, target: Task, offered: Offered, _: TrainLabels
) -> Relatedness:
    if spec.path is None:
        raise SpecError("kind 'table' needs 'path' (a CSV file)")
    return Relatedness.from_csv(spec.path, source, target)


def _estimate(
    spec: EdgeSpec, source: CategoricalTask, target: Task, offered: Offered, labels: TrainLabels
) -> Relatedness:
    estimator = RelatednessEstimator(source, target, alpha=spec.alpha)
    estimator.update(labels())
    return estimator.compute()


EDGE_KINDS: dict[str, Callable[..., Relatedness]] = {
    "knowledge": _knowledge,
    "affect": _affect,
    "table": _table,
    "estimate": _estimate,
}
"""``kind`` of an edge spec -> the function that builds its table."""


def build_edges(
    specs: Sequence[EdgeSpec],
    tasks: Mapping[str, Task],
    offered: Sequence[Relatedness],
    train_labels: TrainLabels,
) -> list[Relatedness]:
    """The edges of ``specs`` (default: every table offered); errors name ``relatedness.i``."""
    by_pair = {(e.source.name, e.target.name): e for e in offered}
    specs = list(specs) or [EdgeSpec(a, b, kind="knowledge") for a, b in by_pair]
    edges: list[Relatedness] = []
    for i, spec in enumerate(specs):
        where = f"relatedness.{i}"
        source, target = tasks.get(spec.source), tasks.get(spec.target)
        if source is None or target is None:
            missing = spec.source if source is None else spec.target
            raise ConfigError([(where, f"no task {missing!r}; tasks: {', '.join(tasks)}")])
        if not isinstance(source, CategoricalTask):
            raise ConfigError([(f"{where}.source", f"task {spec.source!r} is not categorical")])
        try:
            edges.append(EDGE_KINDS[spec.kind](spec, source, target, by_pair, train_labels))
        except SpecError as error:
            raise ConfigError([(where, str(error))]) from None
    return edges
