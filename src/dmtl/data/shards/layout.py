"""The on-disk layout of a packed source, and opening one with every check done once.

A source packed by :func:`dmtl.data.shards.pack_source` is one folder (local, or an
object-store URL such as ``s3://bucket/faces``) holding:

- LitData's chunks ``chunk-*.bin`` and their ``index.json`` (a LitData dataset: one item
  per row, ``{"row", "id", "split", "ext", "crc", "data", "labels"}``; ``data`` is the
  image file's bytes as stored on disk, or the array row);
- ``dmtl-labels.parquet``: the label table (row, id, split and each task's encoded
  labels), read up front so that the split, the regime and the strata are built without
  streaming any input;
- ``dmtl-source.json``, written last: the kind (``image``/``array``), the tasks, the
  knowledge edges a built-in dataset brings, the row count, and the size and SHA-256 of
  every chunk and of the label table. A folder without it is an unfinished pack.

Opening checks, in one line per problem: the meta file parses and has its fields, LitData's
index lists the same chunks, every local chunk has its recorded size, the label table has
its checksum and one row per item. A chunk garbled in place keeps its size: each read then
checks the row number and the CRC-32 of the item's bytes, and ``dmtl datasets check``
re-hashes every chunk.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dmtl.core.relatedness import Relatedness
from dmtl.core.tasks import Task, task_from_dict
from dmtl.errors import DataError, MissingDependencyError

FORMAT = "dmtl-shards"
VERSION = 1
META_FILE = "dmtl-source.json"
LABELS_FILE = "dmtl-labels.parquet"
INDEX_FILE = "index.json"
PROGRESS_DIR = ".dmtl-pack"
"""Where an unfinished pack keeps its finished parts (removed once the pack is complete)."""
STREAM_EXTRA = "pip install 'dmtl[stream]'"
_URL = re.compile(r"^[a-z][a-z0-9+.-]+:", re.IGNORECASE)
_SAFE_FORMATS = ("int", "str", "bytes", "no_header_numpy", "numpy")
"""LitData leaf formats a pack may use: none of them unpickles."""


def is_url(location: str | os.PathLike[str]) -> bool:
    """Whether ``location`` is an object-store URL (``s3://...``, ``gs://...``, ``local:...``)
    rather than a local folder."""
    return bool(_URL.match(str(location)))  # one letter before ':' is a Windows drive


def litdata() -> Any:
    """The ``litdata`` package (the ``stream`` extra), with its PyPI version check off."""
    os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")
    try:
        import litdata as module
    except ImportError:
        raise MissingDependencyError(
            f"packed sources (shards) need LitData, which is not installed; {STREAM_EXTRA}"
        ) from None
    return module


@dataclass(frozen=True)
class Chunk:
    """One chunk file: its name, its rows (``first`` .. ``first + rows - 1``), size, SHA-256."""

    file: str
    first: int
    rows: int
    size: int
    sha256: str


@dataclass(frozen=True)
class Pack:
    """A packed source, opened and checked: where it is, what it holds."""

    location: str
    """The folder or URL as given (named in messages)."""
    folder: Path
    """A local folder holding the meta, index and label files (the pack itself, or their
    downloaded copies for a URL)."""
    name: str
    kind: str
    rows: int
    tasks: tuple[Task, ...]
    channels: int | None
    chunks: tuple[Chunk, ...]
    labels_sha256: str
    knowledge: tuple[dict[str, Any], ...] = ()

    @property
    def remote(self) -> bool:
        return is_url(self.location)

    def chunk_of(self, row: int) -> Chunk:
        """The chunk holding ``row``."""
        starts = [c.first for c in self.chunks]
        return self.chunks[int(np.searchsorted(starts, row, side="right")) - 1]

    def edges(self) -> list[Relatedness]:
        """The knowledge edges stored with the pack (a built-in dataset's tables)."""
        by_name = {t.name: t for t in self.tasks}
        return [
            Relatedness(by_name[e["source"]], by_name[e["target"]], e["table"])
            for e in self.knowledge
        ]


def sha256_of(path: Path, block: int = 1 << 20) -> str:
    """The SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while data := handle.read(block):
            digest.update(data)
    return digest.hexdigest()


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON atomically (a temporary file, then a rename): never half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from ``path``; one line naming the file otherwise."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: {what} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        problem = " ".join(str(error).split())
        raise DataError(
            f"{path}: {what} is corrupt or truncated ({problem}); pack the source again"
        ) from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: {what} is not a JSON object; pack the source again")
    return data


def open_pack(location: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None
              ) -> Pack:
    """Open and check a packed source (a local folder, or a URL whose meta, index and label
    files are downloaded to ``cache_dir``). Raises :class:`DataError` with one line."""
    location = str(location)
    folder = _local_folder(location, None if cache_dir is None else str(cache_dir))
    stamp = tuple(_stamp(folder / name) for name in (META_FILE, INDEX_FILE, LABELS_FILE))
    pack = _open_checked(location, folder, stamp)
    if not pack.remote:
        _check_chunk_files(pack)  # cheap (one stat per chunk): every time
    return pack


def _stamp(path: Path) -> tuple[int, int]:
    try:
        status = path.stat()
    except OSError:
        return (-1, -1)
    return (status.st_mtime_ns, status.st_size)


@functools.lru_cache(maxsize=32)
def _open_checked(location: str, folder: Path, stamp: tuple[tuple[int, int], ...]) -> Pack:
    """The pack's meta, index and label checksum checked (once per version of its files)."""
    meta = read_json(folder / META_FILE, f"the pack's {META_FILE}")
    pack = _pack_from_meta(location, folder, meta)
    _check_index(pack)
    if not (folder / LABELS_FILE).is_file():
        raise DataError(f"{location}/{LABELS_FILE}: the label table is missing; pack again")
    if sha256_of(folder / LABELS_FILE) != pack.labels_sha256:
        raise DataError(
            f"{location}/{LABELS_FILE}: the label table does not match its checksum "
            f"(changed or truncated); pack the source again"
        )
    return pack


def _local_folder(location: str, cache_dir: str | None) -> Path:
    """The folder holding the pack's small files: the pack itself, or a download of them."""
    if not is_url(location):
        folder = Path(location)
        if not folder.is_dir():
            raise DataError(f"{location}: shard folder not found")
        if not (folder / META_FILE).is_file():
            if (folder / PROGRESS_DIR).is_dir():
                raise DataError(
                    f"{location}: an unfinished pack (interrupted?); run `dmtl datasets pack` "
                    "again to finish it"
                )
            raise DataError(f"{location}: not a packed source (no {META_FILE}); write one "
                            "with `dmtl datasets pack`")
        return folder
    return _download_small_files(location, cache_dir)


@functools.lru_cache(maxsize=32)
def _download_small_files(url: str, cache_dir: str | None) -> Path:
    """Download the meta, index and label files of the pack at ``url`` (LitData's
    downloaders: s3, gs, azure, ...) into a folder of ``cache_dir``."""
    litdata()
    from litdata.streaming.downloader import get_downloader

    base = Path(cache_dir) if cache_dir is not None else Path.home() / ".cache" / "dmtl"
    folder = base / "shards" / hashlib.sha256(url.encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    downloader = get_downloader(url, str(folder), [])
    for name in (META_FILE, INDEX_FILE, LABELS_FILE):
        target = folder / name
        target.unlink(missing_ok=True)
        try:
            downloader.download_file(f"{url.rstrip('/')}/{name}", str(target))
        except Exception as error:  # each store's client raises its own types
            problem = " ".join(str(error).split())[:200]
            raise DataError(
                f"{url}/{name}: cannot download ({type(error).__name__}: {problem})"
            ) from None
    return folder


def _field(meta: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: Path) -> Any:
    value = meta.get(key)
    if not isinstance(value, kind):
        raise DataError(f"{where}: field {key!r} is missing or malformed; pack the source again")
    return value


def _pack_from_meta(location: str, folder: Path, meta: Mapping[str, Any]) -> Pack:
    where = folder / META_FILE
    if meta.get("format") != FORMAT:
        raise DataError(f"{where}: not a dmtl pack (format {meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise DataError(
            f"{where}: pack version {meta.get('version')!r}; this dmtl reads version {VERSION}"
        )
    kind = _field(meta, "kind", str, where)
    if kind not in ("image", "array"):
        raise DataError(f"{where}: kind {kind!r}, expected 'image' or 'array'")
    try:
        tasks = tuple(task_from_dict(t) for t in _field(meta, "tasks", list, where))
        chunks, first = [], 0
        for c in _field(meta, "chunks", list, where):
            chunks.append(Chunk(str(c["file"]), first, int(c["rows"]), int(c["bytes"]),
                                str(c["sha256"])))
            first += chunks[-1].rows
    except (KeyError, TypeError, ValueError) as error:
        raise DataError(f"{where}: malformed ({error}); pack the source again") from None
    rows = _field(meta, "rows", int, where)
    if first != rows:
        raise DataError(f"{where}: the chunks hold {first} rows, the pack says {rows}")
    channels = meta.get("channels")
    return Pack(
        location, folder, _field(meta, "name", str, where), kind, rows, tasks,
        None if channels is None else int(channels), tuple(chunks),
        _field(meta, "labels_sha256", str, where),
        tuple(_field(meta, "knowledge", list, where)),
    )


def _check_index(pack: Pack) -> None:
    """LitData's ``index.json`` lists the pack's chunks, with its row counts, and no leaf that
    unpickles."""
    where = f"{pack.location}/{INDEX_FILE}"
    index = read_json(pack.folder / INDEX_FILE, "LitData's chunk index")
    try:
        listed = [(str(c["filename"]), int(c["chunk_size"])) for c in index["chunks"]]
        formats = [str(f) for f in index["config"]["data_format"]]
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{where}: malformed chunk index; pack the source again") from None
    expected = [(c.file, c.rows) for c in pack.chunks]
    if listed != expected:
        raise DataError(
            f"{where}: lists {len(listed)} chunk(s) of {sum(n for _, n in listed)} rows, the "
            f"pack {len(expected)} of {pack.rows}; the pack is inconsistent: pack it again"
        )
    unsafe = [f for f in formats if f.split(":", 1)[0] not in _SAFE_FORMATS]
    if unsafe:
        raise DataError(
            f"{where}: item format {unsafe[0]!r} is not one dmtl writes (it never unpickles "
            "a data file)"
        )


def _check_chunk_files(pack: Pack) -> None:
    """Every chunk of a local pack exists with its recorded size (one line for all)."""
    missing, resized = [], []
    for chunk in pack.chunks:
        path = pack.folder / chunk.file
        if not path.is_file():
            missing.append(chunk.file)
        elif path.stat().st_size != chunk.size:
            resized.append(f"{chunk.file} ({path.stat().st_size} bytes, expected {chunk.size})")
    if missing:
        raise DataError(
            f"{pack.location}: {len(missing)} of {len(pack.chunks)} chunk file(s) missing "
            f"(first: {missing[0]}); copy the whole folder or pack the source again"
        )
    if resized:
        raise DataError(
            f"{pack.location}: {len(resized)} chunk file(s) changed size, first {resized[0]}; "
            "the pack is truncated or corrupt: pack the source again"
        )


def corrupt_chunks(pack: Pack, progress: Any = None) -> list[str]:
    """Names of the chunks whose SHA-256 differs from the pack's record (local packs; a
    URL's chunks are checked as they are read). ``progress(rows)`` after each chunk."""
    bad = []
    for chunk in pack.chunks:
        if not pack.remote and sha256_of(pack.folder / chunk.file) != chunk.sha256:
            bad.append(chunk.file)
        if progress is not None:
            progress(chunk.rows)
    return bad


def read_label_table(pack: Pack) -> tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray]]:
    """``(ids, splits or None, encoded labels per task)`` of every row, from the label table."""
    import pyarrow.parquet as pq

    where = f"{pack.location}/{LABELS_FILE}"
    try:
        table = pq.read_table(pack.folder / LABELS_FILE)
    except Exception as error:  # pyarrow raises several types for broken files
        raise DataError(f"{where}: unreadable label table ({type(error).__name__})") from None
    columns = set(table.column_names)
    needed = {"row", "id", "split", *(f"label:{t.name}" for t in pack.tasks)}
    if not needed <= columns or table.num_rows != pack.rows:
        raise DataError(
            f"{where}: expected {pack.rows} rows with columns {sorted(needed)}, found "
            f"{table.num_rows} rows with {sorted(columns)}"
        )
    if not np.array_equal(table.column("row").to_numpy(), np.arange(pack.rows)):
        raise DataError(f"{where}: the rows are not numbered 0..{pack.rows - 1} in order")
    ids = np.asarray(table.column("id").to_pylist(), dtype=object)
    split_values = table.column("split").to_pylist()
    splits = None if all(s is None for s in split_values) else np.asarray(split_values, object)
    labels = {t.name: _label_column(table.column(f"label:{t.name}")) for t in pack.tasks}
    return ids, splits, labels


def _label_column(column: Any) -> np.ndarray:
    """A parquet column of encoded labels: scalars ``(N,)`` or fixed-size lists ``(N, K)``."""
    import pyarrow as pa

    column = column.combine_chunks()
    if pa.types.is_fixed_size_list(column.type):
        width = column.type.list_size
        return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), width)
    return column.to_numpy(zero_copy_only=False)


def chunk_summary(chunks: Sequence[Chunk]) -> str:
    """``N chunks, X MB`` for messages."""
    return f"{len(chunks)} chunk(s), {sum(c.size for c in chunks) / 1e6:.1f} MB"
