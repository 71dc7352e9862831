"""Every YAML snippet in docs/ is a valid config, or a valid fragment of one.

A snippet with a top-level ``sources`` is a whole config; any other snippet is a fragment,
merged into :data:`BASE` (its sections replace the base's). Both go through the same
checks as ``dmtl config check`` (schema, names and options of every part, cross-field
rules, the study's variants), except that files and folders a snippet names (the
reader's own data: ``/data/CelebA``, ``data/train.csv``) need not exist here.

A snippet that shows a config on purpose refused starts with the line
``# dmtl: invalid`` and must be refused.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from dmtl.build.check import check_config
from dmtl.config import Config, check_consistency, parse_yaml, variant_problems

DOCS = Path(__file__).resolve().parents[1] / "docs"
INVALID_MARKER = "# dmtl: invalid"
BASE: dict[str, Any] = {"sources": [{"name": "d", "builtin": "digits"}]}
MISSING_FILE = ("file not found:", "folder not found:")


def _snippets() -> list[tuple[str, str]]:
    found = []
    for path in sorted(DOCS.rglob("*.md")):
        text = path.read_text()
        for match in re.finditer(r"^```ya?ml\n(.*?)^```", text, flags=re.S | re.M):
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{path.relative_to(DOCS)}:{line}", match.group(1)))
    return found


SNIPPETS = _snippets()


def _problems(snippet: str) -> list[tuple[str, str]]:
    data = parse_yaml(snippet)
    assert isinstance(data, dict), "a snippet is a mapping"
    config_data = data if "sources" in data else {**BASE, **data}
    try:
        config = Config.model_validate(config_data)
    except Exception as error:  # pydantic's ValidationError: the problems are the test's
        return [("schema", " ".join(str(error).split()))]
    problems = check_consistency(config) + variant_problems(config)
    problems += check_config(config, study=False)
    return [p for p in problems if not p[1].startswith(MISSING_FILE)]


def test_the_docs_have_yaml_snippets() -> None:
    assert len(SNIPPETS) >= 6


@pytest.mark.parametrize("snippet", [s for _, s in SNIPPETS], ids=[w for w, _ in SNIPPETS])
def test_every_yaml_snippet_is_a_valid_config(snippet: str) -> None:
    problems = _problems(snippet)
    if snippet.lstrip().startswith(INVALID_MARKER):
        assert problems, "a snippet marked invalid must be refused"
    else:
        assert not problems, problems


def test_a_fragment_is_checked_in_the_base() -> None:
    """The test itself catches what the user trial found in the docs."""
    assert _problems("method: {aggregator: upgrad, aggregator_options: {level: features}}")
    assert _problems("method: {aggregator: upgrad}")  # the +uw variant cannot run with it
    assert not _problems("method: {aggregator: upgrad}\nstudy: {variants: [mtl]}")
