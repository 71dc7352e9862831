"""``dmtl datasets list|show|export|check``: what is labelled where, before any training."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from dmtl.cli.errors import console, handle_errors
from dmtl.cli.options import Overrides
from dmtl.cli.outputs import check_output_folder
from dmtl.cli.pack_cmd import pack
from dmtl.cli.render import frame_table
from dmtl.errors import ConfigError, DmtlError, OutputError

if TYPE_CHECKING:  # pandas and torch are imported by the commands that use them
    import pandas as pd

    from dmtl.build.data import LoadedSource
    from dmtl.config import Config, SourceConfig
    from dmtl.core.tasks import Task
    from dmtl.data.sources import ImageCheck, Source

datasets_app = typer.Typer(
    help="List, inspect, export, check and pack datasets.", no_args_is_help=True
)
datasets_app.command("pack")(pack)


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

    from dmtl.build.data import build_experiment
    from dmtl.config import load_config

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
    from dmtl.data.export import MANIFEST_NAME, export_source
    from dmtl.data.sources import ArraySource

    check_output_folder(out_dir, "OUT_DIR")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        what = MANIFEST_NAME if (out_dir / MANIFEST_NAME).exists() else "files"
        raise OutputError(
            f"{out_dir} already holds {what}; pass --overwrite to replace an export, or "
            "choose an empty folder"
        )
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
    """Check every source before any training: its files, every image decoded, its labels.

    Reports counts per task, what a reader dropped (unknown codes), missing files, every
    image that does not decode (file and manifest row; decoded in parallel threads), which
    binary labels (e.g. AUs) each source observes, a source all of whose rows train (no
    split column), and what a run would warn about (no validation or test data, a task
    without labels, an unknown trainer.monitor). Exit status 1 if a source cannot be read
    or an image does not decode.
    """

    from dmtl.build.data import declared_tasks
    from dmtl.config import load_config

    cfg = load_config(config, set_ or [])
    declared = declared_tasks(cfg)
    problems = unreadable = odd_sized = 0
    loaded: list[LoadedSource] = []
    for i, source_cfg in enumerate(cfg.sources):
        item = _check_source(i, source_cfg, declared)
        if item is None:
            problems += 1
            continue
        found_unreadable, found_odd = _check_images(i, item)
        unreadable, odd_sized = unreadable + found_unreadable, odd_sized + found_odd
        loaded.append(item)
    if loaded:
        _print_label_tables([item.source for item in loaded])
    if not problems and loaded:
        problems += _check_experiment(cfg, loaded)
    if problems or unreadable or odd_sized:
        parts = [f"{problems} source(s) with problems"] if problems else []
        parts += [f"{unreadable} unreadable image(s)"] if unreadable else []
        parts += [f"{odd_sized} image(s) of another size"] if odd_sized else []
        console.print(f"[red]{', '.join(parts)}[/]")
        raise typer.Exit(code=1)
    console.print("[green]all sources readable[/]")


def _check_source(i: int, cfg: SourceConfig, declared: dict[str, Task]) -> LoadedSource | None:
    """Load ``sources.<i>`` and print what was found (``None``, with a red line, if it fails)."""
    from dmtl.build.data import load_source, split_note

    try:
        item = load_source(i, cfg, declared)
    except DmtlError as error:
        # The error already names ``sources.<i>``.
        message = f"source {cfg.name!r}: {error}"
        console.print(f"[red]{escape(message)}[/]", soft_wrap=True)
        return None
    name = escape(cfg.name)
    console.print(f"[green]sources.{i} ({name}): {len(item.source)} samples readable[/]")
    for reason, count in (item.notes.get("dropped") or {}).items():
        console.print(f"  dropped {escape(str(reason))}: {count}")
    for note in item.notes.get("notes") or []:
        console.print(f"  note: {escape(str(note))}")
    note = split_note(item)
    if note is not None:
        console.print(f"  [yellow]{escape(note)}[/]", soft_wrap=True)
    return item


def _check_images(i: int, item: LoadedSource) -> tuple[int, int]:
    """Decode every image of a loaded source; print the unreadable ones and (when images are
    not resized) those of another size than most; return the two counts."""
    from dmtl.data.sources import ImageSource

    source = item.source
    if source.skipped_corrupt:
        console.print(
            f"  [yellow]corrupt images skipped (skip_corrupt): {source.skipped_corrupt}, "
            f"e.g. {escape(source.skipped_paths[0])}[/]",
            soft_wrap=True,
        )
    if item.config.shards is not None:
        return _check_shards(i, item), 0
    if not isinstance(source, ImageSource):
        return 0, 0  # no image files
    found = _decode_with_progress(f"sources.{i} ({item.config.name})", source)
    for image in found.unreadable[:_SHOW_UNREADABLE]:
        console.print(
            f"  [red]unreadable: {escape(image.path)} ({escape(image.where)}): "
            f"{escape(image.problem)}[/]",
            soft_wrap=True,
        )
    unreadable = len(found.unreadable)
    if unreadable > _SHOW_UNREADABLE:
        console.print(f"  [red]... and {unreadable - _SHOW_UNREADABLE} more unreadable images[/]")
    if unreadable:
        console.print(f"  [red]{unreadable} of {len(source)} images do not decode[/]")
    else:
        console.print(f"  all {len(source)} images decode")
    _print_odd_sized(i, found, len(source))
    return unreadable, len(found.odd_sized)


def _print_odd_sized(i: int, found: ImageCheck, total: int) -> None:
    """The images whose size is not the one most images have (images not resized)."""
    if not found.odd_sized or found.common_size is None:
        return
    height, width = found.common_size
    for image in found.odd_sized[:_SHOW_UNREADABLE]:
        console.print(
            f"  [red]other size: {escape(image.path)} ({escape(image.where)}): "
            f"{image.size[0]}x{image.size[1]}, expected {height}x{width} (height x width)[/]",
            soft_wrap=True,
        )
    if len(found.odd_sized) > _SHOW_UNREADABLE:
        console.print(f"  [red]... and {len(found.odd_sized) - _SHOW_UNREADABLE} more[/]")
    console.print(
        f"  [red]{len(found.odd_sized)} of {total} images are not {height}x{width}, the size "
        f"of the others; images are not resized without input.image_size: set "
        f"sources.{i}.input.image_size to resize every image, or resize these[/]",
        soft_wrap=True,
    )


_SHOW_UNREADABLE = 50


def _check_shards(i: int, item: LoadedSource) -> int:
    """A packed source: every chunk against its checksum, then every row read (and decoded).
    Returns the number of bad chunks and rows."""
    from dmtl.cli.pack_cmd import _progress
    from dmtl.data.shards import ShardSource
    from dmtl.data.shards.layout import corrupt_chunks

    source = item.source
    assert isinstance(source, ShardSource)
    label = f"sources.{i} ({item.config.name})"
    with _progress(f"checksums of {label}", source.pack.rows) as advance:
        bad = corrupt_chunks(source.pack, advance)
    for name in bad:
        console.print(f"  [red]chunk {escape(name)} does not match its checksum[/]")
    if bad:  # reading its rows would repeat the same finding row by row
        return len(bad)
    with _progress(f"reading {label}", len(source)) as advance:
        found = source.unreadable_rows(advance)
    for _, problem in found[:_SHOW_UNREADABLE]:
        console.print(f"  [red]unreadable: {escape(problem)}[/]", soft_wrap=True)
    what = "chunks match their checksums and all rows read"
    console.print(f"  {len(found)} of {len(source)} rows unreadable" if found else f"  {what}")
    return len(found)


def _decode_with_progress(label: str, source: Source) -> ImageCheck:
    """:func:`~dmtl.data.sources.check_images` with a rich progress bar on a terminal,
    else a plain line every tenth of a large source."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from dmtl.data.sources import check_images

    total = len(source)
    if console.is_terminal:
        columns = (
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task(f"decoding {escape(label)}", total=total)
            return check_images(source, lambda k: bar.advance(task, k))
    step = max(total // 10, 1) if total >= _PLAIN_PROGRESS_FROM else total
    done = 0

    def report(k: int) -> None:
        nonlocal done
        done += k
        if done % step == 0 and done < total:
            console.print(f"  decoded {done}/{total} images of {escape(label)}")

    return check_images(source, report)


_PLAIN_PROGRESS_FROM = 1000
"""Sources with fewer images get no progress lines off a terminal (only the result)."""


def _check_experiment(cfg: Config, loaded: list[LoadedSource]) -> int:
    """Build the run's data as training would; print its warnings. Returns 1 on an error."""
    from dmtl.build.data import build_experiment, experiment_warnings
    from dmtl.training.trainer import check_monitor

    try:
        experiment = build_experiment(cfg, loaded=loaded)
        check_monitor(cfg, experiment.tasks)
    except DmtlError as error:
        console.print(f"[red]{escape(str(error))}[/]", soft_wrap=True)
        return 1
    for line in experiment_warnings(experiment):
        console.print(f"[yellow]warning: {escape(line)}[/]", soft_wrap=True)
    return 0


def _print_label_tables(sources: list[Source]) -> None:
    """Samples labelled per task, and which binary labels each source observes."""
    import pandas as pd

    from dmtl.data.inspect import label_counts

    frame = pd.concat([label_counts(s) for s in sources], ignore_index=True)
    console.print(frame_table(_per_task(sources), title="samples labelled per task"))
    binary = frame[frame["kind"] == "binary_set"]
    if len(binary):
        observed = binary.assign(observed=binary["labelled"] > 0).pivot_table(
            index=["task", "label"], columns="source", values="observed", aggfunc="max"
        )
        table = observed.map(lambda v: "yes" if v else "-").reset_index()
        console.print(frame_table(table, title="binary labels observed per source (overlap)"))
