"""The house's rules, checked on the source: imports point down the layers, no import
cycle, and no function longer than about 60 lines (docs/architecture.md)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "dmtl"

LAYERS: dict[str, int] = {
    "dmtl._version": 0,
    "dmtl._lazy": 0,
    "dmtl._textfile": 0,
    "dmtl.errors": 0,
    "dmtl.config": 0,
    "dmtl.registry": 0,
    "dmtl.core": 1,
    "dmtl.backbones": 2,
    "dmtl.knowledge": 2,
    "dmtl.data": 3,
    "dmtl.build": 4,
    "dmtl.training": 5,
    "dmtl.study": 6,
    "dmtl.inference": 6,
    "dmtl.cli": 7,
    "dmtl.__main__": 8,
    "dmtl": 8,  # the package root re-exports lazily
}
"""Layer of each top-level part: a module may import its own layer and those below."""

MAX_FUNCTION_LINES = 60
"""Lines of a function's body, docstring excluded."""



def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _layer(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def _imports(
    path: Path, module: str, type_checking: bool = False
) -> Iterator[tuple[str, int]]:
    """``(imported dmtl module, line)``; imports under ``if TYPE_CHECKING:`` are left out
    unless ``type_checking``."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if type_checking:
            break
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for child in node.body for n in ast.walk(child)}
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            names = [base]
        else:
            continue
        for name in names:
            if name == "dmtl" or name.startswith("dmtl."):
                yield name, node.lineno


def test_imports_point_down_the_layers() -> None:
    upward = [
        f"{module} (layer {_layer(module)}) imports {name} (layer {_layer(name)}), line {line}"
        for module, path in _modules()
        for name, line in _imports(path, module)
        if _layer(name) > _layer(module)
    ]
    assert not upward, "\n".join(upward)


CONFIG_FREE = ("dmtl.core", "dmtl.backbones", "dmtl.knowledge", "dmtl.data")
"""Parts below :mod:`dmtl.build` that take plain arguments and built objects: none of them
reads the config (``dmtl.build`` is its one reader below the command line)."""


def test_only_build_and_above_read_the_config() -> None:
    readers = [
        f"{module} imports {name}, line {line}"
        for module, path in _modules()
        if any(module == part or module.startswith(part + ".") for part in CONFIG_FREE)
        for name, line in _imports(path, module, type_checking=True)
        if name == "dmtl.config" or name.startswith("dmtl.config.")
    ]
    assert not readers, "\n".join(readers)


def test_no_import_cycles() -> None:
    known = dict(_modules())
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        targets = set()
        for name, _ in _imports(path, module):
            while name not in known and "." in name:
                name = name.rsplit(".", 1)[0]  # "from package.module import name"
            if name in known and name != module and not module.startswith(name + "."):
                targets.add(name)
        graph[module] = targets
    cycles = _cycles(graph)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _function_lengths() -> Iterator[tuple[str, int]]:
    for module, path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            assert node.end_lineno is not None
            length = node.end_lineno - node.lineno + 1
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                assert first.end_lineno is not None
                length -= first.end_lineno - first.lineno + 1
            yield f"{module}:{node.name}", length


def test_functions_are_short() -> None:
    long = [
        f"{name}: {length} lines"
        for name, length in _function_lengths()
        if length > MAX_FUNCTION_LINES
    ]
    assert not long, "\n".join(long)
