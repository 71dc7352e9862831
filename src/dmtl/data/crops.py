"""Face crop recipes: how a dataset's face images were cut from the photos they come from.

A model trained on face crops sees faces framed one way (a loose square around the
detected box, or a similarity transform that puts the eyes at fixed places). To
predict on a photo or a video, a detected face must be cut the same way. A
:class:`CropRecipe` says how; each face dataset reader declares its recipe
(``register_reader(name, crop=...)``), the model card records it, and
``dmtl predict --faces`` applies it (:func:`crop_face`).

Both kinds of recipe are one affine map from output pixels to photo pixels:

- ``square``: the detected box ``(x, y, w, h)``, centre ``c``, side
  ``s = box_scale * max(w, h)``; output pixel ``(u, v)`` of a ``W x H`` output reads
  photo pixel ``c + (u / W - 1/2, v / H - 1/2) * s``.
- ``eye_aligned``: the similarity transform (rotation, uniform scale, shift) that
  maps the detected eye centres to ``left_eye`` / ``right_eye`` (fractions of the
  output's width and height; "left" is the eye on the image's left). Without
  landmarks the eyes are estimated from the box (:data:`BOX_EYES`).

Pixels outside the photo are black, as in the datasets' own crops.

>>> recipe = CropRecipe(kind="square", box_scale=1.0, size=(4, 4))
>>> affine_to_photo(recipe, (10.0, 20.0, 8.0, 8.0), None)
(2.0, 0.0, 10.0, 0.0, 2.0, 20.0)
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

BOX_EYES = ((0.3, 0.38), (0.7, 0.38))
"""Where the eyes lie in a frontal face detector's box (fractions of its width and height),
used to align a face whose detector gives no landmarks (the cascades)."""


class CropRecipe(BaseModel):
    """How the face images of a dataset were cut (see the module docstring).

    ``kind``: ``square`` (a square around the face box) or ``eye_aligned``.
    ``box_scale``: the square's side over the box's longer side. ``size``: the output's
    ``(width, height)`` in pixels, as the dataset ships its images. ``left_eye`` /
    ``right_eye``: ``eye_aligned`` only, where the eyes land, as fractions of ``size``.
    ``colour``: ``rgb`` or ``grey``. ``note``: where the recipe comes from.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["square", "eye_aligned"] = "square"
    box_scale: float = Field(default=1.25, gt=0.0)
    size: tuple[int, int] = (112, 112)
    left_eye: tuple[float, float] = (0.34, 0.46)
    right_eye: tuple[float, float] = (0.66, 0.46)
    colour: Literal["rgb", "grey"] = "rgb"
    note: str = ""


DEFAULT_RECIPE = CropRecipe(note="dmtl's default: a square of 1.25 times the detected box")
"""The crop used for a model whose card has no recipe (a warning says so)."""

Box = tuple[float, float, float, float]
"""A face box ``(x, y, width, height)`` in photo pixels."""


def affine_to_photo(
    recipe: CropRecipe, box: Box, landmarks: np.ndarray | None
) -> tuple[float, float, float, float, float, float]:
    """The affine map ``(a, b, c, d, e, f)`` from output pixel ``(u, v)`` to photo pixel
    ``(a u + b v + c, d u + e v + f)`` (Pillow's ``Image.AFFINE`` data).

    ``landmarks``: ``(>= 2, 2)`` with the eye on the image's right first, then the
    eye on its left (YuNet's order), or ``None``.
    """
    width, height = recipe.size
    x, y, w, h = box
    if recipe.kind == "square":
        side = recipe.box_scale * max(w, h)
        cx, cy = x + w / 2, y + h / 2
        sx, sy = side / width, side / height
        return (sx, 0.0, cx - side / 2, 0.0, sy, cy - side / 2)
    if landmarks is not None and len(landmarks) >= 2:
        right, left = np.asarray(landmarks[0], float), np.asarray(landmarks[1], float)
    else:
        left = np.array([x + BOX_EYES[0][0] * w, y + BOX_EYES[0][1] * h])
        right = np.array([x + BOX_EYES[1][0] * w, y + BOX_EYES[1][1] * h])
    out_left = np.array([recipe.left_eye[0] * width, recipe.left_eye[1] * height])
    out_right = np.array([recipe.right_eye[0] * width, recipe.right_eye[1] * height])
    return _similarity(out_left, out_right, left, right)


def _similarity(
    p: np.ndarray, q: np.ndarray, p_photo: np.ndarray, q_photo: np.ndarray
) -> tuple[float, float, float, float, float, float]:
    """The similarity ``z -> s R z + t`` with ``p -> p_photo`` and ``q -> q_photo``, as
    complex numbers: ``m = (q' - p') / (q - p)``, ``t = p' - m p``."""
    zp, zq = complex(*p), complex(*q)
    wp, wq = complex(*p_photo), complex(*q_photo)
    if zq == zp:
        raise ValueError("the recipe's two eye positions coincide")
    m = (wq - wp) / (zq - zp)
    t = wp - m * zp
    return (m.real, -m.imag, t.real, m.imag, m.real, t.imag)


def crop_face(
    photo: Image.Image,
    box: Box,
    recipe: CropRecipe,
    landmarks: np.ndarray | None = None,
    size: tuple[int, int] | None = None,
) -> Image.Image:
    """The face of ``photo`` at ``box`` cut as ``recipe`` says, ``recipe.size`` (or ``size``,
    ``(width, height)``) pixels, bilinear; a face much larger than the output is first
    reduced by an integer factor (box filter) so that it is not aliased."""
    a, b, c, d, e, f = affine_to_photo(recipe, box, landmarks)
    out_w, out_h = size or recipe.size
    if size is not None:  # the same field of view at another output size
        ku, kv = recipe.size[0] / out_w, recipe.size[1] / out_h
        a, b, d, e = a * ku, b * kv, d * ku, e * kv
    step = math.hypot(a, d)  # photo pixels per output pixel
    factor = int(step // 2) if step >= 4 else 1
    if factor > 1:
        photo = photo.reduce(factor)
        a, b, c, d, e, f = (v / factor for v in (a, b, c, d, e, f))
    if recipe.colour == "grey":
        photo = photo.convert("L").convert(photo.mode)
    return photo.transform(
        (out_w, out_h), Image.Transform.AFFINE, (a, b, c, d, e, f), Image.Resampling.BILINEAR
    )


def recipe_from_dict(data: dict[str, object] | None) -> CropRecipe | None:
    """A recipe from its JSON form (``None`` stays ``None``)."""
    return None if data is None else CropRecipe.model_validate(data)


__all__ = [
    "BOX_EYES",
    "DEFAULT_RECIPE",
    "Box",
    "CropRecipe",
    "affine_to_photo",
    "crop_face",
    "recipe_from_dict",
]
