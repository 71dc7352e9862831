"""Pictures of per-face predictions: one PNG per face track, and annotated photos and videos.

:func:`plot_tracks` draws, for each face track of each file, one panel per task over
time: a categorical task's class probabilities as lines, a binary set's label
probabilities as a heat map (labels x time), a regression task of two targets as its
path in the plane of the two (valence-arousal), coloured by time, and of other counts as
lines. :func:`annotate_media` draws each face's box, id and top prediction onto the
photo (a PNG) or onto every frame of the video (an MP4; PyAV).

Files are named ``<file stem>_face<id>.png`` and ``<file stem>_annotated.<png|mp4>``;
an existing file is refused unless ``overwrite``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from dmtl.core.tasks import Task
from dmtl.errors import OutputError
from dmtl.inference.card import ModelCard
from dmtl.inference.media import import_av, is_video

BOX_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4")


def _target(folder: Path, name: str, overwrite: bool) -> Path:
    path = folder / name
    if path.exists() and not overwrite:
        raise OutputError(f"{path} exists; pass --overwrite to replace it")
    folder.mkdir(parents=True, exist_ok=True)
    return path


def _time_axis(track: pd.DataFrame) -> tuple[np.ndarray, str]:
    """Seconds for a video, the frame number otherwise."""
    times = track["time"].to_numpy(dtype=float)
    if np.isfinite(times).all():
        return times, "time (s)"
    return track["frame"].to_numpy(dtype=float), "frame"


def plot_tracks(
    frame: pd.DataFrame, card: ModelCard, folder: Path, overwrite: bool = False
) -> list[Path]:
    """One PNG per face track (see the module docstring); the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    tasks = [t for t in card.tasks if _has_columns(frame, t)]
    layout: list[Any] = [[f"{i}", f"{i}+"] if _is_plane(t) else [f"{i}", f"{i}"] for i, t in
              enumerate(tasks)]
    for (file, face), track in frame.groupby(["file", "face"], sort=True):
        track = track.sort_values("frame")
        figure = plt.figure(figsize=(9, 2.8 * len(tasks)), layout="constrained")
        axes = figure.subplot_mosaic(layout)
        x, label = _time_axis(track)
        for i, task in enumerate(tasks):
            _panel(axes[f"{i}"], task, track, x, label, figure)
            if _is_plane(task) and len(x) > 1:
                _lines(axes[f"{i}+"], task, track, x, label)
            elif _is_plane(task):
                axes[f"{i}+"].set_axis_off()  # a photo: no time
        figure.suptitle(f"{Path(str(file)).name}: face {face}")
        path = _target(folder, f"{Path(str(file)).stem}_face{face}.png", overwrite)
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    return written


def _is_plane(task: Task) -> bool:
    """A regression task of two targets (valence-arousal): drawn as a path in their plane."""
    return task.kind == "regression" and len(task.names) == 2


def _has_columns(frame: pd.DataFrame, task: Task) -> bool:
    return all(c in frame.columns for c in _columns(task))


def _columns(task: Task) -> list[str]:
    if task.kind == "regression":
        return [f"{task.name}/{n}" for n in task.names]
    return [f"p:{task.name}/{n}" for n in task.names]


def _panel(ax: Any, task: Task, track: pd.DataFrame, x: np.ndarray, label: str, fig: Any) -> None:
    values = track[_columns(task)].to_numpy(dtype=float)
    if task.kind == "binary_set" and len(x) > 1:
        step = (x[1] - x[0]) if len(x) > 1 else 1.0
        image = ax.imshow(
            values.T, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest",
            extent=(x[0] - step / 2, x[-1] + step / 2, len(task.names) - 0.5, -0.5),
        )
        ax.set_yticks(range(len(task.names)), task.names)
        ax.set_xlabel(label)
        fig.colorbar(image, ax=ax, label="p(active)")
    elif _is_plane(task):
        ax.plot(values[:, 0], values[:, 1], color="0.7", linewidth=1)
        points = ax.scatter(values[:, 0], values[:, 1], c=x, cmap="plasma", s=18, zorder=3)
        low, high = _limits(task)
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.axhline(0.0, color="0.85", linewidth=0.8)
        ax.axvline(0.0, color="0.85", linewidth=0.8)
        ax.set_xlabel(task.names[0])
        ax.set_ylabel(task.names[1])
        ax.set_aspect("equal")
        fig.colorbar(points, ax=ax, label=label)
    elif len(x) == 1:  # a photo: one value per class or target
        ax.bar(range(len(task.names)), values[0], color="tab:blue")
        ax.set_xticks(range(len(task.names)), task.names, rotation=30, ha="right")
        if task.kind != "regression":
            ax.set_ylim(0.0, 1.0)
            ax.set_ylabel("probability" if task.kind == "categorical" else "p(active)")
    else:
        _lines(ax, task, track, x, label)
    ax.set_title(f"{task.name} ({task.kind})", fontsize="medium", loc="left")


def _lines(ax: Any, task: Task, track: pd.DataFrame, x: np.ndarray, label: str) -> None:
    """One line per class, label or target over time."""
    values = track[_columns(task)].to_numpy(dtype=float)
    marker = "o" if len(x) < 3 else None
    for j, name in enumerate(task.names):
        ax.plot(x, values[:, j], label=name, marker=marker)
    if task.kind == "categorical":
        ax.set_ylim(0.0, 1.18)
        ax.set_yticks([0.0, 0.25, 0.5, 0.75, 1.0])
        ax.set_ylabel("probability")
    elif task.kind == "regression":
        ax.set_ylim(*_limits(task))
    ax.set_xlabel(label)
    ax.legend(fontsize="small", loc="upper center", ncol=min(len(task.names), 5),
              framealpha=0.8)
    ax.set_title(f"{task.name} over time", fontsize="medium", loc="left")


def _limits(task: Task) -> tuple[float, float]:
    low = getattr(task, "low", None)
    high = getattr(task, "high", None)
    low = -1.0 if low is None else float(low)
    high = 1.0 if high is None else float(high)
    margin = 0.05 * (high - low)
    return low - margin, high + margin


def face_caption(row: Any, card: ModelCard) -> str:
    """``<id>: <top class> <p>`` of the first categorical task, else the active labels of the
    first binary set, else the first regression task's values."""
    for task in card.tasks:
        if task.kind == "categorical" and task.name in row:
            best = row[task.name]
            probability = float(row.get(f"p:{task.name}/{best}", math.nan))
            return f"{row['face']}: {best} {probability:.2f}"
        if task.kind == "binary_set":
            active = [n for n in task.names if row.get(f"{task.name}/{n}") == 1]
            return f"{row['face']}: {' '.join(active[:4]) or '-'}"
        if task.kind == "regression":
            values = [float(row.get(f"{task.name}/{n}", math.nan)) for n in task.names]
            return f"{row['face']}: " + " ".join(f"{v:+.2f}" for v in values)
    return str(row["face"])


def draw_faces(image: Image.Image, rows: pd.DataFrame, card: ModelCard) -> Image.Image:
    """``image`` with each row's box and caption drawn on it."""
    draw = ImageDraw.Draw(image)
    width = max(2, round(max(image.size) / 300))
    for _, row in rows.iterrows():
        colour = BOX_COLOURS[int(row["face"]) % len(BOX_COLOURS)]
        x, y, w, h = (float(row[c]) for c in ("x", "y", "w", "h"))
        draw.rectangle((x, y, x + w, y + h), outline=colour, width=width)
        caption = face_caption(row, card)
        left, top, right, bottom = draw.textbbox((x, y), caption)
        lift = bottom - top + 4
        draw.rectangle((x, y - lift, x + right - left + 4, y), fill=colour)
        draw.text((x + 2, y - lift + 1), caption, fill="white")
    return image


def annotate_media(
    frame: pd.DataFrame, card: ModelCard, folder: Path, overwrite: bool = False
) -> list[Path]:
    """Each photo and video of ``frame`` with its faces drawn (see the module docstring)."""
    written = []
    for file, rows in frame.groupby("file", sort=True):
        path = Path(str(file))
        if is_video(path):
            target = _target(folder, f"{path.stem}_annotated.mp4", overwrite)
            _annotate_video(path, rows, card, target)
        else:
            target = _target(folder, f"{path.stem}_annotated.png", overwrite)
            with Image.open(path) as photo:
                draw_faces(photo.convert("RGB"), rows, card).save(target)
        written.append(target)
    return written


def _annotate_video(path: Path, rows: pd.DataFrame, card: ModelCard, target: Path) -> None:
    """Every frame of the video, with the boxes of the last predicted frame at or before it."""
    av = import_av(f"annotating the video {path}")
    by_frame = {int(str(k)): v for k, v in rows.groupby("frame")}
    with av.open(str(path)) as source, av.open(str(target), "w") as out:
        stream = source.streams.video[0]
        rate = stream.average_rate or 25
        video = out.add_stream("mpeg4", rate=rate)
        video.width, video.height, video.pix_fmt = stream.width, stream.height, "yuv420p"
        video.bit_rate = 2_000_000
        current = rows.iloc[:0]
        for index, decoded in enumerate(source.decode(stream)):
            current = by_frame.get(index, current)
            image = draw_faces(decoded.to_image(), current, card)
            for packet in video.encode(av.VideoFrame.from_image(image)):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)


__all__ = ["annotate_media", "draw_faces", "face_caption", "plot_tracks"]
