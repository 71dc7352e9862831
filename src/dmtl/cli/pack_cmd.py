"""``dmtl datasets pack CONFIG -o DIR``: every source of a config as LitData shards."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from dmtl.cli.errors import console, handle_errors
from dmtl.cli.options import Overrides
from dmtl.cli.outputs import check_output_folder
from dmtl.errors import ConfigError

if TYPE_CHECKING:
    from dmtl.config import Config, SourceConfig
    from dmtl.data.shards import Pack

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def folder_name(index: int, name: str) -> str:
    """The sub-folder of a source in the pack: its name when that is a safe file name.

    >>> folder_name(0, "faces"), folder_name(2, "../x")
    ('faces', 'source-2')
    """
    return name if _SAFE_NAME.match(name) else f"source-{index}"


@handle_errors
def pack(
    config: Annotated[Path, typer.Argument(help="YAML config whose sources to pack.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder of the pack (one "
                                      "sub-folder per source).")],
    set_: Overrides = None,
    rows_per_part: Annotated[int, typer.Option(help="Rows per resumable part.")] = 4096,
    chunk_mb: Annotated[float, typer.Option(help="Target chunk size in MB.")] = 64.0,
) -> None:
    """Pack every source of CONFIG as LitData chunks: each row's image file bytes (or array
    row), its encoded labels, split and id, plus the label table and checksums.

    Run it again after an interruption: finished sources are kept and an unfinished one
    goes on from its last finished part. Then point a source at its folder with
    ``shards: DIR/<source>`` (printed at the end).
    """
    from dmtl.config import load_config

    cfg = load_config(config, set_ or [])
    check_output_folder(out, "--out")
    if rows_per_part < 1 or chunk_mb <= 0:
        raise ConfigError("--rows-per-part must be >= 1 and --chunk-mb > 0")
    try:
        packs = [
            _pack_one(cfg, i, out / folder_name(i, s.name), rows_per_part, chunk_mb)
            for i, s in enumerate(cfg.sources)
        ]
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted: the finished parts are kept in {escape(str(out))}; "
                      "run the same command again to finish the pack[/]")
        raise typer.Exit(code=130) from None
    console.print(f"[green]packed {len(packs)} source(s) into {escape(str(out))}[/]; "
                  "use them as:")
    lines = ["sources:"]
    for source_cfg, packed in zip(cfg.sources, packs, strict=True):
        lines += [f"  - name: {source_cfg.name}", f"    shards: {packed.location}"]
    console.print(escape("\n".join(lines)), soft_wrap=True, highlight=False)


def _pack_one(cfg: Config, index: int, folder: Path, rows_per_part: int, chunk_mb: float
              ) -> Pack:
    """Load ``sources.<index>`` as training would (no cache) and pack it, with a progress bar."""
    from dmtl.build.data import declared_tasks, load_source
    from dmtl.data.shards import pack_source

    source_cfg: SourceConfig = cfg.sources[index]
    if source_cfg.shards is not None:
        raise ConfigError([(f"sources.{index}.shards", "this source is already packed")])
    plain = source_cfg.model_copy(
        update={"input": source_cfg.input.model_copy(update={"cache": "none"})}
    )
    item = load_source(index, plain, declared_tasks(cfg))
    with _progress(f"packing sources.{index} ({source_cfg.name})", len(item.source)) as advance:
        return pack_source(
            item.source, folder, knowledge=item.knowledge, rows_per_part=rows_per_part,
            chunk_bytes=int(chunk_mb * 1e6), progress=advance,
        )


@contextmanager
def _progress(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """``advance(rows)`` of a rich progress bar on a terminal, else a line per tenth."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    if console.is_terminal:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn())
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task(escape(label), total=total)
            yield lambda k: bar.advance(task, k)
        return
    step, done = max(total // 10, 1), [0]

    def advance(k: int) -> None:
        before = done[0]
        done[0] += k
        if before // step != done[0] // step or done[0] == total:
            console.print(f"  {escape(label)}: {done[0]}/{total} rows")

    yield advance
