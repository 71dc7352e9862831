"""``dmtl config show``: the resolved config, after overrides and defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.syntax import Syntax

from dmtl.cli.errors import console, handle_errors

config_app = typer.Typer(help="Inspect configs.", no_args_is_help=True)


@config_app.command("show")
@handle_errors
def show(
    config: Annotated[Path, typer.Argument(help="YAML config file.")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Override a config key: key.sub=value."),
    ] = None,
) -> None:
    """Validate a config and print it resolved (defaults filled in, paths made absolute)."""
    from dmtl.config import dump_config, load_config

    cfg = load_config(config, set_ or [])
    console.print(Syntax(dump_config(cfg), "yaml", theme="ansi_dark", background_color="default"))
