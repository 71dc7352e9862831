"""``dmtl relatedness estimate|show``: estimate tables (from co-annotated data, or from a
trained model's predictions), look at them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dmtl.cli.errors import console, handle_errors, quiet_lightning
from dmtl.cli.options import Overrides
from dmtl.cli.outputs import check_output_file, check_output_folder
from dmtl.errors import ConfigError, DataError, SpecError

if TYPE_CHECKING:
    from dmtl.config import Config, EdgeConfig
    from dmtl.core.relatedness import Relatedness
    from dmtl.data.sources import Source
    from dmtl.inference.card import ModelCard
    from dmtl.inference.relatedness import PredictedEdge

relatedness_app = typer.Typer(
    help="Estimate and inspect task-relatedness tables.", no_args_is_help=True
)


@relatedness_app.command("estimate")
@handle_errors
def estimate(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="CSV file (one edge) or folder (several).")
    ],
    config: Annotated[
        Path | None,
        typer.Argument(help="YAML config file: its co-annotated training rows, or (with --model) "
                       "its sources' images.", show_default=False),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option("--model", "-m", help="Estimate from this trained model's predictions: a "
                     "run folder, checkpoint, or exported .onnx / TorchScript file."),
    ] = None,
    inputs: Annotated[
        Path | None,
        typer.Option(help="With --model: unlabelled inputs to predict (manifest, image folder or "
                     ".npy), instead of a config's sources."),
    ] = None,
    root: Annotated[
        Path | None, typer.Option(help="Root of the --inputs manifest's images.")
    ] = None,
    array: Annotated[Path | None, typer.Option(help="The .npy array an --inputs 'index' manifest "
                                                    "points into.")] = None,
    split: Annotated[
        str, typer.Option(help="With --model and a config: the rows of each source to predict "
                          "(train, val, test or all).")
    ] = "train",
    source: Annotated[str | None, typer.Option(help="Source task (categorical).")] = None,
    target: Annotated[str | None, typer.Option(help="Target task.")] = None,
    alpha: Annotated[float, typer.Option(help="Smoothing towards the marginal.")] = 1.0,
    set_: Overrides = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing files.")] = False,
) -> None:
    """Estimate tables R(c, j) = p(label j of TARGET | class c of SOURCE), written as CSV.

    From labels (default): CONFIG's training rows labelled for both tasks (after the regime).

    From predictions (--model): soft counts over unlabelled images, --inputs or CONFIG's sources.

    With --source/--target, that edge; else every edge of kind 'estimate' in CONFIG.
    """
    if (source is None) != (target is None):
        raise ConfigError("--source, --target: give both, or neither")
    if alpha < 0:
        raise ConfigError(f"--alpha: expected a number >= 0, got {alpha}")
    if model is None and (inputs is not None or root is not None or array is not None):
        raise ConfigError("--inputs, --root, --array: they need --model")
    if output.suffix.lower() == ".csv":
        check_output_file(output, overwrite)
    else:
        check_output_folder(output, "--output")
    if model is None:
        if config is None:
            raise ConfigError("CONFIG: give a config (or --model with --inputs)")
        edges = _from_labels(config, set_ or [], source, target, alpha)
        _write(edges, output, overwrite)
        return
    if (config is None) == (inputs is None):
        raise ConfigError("--model: give either a CONFIG or --inputs (one of them)")
    predicted = _from_predictions(
        model, config, inputs, root, array, split, set_ or [], source, target, alpha
    )
    count = predicted[0].num_inputs
    console.print(f"estimated from the model's predictions on {count} input(s)")
    _write([p.edge for p in predicted], output, overwrite)


def _edge_names(
    cfg: Config | None, source: str | None, target: str | None, alpha: float
) -> list[EdgeConfig]:
    from dmtl.config import EdgeConfig

    if source is not None and target is not None:
        return [EdgeConfig(source=source, target=target, kind="estimate", alpha=alpha)]
    specs = [] if cfg is None else [e for e in cfg.relatedness if e.kind == "estimate"]
    if not specs:
        raise ConfigError(
            "no edge to estimate: the config lists no edge of kind 'estimate'; name one with "
            "--source and --target"
        )
    return specs


def _from_labels(
    config: Path, overrides: list[str], source: str | None, target: str | None, alpha: float
) -> list[Relatedness]:
    from dmtl.build.data import build_experiment, load_sources
    from dmtl.build.edges import edge_specs
    from dmtl.config import load_config
    from dmtl.knowledge.edges import build_edges

    cfg = load_config(config, overrides)
    specs = _edge_names(cfg, source, target, alpha)
    loaded = load_sources(cfg)
    experiment = build_experiment(cfg.model_copy(update={"relatedness": []}), loaded=loaded)
    offered = [edge for item in loaded for edge in item.knowledge]
    return build_edges(edge_specs(specs), experiment.task_map, offered, experiment.train_labels)


def _from_predictions(
    model: Path,
    config: Path | None,
    inputs: Path | None,
    root: Path | None,
    array: Path | None,
    split: str,
    overrides: list[str],
    source: str | None,
    target: str | None,
    alpha: float,
) -> list[PredictedEdge]:
    from dmtl.cli.app import _resolve_checkpoint
    from dmtl.config import load_config
    from dmtl.inference.predict import input_source
    from dmtl.inference.relatedness import estimate_from_predictions
    from dmtl.inference.runtime import load_predictor

    if split not in ("train", "val", "test", "all"):
        raise ConfigError(f"--split: expected train, val, test or all, got {split!r}")
    cfg = None if config is None else load_config(config, overrides)
    specs = _edge_names(cfg, source, target, alpha)
    predictor = load_predictor(_resolve_checkpoint(model))
    if inputs is not None:
        sources = [input_source(predictor.card, inputs, root=root, array=array)]
    else:
        assert cfg is not None
        sources = _config_inputs(cfg, split, predictor.card)
    pairs = [(spec.source, spec.target) for spec in specs]
    alphas = {spec.alpha for spec in specs}
    if len(alphas) > 1:
        raise ConfigError("the config's 'estimate' edges differ in alpha; give one edge")
    with quiet_lightning():
        return estimate_from_predictions(predictor, sources, pairs, alpha=alphas.pop())


def _config_inputs(cfg: Config, split: str, card: ModelCard) -> list[Source]:
    """The rows of ``split`` of every source of ``cfg``, prepared as the config says (their
    normalisation must be the model's)."""
    import numpy as np

    from dmtl.build.data import load_sources

    out = []
    for item in load_sources(cfg):
        name = {"train": item.config.train_split, "val": item.config.val_split,
                "test": item.config.test_split}.get(split)
        rows = np.arange(len(item.source)) if split == "all" else np.flatnonzero(item.split == name)
        given = item.config.input
        for what, mine, theirs in (("mean", given.mean, card.mean), ("std", given.std, card.std)):
            if not _same_statistics(mine, theirs):
                raise DataError(
                    f"source {item.config.name!r}: input {what} {mine} is not the model's "
                    f"{None if theirs is None else list(theirs)}; use the model's own config, "
                    "or --inputs"
                )
        out.append(item.source.subset(rows))
    return out


def _same_statistics(
    given: Sequence[float] | None, model: Sequence[float] | None
) -> bool:
    """Whether two normalisations are the same (one value stands for every channel)."""
    import numpy as np

    if given is None or model is None:
        return given is None and model is None
    try:
        a, b = np.broadcast_arrays(np.asarray(given, float), np.asarray(model, float))
    except ValueError:
        return False
    return bool(np.allclose(a, b))


def _write(edges: list[Relatedness], output: Path, overwrite: bool) -> None:
    """One CSV (one edge, ``output`` ending in .csv) or one per edge in the folder ``output``."""
    if output.suffix.lower() == ".csv":
        if len(edges) > 1:
            raise ConfigError(
                f"--output {output}: {len(edges)} edges are estimated; give a folder, not a "
                ".csv file"
            )
        paths = [output]
    else:
        paths = [output / f"{e.source.name}__{e.target.name}.csv" for e in edges]
        for path in paths:
            check_output_file(path, overwrite)
    for edge, path in zip(edges, paths, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
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
