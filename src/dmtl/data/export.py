"""Export a source as image files plus a standard ``manifest.csv``.

The exported folder is read back by the generic image path
(:meth:`dmtl.data.sources.Source.from_manifest`) exactly like user data, so
built-in datasets exercise that path too.

**De-normalisation rule.** Each sample's *raw* input (before augmentation and
normalisation; see :meth:`~dmtl.data.sources.Source.raw_input`) must lie in
``[0, 1]`` (as the arrays of the built-in datasets do); it is written as
``uint8 = round(x * 255)``, grey (1 channel) or RGB (3 channels). Reading back
gives ``uint8 / 255``, so the round trip is exact for values of the form
``k / 255`` and otherwise within half a step (``0.5 / 255``); e.g. ``k / 16``
values are not all 8-bit representable. Choose a lossless ``image_format``
(PNG, the default) for exactness.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dmtl.data.manifest import Manifest, write_manifest
from dmtl.data.sources import Source
from dmtl.errors import DataError

MANIFEST_NAME = "manifest.csv"
IMAGE_DIR = "images"
_TOLERANCE = 1e-6


def to_uint8(x: np.ndarray) -> np.ndarray:
    """``round(clip(x, 0, 1) * 255)`` as ``uint8`` (the export rule)."""
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def export_source(
    source: Source,
    out_dir: str | Path,
    image_format: str = "png",
    *,
    overwrite: bool = False,
) -> Path:
    """Write every sample of ``source`` under ``out_dir/images/`` and ``out_dir/manifest.csv``.

    The manifest keeps the source's ids, splits and current (encoded) labels,
    written as class names. Returns the manifest's path.
    """
    out = Path(out_dir)
    manifest_path = out / MANIFEST_NAME
    suffix = "." + image_format.lower().lstrip(".")
    if suffix not in Image.registered_extensions():
        raise DataError(f"unknown image format {image_format!r}")
    if manifest_path.exists() and not overwrite:
        raise DataError(f"{manifest_path} exists; pass overwrite=True (--overwrite) to replace it")
    if len(source) == 0:
        raise DataError(f"source {source.name!r} is empty: nothing to export")
    shape = source.input_shape
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise DataError(
            f"source {source.name!r}: only images (C, H, W) with 1 or 3 channels can be "
            f"exported, got inputs of shape {shape}"
        )
    (out / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    width = len(str(len(source) - 1))
    paths: list[str] = []
    for i in range(len(source)):
        x = source.raw_input(i).numpy()
        low, high = float(x.min()), float(x.max())
        if low < -_TOLERANCE or high > 1 + _TOLERANCE:
            raise DataError(
                f"source {source.name!r}, sample {i} (id {source.ids[i]!r}): values lie in "
                f"[{low:.4g}, {high:.4g}]; export needs raw inputs in [0, 1]"
            )
        pixels = to_uint8(x)
        image = (
            Image.fromarray(pixels[0], mode="L")
            if pixels.shape[0] == 1
            else Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)), mode="RGB")
        )
        relative = f"{IMAGE_DIR}/{i:0{width}d}{suffix}"
        image.save(out / relative)
        paths.append(relative)
    manifest = Manifest(
        source.tasks,
        source.labels,
        image=np.asarray(paths, dtype=object),
        ids=source.ids,
        split=source.splits,
        origin=str(manifest_path),
        root=out,
    )
    return write_manifest(manifest_path, manifest)
