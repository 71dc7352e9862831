"""``dmtl affinity CONFIG``: the measured task affinity of a config (a short run), as a CSV
table, a heat map and the branches ``architecture: branch, auto`` would choose.

Registered in ``dmtl.cli`` as ``app.command("affinity")(affinity)``; torch and Lightning
are imported when the command runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dmtl.cli.errors import console, handle_errors, quiet_lightning, warnings_as_lines
from dmtl.cli.options import ConfigArg, Overrides, Overwrite
from dmtl.cli.outputs import check_output_file

FILES = ("affinity.csv", "affinity.png", "affinity.json")


@handle_errors
def affinity(
    config: ConfigArg,
    set_: Overrides = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder for affinity.csv/.png/.json "
                     "(default: output.dir/affinity)."),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Epochs of the short run.", min=1)] = 2,
    every: Annotated[int, typer.Option(help="Measure every N-th step.", min=1)] = 4,
    overwrite: Overwrite = False,
) -> None:
    """How a step on each task's loss changes every other task's loss.

    TAG lookahead at the shared layers, on the rows labelled for each task, averaged over
    a short run on the training data: Z(i->j) = 1 - L_j(after a step on L_i) / L_j(before).
    """
    from dmtl.build.data import build_experiment
    from dmtl.config import load_config
    from dmtl.training.affinity import measure_affinity, write_affinity

    cfg = load_config(config, set_ or [])
    folder = out or Path(cfg.output.dir) / "affinity"
    paths = [check_output_file(folder / name, overwrite, "--out") for name in FILES]
    with warnings_as_lines():
        experiment = build_experiment(cfg)
    with quiet_lightning():
        result = measure_affinity(experiment, epochs=epochs, every=every)
    write_affinity(result, paths[0], paths[1])
    tasks, relative = result.relative()
    summary = {"steps": result.steps, "wall_s": round(result.wall_s, 3), "epochs": epochs,
               "every": every, "branches": result.branches}
    paths[2].write_text(json.dumps(summary, indent=2))
    _print(tasks, relative, result.branches, result.steps, result.wall_s, folder)


def _print(tasks: list[str], relative: list[list[float]], branches: list[dict[str, object]],
           steps: int, wall_s: float, folder: Path) -> None:
    from rich.table import Table

    table = Table(title="task affinity Z(i->j) / Z(j->j) (row i: step on; column j: loss of)")
    table.add_column("step on \\ loss of")
    for task in tasks:
        table.add_column(task, justify="right")
    for task, row in zip(tasks, relative, strict=True):
        table.add_row(task, *(f"{v:+.3f}" for v in row))
    console.print(table)
    chosen = "; ".join(f"{b['tasks']} from stage {b['at']}" for b in branches) or \
        "none (every task keeps the shared trunk)"
    console.print(f"branches auto would choose: {chosen}", highlight=False, soft_wrap=True)
    console.print(f"{steps} steps measured in {wall_s:.1f} s; outputs in [bold]{folder}[/]",
                  soft_wrap=True)


__all__ = ["affinity"]
