"""From photos and videos to named predictions per face: ``dmtl.Predictor(model).predict(...)``.

For every frame (a photo is one frame; a video every ``every``-th frame, decoded by
PyAV), faces are detected (:mod:`dmtl.inference.detectors`), given a track id across a
video's frames (:mod:`dmtl.inference.tracking`), cut as the model's training images were
(the card's crop recipe, :mod:`dmtl.data.crops`), and the model predicts every task for
a batch of faces at a time. With ``faces`` off, each whole frame is one input.

One row per face per frame (:data:`FACE_COLUMNS` first): ``file``, ``frame``, ``time``
(seconds; NaN for a photo), ``face`` (the track id; per photo, 0, 1, ... by size),
``x``, ``y``, ``w``, ``h`` (the box, photo pixels), ``score`` (the detector's; NaN where
it gives none); then, as ``dmtl predict`` writes for a manifest, the decisions
(``<task>`` = the predicted class, ``<task>/<label>`` = the thresholded label,
``<task>/<target>`` = the regression value) and the probabilities ``p:<task>/<name>``.
With ``smooth=a``, each track's probabilities and values are an exponential moving
average over its frames (``s_t = a x_t + (1 - a) s_{t-1}``) before the decisions.

``timings`` holds the seconds spent per stage (decode, detect, track, crop, model) and
``frames`` the frames read, for throughput figures.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from dmtl.data.crops import DEFAULT_RECIPE, CropRecipe, crop_face
from dmtl.data.transforms import decode_side
from dmtl.errors import ConfigError, SpecError
from dmtl.inference.card import ModelCard
from dmtl.inference.detectors import Detector, Face, create_detector
from dmtl.inference.media import Frame, iter_frames, media_files
from dmtl.inference.predict import prediction_frame
from dmtl.inference.runtime import Predictor as Model
from dmtl.inference.runtime import load_predictor
from dmtl.inference.tracking import IouTracker, ema

FACE_COLUMNS = ("file", "frame", "time", "face", "x", "y", "w", "h", "score")
STAGES = ("decode", "detect", "track", "crop", "model")
NO_RECIPE_WARNING = (
    "the model card records no face crop recipe (the model was not trained through a face "
    "dataset reader); faces are cut as a square of 1.25 times the detected box"
)


@dataclass
class _Rows:
    """The rows gathered so far: face columns and every task's probabilities."""

    meta: dict[str, list[Any]] = field(default_factory=lambda: {c: [] for c in FACE_COLUMNS})
    probs: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    pending: list[np.ndarray] = field(default_factory=list)


class Predictor:
    """Predictions per face for photos and videos (see the module docstring).

    ``model``: a checkpoint, an ``.onnx`` or TorchScript file written by ``dmtl export``,
    or a loaded :class:`~dmtl.inference.runtime.Predictor`. ``faces``: detect faces first
    (default: when the card says the model was trained on face crops). ``detector`` /
    ``detector_options``: a registered detector and its options. ``every``: predict every
    ``every``-th video frame. ``max_faces``: at most this many faces per frame, the
    largest. ``smooth``: the EMA factor of each track (``None``: no smoothing).
    """

    def __init__(
        self,
        model: str | Path | Model,
        *,
        faces: bool | None = None,
        detector: str = "auto",
        detector_options: dict[str, Any] | None = None,
        every: int = 1,
        batch_size: int = 32,
        max_faces: int | None = None,
        smooth: float | None = None,
    ) -> None:
        self.model = load_predictor(Path(model)) if isinstance(model, str | Path) else model
        self.card: ModelCard = self.model.card
        _check_options(every, batch_size, max_faces, smooth)
        self.faces = self.card.crop is not None if faces is None else faces
        self.every, self.batch_size = every, batch_size
        self.max_faces, self.smooth = max_faces, smooth
        self.side = _input_side(self.card)
        self.recipe: CropRecipe = self.card.crop or DEFAULT_RECIPE
        if self.faces and self.card.crop is None:
            warnings.warn(NO_RECIPE_WARNING, UserWarning, stacklevel=2)
        self.detector: Detector | None = (
            create_detector(detector, detector_options) if self.faces else None
        )
        self.timings: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self.frames = 0

    @contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] += time.perf_counter() - start

    def predict(self, inputs: str | Path | Sequence[str | Path]) -> pd.DataFrame:
        """One row per face per frame of the photos and videos ``inputs`` (files or folders)."""
        given = [inputs] if isinstance(inputs, str | Path) else list(inputs)
        rows = _Rows(probs={t.name: [] for t in self.card.tasks})
        for path in media_files([Path(p) for p in given]):
            self._predict_file(path, rows)
        self._run_model(rows)
        return self._frame(rows)

    def _predict_file(self, path: Path, rows: _Rows) -> None:
        tracker = IouTracker()
        frames = iter_frames(path, self.every)
        while True:
            with self._timed("decode"):
                frame = next(frames, None)
            if frame is None:
                return
            self.frames += 1
            faces = self._detect(frame)
            with self._timed("track"):
                ids = tracker.update([f.box for f in faces]) if self.faces else [0]
            with self._timed("crop"):
                self._add_faces(frame, faces, ids, rows)
            if len(rows.pending) >= self.batch_size:
                self._run_model(rows)

    def _detect(self, frame: Frame) -> list[Face]:
        height, width = frame.rgb.shape[:2]
        if self.detector is None:
            return [Face((0.0, 0.0, float(width), float(height)))]
        with self._timed("detect"):
            faces = self.detector.detect(frame.rgb)
        faces.sort(key=lambda f: -f.box[2] * f.box[3])
        return faces[: self.max_faces] if self.max_faces else faces

    def _add_faces(self, frame: Frame, faces: list[Face], ids: list[int], rows: _Rows) -> None:
        if not faces:
            return
        photo = Image.fromarray(frame.rgb)
        for face, face_id in zip(faces, ids, strict=True):
            if self.detector is None:
                crop = photo.resize((self.side, self.side), Image.Resampling.BILINEAR)
            else:
                crop = crop_face(photo, face.box, self.recipe, face.landmarks, (self.side,) * 2)
            if self.card.channels == 1:
                crop = crop.convert("L")
            rows.pending.append(np.asarray(crop))
            for name, value in zip(
                FACE_COLUMNS,
                (frame.file, frame.index, frame.time, face_id, *face.box, face.score),
                strict=True,
            ):
                rows.meta[name].append(value)

    def _run_model(self, rows: _Rows) -> None:
        if not rows.pending:
            return
        with self._timed("crop"):
            x = self._normalised(np.stack(rows.pending))
        rows.pending.clear()
        with self._timed("model"):
            probs = self.model.probabilities(x)
        for name, p in probs.items():
            rows.probs[name].append(p.float())

    def _normalised(self, pixels: np.ndarray) -> torch.Tensor:
        """``(N, L, L[, C])`` ``uint8`` -> the model's ``(N, C, S, S)`` input: the centre
        ``image_size`` crop, ``/ 255``, ``(x - mean) / std``."""
        x = torch.from_numpy(pixels)
        x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
        size = self.card.image_size or self.side
        top = (self.side - size) // 2
        x = x[:, :, top : top + size, top : top + size].float().div_(255.0)
        if self.card.mean is not None:
            x = x.sub_(torch.tensor(self.card.mean).view(1, -1, 1, 1))
        if self.card.std is not None:
            x = x.div_(torch.tensor(self.card.std).view(1, -1, 1, 1))
        return x.contiguous()

    def _frame(self, rows: _Rows) -> pd.DataFrame:
        meta = pd.DataFrame(rows.meta)
        probs = {
            t.name: torch.cat(rows.probs[t.name]) if rows.probs[t.name]
            else torch.empty(0, t.num_outputs)
            for t in self.card.tasks
        }
        if self.smooth is not None and len(meta):
            groups = list(zip(meta["file"], meta["face"], strict=True))
            probs = {
                name: torch.from_numpy(ema(p.numpy(), groups, self.smooth)).float()
                for name, p in probs.items()
            }
        predictions = prediction_frame(self.card, probs, range(len(meta))).drop(columns="id")
        return pd.concat([meta, predictions], axis=1)


def _input_side(card: ModelCard) -> int:
    """The side faces are cut at: the card's decode side (``image_size / crop_pct``)."""
    shape = card.input_shape
    if card.image_size is None or len(shape) != 3 or card.channels not in (1, 3):
        raise SpecError(
            f"model {card.name!r} takes inputs of shape {shape}, not images; it cannot "
            "predict on photos or videos"
        )
    return decode_side(card.image_size, card.crop_pct)


def _check_options(
    every: int, batch_size: int, max_faces: int | None, smooth: float | None
) -> None:
    problems = []
    if every < 1:
        problems.append(("--every", f"a number of frames >= 1, got {every}"))
    if batch_size < 1:
        problems.append(("--batch-size", f">= 1, got {batch_size}"))
    if max_faces is not None and max_faces < 1:
        problems.append(("--max-faces", f">= 1, got {max_faces}"))
    if smooth is not None and not 0.0 < smooth <= 1.0:
        problems.append(("--smooth", f"a factor in (0, 1], got {smooth}"))
    if problems:
        raise ConfigError(problems)


def write_table(frame: pd.DataFrame, output: Path) -> None:
    """``frame`` as Parquet (``.parquet``) or CSV (anything else)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() == ".parquet":
        frame.to_parquet(output, index=False)
    else:
        frame.to_csv(output, index=False)


__all__ = ["FACE_COLUMNS", "STAGES", "Predictor", "write_table"]
