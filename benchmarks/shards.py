"""Shards section: read throughput of a pack against JPEG files and in-memory arrays, and
the time to pack Fashion-MNIST exported as JPEG files.

- **Throughput** (images per second per core): ``--images`` RGB JPEGs of 224 px
  (``benchmarks/loader.py``'s photos), read by dmtl's training loader with no worker
  process and one torch thread (so one core does the reading, decoding and collating), in
  batches of 64, at 224 px: as JPEG files (``ImageSource``), as their pack
  (``ShardSource``: the same JPEG bytes from LitData chunks) and as an in-memory ``uint8``
  array (``ArraySource``: nothing to decode). The three are timed in turn, ``--rounds``
  times (interleaved, so that a change of load on a shared machine hits all three); the
  median of the rounds is reported, and the ratio shards / JPEG files of each round.
- **Packing**: Fashion-MNIST's ``--fashion`` first test images exported as JPEG files
  (``dmtl.data.export``), then packed (``pack_source``, as ``dmtl datasets pack`` does):
  seconds, rows per second, megabytes.

``python -m benchmarks shards [--quick]``; the result goes to
``benchmarks/results/shards.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import QUICK_DIR, RESULTS_DIR, command_line, write_result


def _sources(folder: Path, n: int, size: int) -> dict[str, Any]:
    """The same ``n`` JPEGs as files, as a pack and as an in-memory array."""
    import torch

    from benchmarks.loader import write_jpegs
    from dmtl.core.tasks import CategoricalTask
    from dmtl.data.shards import pack_source, shard_source
    from dmtl.data.sources import ArraySource, Source

    manifest = write_jpegs(n, size, folder / "jpeg")
    tasks = [CategoricalTask("category", [str(i) for i in range(10)])]
    files = Source.from_manifest("jpeg", manifest, None, tasks, channels=3, image_size=size)
    pack_source(files, folder / "pack", chunk_bytes=8 * 2**20)
    shards = shard_source("jpeg", folder / "pack", channels=3, image_size=size)
    pixels = torch.stack([files.raw_input(i) for i in range(len(files))])
    array = ArraySource("array", tasks, (pixels * 255).round().to(torch.uint8).numpy(),
                        files.labels)
    return {"JPEG files": files, "shards (LitData chunks)": shards, "in-memory uint8 array": array}


def throughput(n: int, size: int, seconds: float, rounds: int) -> dict[str, Any]:
    """Images per second of each path, one core, interleaved rounds."""
    import torch

    from benchmarks.loader import time_loader

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            sources = _sources(Path(tmp), n, size)
            per_round: dict[str, list[float]] = {name: [] for name in sources}
            for _ in range(rounds):
                for name, source in sources.items():
                    timed = time_loader([source], 64, 0, seconds)
                    per_round[name].append(timed["samples_per_s"])
    finally:
        torch.set_num_threads(threads)
    ratios = [s / j for s, j in zip(per_round["shards (LitData chunks)"],
                                    per_round["JPEG files"], strict=True)]
    return {
        "images": n, "size": size, "rounds": rounds, "seconds_per_round": seconds,
        "paths": [{"path": name, "images_per_s": statistics.median(values),
                   "rounds": values} for name, values in per_round.items()],
        "shards_over_jpeg": statistics.median(ratios), "shards_over_jpeg_rounds": ratios,
    }


def pack_time(count: int) -> dict[str, Any] | None:
    """Seconds to pack ``count`` Fashion-MNIST test images exported as JPEG files."""
    from dmtl.core.tasks import Task
    from dmtl.data.builtin import load_builtin
    from dmtl.data.export import export_source
    from dmtl.data.shards import pack_source
    from dmtl.data.sources import ArraySource, Source
    from dmtl.errors import DataError

    try:
        data = load_builtin("fashion_mnist", splits=("test",))
    except (DataError, OSError):
        return None
    source = ArraySource("fashion", data.tasks, data.inputs, data.labels, splits=data.split)
    source = source.subset(np.arange(min(count, len(source))))
    with tempfile.TemporaryDirectory() as tmp:
        manifest = export_source(source, Path(tmp) / "jpeg", "jpg")
        tasks: list[Task] = list(data.tasks)
        files = Source.from_manifest("fashion", manifest, None, tasks)
        started = time.perf_counter()
        pack = pack_source(files, Path(tmp) / "pack")
        elapsed = time.perf_counter() - started
        jpeg_bytes = sum(p.stat().st_size for p in (Path(tmp) / "jpeg" / "images").iterdir())
    return {"images": len(files), "seconds": elapsed, "rows_per_s": len(files) / elapsed,
            "pack_mb": sum(c.size for c in pack.chunks) / 1e6, "jpeg_mb": jpeg_bytes / 1e6,
            "chunks": len(pack.chunks)}


def main(argv: Sequence[str] | None = None, results_dir: Path | None = None) -> Path:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks shards")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--images", type=int, default=512, help="JPEGs of 224 px to read")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seconds", type=float, default=3.0, help="per path and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fashion", type=int, default=10_000, help="images to pack")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.seconds, args.rounds, args.fashion = 64, 0.2, 1, 200
    load_before = list(os.getloadavg())
    result = {
        "throughput": throughput(args.images, args.size, args.seconds, args.rounds),
        "pack": pack_time(args.fashion),
        "load_average_before": load_before,
    }
    out = args.results or results_dir or (QUICK_DIR if args.quick else RESULTS_DIR)
    return write_result(out, "shards", result, command_line("shards", argv), args.quick)


def _verdict(t: dict[str, Any]) -> str:
    """Whether the rounds agree that shards are at least as fast as files."""
    low, high = min(t["shards_over_jpeg_rounds"]), max(t["shards_over_jpeg_rounds"])
    if low >= 1.0:
        return ": shards at least as fast as the files in every round"
    if high < 1.0:
        return ": shards slower than the files in every round"
    return (f": on par; the rounds range from {low:.2f} to {high:.2f}, so the difference is "
            "within this machine's noise")


def report_lines(doc: dict[str, Any] | None) -> list[str]:
    """The page's section (``docs/benchmarks.md``)."""
    lines = ["## 7. Shards: reading a pack against JPEG files and arrays"]
    if doc is None:
        return [*lines, "Not run yet: `python -m benchmarks shards`."]
    t = doc["throughput"]
    rows = [f"| {p['path']} | {p['images_per_s']:,.0f} | "
            f"{', '.join(f'{v:,.0f}' for v in p['rounds'])} |" for p in t["paths"]]
    load = doc.get("load_average_before") or [float("nan")]
    end = (doc.get("hardware") or {}).get("load_average") or [float("nan")]
    lines += [
        f"{t['images']} RGB JPEGs of {t['size']} px read by the training loader at {t['size']} "
        f"px, batches of 64, no worker process and one torch thread (one core); {t['rounds']} "
        f"interleaved rounds of {t['seconds_per_round']:g} s per path, median shown. Load "
        f"average (1 min) {load[0]:.1f} before, {end[0]:.1f} after, on a shared machine.",
        "| path | images/s per core (median) | rounds |\n|---|---|---|\n" + "\n".join(rows),
        f"Shards / JPEG files: **{t['shards_over_jpeg']:.2f}x** (median of the rounds' ratios: "
        f"{', '.join(f'{r:.2f}' for r in t['shards_over_jpeg_rounds'])}){_verdict(t)}. "
        "A pack holds the "
        "same JPEG bytes, so both paths spend their time in the same decoder; the pack saves "
        "the opening of one file per image (one memory-mapped chunk instead) and adds LitData's "
        "item lookup and a CRC-32 check. The array path decodes nothing: it is the ceiling.",
    ]
    pack = doc.get("pack")
    if pack:
        lines.append(
            f"Packing {pack['images']:,} Fashion-MNIST test images exported as JPEG files "
            f"({pack['jpeg_mb']:.1f} MB of files): {pack['seconds']:.1f} s, "
            f"{pack['rows_per_s']:,.0f} rows/s, {pack['chunks']} chunk(s) of "
            f"{pack['pack_mb']:.1f} MB in all (one process; file reads, LitData's writer, "
            "checksums and the label table)."
        )
    else:
        lines.append("Packing time: not measured (Fashion-MNIST not installed).")
    lines.append(f"Command: `{doc.get('command', 'python -m benchmarks shards')}`.")
    return lines


if __name__ == "__main__":
    main()
