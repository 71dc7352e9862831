"""Face detectors behind one registry: a name -> a factory and its typed options.

Every detector takes an RGB photo ``(H, W, 3)`` ``uint8`` and returns :class:`Face` boxes
in that photo's pixels. Each first shrinks the photo so that its longer side is at most
``max_side`` (detection cost grows with the area; faces in video are rarely small),
then maps the boxes back.

========  =================================================================  ==========
name      what                                                               needs
========  =================================================================  ==========
``haar``  OpenCV's Haar cascade ``haarcascade_frontalface_default.xml``,     OpenCV < 5
          shipped in opencv-python-headless (``cv2.data.haarcascades``)
``lbp``   OpenCV's LBP frontal-face cascade as scikit-image ships it         scikit-image
          (``skimage.data.lbp_frontal_face_cascade_filename``); no score
``yunet`` YuNet (OpenCV Zoo, ONNX) through ``cv2.FaceDetectorYN``: boxes,    OpenCV >= 4.8
          scores and 5 landmarks; the model is fetched on first use into
          the cache (SHA-256 checked) or given as ``model: <path>``
========  =================================================================  ==========

``auto`` (the default) is ``haar`` where this OpenCV has Haar cascades (OpenCV 5 moved
them out of the main package), else ``lbp``: both work offline.

Register another with ``@register_detector("name", OptionsModel)`` on a factory
``OptionsModel -> Detector``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dmtl.data.crops import Box
from dmtl.errors import ConfigError, MissingDependencyError, SpecError
from dmtl.inference.downloads import cached_file

FACES_EXTRA = "pip install 'dmtl[faces]'"


@dataclass(frozen=True)
class Face:
    """A detected face: ``box`` ``(x, y, w, h)`` in photo pixels, the detector's ``score``
    (NaN where it gives none) and ``landmarks`` ``(5, 2)`` (eyes, nose tip, mouth corners;
    the eye on the image's right first) or ``None``."""

    box: Box
    score: float = float("nan")
    landmarks: np.ndarray | None = None


class Detector(Protocol):
    """Finds faces in an RGB photo."""

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """The faces of ``rgb`` ``(H, W, 3)`` ``uint8``."""
        ...


class DetectorOptions(BaseModel):
    """Options every detector has: ``max_side``, the longer side (pixels) the photo is
    shrunk to before detection (0: never shrink)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_side: int = Field(default=320, ge=0)


O = TypeVar("O", bound=DetectorOptions)
Factory = Callable[[Any], Detector]


@dataclass(frozen=True)
class DetectorEntry:
    """A registered detector: its factory and the pydantic model of its options."""

    factory: Factory
    options: type[DetectorOptions]


DETECTORS: dict[str, DetectorEntry] = {}


def register_detector(
    name: str, options: type[O]
) -> Callable[[Callable[[O], Detector]], Callable[[O], Detector]]:
    """Register a factory ``options -> Detector`` under ``name`` (decorator)."""

    def decorate(factory: Callable[[O], Detector]) -> Callable[[O], Detector]:
        DETECTORS[name] = DetectorEntry(factory, options)
        return factory

    return decorate


def default_detector() -> str:
    """``haar`` where OpenCV has its Haar cascades, else ``lbp``."""
    try:
        import cv2
    except ImportError:
        return "lbp"
    return "haar" if hasattr(cv2, "CascadeClassifier") else "lbp"


def create_detector(name: str = "auto", options: dict[str, Any] | None = None) -> Detector:
    """The detector ``name`` with ``options`` checked by its options model."""
    name = default_detector() if name == "auto" else name
    entry = DETECTORS.get(name)
    if entry is None:
        known = ", ".join(["auto", *sorted(DETECTORS)])
        raise ConfigError([("--detector", f"unknown face detector {name!r}; known: {known}")])
    try:
        checked = entry.options.model_validate(options or {})
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "options"
        raise ConfigError([(f"detector {name} option {where}", first["msg"])]) from None
    return entry.factory(checked)


def parse_detector_options(items: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> a mapping (values as YAML scalars: numbers, booleans)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError([("--detector-option", f"expected KEY=VALUE, got {item!r}")])
        out[key.strip()] = yaml.safe_load(value)
    return out


def shrink(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """``rgb`` shrunk (area filter) so that its longer side is at most ``max_side``, and the
    factor from its pixels back to the photo's (1 when not shrunk)."""
    height, width = rgb.shape[:2]
    longer = max(height, width)
    if max_side <= 0 or longer <= max_side:
        return rgb, 1.0
    cv2 = import_cv2("shrinking photos for face detection")
    factor = longer / max_side
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), factor


def import_cv2(purpose: str) -> Any:
    """``cv2`` (opencv-python-headless), or a one-line error saying how to install it."""
    try:
        import cv2
    except ImportError:
        raise MissingDependencyError(
            f"{purpose} needs OpenCV, which is not installed; {FACES_EXTRA}"
        ) from None
    return cv2


# ---- Haar (OpenCV < 5) -------------------------------------------------------------------------


class HaarOptions(DetectorOptions):
    """``scale_factor``: the step between the scales searched; ``min_neighbors``: overlapping
    hits a face needs; ``min_size``: the smallest face, in pixels of the shrunk photo."""

    scale_factor: float = Field(default=1.15, gt=1.0)
    min_neighbors: int = Field(default=3, ge=0)
    min_size: int = Field(default=20, ge=8)
    cascade: str = "haarcascade_frontalface_default.xml"


class HaarDetector:
    """OpenCV's ``CascadeClassifier.detectMultiScale3``; the score is its level weight."""

    def __init__(self, options: HaarOptions) -> None:
        cv2 = import_cv2("the haar face detector")
        if not hasattr(cv2, "CascadeClassifier"):
            raise MissingDependencyError(
                f"the haar face detector needs OpenCV < 5 (this is {cv2.__version__}, which has "
                "no Haar cascades); use --detector lbp or yunet, or "
                "pip install 'opencv-python-headless<5'"
            )
        path = Path(cv2.data.haarcascades) / options.cascade
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise SpecError(f"{path}: cannot load the Haar cascade")
        self.cv2, self.options = cv2, options

    def detect(self, rgb: np.ndarray) -> list[Face]:
        small, factor = shrink(rgb, self.options.max_side)
        grey = self.cv2.cvtColor(small, self.cv2.COLOR_RGB2GRAY)
        side = self.options.min_size
        boxes, _, weights = self.cascade.detectMultiScale3(
            grey,
            scaleFactor=self.options.scale_factor,
            minNeighbors=self.options.min_neighbors,
            minSize=(side, side),
            outputRejectLevels=True,
        )
        return [
            Face(tuple(float(v) * factor for v in box), float(weight))  # type: ignore[arg-type]
            for box, weight in zip(boxes, np.ravel(weights), strict=True)
        ]


@register_detector("haar", HaarOptions)
def _haar(options: HaarOptions) -> Detector:
    return HaarDetector(options)


# ---- LBP (scikit-image) ------------------------------------------------------------------------


class LbpOptions(DetectorOptions):
    """``scale_factor``/``step_ratio``: the scale and position steps of the search (larger
    is faster and coarser); ``min_neighbors``: overlapping hits a face needs;
    ``min_size``: the smallest face, in pixels of the shrunk photo."""

    max_side: int = Field(default=288, ge=0)
    scale_factor: float = Field(default=1.25, gt=1.0)
    step_ratio: float = Field(default=1.5, gt=0.0)
    min_neighbors: int = Field(default=2, ge=1)
    min_size: int = Field(default=20, ge=8)


class LbpDetector:
    """scikit-image's ``Cascade.detect_multi_scale`` on its shipped LBP frontal-face cascade,
    on the histogram-equalised grey photo (OpenCV)."""

    def __init__(self, options: LbpOptions) -> None:
        try:
            from skimage.data import lbp_frontal_face_cascade_filename
            from skimage.feature import Cascade
        except ImportError:
            raise MissingDependencyError(
                f"the lbp face detector needs scikit-image, which is not installed; {FACES_EXTRA}"
            ) from None
        self.cascade = Cascade(lbp_frontal_face_cascade_filename())
        self.options = options

    def detect(self, rgb: np.ndarray) -> list[Face]:
        cv2 = import_cv2("the lbp face detector")
        small, factor = shrink(rgb, self.options.max_side)
        grey = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        height, width = grey.shape
        found = self.cascade.detect_multi_scale(
            img=grey,
            scale_factor=self.options.scale_factor,
            step_ratio=self.options.step_ratio,
            min_size=(self.options.min_size, self.options.min_size),
            max_size=(height, width),
            min_neighbor_number=self.options.min_neighbors,
        )
        return [
            Face((d["c"] * factor, d["r"] * factor, d["width"] * factor, d["height"] * factor))
            for d in found
        ]


@register_detector("lbp", LbpOptions)
def _lbp(options: LbpOptions) -> Detector:
    return LbpDetector(options)


# ---- YuNet (OpenCV Zoo, ONNX) ------------------------------------------------------------------

YUNET_URL = (
    "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
    "face_detection_yunet_2023mar.onnx"
)
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"


class YunetOptions(DetectorOptions):
    """``model``: a local ONNX file (default: fetched from ``url`` into the cache, checked
    against ``sha256``); ``score_threshold``, ``nms_threshold``: YuNet's own."""

    model: Path | None = None
    url: str = YUNET_URL
    sha256: str = YUNET_SHA256
    score_threshold: float = Field(default=0.6, ge=0.0, le=1.0)
    nms_threshold: float = Field(default=0.3, ge=0.0, le=1.0)


class YunetDetector:
    """``cv2.FaceDetectorYN``: boxes, scores and 5 landmarks per face."""

    def __init__(self, options: YunetOptions) -> None:
        cv2 = import_cv2("the yunet face detector")
        model = options.model or cached_file(options.url, options.sha256)
        if not Path(model).is_file():
            raise SpecError(f"{model}: no such YuNet model file")
        self.net = cv2.FaceDetectorYN.create(
            str(model), "", (320, 320), options.score_threshold, options.nms_threshold
        )
        self.options = options

    def detect(self, rgb: np.ndarray) -> list[Face]:
        small, factor = shrink(rgb, self.options.max_side)
        self.net.setInputSize((small.shape[1], small.shape[0]))
        _, found = self.net.detect(np.ascontiguousarray(small[:, :, ::-1]))  # BGR
        faces = []
        for row in [] if found is None else found:
            box = tuple(float(v) * factor for v in row[:4])
            landmarks = np.asarray(row[4:14], dtype=np.float64).reshape(5, 2) * factor
            faces.append(Face(box, float(row[14]), landmarks))  # type: ignore[arg-type]
        return faces


@register_detector("yunet", YunetOptions)
def _yunet(options: YunetOptions) -> Detector:
    return YunetDetector(options)


__all__ = [
    "DETECTORS",
    "FACES_EXTRA",
    "Detector",
    "DetectorEntry",
    "DetectorOptions",
    "Face",
    "HaarOptions",
    "LbpOptions",
    "YunetOptions",
    "create_detector",
    "default_detector",
    "parse_detector_options",
    "register_detector",
]
