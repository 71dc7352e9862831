"""Faces section: frames per second of ``dmtl predict --faces`` on a 640 x 480 video, per stage.

The model is a ResNet-18 (``torchvision:resnet18``, random weights: the speed does not
depend on them) at 112 px, trained for one step on digits exported as PNGs by the
real path (``dmtl train`` on a tiny config, then ``dmtl export`` to ONNX, run by
onnxruntime). The video is built here: scikit-image's astronaut photo moved and scaled
over ``--frames`` frames of 640 x 480 at 30 fps (MPEG-4 Part 2, PyAV). The pipeline
(:class:`dmtl.inference.faces.Predictor`) is run ``--repeats`` times per detector; its
stage timers give the seconds spent decoding, detecting, tracking, cropping and in the
model, and the end-to-end figure is frames over the wall time of ``predict``. On a
shared machine the wall time includes waiting for the cores, so two load-robust figures
come with it: frames per CPU-second of this process (``time.process_time``: what the
process would do with its cores to itself, when its work is single-threaded) and each
stage's share of the time. Figures are medians over the repeats; the load average is
recorded before and after.

Writes ``benchmarks/results/faces.json`` (``--quick``: a scratch folder).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import QUICK_DIR, RESULTS_DIR, command_line, hardware, write_result

STAGES = ("decode", "detect", "track", "crop", "model")
TARGET_FPS = 10.0
SIZE = (640, 480)


def build_model(folder: Path, image_size: int, backbone: str) -> Path:
    """Train ``backbone`` one step at ``image_size`` px on exported digits; export to ONNX."""
    import yaml
    from typer.testing import CliRunner

    from dmtl.cli import app

    def run(*args: object) -> None:
        result = CliRunner().invoke(app, [str(a) for a in args])
        if result.exit_code != 0:
            raise RuntimeError(f"dmtl {args[0]} failed: {result.output[-2000:]}")

    import pandas as pd

    run("datasets", "export", "digits", folder / "digits", "--limit", "64")
    manifest = folder / "digits" / "manifest.csv"
    pd.read_csv(manifest, dtype=str)[["id", "image", "split", "digit"]].to_csv(
        manifest, index=False)
    config = {
        "name": "faces-bench",
        "sources": [{"name": "digits", "manifest": str(folder / "digits" / "manifest.csv"),
                     "input": {"channels": 3, "image_size": image_size,
                               "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}],
        "tasks": [{"name": "digit", "type": "categorical", "classes": list("0123456789")}],
        "backbone": {"name": backbone},
        "trainer": {"max_epochs": 1, "steps_per_epoch": 1, "batch_size": 8,
                    "progress_bar": False, "accelerator": "cpu"},
        "output": {"dir": str(folder / "run")},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    run("train", folder / "config.yaml")
    run("export", folder / "run", "-o", folder / "model.onnx")
    return folder / "model.onnx"


def build_video(path: Path, frames: int) -> None:
    """The astronaut photo, scaled from 0.5 to 0.9 and moved across a 640 x 480 frame."""
    import av
    import numpy as np
    from PIL import Image
    from skimage.data import astronaut

    photo = Image.fromarray(astronaut())
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = *SIZE, "yuv420p"
        stream.bit_rate = 2_000_000
        for i in range(frames):
            phase = i / max(frames - 1, 1)
            side = int(512 * (0.5 + 0.4 * phase))
            canvas = np.full((SIZE[1], SIZE[0], 3), 90, np.uint8)
            scaled = np.asarray(photo.resize((side, side)))
            x0 = int((SIZE[0] - side) * phase)
            h, w = min(side, SIZE[1]), min(side, SIZE[0] - x0)
            canvas[:h, x0 : x0 + w] = scaled[:h, :w]
            for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def measure(model: Path, video: Path, detector: str, batch_size: int) -> dict[str, Any]:
    """One run of the pipeline: frames, rows, wall seconds and seconds per stage."""
    import dmtl

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the digits model has no face crop recipe
        predictor = dmtl.Predictor(model, faces=True, detector=detector, batch_size=batch_size)
    start, cpu_start = time.perf_counter(), time.process_time()
    table = predictor.predict(video)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {"frames": predictor.frames, "rows": len(table),
            "tracks": int(table["face"].nunique()) if len(table) else 0,
            "wall_s": wall, "cpu_s": cpu, "stages_s": dict(predictor.timings)}


def summarise(runs: list[dict[str, Any]], detector: str) -> dict[str, Any]:
    """Medians over the runs: end-to-end and per-stage frames per second, the slowest stage."""
    frames = runs[0]["frames"]
    fps = statistics.median(r["frames"] / r["wall_s"] for r in runs)
    cpu_fps = statistics.median(r["frames"] / r["cpu_s"] for r in runs)
    stage_s = {s: statistics.median(r["stages_s"][s] for r in runs) for s in STAGES}
    stage_fps = {s: (frames / t if t > 0 else None) for s, t in stage_s.items()}
    slowest = max(stage_s, key=stage_s.__getitem__)
    return {"detector": detector, "frames": frames, "rows": runs[0]["rows"],
            "tracks": runs[0]["tracks"], "fps": fps, "cpu_fps": cpu_fps,
            "stage_share": {s: t / sum(stage_s.values()) for s, t in stage_s.items()},
            "ms_per_frame": {s: 1000 * t / frames for s, t in stage_s.items()},
            "stage_fps": stage_fps, "slowest": slowest, "runs": runs,
            "reached": fps >= TARGET_FPS}


def main(argv: Sequence[str] | None = None, results_dir: Path | None = None) -> Path:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks faces")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--frames", type=int, default=None, help="video frames (default 150)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per detector (3)")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--backbone", default="torchvision:resnet18")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--detectors", nargs="+", default=["auto"])
    args = parser.parse_args(argv)
    frames = args.frames or (20 if args.quick else 150)
    repeats = args.repeats or (1 if args.quick else 3)
    backbone = "small_cnn" if args.quick else args.backbone
    import torch

    from dmtl.inference.detectors import default_detector

    torch.set_num_threads(1)
    load_before = list(os.getloadavg())
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        model = build_model(folder, args.image_size, backbone)
        video = folder / "video.mp4"
        build_video(video, frames)
        results = []
        for name in args.detectors:
            detector = default_detector() if name == "auto" else name
            runs = [measure(model, video, detector, args.batch_size) for _ in range(repeats)]
            results.append(summarise(runs, detector))
    import cv2

    payload = {
        "versions": {"opencv": cv2.__version__, "onnxruntime": _version("onnxruntime"),
                     "av": _version("av"), "scikit-image": _version("scikit-image")},
        "settings": {"frames": frames, "repeats": repeats, "size": list(SIZE),
                     "image_size": args.image_size, "backbone": backbone, "runtime": "onnx",
                     "batch_size": args.batch_size, "target_fps": TARGET_FPS},
        "detectors": results,
        "load_before": load_before,
        "load_after": list(os.getloadavg()),
        "hardware": hardware(),
    }
    out = args.results or results_dir or (QUICK_DIR if args.quick else RESULTS_DIR)
    return write_result(out, "faces", payload, command_line("faces", argv), args.quick)


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def faces_section(doc: dict[str, Any] | None) -> list[str]:
    """The report's section (Markdown blocks) from ``faces.json``."""
    title = "## 6. Faces in the wild: `dmtl predict --faces` on a video"
    if doc is None:
        return [title, "Not run yet: `python -m benchmarks faces`."]
    s = doc["settings"]
    lines = [
        title,
        f"A {s['size'][0]} x {s['size'][1]} video of {s['frames']} frames (a photo's face "
        f"moved and scaled), a {s['backbone']} at {s['image_size']} px exported to ONNX "
        f"(random weights: one training step), batch {s['batch_size']}, median of "
        f"{s['repeats']} run(s); torch and onnxruntime on the CPU cores listed. Load average "
        f"(1 min) {doc['load_before'][0]:.1f} before, {doc['load_after'][0]:.1f} after: the "
        "machine may be shared, so the figures are a lower bound. Command: "
        f"`{doc['command']}`; " + ", ".join(
            f"{k} {v}" for k, v in doc.get("versions", {}).items() if v) + ".",
        "",
        "| detector | faces found / frames | frames/s (wall) | frames per CPU-second "
        "| decode | detect | track | crop | model | slowest stage | ≥ 10 frames/s (wall) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d in doc["detectors"]:
        shares = [f"{100 * d['stage_share'][st]:.0f}%" for st in STAGES]
        reached = "yes" if d["reached"] else "no"
        lines.append(
            f"| {d['detector']} | {d['rows']} / {d['frames']} | {d['fps']:.1f} | "
            f"{d['cpu_fps']:.1f} | " + " | ".join(shares)
            + f" | {d['slowest']} | {reached}{' (quick)' if doc['quick'] else ''} |")
    lines += ["", "Stage columns: each stage's share of the pipeline's time. Frames per "
              "CPU-second: frames over the CPU time this process used (all its threads), "
              "which the load of other processes changes little; the wall figure is what "
              "this run got on the shared machine."]
    return ["\n".join(lines)]


if __name__ == "__main__":
    main()
