"""The README's code example runs as written, and its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def test_readme_python_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has a python example"
    namespace: dict[str, object] = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    loss = namespace["loss"]
    terms = namespace["terms"]
    assert float(loss.detach()) > 0  # type: ignore[attr-defined]
    assert set(terms) >= {"sup/digit", "sup/shape", "ca/digit->shape", "dm/shape->digit"}  # type: ignore[arg-type]


def test_readme_opens_with_the_two_commands() -> None:
    head = README.read_text().split("\n## ")[0]
    assert "make demo" in head and "make test" in head
