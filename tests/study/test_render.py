"""What the command line shows of a study, and how it picks the variants to run."""

from __future__ import annotations

import io
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from dmtl.cli import app
from dmtl.cli.render import print_study_table, study_table
from dmtl.config import Config, Variant, validate_config
from dmtl.errors import ConfigError
from dmtl.study.results import StudyResults
from dmtl.study.study import with_variants


def test_study_table_for_the_terminal(three_seed_results: StudyResults) -> None:
    table = study_table(three_seed_results)
    assert table.row_count == 5
    assert [str(c.header) for c in table.columns] == [
        "variant",
        "digit\n(accuracy)",
        "shape\n(f1_mean)",
        "negative transfer",
    ]
    console = Console(record=True, width=160)
    console.print(table)
    text = console.export_text()
    assert "shape (−0.110)" in text  # the column header says "negative transfer"
    assert "0.920 ± 0.020" in text and "single_task (baseline)" in text


def test_not_a_terminal_gets_the_unwrapped_markdown_table(
    three_seed_results: StudyResults,
) -> None:
    out = io.StringIO()
    console = Console(file=out, width=80)
    assert not console.is_terminal
    print_study_table(console, three_seed_results)
    lines = out.getvalue().splitlines()
    row = "| mtl+dm | 0.920 ± 0.000 | 0.710 ± 0.010 | negative transfer on: shape (−0.110) |"
    assert row in lines  # whole, on one line, although longer than 80 columns
    assert len(row) > 80
    assert "ranking (mean rank over tasks): 1. mtl+ca+dm (1.00), 2. mtl+ca (2.00)" in lines[-1]
    assert not any(line.startswith(("┏", "│", "┃")) for line in lines)


def test_a_terminal_gets_the_rich_table(three_seed_results: StudyResults) -> None:
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=True, color_system=None)
    print_study_table(console, three_seed_results)
    text = out.getvalue()
    assert "┃ variant" in text and "| variant |" not in text
    assert "ranking (mean rank over tasks): 1. mtl+ca+dm" in text


@pytest.fixture
def config(tiny_data: Callable[..., dict[str, Any]]) -> Config:
    return validate_config(tiny_data())


def test_variants_option_sets_the_study_variants_in_order(config: Config) -> None:
    chosen = with_variants(config, "mtl+ca+dm, single_task,mtl")
    assert chosen.study.variants == ["mtl+ca+dm", "single_task", "mtl"]
    assert config.study.variants != chosen.study.variants  # the original is not changed
    assert with_variants(config, "all").study.variants == list(typing.get_args(Variant))


def test_variants_option_refuses_unknown_repeated_or_no_names(config: Config) -> None:
    known = ", ".join(typing.get_args(Variant))  # the names config.Variant allows, in order
    with pytest.raises(ConfigError) as error:
        with_variants(config, "mtl,mtl+foo")
    assert str(error.value) == f"--variants: unknown variant 'mtl+foo'; known: {known}"
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="'mtl' given twice"):
        with_variants(config, "mtl,mtl+ca,mtl")
    with pytest.raises(ConfigError, match="no variant; known: single_task"):
        with_variants(config, " , ")


def test_the_study_command_refuses_an_unknown_variant_before_training(
    tiny_config_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "study"
    result = CliRunner().invoke(
        app, ["study", str(tiny_config_file), "--variants", "mtl,mtl+foo", "-o", str(out)]
    )
    assert result.exit_code == 2
    assert "error: --variants: unknown variant 'mtl+foo'; known: single_task" in " ".join(
        result.output.split()
    )
    assert not out.exists()
