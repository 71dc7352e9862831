"""The study package's layering: report and plots do not import each other; no rich in study/.

Imports are read from the source (every ``import``, also those inside functions), and
followed through dmtl's own modules, so a lazy or indirect import counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dmtl

SRC = Path(dmtl.__file__).parent.parent


def _path(module: str) -> Path | None:
    base = SRC.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports_of(module: str) -> set[str]:
    """Every module named by an import statement of ``module`` (``from a import b``: a, a.b)."""
    path = _path(module)
    assert path is not None, module
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
    return names


def reachable(module: str) -> set[str]:
    """The dmtl modules ``module`` imports, directly or through other dmtl modules."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        for name in imports_of(todo.pop()):
            if name.startswith("dmtl") and name not in seen and _path(name) is not None:
                seen.add(name)
                todo.append(name)
    return seen


@pytest.mark.parametrize(("module", "other"), [("report", "plots"), ("plots", "report")])
def test_report_and_plots_do_not_import_each_other(module: str, other: str) -> None:
    assert f"dmtl.study.{other}" not in reachable(f"dmtl.study.{module}")


def test_both_take_their_numbers_from_the_statistics_module() -> None:
    for name in ("report", "plots"):
        imported = imports_of(f"dmtl.study.{name}")
        assert "dmtl.study.statistics" in imported, name
        assert not {m for m in imported if m.startswith("scipy")}, name


def test_the_study_package_does_not_import_rich() -> None:
    for path in (SRC / "dmtl" / "study").glob("*.py"):
        module = f"dmtl.study.{path.stem}"
        rich = {m for m in imports_of(module) if m == "rich" or m.startswith("rich.")}
        assert not rich, f"{path.name} imports {rich}"


def test_the_heatmap_imports_no_other_dmtl_module() -> None:
    assert reachable("dmtl.knowledge.heatmap") == set()
