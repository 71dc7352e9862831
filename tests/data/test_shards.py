"""Packed sources (LitData shards): the same tensors, labels and runs as the original files;
resumable packing; one clear line for a corrupt, truncated or unfinished pack."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from dmtl.build.data import build_experiment
from dmtl.config import load_config
from dmtl.core.tasks import CategoricalTask
from dmtl.data.builtin import load_builtin
from dmtl.data.shards import open_pack, pack_source, shard_source
from dmtl.data.shards.layout import LABELS_FILE, META_FILE, PROGRESS_DIR, corrupt_chunks
from dmtl.data.sources import ArraySource, ImageSource, Source
from dmtl.errors import DataError, OutputError

pytest.importorskip("litdata")


def _digits() -> ArraySource:
    data = load_builtin("digits")
    return ArraySource("digits", data.tasks, data.inputs, data.labels, splits=data.split)


def _image_source(folder: Path, n: int = 40) -> ImageSource:
    """``n`` digit images, JPEG and PNG alternately (both decoders), with a split."""
    digits = _digits()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        pixels = (digits.array[i, 0] * 255 / 16).astype(np.uint8).repeat(4, 0).repeat(4, 1)
        path = folder / f"{i:03d}.{'jpg' if i % 2 else 'png'}"
        Image.fromarray(np.stack([pixels] * 3, -1)).save(path)
        paths.append(path)
    task = CategoricalTask("digit", [str(k) for k in range(10)])
    labels = {"digit": digits.labels["digit"][:n]}
    splits = np.where(np.arange(n) % 4 == 0, "test", "train")
    return ImageSource("img", [task], paths, labels, ids=[p.name for p in paths],
                       splits=splits, image_size=24)


def _same(a: Source, b: Source) -> None:
    rows = np.arange(len(a))
    left, right = a.get_batch(rows), b.get_batch(rows)
    assert torch.equal(left.x, right.x)
    assert left.labels.keys() == right.labels.keys()
    for name in left.labels:
        assert torch.equal(left.labels[name], right.labels[name]) or torch.allclose(
            left.labels[name], right.labels[name], equal_nan=True
        )
    assert list(a.ids) == list(b.ids)
    assert (a.splits is None) == (b.splits is None)
    assert a.splits is None or list(a.splits) == list(b.splits)  # type: ignore[arg-type]


def test_an_array_pack_reads_back_the_same_inputs_labels_and_edges(tmp_path: Path) -> None:
    digits = _digits()
    data = load_builtin("digits")
    pack = pack_source(digits, tmp_path / "digits", knowledge=data.knowledge,
                       rows_per_part=700, chunk_bytes=50_000)
    assert pack.rows == len(digits) and pack.kind == "array" and len(pack.chunks) > 3
    packed = shard_source("digits", tmp_path / "digits")
    _same(digits, packed)
    _same(digits.subset([5, 3, 1000]), packed.subset([5, 3, 1000]))
    [edge] = pack.edges()
    assert torch.equal(edge.table, data.knowledge[0].table)


def test_an_image_pack_decodes_jpeg_and_png_bytes_as_the_files(tmp_path: Path) -> None:
    images = _image_source(tmp_path / "images")
    pack_source(images, tmp_path / "pack", rows_per_part=16, chunk_bytes=4000)
    packed = shard_source("img", tmp_path / "pack", image_size=24, channels=images.channels)
    _same(images, packed)
    grey = shard_source("img", tmp_path / "pack", image_size=24, channels=1)
    assert grey.raw_input(1).shape == (1, 24, 24)


def test_an_interrupted_pack_goes_on_from_its_last_finished_part(tmp_path: Path) -> None:
    digits = _digits()
    written = [0]

    def stop_in_part_three(rows: int) -> None:
        written[0] += rows
        if written[0] > 2 * 500 + 100:
            raise KeyboardInterrupt

    folder = tmp_path / "pack"
    with pytest.raises(KeyboardInterrupt):
        pack_source(digits, folder, rows_per_part=500, chunk_bytes=50_000,
                    progress=stop_in_part_three)
    assert not (folder / META_FILE).exists()
    with pytest.raises(DataError, match="an unfinished pack"):
        open_pack(folder)
    finished = {p.name: p.stat().st_mtime_ns for p in folder.glob("chunk-*.bin")}
    counted: list[int] = []
    pack = pack_source(digits, folder, rows_per_part=500, chunk_bytes=50_000,
                       progress=counted.append)
    assert sum(counted) == len(digits)
    assert not (folder / PROGRESS_DIR).exists()
    # parts 0 and 1 were kept as written; the rest written now
    first_parts = [c.file for c in pack.chunks if c.first + c.rows <= 1000]
    assert first_parts and all(
        (folder / name).stat().st_mtime_ns == finished[name] for name in first_parts
    )
    _same(digits, shard_source("digits", folder))
    # the same pack written in one go holds the same chunks
    straight = pack_source(digits, tmp_path / "straight", rows_per_part=500, chunk_bytes=50_000)
    assert [c.sha256 for c in straight.chunks] == [c.sha256 for c in pack.chunks]
    # a complete pack is left as it is; another source's is refused
    pack_source(digits, folder, rows_per_part=500)
    with pytest.raises(OutputError, match="complete pack of 1797 rows"):
        pack_source(digits.subset(np.arange(10)), folder)


def test_an_unfinished_pack_of_other_data_is_refused(tmp_path: Path) -> None:
    def stop(rows: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pack_source(_digits(), tmp_path / "p", rows_per_part=100, progress=stop)
    with pytest.raises(OutputError, match="unfinished pack of other data"):
        pack_source(_digits().subset(np.arange(50)), tmp_path / "p", rows_per_part=100)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(OutputError, match="not empty and not a pack"):
        pack_source(_digits(), tmp_path / "other")


@pytest.fixture
def packed_digits(tmp_path: Path) -> Path:
    folder = tmp_path / "digits"
    pack_source(_digits(), folder, rows_per_part=600, chunk_bytes=50_000)
    return folder


def _one_line(error: pytest.ExceptionInfo[DataError]) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


def test_a_deleted_chunk_is_one_line(packed_digits: Path) -> None:
    pack = open_pack(packed_digits)
    (packed_digits / pack.chunks[2].file).unlink()
    with pytest.raises(DataError) as error:
        open_pack(packed_digits)
    assert f"1 of {len(pack.chunks)} chunk file(s) missing (first: {pack.chunks[2].file})" in (
        _one_line(error)
    )


@pytest.mark.parametrize("name", ["index.json", META_FILE, LABELS_FILE])
def test_a_truncated_index_file_is_one_line(packed_digits: Path, name: str) -> None:
    path = packed_digits / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError) as error:
        open_pack(packed_digits)
    line = _one_line(error)
    assert name in line and ("corrupt or truncated" in line or "checksum" in line), line


def test_a_garbled_chunk_is_one_line_when_read_and_when_checked(packed_digits: Path) -> None:
    pack = open_pack(packed_digits)
    chunk = pack.chunks[1]
    path = packed_digits / chunk.file
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    middle = len(data) // 2
    data[middle: middle + 2000] = rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))  # same size: only the checksums can tell
    assert corrupt_chunks(open_pack(packed_digits)) == [chunk.file]
    source = shard_source("digits", packed_digits)
    failures = set()
    for row in range(chunk.first, chunk.first + chunk.rows):
        try:
            source.raw_input(row)
        except DataError as error:
            assert "\n" not in str(error) and f"chunk {chunk.file}" in str(error)
            failures.add(row)
    assert failures, "a garbled stretch of 2000 bytes must spoil some rows"
    assert source.raw_input(0) is not None  # other chunks still read


def test_a_pack_read_through_a_url_downloads_to_its_cache(packed_digits: Path,
                                                          tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    remote = shard_source("digits", f"local:{packed_digits}", cache_dir=cache)
    assert remote.pack.remote and cache.is_dir()
    _same(shard_source("digits", packed_digits), remote)


# ---- a config on a pack gives the run of the original files -----------------------------------


def _shards_config(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    source = dict(data["sources"][0])
    for key in ("builtin", "manifest", "root", "array"):
        source.pop(key, None)
    return {**data, "sources": [{**source, "shards": str(folder)}]}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["builtin", "manifest"])
def test_training_on_the_pack_gives_the_run_on_the_original_files(
    kind: str, tmp_path: Path, tiny_data: Callable[..., dict[str, Any]], cli_pack: Any
) -> None:
    from dmtl.training.run import run_training

    data = tiny_data(trainer={"max_epochs": 2, "steps_per_epoch": 4, "batch_size": 32,
                              "num_workers": 1})
    if kind == "manifest":
        data = _manifest_config(data, tmp_path)
    original = tmp_path / "original.yaml"
    original.write_text(yaml.safe_dump(data))
    folder = cli_pack(original, tmp_path / "pack") / "digits"
    packed = tmp_path / "packed.yaml"
    packed.write_text(yaml.safe_dump(_shards_config(data, folder)))
    runs = {}
    for name, path in (("original", original), ("packed", packed)):
        experiment = build_experiment(load_config(path))
        runs[name] = run_training(experiment, tmp_path / name, quiet=True)
    assert runs["packed"].metrics == runs["original"].metrics
    left = torch.load(tmp_path / "original" / "checkpoints" / "last.ckpt", weights_only=False)
    right = torch.load(tmp_path / "packed" / "checkpoints" / "last.ckpt", weights_only=False)
    for key, value in left["state_dict"].items():
        assert torch.equal(value, right["state_dict"][key]), key


def _manifest_config(data: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """The tiny config on digits exported as PNG files plus a manifest (tasks declared)."""
    from dmtl.data.export import export_source

    digits = _digits()
    manifest = export_source(digits.subset(np.arange(400)), tmp_path / "export")
    tasks = [
        {"name": "digit", "type": "categorical", "classes": [str(k) for k in range(10)]},
        {"name": "shape", "type": "binary_set", "labels": list(digits.tasks[1].names)},
        {"name": "ink", "type": "binary_set", "labels": list(digits.tasks[2].names)},
    ]
    source = {**data["sources"][0], "manifest": str(manifest)}
    source.pop("builtin")
    return {**data, "tasks": tasks, "sources": [source], "relatedness": []}


@pytest.fixture
def cli_pack() -> Callable[[Path, Path], Path]:
    """``dmtl datasets pack CONFIG -o OUT`` in this process; returns OUT."""
    from typer.testing import CliRunner

    from dmtl.cli import app

    def run(config: Path, out: Path) -> Path:
        result = CliRunner().invoke(app, ["datasets", "pack", str(config), "-o", str(out),
                                          "--rows-per-part", "500"])
        assert result.exit_code == 0, result.output
        assert "shards:" in result.output
        return out

    return run


def test_a_config_names_shards_as_its_only_kind_and_resolves_a_local_folder(
    tmp_path: Path
) -> None:
    from dmtl.errors import ConfigError

    (tmp_path / "c.yaml").write_text(yaml.safe_dump(
        {"name": "x", "sources": [{"name": "a", "shards": "packs/a"},
                                  {"name": "b", "shards": "s3://bucket/b"}]}))
    config = load_config(tmp_path / "c.yaml")
    assert config.sources[0].shards == str((tmp_path / "packs" / "a").resolve())
    assert config.sources[1].shards == "s3://bucket/b"
    (tmp_path / "d.yaml").write_text(yaml.safe_dump(
        {"name": "x", "sources": [{"name": "a", "shards": "p", "builtin": "digits"}]}))
    with pytest.raises(ConfigError, match=r"exactly one of 'builtin', 'manifest' or 'reader' "
                                          r"\(or 'shards', a packed source\)"):
        load_config(tmp_path / "d.yaml")


def test_the_cli_names_a_broken_pack_in_one_line(packed_digits: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dmtl.cli import app

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"name": "x", "sources": [
        {"name": "digits", "shards": str(packed_digits)}]}))
    ok = CliRunner().invoke(app, ["datasets", "check", str(config)])
    assert ok.exit_code == 0 and "chunks match their checksums and all rows read" in ok.output
    pack = open_pack(packed_digits)
    path = packed_digits / pack.chunks[0].file
    data = bytearray(path.read_bytes())
    data[100:120] = bytes(20)
    path.write_bytes(bytes(data))
    bad = CliRunner().invoke(app, ["datasets", "check", str(config)])
    assert bad.exit_code == 1 and f"chunk {pack.chunks[0].file} does not match" in bad.output
    (packed_digits / "index.json").write_text('{"chunks": [')
    broken = CliRunner().invoke(app, ["datasets", "check", str(config)])
    assert broken.exit_code == 1
    lines = [ln for ln in broken.output.splitlines() if "index.json" in ln]
    assert len(lines) == 1 and "sources.0.shards" in lines[0], broken.output
    meta = json.loads((packed_digits / META_FILE).read_text())
    assert meta["rows"] == 1797


def test_the_relatedness_estimate_and_the_strata_are_those_of_the_original(
    packed_digits: Path, tmp_path: Path, tiny_data: Callable[..., dict[str, Any]]
) -> None:
    data = tiny_data(relatedness=[{"source": "digit", "target": "shape", "kind": "estimate"},
                                  {"source": "digit", "target": "ink", "kind": "estimate"}])
    data["sources"][0]["regime"] = {"name": "full"}
    original = build_experiment(load_config(_write(tmp_path / "o.yaml", data)))
    packed = build_experiment(load_config(
        _write(tmp_path / "p.yaml", _shards_config(data, packed_digits))))
    assert [e.name for e in packed.edges] == [e.name for e in original.edges]
    for left, right in zip(original.edges, packed.edges, strict=True):
        assert torch.equal(left.table, right.table)
    assert [s.name for s in packed.train] == [s.name for s in original.train]
    for left, right in zip(original.train + original.test, packed.train + packed.test,
                           strict=True):
        assert list(left.ids) == list(right.ids)
        _same(left.subset(np.arange(min(50, len(left)))),
              right.subset(np.arange(min(50, len(right)))))
    assert packed.records == original.records


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path
