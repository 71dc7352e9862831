"""Packing a source into LitData chunks, resumably (the layout: :mod:`.layout`).

The rows are written in *parts* of ``rows_per_part`` consecutive rows, one LitData
``BinaryWriter`` each, in one process and in row order (so item ``i`` of the LitData
dataset is row ``i`` of the source). A finished part leaves its chunk list in
``.dmtl-pack/part-<k>.json``; an interrupted pack starts again at the first part without
one (its stale chunks are deleted first). Once every part is done: LitData's
``index.json`` (the parts' chunk lists in order), the label table, then
``dmtl-source.json`` with every checksum, written last: its presence marks the source
complete, and a complete source is never rewritten.
"""

from __future__ import annotations

import math
import shutil
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dmtl.core.relatedness import Relatedness
from dmtl.data.shards.layout import (
    FORMAT,
    INDEX_FILE,
    LABELS_FILE,
    META_FILE,
    PROGRESS_DIR,
    VERSION,
    Pack,
    litdata,
    open_pack,
    read_json,
    sha256_of,
    write_json,
)
from dmtl.data.sources import ArraySource, ImageSource, Source
from dmtl.errors import DataError, OutputError

ROWS_PER_PART = 4096
"""Rows per resumable part (a part is rewritten whole after an interruption)."""
CHUNK_BYTES = 64 * 2**20
"""Target chunk size (LitData's default is 64 MB)."""

Progress = Callable[[int], None]


def pack_source(
    source: Source,
    folder: str | Path,
    *,
    knowledge: Sequence[Relatedness] = (),
    rows_per_part: int = ROWS_PER_PART,
    chunk_bytes: int = CHUNK_BYTES,
    progress: Progress | None = None,
) -> Pack:
    """Write ``source`` (an :class:`ImageSource` or :class:`ArraySource`, before any split) to
    ``folder``; go on from where an interrupted pack of the same source stopped; leave a
    complete pack as it is. ``progress(rows)`` is called as rows are written (or found
    written). Returns the opened :class:`~dmtl.data.shards.layout.Pack`."""
    folder = Path(folder)
    if (folder / META_FILE).is_file():
        pack = open_pack(folder)
        _check_same_rows(pack.rows, len(source), folder)
        if progress is not None:
            progress(len(source))
        return pack
    if len(source) == 0:
        raise DataError(f"source {source.name!r} is empty: nothing to pack")
    folder.mkdir(parents=True, exist_ok=True)
    plan = _plan(source, folder, rows_per_part, chunk_bytes)
    (folder / INDEX_FILE).unlink(missing_ok=True)  # a merge that was not followed by the meta
    chunks: list[dict[str, Any]] = []
    for part in range(plan["parts"]):
        rows = np.arange(part * rows_per_part, min((part + 1) * rows_per_part, len(source)))
        chunks += _part(source, folder, part, rows, len(chunks), chunk_bytes, progress)
    return _finish(source, folder, chunks, knowledge)


def _check_same_rows(packed: int, rows: int, folder: Path) -> None:
    if packed != rows:
        raise OutputError(
            f"{folder}: already holds a complete pack of {packed} rows, the source has {rows}; "
            "choose another folder or remove it"
        )


def _fingerprint(source: Source) -> str:
    """What identifies the rows being packed (kind, count, ids), to refuse resuming a pack
    of other data."""
    digest = zlib.crc32("\n".join(map(str, source.ids)).encode())
    return f"{type(source).__name__}:{len(source)}:{digest:08x}"


def _plan(source: Source, folder: Path, rows_per_part: int, chunk_bytes: int) -> dict[str, Any]:
    """The parts of this pack; the saved plan of an interrupted pack must match."""
    if rows_per_part < 1:
        raise DataError(f"rows_per_part must be >= 1, got {rows_per_part}")
    plan = {
        "fingerprint": _fingerprint(source), "rows": len(source), "rows_per_part": rows_per_part,
        "chunk_bytes": chunk_bytes, "parts": math.ceil(len(source) / rows_per_part),
    }
    progress_dir = folder / PROGRESS_DIR
    saved_path = progress_dir / "plan.json"
    if saved_path.is_file():
        saved = read_json(saved_path, "the plan of an unfinished pack")
        if saved != plan:
            raise OutputError(
                f"{folder}: holds an unfinished pack of other data or settings "
                f"({saved.get('fingerprint')}, now {plan['fingerprint']}); remove the folder "
                "or choose another"
            )
        return plan
    if any(p.name != PROGRESS_DIR for p in folder.iterdir()):
        raise OutputError(f"{folder}: not empty and not a pack; choose an empty folder")
    progress_dir.mkdir(exist_ok=True)
    write_json(saved_path, plan)
    return plan


def _part(
    source: Source, folder: Path, part: int, rows: np.ndarray, first_chunk: int,
    chunk_bytes: int, progress: Progress | None,
) -> list[dict[str, Any]]:
    """Write one part (or read back the chunk list of a finished one)."""
    done = folder / PROGRESS_DIR / f"part-{part}.json"
    if done.is_file():
        if progress is not None:
            progress(len(rows))
        return list(read_json(done, "a finished part of the pack")["chunks"])
    for stale in folder.glob("chunk-*.bin"):
        if _chunk_number(stale.name) >= first_chunk:
            stale.unlink()
    litdata()
    from litdata.streaming.writer import BinaryWriter

    writer = BinaryWriter(str(folder), chunk_bytes=chunk_bytes, chunk_index=first_chunk)
    item_of = _items(source)
    for start in range(0, len(rows), 256):
        block = rows[start:start + 256]
        for row, item in zip(block, item_of(block), strict=True):
            writer[int(row)] = item
        if progress is not None:
            progress(len(block))
    writer.done()
    written = folder / f"{writer.rank}.{INDEX_FILE}"
    chunks = list(read_json(written, "the chunk list LitData wrote")["chunks"])
    write_json(done, {"chunks": chunks, "config": read_json(written, "")["config"]})
    written.unlink()
    return chunks


def _chunk_number(name: str) -> int:
    """``k`` of LitData's ``chunk-<rank>-<k>.bin``."""
    try:
        return int(name.split(".")[0].rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def _items(source: Source) -> Callable[[np.ndarray], list[dict[str, Any]]]:
    """The LitData items of rows of ``source``: bytes of image files, rows of arrays."""
    labels = source.labels
    splits = source.splits

    def common(row: int, data: bytes | np.ndarray, ext: str) -> dict[str, Any]:
        raw = data if isinstance(data, bytes) else np.ascontiguousarray(data).tobytes()
        return {
            "row": row, "id": str(source.ids[row]),
            "split": "" if splits is None else str(splits[row]), "ext": ext,
            "crc": zlib.crc32(raw), "data": data,
            "labels": {k: np.atleast_1d(np.asarray(v[row])) for k, v in labels.items()},
        }

    if isinstance(source, ImageSource):
        def images(rows: np.ndarray) -> list[dict[str, Any]]:
            out = []
            for row in rows.tolist():
                path = Path(source.paths[row])
                try:
                    data = path.read_bytes()
                except OSError as error:
                    raise DataError(f"{path}: cannot read the image file ({error})") from None
                out.append(common(row, data, path.suffix.lower()))
            return out
        return images
    if isinstance(source, ArraySource):
        def arrays(rows: np.ndarray) -> list[dict[str, Any]]:
            block = np.asarray(source.array[source.index[rows]])
            return [common(int(r), np.ascontiguousarray(x), "") for r, x in zip(rows, block,
                                                                                strict=True)]
        return arrays
    raise DataError(f"source {source.name!r}: only image-file and array sources can be packed, "
                    f"not {type(source).__name__}")


def _finish(
    source: Source, folder: Path, chunks: list[dict[str, Any]], knowledge: Sequence[Relatedness]
) -> Pack:
    """LitData's index of every part's chunks, the label table, then the meta (last)."""
    progress_dir = folder / PROGRESS_DIR
    config = read_json(progress_dir / "part-0.json", "the first finished part")["config"]
    write_json(folder / INDEX_FILE, {"chunks": chunks, "config": config})
    _write_label_table(source, folder / LABELS_FILE)
    meta = {
        "format": FORMAT, "version": VERSION, "name": source.name,
        "kind": "image" if isinstance(source, ImageSource) else "array",
        "rows": len(source), "tasks": [t.to_dict() for t in source.tasks],
        "channels": source.channels if isinstance(source, ImageSource) else None,
        "knowledge": [
            {"source": e.source.name, "target": e.target.name, "table": e.table.tolist()}
            for e in knowledge
        ],
        "chunks": [
            {"file": c["filename"], "rows": int(c["chunk_size"]),
             "bytes": (folder / c["filename"]).stat().st_size,
             "sha256": sha256_of(folder / c["filename"])}
            for c in chunks
        ],
        "labels_sha256": sha256_of(folder / LABELS_FILE),
    }
    write_json(folder / META_FILE, meta)
    shutil.rmtree(progress_dir)
    return open_pack(folder)


def _write_label_table(source: Source, path: Path) -> None:
    """Row, id, split and each task's encoded labels (``label:<task>``) as parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(source)
    columns: dict[str, Any] = {
        "row": pa.array(np.arange(n, dtype=np.int64)),
        "id": pa.array([str(i) for i in source.ids], pa.string()),
        "split": pa.array(
            [None] * n if source.splits is None else [str(s) for s in source.splits], pa.string()
        ),
    }
    for name, values in source.labels.items():
        values = np.asarray(values)
        if values.ndim == 2:
            flat = pa.array(values.reshape(-1))
            columns[f"label:{name}"] = pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
        else:
            columns[f"label:{name}"] = pa.array(values)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(pa.table(columns), tmp)
    tmp.replace(path)
