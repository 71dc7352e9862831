"""``dmtl config show``: the resolved config, after overrides and defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.syntax import Syntax

from dmtl.cli.errors import console, handle_errors
from dmtl.cli.options import Overrides

config_app = typer.Typer(help="Inspect configs.", no_args_is_help=True)


@config_app.command("show")
@handle_errors
def show(
    config: Annotated[Path, typer.Argument(help="YAML config file.")],
    set_: Overrides = None,
) -> None:
    """Validate a config and print it resolved (defaults filled in, paths made absolute)."""
    from dmtl.config import dump_config, load_config

    cfg = load_config(config, set_ or [])
    console.print(Syntax(dump_config(cfg), "yaml", theme="ansi_dark", background_color="default"))
