r"""Image transforms: train-time augmentation presets and the deterministic evaluation crop.

Inputs reach a transform as float tensors ``(C, H, W)`` with values in [0, 1] (decoded
image files, or image arrays); normalisation ``(x - mean) / std`` comes after, in the
source. Every transform is built from ``torchvision.transforms.v2`` (``pip install
'dmtl[vision]'``), draws from torch's global generator (which a DataLoader seeds per
worker) and outputs the model's input size ``S = (H_out, W_out)``.

``input.augment`` presets, applied to training inputs only:

============== ======================================================================
``none``       the evaluation transform below (nothing random)
``light``      ``RandomResizedCrop(S, scale=input.crop_scale, ratio=(3/4, 4/3))``,
               then ``RandomHorizontalFlip(p=0.5)``
``standard``   ``light``, then ``ColorJitter(brightness=0.4, contrast=0.4,
               saturation=0.4)`` (timm's default jitter; no hue)
``randaugment`` ``light``, then ``RandAugment(num_ops=2, magnitude=9)``
============== ======================================================================

``RandomResizedCrop`` takes a window of ``scale`` of the decoded image's area and an
aspect ratio in ``ratio``, and resizes it to ``S`` (bilinear, antialiased).
``input.crop_scale`` is ``(0.5, 1.0)`` by default: face and product photos are already
framed, so ImageNet's ``(0.08, 1.0)`` would often cut the face out.

A custom ``package.module:factory`` is called as ``factory(size=S, channels=C)`` and
returns a callable ``(C, H, W) -> (C, *S)``; its output shape is checked.

**Evaluation** (and training with ``none``): image files are decoded at the side
``L = floor(image_size / crop_pct)`` (:func:`decode_side`) and
the centre ``S`` is kept (``CenterCrop``); with ``crop_pct = 1`` (the default without a
pretrained backbone) nothing is cropped. This is timm's evaluation rule
(``resize(image_size / crop_pct)``, ``center_crop(image_size)``), except that dmtl
resizes both sides to ``L`` (squares; face crops are square) where timm keeps the aspect
ratio by resizing the shorter side.

>>> import torch
>>> crop = eval_transform((10, 10), (8, 8))
>>> crop(torch.arange(100.0).reshape(1, 10, 10))[0, 0, :3].tolist()
[11.0, 12.0, 13.0]
>>> eval_transform((8, 8), (8, 8)) is None
True
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch import Tensor

from dmtl.errors import ConfigError, DataError, MissingDependencyError, SpecError
from dmtl.registry import AUGMENT_FACTORY_PARAMETERS, factory_problem

if TYPE_CHECKING:
    from dmtl.data.sources import Source

Transform = Callable[[Tensor], Tensor]
"""A transform of one input ``(C, H, W) -> (C, H', W')``."""

VISION_EXTRA = "pip install 'dmtl[vision]'"
RATIO = (3.0 / 4.0, 4.0 / 3.0)
"""Aspect-ratio range of the random resized crop (torchvision's default)."""
JITTER = 0.4
"""Brightness, contrast and saturation jitter of the ``standard`` preset (timm's default)."""
RANDAUGMENT_OPS, RANDAUGMENT_MAGNITUDE = 2, 9


def _v2(purpose: str) -> Any:
    try:
        from torchvision.transforms import v2
    except ImportError:
        raise MissingDependencyError(
            f"{purpose} needs torchvision, which is not installed; {VISION_EXTRA}"
        ) from None
    return v2


def decode_side(image_size: int, crop_pct: float) -> int:
    """The side ``floor(image_size / crop_pct)`` images are decoded at (timm's ``scale_size``).

    >>> decode_side(224, 0.95), decode_side(224, 0.875), decode_side(112, 1.0)
    (235, 256, 112)
    """
    return math.floor(image_size / crop_pct)


def train_transform(
    augment: str,
    size: tuple[int, int],
    channels: int,
    crop_scale: tuple[float, float] = (0.5, 1.0),
) -> Transform | None:
    """The training transform of preset ``augment`` (module docstring) with output ``size``.

    ``None`` for ``none``: training then uses the evaluation transform.
    """
    if augment == "none":
        return None
    if ":" in augment:
        return _factory_transform(augment, size, channels)
    v2 = _v2(f"input.augment {augment!r}")
    ops: list[Any] = [
        v2.RandomResizedCrop(size, scale=crop_scale, ratio=RATIO, antialias=True),
        v2.RandomHorizontalFlip(p=0.5),
    ]
    if augment == "standard":
        ops.append(v2.ColorJitter(brightness=JITTER, contrast=JITTER, saturation=JITTER))
    elif augment == "randaugment":
        ops.append(v2.RandAugment(num_ops=RANDAUGMENT_OPS, magnitude=RANDAUGMENT_MAGNITUDE))
    elif augment != "light":
        raise SpecError(f"input.augment {augment!r}: unknown preset")
    return v2.Compose(ops)


def eval_transform(decoded: tuple[int, int], size: tuple[int, int]) -> Transform | None:
    """The centre ``size`` crop of an input of spatial size ``decoded``; ``None`` if equal."""
    if tuple(decoded) == tuple(size):
        return None
    if decoded[0] < size[0] or decoded[1] < size[1]:
        raise DataError(f"inputs of size {decoded} are smaller than the crop {size}")
    v2 = _v2("the evaluation centre crop (input.crop_pct)")
    return v2.CenterCrop(size)


@dataclasses.dataclass(frozen=True)
class CheckedTransform:
    """A user transform whose output shape is checked, so a wrong one fails by its name."""

    transform: Transform
    shape: tuple[int, ...]
    name: str

    def __call__(self, x: Tensor) -> Tensor:
        out = self.transform(x)
        if not isinstance(out, Tensor) or tuple(out.shape) != self.shape:
            found = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise DataError(
                f"input.augment {self.name!r}: the transform returned {found}, "
                f"expected a tensor of shape {self.shape}"
            )
        return out


def _factory_transform(name: str, size: tuple[int, int], channels: int) -> Transform:
    module_name, _, function_name = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(
            f"input.augment {name!r}: cannot import {module_name!r} ({error})"
        ) from None
    factory = getattr(module, function_name, None)
    if not callable(factory):
        raise ConfigError(
            f"input.augment {name!r}: {module_name!r} has no callable {function_name!r}"
        )
    problem = factory_problem(factory, module_name, AUGMENT_FACTORY_PARAMETERS)
    if problem is not None:  # never call what is not an augmentation factory
        raise ConfigError(f"input.augment {name!r} is not an augmentation factory: {problem}")
    transform = factory(size=size, channels=channels)
    if not callable(transform):
        raise ConfigError(
            f"input.augment {name!r}: the factory returned {type(transform).__name__}, "
            "expected a callable on (C, H, W) tensors"
        )
    return CheckedTransform(transform, (channels, *size), name)


def with_input_transforms(
    source: Source,
    augment: str,
    image_size: int | None,
    crop_scale: tuple[float, float],
    image_files: bool,
    where: str,
) -> Source:
    """``source`` with the training transform of preset ``augment`` and the evaluation crop.

    The output size is ``image_size`` for a source of image files (``image_files``; decoded
    at the larger side ``floor(image_size / crop_pct)``), else the inputs' own size. Vector
    inputs take no transform; ``where`` names the source's settings in messages.
    """
    if len(source) == 0:
        return source
    shape = tuple(int(s) for s in source.raw_input(0).shape)
    if len(shape) != 3:
        if augment != "none":
            raise DataError(
                f"{where}.input.augment: augmentation needs image inputs (C, H, W); "
                f"source {source.name!r} has inputs of shape {shape}"
            )
        return source
    decoded = (shape[1], shape[2])
    side = image_size
    size = (side, side) if side is not None and image_files else decoded
    return source.with_transforms(
        train_transform(augment, size, shape[0], crop_scale),
        eval_transform(decoded, size),
    )


__all__ = [
    "CheckedTransform",
    "Transform",
    "decode_side",
    "eval_transform",
    "train_transform",
    "with_input_transforms",
]
