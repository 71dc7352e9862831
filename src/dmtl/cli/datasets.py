"""``dmtl datasets list|show|export|check``: what is labelled where, before any training."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from dmtl.cli.errors import console, handle_errors
from dmtl.cli.options import Overrides
from dmtl.cli.render import frame_table
from dmtl.errors import ConfigError, DmtlError

if TYPE_CHECKING:  # pandas and torch are imported by the commands that use them
    import pandas as pd

    from dmtl.data.sources import Source

datasets_app = typer.Typer(help="List, inspect, export and check datasets.", no_args_is_help=True)


@datasets_app.command("list")
@handle_errors
def list_datasets() -> None:
    """The built-in datasets and the readers for the paper's datasets."""
    from dmtl.data.builtin import list_builtin
    from dmtl.data.readers import READER_SUMMARIES

    table = Table(title="built-in datasets (dmtl datasets show NAME)")
    for column in ("name", "samples", "splits", "description"):
        table.add_column(column)
    for info in list_builtin():
        splits = ", ".join(f"{k} {v}" for k, v in info.splits.items())
        table.add_row(info.name, str(info.size), splits, info.description)
    console.print(table)
    readers = Table(title="dataset readers (sources: reader: NAME, root: FOLDER)")
    readers.add_column("reader")
    readers.add_column("dataset")
    for name, summary in sorted(READER_SUMMARIES.items()):
        readers.add_row(name, summary)
    console.print(readers)


def _show_sources(sources: list[Source], title: str) -> None:
    import pandas as pd

    from dmtl.data.inspect import class_balance, label_counts, task_overlap

    counts = pd.concat([label_counts(s) for s in sources], ignore_index=True)
    console.print(frame_table(_per_task(sources), title=f"{title}: samples labelled per task"))
    binary = counts[counts["kind"] == "binary_set"]
    if len(binary):
        console.print(
            frame_table(
                binary.drop(columns=["kind"]), title="binary-set labels: observed and positive"
            )
        )
    overlap = task_overlap(sources)
    total = overlap[overlap["source"] == "total"]
    mirrored = total.rename(columns={"task_a": "task_b", "task_b": "task_a"})
    order = list(dict.fromkeys(total["task_a"]))
    matrix = (
        pd.concat([total, mirrored])
        .drop_duplicates(["task_a", "task_b"])
        .pivot(index="task_a", columns="task_b", values="both")
        .reindex(index=order, columns=order)
        .fillna(0)
        .astype(int)
    )
    matrix.index.name = "task"
    console.print(
        frame_table(matrix.reset_index(), title="overlap: samples labelled for both tasks")
    )
    for source in sources:
        for task in source.tasks:
            if task.kind == "categorical":
                frame = class_balance(source, task.name)
                if frame["count"].sum() > 0:
                    console.print(
                        frame_table(frame, title=f"{source.name}: class balance of {task.name}")
                    )


def _per_task(sources: list[Source]) -> pd.DataFrame:
    """Samples per source labelled for each task (any of its labels, for a binary set)."""
    import pandas as pd

    rows = [
        {
            "source": s.name,
            "task": t.name,
            "kind": t.kind,
            "samples": len(s),
            "labelled": int(t.labelled_rows(s.labels[t.name]).sum()),
        }
        for s in sources
        for t in s.tasks
    ]
    return pd.DataFrame(rows)


@datasets_app.command("show")
@handle_errors
def show(
    target: Annotated[str, typer.Argument(help="A built-in dataset name or a YAML config.")],
    set_: Overrides = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the regime (with a config).")] = None,
) -> None:
    """Per source: labelled samples per task and label, overlap between tasks, class balance.

    With a config, the training strata after the label-hiding regime are shown.
    """
    from dmtl.data.builtin import list_builtin, load_builtin
    from dmtl.data.sources import ArraySource

    names = [info.name for info in list_builtin()]
    if target in names:
        dataset = load_builtin(target)
        source = ArraySource(
            target, dataset.tasks, dataset.inputs, dataset.labels, splits=dataset.split
        )
        _show_sources([source], target)
        if dataset.knowledge:
            console.print("domain-knowledge edges: " + ", ".join(e.name for e in dataset.knowledge))
        return
    path = Path(target)
    if not path.is_file():
        raise ConfigError(
            f"{target}: neither a built-in dataset ({', '.join(names)}) nor a config file"
        )
    import pandas as pd

    from dmtl.config import load_config
    from dmtl.data.pipeline import build_experiment

    cfg = load_config(path, set_ or [])
    experiment = build_experiment(cfg, seed)
    _show_sources(experiment.train, f"{cfg.name} (training strata, seed {experiment.seed})")
    for name, record in experiment.records.items():
        regime = record["regime"]
        rows = [
            {"task": t, "before": c["before"], "after": c["after"], "hidden": c["hidden"]}
            for t, c in regime["tasks"].items()
        ]
        console.print(
            frame_table(
                pd.DataFrame(rows), title=f"{name}: regime {regime['regime']} {regime['params']}"
            )
        )
    for edge in experiment.edges:
        console.print(f"edge {edge.name}: table {tuple(edge.table.shape)}")


@datasets_app.command("export")
@handle_errors
def export(
    name: Annotated[str, typer.Argument(help="Built-in dataset name.")],
    out_dir: Annotated[Path, typer.Argument(help="Output folder (images/ + manifest.csv).")],
    split: Annotated[str | None, typer.Option(help="Only this split (train/test).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N samples.")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing export.")
    ] = False,
) -> None:
    """Write a built-in dataset as PNG images plus a manifest, exactly like user data."""
    import numpy as np

    from dmtl.data.builtin import load_builtin
    from dmtl.data.export import export_source
    from dmtl.data.sources import ArraySource

    dataset = load_builtin(name)
    source = ArraySource(name, dataset.tasks, dataset.inputs, dataset.labels, splits=dataset.split)
    if split is not None:
        source = source.subset(np.flatnonzero(dataset.split == split))
    if limit is not None:
        source = source.subset(np.arange(min(limit, len(source))))
    path = export_source(source, out_dir, overwrite=overwrite)
    console.print(f"{len(source)} samples of {name} exported: [bold]{path}[/]")


@datasets_app.command("check")
@handle_errors
def check(
    config: Annotated[Path, typer.Argument(help="YAML config whose sources to check.")],
    set_: Overrides = None,
) -> None:
    """Check every source's data folder against its reader or manifest before any training.

    Reports counts per task, what the reader dropped (unknown codes), missing or corrupt
    files, and which binary labels (e.g. AUs) each source observes.
    """
    import pandas as pd

    from dmtl.config import load_config
    from dmtl.data.inspect import label_counts
    from dmtl.data.pipeline import declared_tasks, load_source

    cfg = load_config(config, set_ or [])
    problems = 0
    counts: list[pd.DataFrame] = []
    sources: list[Source] = []
    for i, source_cfg in enumerate(cfg.sources):
        try:
            loaded = load_source(i, source_cfg, declared_tasks(cfg))
        except DmtlError as error:
            problems += 1
            # The error already names ``sources.<i>``.
            console.print(f"[red]source {escape(source_cfg.name)!r}: {escape(str(error))}[/]")
            continue
        console.print(
            f"[green]sources.{i} ({escape(source_cfg.name)}): "
            f"{len(loaded.source)} samples readable[/]"
        )
        for reason, count in (loaded.notes.get("dropped") or {}).items():
            console.print(f"  dropped {reason}: {count}")
        for note in loaded.notes.get("notes") or []:
            console.print(f"  note: {note}")
        if loaded.source.skipped_corrupt:
            console.print(f"  [yellow]corrupt images skipped: {loaded.source.skipped_corrupt}[/]")
        counts.append(label_counts(loaded.source))
        sources.append(loaded.source)
    if counts:
        frame = pd.concat(counts, ignore_index=True)
        console.print(frame_table(_per_task(sources), title="samples labelled per task"))
        binary = frame[frame["kind"] == "binary_set"]
        if len(binary):
            observed = binary.assign(observed=binary["labelled"] > 0).pivot_table(
                index=["task", "label"], columns="source", values="observed", aggfunc="max"
            )
            table = observed.map(lambda v: "yes" if v else "-").reset_index()
            console.print(frame_table(table, title="binary labels observed per source (overlap)"))
    if problems:
        console.print(f"[red]{problems} source(s) with problems[/]")
        raise typer.Exit(code=1)
    console.print("[green]all sources readable[/]")
