"""``dmtl config show``: the resolved config, after overrides and defaults;
``dmtl config check``: everything checkable before training, without loading data."""

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


@config_app.command("check")
@handle_errors
def check(
    config: Annotated[Path, typer.Argument(help="YAML config file.")],
    set_: Overrides = None,
    train_only: Annotated[
        bool,
        typer.Option(
            "--train-only", help="Leave out the study's variants (check what 'dmtl train' needs)."
        ),
    ] = False,
) -> None:
    """Check a config before anything runs: names, options, files, module:factory imports,
    the monitored metric and the study's variants; no data is loaded. One line per
    problem, exit status 2."""
    from dmtl.build.check import checked_config

    cfg = checked_config(config, set_ or [], study=not train_only)
    what = "train" if train_only else f"train and study ({len(cfg.study.variants)} variants)"
    console.print(f"{config}: OK for {what}", soft_wrap=True, highlight=False)
