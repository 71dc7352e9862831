"""Photos and videos to predict on: the input files, and their frames as RGB arrays.

:func:`media_files` expands the inputs (files; folders, searched recursively, in sorted
order) into photo and video files. :func:`iter_frames` yields a photo as one frame
(``frame`` 0, ``time`` NaN) and a video, decoded by PyAV (FFmpeg), as every ``every``-th
frame with its presentation time in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dmtl.errors import DataError, MissingDependencyError

PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
MANIFEST_SUFFIXES = (".csv", ".parquet", ".npy")


@dataclass(frozen=True)
class Frame:
    """One picture to find faces in: its file, frame number, time (s; NaN for a photo) and
    pixels ``(H, W, 3)`` ``uint8`` RGB."""

    file: str
    index: int
    time: float
    rgb: np.ndarray


def is_video(path: Path) -> bool:
    """Whether ``path`` names a video file (by its suffix)."""
    return path.suffix.lower() in VIDEO_SUFFIXES


def media_files(inputs: Sequence[Path]) -> list[Path]:
    """Photo and video files of ``inputs``, in the order given (folders: sorted)."""
    files: list[Path] = []
    for given in inputs:
        if given.is_dir():
            found = sorted(
                p for p in given.rglob("*")
                if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES + VIDEO_SUFFIXES
            )
            if not found:
                raise DataError(f"{given}: no photo or video files in this folder")
            files.extend(found)
        elif not given.is_file():
            raise DataError(f"{given}: no such file or folder")
        elif given.suffix.lower() in PHOTO_SUFFIXES + VIDEO_SUFFIXES:
            files.append(given)
        else:
            raise DataError(
                f"{given}: not a photo ({', '.join(PHOTO_SUFFIXES)}) or a video "
                f"({', '.join(VIDEO_SUFFIXES)})"
            )
    return files


def iter_frames(path: Path, every: int = 1) -> Iterator[Frame]:
    """The frames of a photo (one) or of a video (every ``every``-th), decoded in order."""
    if is_video(path):
        yield from _video_frames(path, every)
        return
    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
    except Exception as error:  # Pillow raises many types for broken files
        raise DataError(
            f"{path}: cannot decode the photo ({type(error).__name__}: {error})"
        ) from None
    yield Frame(str(path), 0, math.nan, rgb)


def import_av(purpose: str) -> Any:
    """PyAV, or a one-line error saying how to install it."""
    try:
        import av
    except ImportError:
        raise MissingDependencyError(
            f"{purpose} needs PyAV, which is not installed; pip install 'dmtl[faces]'"
        ) from None
    return av


def _video_frames(path: Path, every: int) -> Iterator[Frame]:
    av = import_av(f"reading the video {path}")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as error:
        raise DataError(f"{path}: cannot open the video ({error})") from None
    with container:
        if not container.streams.video:
            raise DataError(f"{path}: no video stream in this file")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or 0) or 25.0
        try:
            for index, frame in enumerate(container.decode(stream)):
                if index % every:
                    continue
                time = float(frame.time) if frame.time is not None else index / rate
                yield Frame(str(path), index, time, frame.to_ndarray(format="rgb24"))
        except av.error.FFmpegError as error:
            raise DataError(f"{path}: cannot decode the video ({error})") from None


__all__ = [
    "MANIFEST_SUFFIXES",
    "PHOTO_SUFFIXES",
    "VIDEO_SUFFIXES",
    "Frame",
    "import_av",
    "is_video",
    "iter_frames",
    "media_files",
]
