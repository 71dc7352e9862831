"""Options shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigArg = Annotated[Path, typer.Argument(help="YAML config file.", show_default=False)]

Overrides = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config key: key.sub=value (repeatable)."),
]
Resume = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="Continue the run (or study) in the output folder exactly where it stopped; "
        "its config must be the same (see --allow-config-change).",
    ),
]
Overwrite = Annotated[
    bool, typer.Option("--overwrite", help="Replace existing outputs (they are deleted).")
]
AllowConfigChange = Annotated[
    bool,
    typer.Option(
        "--allow-config-change",
        help="With --resume: go on with a config that differs from the run's "
        "(the change is recorded in config_changes.json).",
    ),
]
