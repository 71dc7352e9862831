"""CLI fixtures: ``cli(...)`` runs ``dmtl`` in-process; one tiny trained run shared per session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import Result
from typer.testing import CliRunner

from dmtl.cli import app
from dmtl.cli.errors import console, err_console

Invoke = Callable[..., Result]


@pytest.fixture(autouse=True)
def wide_consoles() -> Iterator[None]:
    """No line wrapping in rich output, so that messages and paths can be matched whole."""
    widths = (console.width, err_console.width)
    console.width = err_console.width = 1000
    yield
    console.width, err_console.width = widths


def run_cli(*args: str | Path, code: int | None = 0) -> Result:
    """``dmtl ARGS`` in this process; check the exit code unless ``code`` is None."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    if code is not None:
        assert result.exit_code == code, (
            f"dmtl {' '.join(map(str, args))}: exit {result.exit_code}, expected {code}\n"
            f"{result.output}\n{result.exception!r}"
        )
    return result


@pytest.fixture
def cli() -> Invoke:
    """``cli(*args, code=0)``: run ``dmtl`` with typer's CliRunner and check the exit code."""
    return run_cli


@pytest.fixture(scope="session")
def session_config(
    tmp_path_factory: pytest.TempPathFactory, tiny_data: Callable[..., dict[str, Any]]
) -> Path:
    """The tiny digits config in a session-wide folder."""
    folder = tmp_path_factory.mktemp("cli-session")
    path = folder / "tiny.yaml"
    data = tiny_data(output={"dir": str(folder / "runs" / "tiny")})
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def trained_run(session_config: Path) -> Path:
    """A run folder trained once per session with ``dmtl train`` (read it, don't change it)."""
    run_dir = session_config.parent / "runs" / "tiny"
    widths = (console.width, err_console.width)
    console.width = err_console.width = 1000
    try:
        run_cli("train", session_config)
    finally:
        console.width, err_console.width = widths
    return run_dir


@pytest.fixture(scope="session")
def exported_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``dmtl datasets export digits DIR --limit 20``: the manifest's path."""
    folder = tmp_path_factory.mktemp("export") / "digits20"
    run_cli("datasets", "export", "digits", folder, "--limit", "20")
    return folder / "manifest.csv"
