"""Loader throughput: manifest + PNG path (0, 1, 2 workers) against the in-memory array path.

For a 28x28 grey dataset, measures samples/s of ``build_train_loader`` over

- the generic image path: ``manifest.csv`` + PNG files decoded with Pillow;
- the in-memory array path: an ``ArraySource`` over the same pixels;

and the samples/s of one train step (forward, backward, SGD) of a tiny 2-conv CNN
on the same batch size, so the table says whether the loader is the bottleneck.

Usage::

    python benchmarks/loader.py --synthetic 10000 --out loader.json
    python benchmarks/loader.py --data-dir exported/ --seconds 5 --out loader.json

``--data-dir`` is a folder written by ``dmtl.data.export.export_source`` (PNG
files + ``manifest.csv``); tasks are inferred from the manifest's columns.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from dmtl.core.tasks import BinarySetTask, CategoricalTask, Task
from dmtl.data.batching import build_train_loader
from dmtl.data.export import MANIFEST_NAME, export_source
from dmtl.data.manifest import RESERVED_COLUMNS
from dmtl.data.sources import ArraySource, Source


def infer_tasks(manifest: Path) -> list[Task]:
    """Tasks from a manifest's columns: ``<task>`` categorical, ``<task>/<label>`` binary set."""
    frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    tasks: list[Task] = []
    binary: dict[str, list[str]] = {}
    for column in frame.columns:
        if column in RESERVED_COLUMNS:
            continue
        if "/" in column:
            task, label = column.split("/", 1)
            binary.setdefault(task, []).append(label)
        else:
            classes = sorted({v for v in frame[column] if v}, key=_natural)
            tasks.append(CategoricalTask(column, classes if len(classes) > 1 else [*classes, "?"]))
    tasks += [BinarySetTask(name, labels) for name, labels in binary.items()]
    return tasks


def _natural(value: str) -> tuple[int, str]:
    return (int(value), "") if value.isdigit() else (1 << 30, value)


def synthetic(n: int, out_dir: Path, seed: int = 0) -> Path:
    """Write ``n`` random 28x28 grey blobs (k/255 values) + a manifest; return its path."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28]
    centres = rng.uniform(6, 22, size=(n, 2, 1, 1))
    radius = rng.uniform(3, 8, size=(n, 1, 1))
    blob = np.exp(-((yy - centres[:, 0]) ** 2 + (xx - centres[:, 1]) ** 2) / radius**2)
    noise = rng.uniform(0, 0.2, size=(n, 28, 28))
    pixels = np.rint(np.clip(blob + noise, 0, 1) * 255) / 255
    array = pixels.astype(np.float32)[:, None]
    tasks: list[Task] = [
        CategoricalTask("category", [str(i) for i in range(10)]),
        BinarySetTask("attr", ["bright", "large"]),
    ]
    labels: dict[str, np.ndarray] = {
        "category": rng.integers(0, 10, n),
        "attr": np.stack([array.mean(axis=(1, 2, 3)) > 0.2, radius[:, 0, 0] > 5], 1).astype(
            np.float32
        ),
    }
    source = ArraySource("synthetic", tasks, array, labels)
    return export_source(source, out_dir, overwrite=True)


class TinyCNN(nn.Module):
    """Two 3x3 conv layers, global pooling, a linear head."""

    def __init__(self, channels: int = 1, classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
            nn.Flatten(), nn.Linear(32, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def time_loader(
    sources: list[Source], batch_size: int, workers: int, seconds: float
) -> dict[str, Any]:
    """Samples/s over at most ``seconds`` (after a first, untimed batch: worker start-up)."""
    loader = build_train_loader(
        sources, batch_size, seed=0, num_workers=workers, rank=0, world_size=1
    )
    iterator = iter(loader)
    started = time.perf_counter()
    next(iterator)
    startup = time.perf_counter() - started
    samples = batches = 0
    started = time.perf_counter()
    for batch in iterator:
        samples += len(batch)
        batches += 1
        if time.perf_counter() - started >= seconds:
            break
    elapsed = time.perf_counter() - started
    del iterator, loader
    return {
        "workers": workers, "batches": batches, "seconds": elapsed, "startup_s": startup,
        "samples_per_s": samples / elapsed if elapsed > 0 else float("nan"),
    }


def time_train_step(
    shape: tuple[int, ...], batch_size: int, seconds: float, device: torch.device
) -> dict[str, Any]:
    """Samples/s of forward + backward + SGD step of :class:`TinyCNN` on one fixed batch."""
    torch.manual_seed(0)
    model = TinyCNN(shape[0]).to(device)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.rand(batch_size, *shape, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()

    for _ in range(3):  # warm-up
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    steps = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        steps += 1
        if device.type == "cuda" and steps % 10 == 0:
            torch.cuda.synchronize()
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    return {"device": str(device), "steps": steps, "samples_per_s": steps * batch_size / elapsed}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="folder with manifest.csv + images")
    parser.add_argument(
        "--synthetic", type=int, default=2000, help="images to generate if no --data-dir"
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=2.0, help="timing budget per measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default="auto", help="train-step device: auto, cpu, cuda")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        if args.data_dir is not None:
            manifest = args.data_dir / MANIFEST_NAME
            origin = str(args.data_dir)
        else:
            manifest = synthetic(args.synthetic, Path(scratch) / "synthetic")
            origin = f"synthetic ({args.synthetic} images)"
        tasks = infer_tasks(manifest)
        images = Source.from_manifest("images", manifest, None, tasks)
        array = np.stack([images.raw_input(i).numpy() for i in range(len(images))])
        in_memory = ArraySource("array", images.tasks, array, images.labels)
        shape = tuple(array.shape[1:])

        rows: list[dict[str, Any]] = []
        for workers in args.workers:
            timing = time_loader([images], args.batch_size, workers, args.seconds)
            rows.append({"path": "manifest + PNG", **timing})
        timing = time_loader([in_memory], args.batch_size, 0, args.seconds)
        rows.append({"path": "in-memory array", **timing})

    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    train = time_train_step(shape, args.batch_size, args.seconds, device)
    for row in rows:
        row["vs_train_step"] = row["samples_per_s"] / train["samples_per_s"]
        row["bottleneck"] = row["samples_per_s"] < train["samples_per_s"]

    print(f"# Loader throughput: {origin}, {len(array)} images {shape}, batch {args.batch_size}\n")
    print("| path | workers | samples/s | x train step | loader is the bottleneck |")
    print("|---|---:|---:|---:|---|")
    for row in rows:
        print(
            f"| {row['path']} | {row['workers']} | {row['samples_per_s']:,.0f} | "
            f"{row['vs_train_step']:.2f} | {'yes' if row['bottleneck'] else 'no'} |"
        )
    rate = train["samples_per_s"]
    print(f"| tiny CNN train step ({train['device']}) | - | {rate:,.0f} | 1.00 | - |")
    result = {
        "data": origin, "num_images": len(array), "input_shape": list(shape),
        "batch_size": args.batch_size, "seconds": args.seconds,
        "torch": torch.__version__, "cpus": torch.get_num_threads(),
        "machine": platform.machine(), "loaders": rows, "train_step": train,
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        print(f"\nwrote {args.out}")
    return result


if __name__ == "__main__":
    main()
