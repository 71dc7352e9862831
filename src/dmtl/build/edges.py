"""The config's ``relatedness`` list as the plain edge specs :mod:`dmtl.knowledge.edges`
builds tables from.

>>> from dmtl.config import EdgeConfig
>>> edge_specs([EdgeConfig(source="digit", target="shape", kind="knowledge")])
[EdgeSpec(source='digit', target='shape', kind='knowledge', path=None, alpha=1.0)]
"""

from __future__ import annotations

from collections.abc import Iterable

from dmtl.config import EdgeConfig
from dmtl.knowledge.edges import EdgeSpec


def edge_specs(edges: Iterable[EdgeConfig]) -> list[EdgeSpec]:
    """One :class:`EdgeSpec` per entry of ``relatedness`` (same order, same fields)."""
    return [
        EdgeSpec(edge.source, edge.target, kind=edge.kind, path=edge.path, alpha=edge.alpha)
        for edge in edges
    ]


__all__ = ["edge_specs"]
