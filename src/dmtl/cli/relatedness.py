"""``dmtl relatedness estimate|show``: estimate tables from co-annotated data, look at them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dmtl.cli.errors import console, handle_errors
from dmtl.cli.options import Overrides
from dmtl.cli.outputs import check_output_file, check_output_folder
from dmtl.errors import ConfigError, SpecError

relatedness_app = typer.Typer(
    help="Estimate and inspect task-relatedness tables.", no_args_is_help=True
)


@relatedness_app.command("estimate")
@handle_errors
def estimate(
    config: Annotated[Path, typer.Argument(help="YAML config file.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="CSV file (one edge) or folder (several).")
    ],
    source: Annotated[str | None, typer.Option(help="Source task (categorical).")] = None,
    target: Annotated[str | None, typer.Option(help="Target task.")] = None,
    alpha: Annotated[float, typer.Option(help="Smoothing towards the marginal.")] = 1.0,
    set_: Overrides = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing files.")] = False,
) -> None:
    """Estimate R from the training samples labelled for both tasks (after the regime).

    With --source/--target, that edge; otherwise every edge of kind 'estimate' in the config.
    """
    from dmtl.config import EdgeConfig, load_config
    from dmtl.data.pipeline import build_experiment, load_sources
    from dmtl.knowledge.edges import build_edges

    if (source is None) != (target is None):
        raise ConfigError("--source, --target: give both, or neither")
    if alpha < 0:
        raise ConfigError(f"--alpha: expected a number >= 0, got {alpha}")
    one_file = output.suffix.lower() == ".csv"
    if one_file:
        check_output_file(output, overwrite)
    else:
        check_output_folder(output, "--output")
    cfg = load_config(config, set_ or [])
    if source is not None and target is not None:
        specs = [EdgeConfig(source=source, target=target, kind="estimate", alpha=alpha)]
    else:
        specs = [e for e in cfg.relatedness if e.kind == "estimate"]
        if not specs:
            raise ConfigError(
                f"{config}: the config lists no edge of kind 'estimate'; name one with "
                "--source and --target"
            )
    if one_file and len(specs) > 1:
        raise ConfigError(
            f"--output {output}: {len(specs)} edges are estimated; give a folder, not a .csv file"
        )
    loaded = load_sources(cfg)
    experiment = build_experiment(cfg.model_copy(update={"relatedness": []}), loaded=loaded)
    offered = [edge for item in loaded for edge in item.knowledge]
    edges = build_edges(specs, experiment.task_map, offered, experiment.train_labels)
    if one_file:
        paths = [output]
    else:
        paths = [output / f"{e.source.name}__{e.target.name}.csv" for e in edges]
        for path in paths:
            check_output_file(path, overwrite)
    for edge, path in zip(edges, paths, strict=True):
        edge.to_csv(path)
        console.print(f"{edge.name}: {tuple(edge.table.shape)} table written to [bold]{path}[/]")


@relatedness_app.command("show")
@handle_errors
def show(
    table: Annotated[Path, typer.Argument(help="Relatedness CSV (rows: source classes).")],
    image: Annotated[
        Path | None, typer.Option("--image", "-o", help="Heatmap PNG (default: beside the CSV).")
    ] = None,
    max_columns: Annotated[int, typer.Option(help="Columns shown in the terminal.")] = 20,
    max_rows: Annotated[int, typer.Option(help="Rows shown in the terminal.")] = 50,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing PNG.")
    ] = False,
) -> None:
    """Print a relatedness table and draw it as a heatmap PNG."""
    import io

    import pandas as pd

    from dmtl._textfile import read_text
    from dmtl.cli.render import frame_table
    from dmtl.knowledge.heatmap import plot_relatedness

    if not table.is_file():
        raise ConfigError(f"{table}: no such file")
    path = check_output_file(image or table.with_suffix(".png"), overwrite, "--image")
    text = read_text(table, "relatedness table", SpecError)
    try:
        frame = pd.read_csv(io.StringIO(text), index_col=0)
        frame.index = frame.index.astype(str)  # class names, even where they look like numbers
        values = frame.to_numpy(dtype=float)
    except (ValueError, pd.errors.ParserError) as error:
        problem = " ".join(str(error).split())
        raise SpecError(f"{table}: not a relatedness table ({problem})") from None
    if values.size == 0:
        raise SpecError(f"{table}: not a relatedness table (no rows or no columns)")
    shown = frame.iloc[:max_rows, :max_columns].reset_index()
    title = f"{table.name}: p({frame.index.name} class -> column)"
    console.print(frame_table(shown, title=title, digits=2))
    hidden = [
        f"{n - shown_n} more {what}"
        for n, shown_n, what in (
            (frame.shape[0], max_rows, "rows"),
            (frame.shape[1], max_columns, "columns"),
        )
        if n > shown_n
    ]
    if hidden:
        console.print(f"({', '.join(hidden)} in the file)")
    plot_relatedness(
        values,
        [str(r) for r in frame.index],
        [str(c) for c in frame.columns],
        path,
        title=table.stem,
    )
    console.print(f"heatmap written to [bold]{path}[/]")
