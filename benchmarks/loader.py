"""Loader throughput: the image path with 0, 1, 2 workers, cached in memory, the array path;
224 px JPEG decoding against a resnet18 training step.

For a 28x28 grey dataset, measures samples/s of ``build_train_loader`` over

- the generic image path: ``manifest.csv`` + PNG files decoded with Pillow;
- the same images with ``input.cache: memory`` (decoded once, then indexed in memory);
- the in-memory array path: an ``ArraySource`` over the same pixels;

and the samples/s of one train step (forward, backward, SGD) of a tiny 2-conv CNN
on the same batch size, so the table says whether the loader is the bottleneck.

With ``--jpeg N`` (default 512): N RGB JPEGs of 224 px are written from the photos that
ship with scikit-learn (random square crops, resized, quality 90), and measured

- decoding alone, one process, one thread: Pillow (decode + bilinear resize, dmtl's
  earlier path), dmtl's decoder (torchvision's ``decode_jpeg``, libjpeg-turbo, and its
  antialiased resize: Pillow's pixels to within 1/255), and Pillow's draft mode for
  reference (decodes at 1/2, 1/4 or 1/8 scale: faster, but other pixels);
- the training loader at ``--jpeg-train-size`` (112 px) with 0, 1 and 2 workers;
- a timm ``resnet18`` training step at that size on the same CPU (all its cores).

``--workers-per-gpu`` (for ``benchmarks/gpu.sh``): one worker's decoding rate at 224 px
against resnet18's training rate on the device, and the workers per GPU that this asks for.

Usage::

    python benchmarks/loader.py --synthetic 10000 --out loader.json
    python benchmarks/loader.py --data-dir exported/ --seconds 5 --out loader.json
    python benchmarks/loader.py --workers-per-gpu --device cuda --out gpu-loader.json

``--data-dir`` is a folder written by ``dmtl.data.export.export_source`` (PNG
files + ``manifest.csv``); tasks are inferred from the manifest's columns.
"""

from __future__ import annotations

import argparse
import json
import math
import os
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
    """Samples/s over about ``seconds`` (after a first, untimed batch: worker start-up);
    epochs are repeated as needed, and at least 3 batches are timed."""
    loader = build_train_loader(
        sources, batch_size, seed=0, num_workers=workers, rank=0, world_size=1
    )
    iterator = iter(loader)
    started = time.perf_counter()
    next(iterator)
    startup = time.perf_counter() - started
    samples = batches = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or batches < 3:
        for batch in iterator:
            samples += len(batch)
            batches += 1
            if time.perf_counter() - started >= seconds and batches >= 3:
                break
        else:
            iterator = iter(loader)  # the next epoch (persistent workers are reused)
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


# --------------------------------------------------------------------------- JPEG


def write_jpegs(n: int, size: int, folder: Path, seed: int = 0) -> Path:
    """``n`` RGB JPEGs of ``size`` px (quality 90) cut from scikit-learn's two sample photos
    (random square crops, resized, half of them mirrored) + a manifest; its path."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        photo = photos[i % len(photos)]
        side = int(rng.integers(size // 2, min(photo.shape[:2]) + 1))
        top = int(rng.integers(0, photo.shape[0] - side + 1))
        left = int(rng.integers(0, photo.shape[1] - side + 1))
        crop = Image.fromarray(photo[top : top + side, left : left + side])
        crop = crop.resize((size, size), Image.Resampling.BICUBIC)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        crop.save(folder / "img" / f"{i}.jpg", quality=90)
        rows.append({"image": f"img/{i}.jpg", "category": str(i % 10)})
    path = folder / MANIFEST_NAME
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _pillow(path: str, size: int) -> torch.Tensor:
    """dmtl's earlier decoder: Pillow decode, convert, bilinear resize."""
    from PIL import Image

    with Image.open(path) as file:
        img = file.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div_(255.0)


def _pillow_draft(path: str, size: int) -> torch.Tensor:
    """Pillow's draft mode: the JPEG decoded at the smallest of 1/2, 1/4, 1/8 scale that is
    still at least ``size``, then resized."""
    from PIL import Image

    with Image.open(path) as file:
        file.draft("RGB", (size, size))
        img = file.convert("RGB")
        if img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div_(255.0)


def _dmtl(path: str, size: int) -> torch.Tensor:
    from dmtl.data.sources import decode_image

    return decode_image(path, 3, (size, size))


DECODERS = {
    "Pillow: decode + bilinear resize (dmtl before)": _pillow,
    "dmtl: torchvision decode_jpeg + antialiased resize": _dmtl,
    "Pillow draft mode (DCT scaling) + resize": _pillow_draft,
}


def time_decoders(paths: list[str], size: int, seconds: float) -> list[dict[str, Any]]:
    """Images/s of each decoder in this process, and its largest pixel difference from Pillow."""
    rows = []
    for name, decode in DECODERS.items():
        try:  # the first call also imports what the decoder needs
            decode(paths[0], size)
        except ImportError:
            continue
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds or done < 10:
            decode(paths[done % len(paths)], size)
            done += 1
        rate = done / (time.perf_counter() - started)
        diff = max(float((decode(p, size) - _pillow(p, size)).abs().max()) for p in paths[:20])
        rows.append({"decoder": name, "images_per_s": rate, "max_diff_vs_pillow": diff})
    return rows


def resnet_step(size: int, batch_size: int, seconds: float, device: torch.device) -> dict[str, Any]:
    """Samples/s of a timm resnet18 training step (forward, backward, SGD) at ``size`` px."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=10).to(device)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(batch_size, 3, size, size, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()

    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or steps < 2:
        step()
        steps += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    return {"device": str(device), "size": size, "batch_size": batch_size,
            "threads": torch.get_num_threads(), "samples_per_s": steps * batch_size / elapsed}


def jpeg_section(n: int, size: int, train_size: int, workers: list[int], seconds: float,
                 folder: Path) -> dict[str, Any]:
    """Decoders, the training loader with 0/1/2 workers, and resnet18 at ``train_size``."""
    manifest = write_jpegs(n, size, folder)
    tasks: list[Task] = [CategoricalTask("category", [str(i) for i in range(10)])]
    source = Source.from_manifest("jpeg", manifest, None, tasks, channels=3,
                                  image_size=train_size)
    paths = [str(p) for p in source.paths]  # type: ignore[attr-defined]
    cores = torch.get_num_threads()
    # One thread while decoding, as in DataLoader workers: a per-image tensor operation
    # gains nothing from a second thread and, on a shared machine, waits for its core.
    torch.set_num_threads(1)
    try:
        decoders = time_decoders(paths, train_size, seconds)
        loaders = [time_loader([source], 64, w, seconds) for w in workers]
        started = time.perf_counter()
        cached = source.cache_in_memory(2**30)
        decode_once = time.perf_counter() - started
        loaders.append({**time_loader([cached], 64, 0, seconds), "path": "cache: memory",
                        "startup_s": decode_once})
        steps = [resnet_step(train_size, 32, max(seconds, 3.0), torch.device("cpu"))]
    finally:
        torch.set_num_threads(cores)
    if cores > 1:
        steps.append(resnet_step(train_size, 32, max(seconds, 3.0), torch.device("cpu")))
    for row in loaders:
        row.setdefault("path", "JPEG files")
    fastest = max(steps, key=lambda r: r["samples_per_s"])
    files = [row for row in loaders if row["path"] == "JPEG files"]
    best = max(files, key=lambda r: r["samples_per_s"])
    return {"images": n, "size": size, "train_size": train_size, "decoders": decoders,
            "loaders": loaders, "resnet18": steps,
            "keeps_up": best["samples_per_s"] >= fastest["samples_per_s"],
            "best_workers": best["workers"]}


def workers_per_gpu(n: int, size: int, seconds: float, device: torch.device,
                    folder: Path) -> dict[str, Any]:
    """One worker's JPEG rate at ``size`` px against resnet18's training rate on ``device``."""
    manifest = write_jpegs(n, size, folder)
    tasks: list[Task] = [CategoricalTask("category", [str(i) for i in range(10)])]
    source = Source.from_manifest("jpeg", manifest, None, tasks, channels=3, image_size=size)
    one = time_loader([source], 64, 1, seconds)
    train = resnet_step(size, 128 if device.type == "cuda" else 16, seconds, device)
    needed = max(1, math.ceil(train["samples_per_s"] / one["samples_per_s"]))
    line = (f"at {size} px one loader worker decodes {one['samples_per_s']:,.0f} images/s; "
            f"resnet18 on {train['device']} trains {train['samples_per_s']:,.0f} images/s: "
            f"about {needed} worker(s) per GPU (trainer.num_workers: {needed}), "
            f"{os.cpu_count()} CPU cores here")
    print(line)
    return {"size": size, "worker_images_per_s": one["samples_per_s"], "resnet18": train,
            "workers_needed": needed, "line": line}


# --------------------------------------------------------------------------- entry point


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
    parser.add_argument("--jpeg", type=int, default=512, help="JPEGs to write (0: no JPEG part)")
    parser.add_argument("--jpeg-size", type=int, default=224)
    parser.add_argument("--jpeg-train-size", type=int, default=112)
    parser.add_argument("--workers-per-gpu", action="store_true",
                        help="only the estimate of the workers a GPU needs at --jpeg-size")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    if args.workers_per_gpu:
        with tempfile.TemporaryDirectory() as scratch:
            result = workers_per_gpu(max(args.jpeg, 64), args.jpeg_size, args.seconds, device,
                                     Path(scratch))
        return _write(result, args.out)
    result = png_section(args, device)
    if args.jpeg > 0:
        with tempfile.TemporaryDirectory() as scratch:
            result["jpeg"] = jpeg_section(args.jpeg, args.jpeg_size, args.jpeg_train_size,
                                          args.workers, args.seconds, Path(scratch))
        _print_jpeg(result["jpeg"])
    return _write(result, args.out)


def _write(result: dict[str, Any], out: Path | None) -> dict[str, Any]:
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print(f"\nwrote {out}")
    return result


def png_section(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """The 28 px grey images: PNG files with 0/1/2 workers, cached, and as an array."""
    with tempfile.TemporaryDirectory() as scratch:
        if args.data_dir is not None:
            manifest = args.data_dir / MANIFEST_NAME
            origin = str(args.data_dir)
        else:
            manifest = synthetic(args.synthetic, Path(scratch) / "synthetic")
            origin = f"synthetic ({args.synthetic} images)"
        tasks = infer_tasks(manifest)
        images = Source.from_manifest("images", manifest, None, tasks)
        rows: list[dict[str, Any]] = []
        for workers in args.workers:
            timing = time_loader([images], args.batch_size, workers, args.seconds)
            rows.append({"path": "manifest + PNG", **timing})
        started = time.perf_counter()
        cached = images.cache_in_memory(2**30)
        decode_once = time.perf_counter() - started
        timing = time_loader([cached], args.batch_size, 0, args.seconds)
        rows.append({"path": "manifest + PNG, cache: memory", **timing, "startup_s": decode_once})
        array = np.stack([images.raw_input(i).numpy() for i in range(len(images))])
        in_memory = ArraySource("array", images.tasks, array, images.labels)
        timing = time_loader([in_memory], args.batch_size, 0, args.seconds)
        rows.append({"path": "in-memory array", **timing})
    shape = tuple(array.shape[1:])
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
    return {
        "data": origin, "num_images": len(array), "input_shape": list(shape),
        "batch_size": args.batch_size, "seconds": args.seconds,
        "torch": torch.__version__, "cpus": torch.get_num_threads(),
        "machine": platform.machine(), "loaders": rows, "train_step": train,
    }


def _print_jpeg(jpeg: dict[str, Any]) -> None:
    print(f"\n# {jpeg['images']} JPEGs of {jpeg['size']} px, trained at {jpeg['train_size']} px\n")
    for row in jpeg["decoders"]:
        print(f"- {row['decoder']}: {row['images_per_s']:,.0f} images/s "
              f"(max diff from Pillow {row['max_diff_vs_pillow']:.4f})")
    for row in jpeg["loaders"]:
        print(f"- loader, {row['path']}, {row['workers']} worker(s): "
              f"{row['samples_per_s']:,.0f} samples/s")
    for train in jpeg["resnet18"]:
        print(f"- resnet18 step at {train['size']} px, {train['threads']} thread(s): "
              f"{train['samples_per_s']:,.0f} samples/s")
    print(f"- the loader keeps up: {jpeg['keeps_up']}")


if __name__ == "__main__":
    main()
