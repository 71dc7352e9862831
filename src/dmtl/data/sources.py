"""Sources: one dataset each, with its tasks, encoded labels and an input reader.

Two kinds share the :class:`Source` interface:

- :class:`ImageSource`: image files on disk, decoded with Pillow, converted to grey
  (``channels=1``) or RGB (``channels=3``), optionally resized (bilinear) to
  ``image_size``, scaled to floats ``uint8 / 255`` in [0, 1];
- :class:`ArraySource`: an in-memory (or memory-mapped ``.npy``) array of shape
  ``(N, C, H, W)`` or ``(N, D)``; floats are used as they are, ``uint8`` is
  scaled by ``1 / 255``.

Then, for both, in one place (:meth:`Source.transform_input`): the training
augmentation, or without one the evaluation transform (a centre crop; see
:mod:`dmtl.data.transforms`), then the optional normalisation ``(x - mean) / std`` per
channel.

``source[i]`` is a :class:`Sample` whose labels are encoded per sample (class
index or ``-1``; label values or ``NaN``) for every task of the source;
``source.get_batch(rows)`` is a :class:`SampleBatch` of several rows at once. Labels
are turned into tensors once per source (:attr:`Source.label_tensors`) and a batch's
labels are taken by tensor indexing; array sources (and image sources cached in memory,
:meth:`Source.cache_in_memory`) take their inputs the same way, image sources decode one
file per row (DataLoader workers decode in parallel).
Sources are immutable in use: :meth:`Source.with_labels`, :meth:`Source.subset`,
:meth:`Source.split`, :meth:`Source.with_augment` and :meth:`Source.with_transforms`
return modified copies.

>>> import numpy as np
>>> from dmtl.core.tasks import CategoricalTask
>>> task = CategoricalTask("digit", ["0", "1"])
>>> labels = {"digit": np.array([0, 1, -1])}
>>> source = ArraySource("toy", [task], np.zeros((3, 4), np.float32), labels)
>>> sample = source[1]
>>> tuple(sample.x.shape), int(sample.labels["digit"])
((4,), 1)
"""

from __future__ import annotations

import copy
import functools
import os
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG
from typing import IO, Any, NamedTuple, TypeVar

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from dmtl._textfile import not_a_file
from dmtl.core.tasks import Task, check_unique_task_names
from dmtl.data.manifest import SPLITS, Manifest, check_encoded, read_manifest
from dmtl.errors import DataError

Augment = Callable[[Tensor], Tensor]
"""A transform of one input ``(C, H, W)``: the training augmentation or the evaluation crop
(built by :mod:`dmtl.data.transforms`)."""

_GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})
_SHOW_MISSING = 5


class Sample(NamedTuple):
    """One sample: input, encoded labels per task, index of its source in the loader."""

    x: Tensor
    labels: dict[str, Tensor]
    source: int = 0


class SampleBatch(NamedTuple):
    """Rows of one source at once: inputs ``(n, ...)``, encoded labels ``(n, ...)`` per task,
    index of the source in the loader."""

    x: Tensor
    labels: dict[str, Tensor]
    source: int = 0


def _stats(value: float | Sequence[float] | None, what: str, name: str) -> Tensor | None:
    if value is None:
        return None
    out = torch.as_tensor(value, dtype=torch.float32).reshape(-1)
    if out.numel() == 0:
        raise DataError(f"source {name!r}: {what} is empty")
    return out


_S = TypeVar("_S", bound="Source")


class Source(Dataset[Sample]):
    """A named dataset: tasks, encoded labels (``self.labels``), ids, optional splits.

    Subclasses implement :meth:`raw_input` (the input before augmentation and
    normalisation) and :meth:`_take_inputs`. ``augment``: the training transform (random);
    ``eval_transform``: the deterministic one used when there is no ``augment`` (e.g. a
    centre crop). ``balance``: the categorical task whose classes the training sampler
    draws evenly from this source (``None``: rows drawn evenly).
    """

    def __init__(
        self,
        name: str,
        tasks: Sequence[Task],
        labels: Mapping[str, np.ndarray],
        *,
        num_samples: int,
        ids: Sequence[str] | np.ndarray | None = None,
        splits: Sequence[str] | np.ndarray | None = None,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        augment: Augment | None = None,
        eval_transform: Augment | None = None,
        labels_checked: bool = False,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise DataError(f"a source name must be a non-empty string, got {name!r}")
        self.name = name
        self.tasks: tuple[Task, ...] = tuple(tasks)
        check_unique_task_names(self.tasks)
        # Labels are validated once, where they enter dmtl: a manifest already did.
        self.labels = (
            {t.name: labels.get(t.name, t.unlabelled(num_samples)) for t in self.tasks}
            if labels_checked
            else check_encoded(self.tasks, labels, num_samples, f"source {name!r}")
        )
        self.ids: np.ndarray = (
            np.arange(num_samples).astype(str).astype(object)
            if ids is None
            else np.asarray(ids, dtype=object)
        )
        self.splits: np.ndarray | None = (
            None if splits is None else np.asarray(splits, dtype=object)
        )
        for what, value in (("ids", self.ids), ("splits", self.splits)):
            if value is not None and len(value) != num_samples:
                raise DataError(
                    f"source {name!r}: {what} has {len(value)} entries, expected {num_samples}"
                )
        if self.splits is not None:
            bad = np.flatnonzero(~np.isin(self.splits, SPLITS))
            if len(bad):
                raise DataError(
                    f"source {name!r}, sample {int(bad[0])}: split {self.splits[bad[0]]!r} "
                    f"is not one of {', '.join(SPLITS)}"
                )
        self.mean = _stats(mean, "mean", name)
        self.std = _stats(std, "std", name)
        if (self.mean is None) != (self.std is None):
            raise DataError(f"source {name!r}: give both mean and std, or neither")
        if self.std is not None and bool((self.std <= 0).any()):
            raise DataError(f"source {name!r}: std must be positive, got {self.std.tolist()}")
        self.augment = augment
        self.eval_transform = eval_transform
        self.balance: str | None = None
        self.skipped_corrupt = 0
        """Number of corrupt images left out (``skip_corrupt=True``)."""
        self.skipped_paths: list[str] = []

    # ------------------------------------------------------------------ labels

    @property
    def labels(self) -> dict[str, np.ndarray]:
        """Encoded labels per task (NumPy, one row per sample); replace, never edit in place."""
        return self._labels

    @labels.setter
    def labels(self, value: dict[str, np.ndarray]) -> None:
        self._labels = value
        self._label_tensors: dict[str, Tensor] | None = None

    @property
    def label_tensors(self) -> dict[str, Tensor]:
        """:attr:`labels` as tensors, made once per source (copies share them)."""
        if self._label_tensors is None:
            self._label_tensors = {
                name: torch.from_numpy(np.array(values, copy=True))
                for name, values in self._labels.items()
            }
        return self._label_tensors

    # ------------------------------------------------------------------ dataset protocol

    def __len__(self) -> int:
        return len(self.ids)

    def raw_input(self, i: int) -> Tensor:
        """Input ``i`` as a float tensor, before augmentation and normalisation."""
        raise NotImplementedError

    def raw_inputs(self, rows: np.ndarray) -> Tensor:
        """Inputs of ``rows`` stacked ``(n, ...)``, before augmentation and normalisation.

        One :meth:`raw_input` per row here; sources holding their inputs in memory index
        them at once.
        """
        return torch.stack([self.raw_input(int(i)) for i in rows])

    def _take_inputs(self, rows: np.ndarray) -> None:
        """Restrict the input reader of this (copied) source to ``rows``."""
        raise NotImplementedError

    @property
    def cached(self) -> bool:
        """Whether the inputs are held in memory (see :meth:`cache_in_memory`)."""
        return False

    @property
    def cache_bytes(self) -> int:
        """Memory the inputs held in memory take (0 when they are read at every access)."""
        return 0

    def cache_in_memory(self, max_bytes: float, where: str | None = None) -> Source:
        """A copy whose inputs are held in memory (the subclasses say how); refused with a
        :class:`~dmtl.errors.DataError` above ``max_bytes`` bytes or half the memory
        available. ``where`` names the setting in messages."""
        return copy.copy(self)

    def transform_inputs(self, x: Tensor) -> Tensor:
        """Raw inputs ``(n, ...)`` as the model takes them: :meth:`transform_input` of each
        row in order (so a batch draws the random numbers its samples would), or, without a
        transform, one normalisation of the whole batch (the same values)."""
        if self.augment is not None or self.eval_transform is not None:
            return torch.stack([self.transform_input(row) for row in x])
        if self.mean is None or self.std is None:
            return x
        shape = (1, -1, 1, 1) if x.dim() == 4 else (1, -1)
        return (x - self.mean.reshape(shape)) / self.std.reshape(shape)

    def get_batch(self, rows: Sequence[int] | np.ndarray) -> SampleBatch:
        """Rows ``rows`` at once: inputs transformed, labels by tensor indexing."""
        pos = np.asarray(rows, dtype=np.int64).reshape(-1)
        n = len(self)
        if len(pos) and (pos.min() < -n or pos.max() >= n):
            raise IndexError(f"source {self.name!r} has {n} samples, rows {pos.tolist()[:8]}")
        pos = np.where(pos < 0, pos + n, pos)
        x = self.transform_inputs(self.raw_inputs(pos))
        index = torch.from_numpy(pos)
        labels = {name: values[index] for name, values in self.label_tensors.items()}
        return SampleBatch(x, labels, 0)

    def __getitem__(self, i: int) -> Sample:
        if not -len(self) <= i < len(self):
            raise IndexError(f"source {self.name!r} has {len(self)} samples, index {i}")
        x = self.transform_input(self.raw_input(i))
        labels = {name: values[i].clone() for name, values in self.label_tensors.items()}
        return Sample(x, labels, 0)

    def transform_input(self, x: Tensor) -> Tensor:
        """A raw input as the model takes it: the training ``augment`` (or, without one, the
        ``eval_transform``), then ``(x - mean) / std``. The one place inputs are transformed."""
        transform = self.augment if self.augment is not None else self.eval_transform
        if transform is not None:
            x = transform(x)
        if self.mean is not None and self.std is not None:
            shape = (-1, 1, 1) if x.dim() == 3 else (-1,)
            x = (x - self.mean.reshape(shape)) / self.std.reshape(shape)
        return x

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one model input (the first sample after the evaluation transform)."""
        if len(self) == 0:
            raise DataError(f"source {self.name!r} is empty")
        x = self.raw_input(0)
        return tuple(x.shape if self.eval_transform is None else self.eval_transform(x).shape)

    # ------------------------------------------------------------------ modified copies

    def with_labels(self: _S, new_labels: Mapping[str, np.ndarray], checked: bool = False) -> _S:
        """A copy whose labels for the tasks named in ``new_labels`` are replaced.

        Tasks not named keep their labels; to hide a task, pass it all ``-1``/``NaN``.
        The new labels are validated unless ``checked`` (e.g. a regime's output, which
        only hides labels that were valid).
        """
        unknown = sorted(set(new_labels) - {t.name for t in self.tasks})
        if unknown:
            raise DataError(f"source {self.name!r} has no task(s) {', '.join(unknown)}")
        replaced = {k: np.asarray(v) for k, v in new_labels.items()}
        if not checked:
            tasks = [t for t in self.tasks if t.name in replaced]
            replaced = check_encoded(tasks, replaced, len(self), f"source {self.name!r}")
        out = copy.copy(self)
        out.labels = {**self.labels, **replaced}
        return out

    def with_augment(self: _S, augment: Augment | None) -> _S:
        """A copy with another train-time augmentation (``None``: off, e.g. for evaluation;
        the evaluation transform stays)."""
        out = copy.copy(self)
        out.augment = augment
        return out

    def with_transforms(self: _S, augment: Augment | None, eval_transform: Augment | None) -> _S:
        """A copy with another training augmentation and evaluation transform."""
        if (augment is not None or eval_transform is not None) and len(self.input_shape_raw) != 3:
            raise DataError(
                f"source {self.name!r}: transforms need image inputs (C, H, W), "
                f"got {self.input_shape_raw}"
            )
        out = self.with_augment(augment)
        out.eval_transform = eval_transform
        return out

    def with_balance(self: _S, task: str | None) -> _S:
        """A copy whose training draws are class-balanced for ``task`` (a categorical task
        of this source; ``None``: off)."""
        if task is not None:
            found = next((t for t in self.tasks if t.name == task), None)
            if found is None:
                raise DataError(
                    f"source {self.name!r} has no task {task!r} to balance; its tasks: "
                    f"{', '.join(t.name for t in self.tasks)}"
                )
            if found.strata(self.labels[task]) is None:
                raise DataError(
                    f"source {self.name!r}: task {task!r} is {found.kind}; class-balanced "
                    "sampling needs a categorical task"
                )
        out = copy.copy(self)
        out.balance = task
        return out

    @property
    def input_shape_raw(self) -> tuple[int, ...]:
        """Shape of one raw input (before any transform)."""
        if len(self) == 0:
            raise DataError(f"source {self.name!r} is empty")
        return tuple(self.raw_input(0).shape)

    def subset(self: _S, rows: Sequence[int] | np.ndarray, name: str | None = None) -> _S:
        """A copy restricted to the given 0-based rows (in that order)."""
        pos = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(pos) and (pos.min() < 0 or pos.max() >= len(self)):
            raise DataError(
                f"source {self.name!r}: subset rows must lie in 0..{len(self) - 1}"
            )
        out = copy.copy(self)
        out.name = self.name if name is None else name
        out.labels = {k: v[pos] for k, v in self.labels.items()}
        out.ids = self.ids[pos]
        out.splits = None if self.splits is None else self.splits[pos]
        out._take_inputs(pos)
        return out

    def split(self: _S, split_name: str) -> _S:
        """The rows whose ``split`` is ``split_name`` (possibly none)."""
        if split_name not in SPLITS:
            raise DataError(f"unknown split {split_name!r}; expected one of {', '.join(SPLITS)}")
        if self.splits is None:
            raise DataError(f"source {self.name!r} has no split column")
        return self.subset(np.flatnonzero(self.splits == split_name))

    def __repr__(self) -> str:
        tasks = ", ".join(t.name for t in self.tasks)
        return f"{type(self).__name__}({self.name!r}, {len(self)} samples, tasks: {tasks})"

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_manifest(
        cls,
        name: str,
        manifest: str | Path | pd.DataFrame | Manifest,
        root: str | Path | None,
        tasks: Sequence[Task],
        *,
        array: np.ndarray | str | Path | None = None,
        channels: int | None = None,
        image_size: int | tuple[int, int] | None = None,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        augment: Augment | None = None,
        check_files: bool = True,
        skip_corrupt: bool = False,
        require_labels: bool = True,
        allow_outside_root: bool = False,
    ) -> Source:
        """An :class:`ImageSource` (``image`` column) or :class:`ArraySource` (``index`` column).

        ``root``: folder that image paths (and a relative ``array`` path) are relative
        to; ``None`` means the manifest file's folder. ``array``: the array (or its
        ``.npy`` file, memory-mapped) that an ``index`` manifest points into.
        ``check_files``: check up front that every image exists (one error lists the
        count and the first paths). ``skip_corrupt``: decode every image up front and
        leave out those that fail (counted in ``skipped_corrupt``, with a warning);
        otherwise a corrupt image raises :class:`DataError` when read.
        ``require_labels=False`` accepts a manifest without task columns (to predict).
        ``allow_outside_root``: accept image paths that are absolute or leave ``root``
        through ``..`` (refused by default, see :func:`image_paths`).
        """
        m = read_manifest(manifest, tasks, root, require_labels=require_labels)
        if m.kind == "image":
            if array is not None:
                raise DataError(
                    f"{m.origin}: the manifest has an 'image' column, so no array is expected"
                )
            return _image_source(
                name, m, channels=channels, image_size=image_size, mean=mean, std=std,
                augment=augment, check_files=check_files, skip_corrupt=skip_corrupt,
                allow_outside_root=allow_outside_root,
            )
        if array is None:
            raise DataError(
                f"{m.origin}: the manifest has an 'index' column; give the array (or .npy file) "
                "it indexes"
            )
        if image_size is not None or channels is not None:
            raise DataError(f"{m.origin}: image_size/channels apply to image manifests only")
        return _array_source(name, m, array, mean=mean, std=std, augment=augment)


class ImageSource(Source):
    """Images on disk, decoded with Pillow (see the module doc for the conversion)."""

    manifest: Manifest | None = None
    """The manifest the source was read from (to name an image's row), if any."""

    def __init__(
        self,
        name: str,
        tasks: Sequence[Task],
        paths: Sequence[str | Path] | np.ndarray,
        labels: Mapping[str, np.ndarray],
        *,
        channels: int = 3,
        image_size: int | tuple[int, int] | None = None,
        ids: Sequence[str] | np.ndarray | None = None,
        splits: Sequence[str] | np.ndarray | None = None,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        augment: Augment | None = None,
        eval_transform: Augment | None = None,
        labels_checked: bool = False,
    ) -> None:
        self.paths = np.asarray([str(p) for p in paths], dtype=object)
        super().__init__(
            name, tasks, labels, num_samples=len(self.paths),
            ids=self.paths if ids is None else ids, splits=splits,
            mean=mean, std=std, augment=augment, eval_transform=eval_transform,
            labels_checked=labels_checked,
        )
        if channels not in (1, 3):
            raise DataError(
                f"source {name!r}: channels must be 1 (grey) or 3 (RGB), got {channels!r}"
            )
        self.channels = channels
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        if image_size is not None and (len(image_size) != 2 or min(image_size) < 1):
            raise DataError(f"source {name!r}: image_size must be an int or (height, width)")
        self.image_size: tuple[int, int] | None = (
            None if image_size is None else (int(image_size[0]), int(image_size[1]))
        )
        for what, stat in (("mean", self.mean), ("std", self.std)):
            if stat is not None and stat.numel() not in (1, channels):
                raise DataError(
                    f"source {name!r}: {what} needs 1 or {channels} values, got {stat.numel()}"
                )
        self._cache: np.ndarray | None = None
        self._cache_rows: np.ndarray | None = None
        self.reference: tuple[str, tuple[int, int]] | None = None
        """Without ``image_size``: an image (path) and its size ``(H, W)`` that every image
        must have (images are not resized); ``None``: the first image of each batch."""

    def where(self, i: int) -> str:
        """Row ``i`` as its manifest names it (file, row, line), else by its id."""
        if self.manifest is not None:
            found = np.flatnonzero(self.manifest.ids == self.ids[i])
            if len(found):
                return self.manifest.where(int(found[0]))
        return f"source {self.name!r}, id {self.ids[i]!r}"

    def check_sizes(self, rows: np.ndarray, images: Sequence[Tensor]) -> None:
        """Images not resized (no ``image_size``) must share one size: else an error naming
        the first that differs, its size and the expected one (not a failed stack)."""
        if self.image_size is not None or not images:
            return
        path, expected = (
            self.reference if self.reference is not None
            else (str(self.paths[rows[0]]), tuple(images[0].shape[-2:]))
        )
        for i, image in zip(rows.tolist(), images, strict=True):
            size = tuple(image.shape[-2:])
            if size != expected:
                raise DataError(
                    f"{self.paths[i]} ({self.where(i)}): the image is {_hw(size)}, expected "
                    f"{_hw(expected)} (height x width) like {path}; images are not resized without "
                    "input.image_size: set it (every image is then resized to it), or resize "
                    "this image ('dmtl datasets check' lists every image of another size)"
                )

    def raw_input(self, i: int) -> Tensor:
        if self._cache is not None and self._cache_rows is not None:
            return pixels_to_float(torch.from_numpy(np.array(self._cache[self._cache_rows[i]])))
        return decode_image(self.paths[i], self.channels, self.image_size)

    def raw_inputs(self, rows: np.ndarray) -> Tensor:
        if self._cache is not None and self._cache_rows is not None:
            return pixels_to_float(torch.from_numpy(self._cache[self._cache_rows[rows]]))
        images = [self.raw_input(int(i)) for i in rows]
        self.check_sizes(rows, images)
        return torch.stack(images)

    def _take_inputs(self, rows: np.ndarray) -> None:
        self.paths = self.paths[rows]
        if self._cache_rows is not None:
            self._cache_rows = self._cache_rows[rows]

    @property
    def cached(self) -> bool:
        """Whether the decoded images are held in memory (:meth:`cache_in_memory`)."""
        return self._cache is not None

    @property
    def cache_bytes(self) -> int:
        """Memory held by the decoded images (0 when not cached); shared by copies."""
        return 0 if self._cache is None else int(self._cache.nbytes)

    def cache_in_memory(self, max_bytes: float, where: str | None = None) -> ImageSource:
        """A copy holding every image decoded (and resized) once, in memory.

        ``uint8`` pixels for 8-bit images: ``N * C * H * W`` bytes (four times that for
        16-bit or float images). Refused, before decoding, with a
        :class:`~dmtl.errors.DataError` when that is above ``max_bytes`` or above half the
        memory available; the images must share one size (give ``image_size``).
        Augmentation and normalisation still apply at every read. ``where`` names the
        setting in messages (e.g. ``sources.0.input.cache``).
        """
        where = where or f"source {self.name!r}"
        out = copy.copy(self)
        if len(self) == 0 or self._cache is not None:
            return out
        first = decode_pixels(self.paths[0], self.channels, self.image_size)
        estimate = len(self) * first.numel() * first.element_size()
        _check_cache_size(where, estimate, len(self), tuple(first.shape), max_bytes)
        cache = np.empty((len(self), *first.shape), dtype=first.numpy().dtype)
        cache[0] = first.numpy()
        read = functools.partial(decode_pixels, channels=self.channels, size=self.image_size)
        with ThreadPoolExecutor(max_workers=_usable_cores()) as pool:
            for i, pixels in enumerate(pool.map(read, self.paths[1:]), start=1):
                if tuple(pixels.shape) != cache.shape[1:]:
                    raise DataError(
                        f"{where}: {self.paths[i]} is {tuple(pixels.shape)}, the first image "
                        f"{cache.shape[1:]}; give input.image_size to cache images of "
                        "different sizes"
                    )
                if cache.dtype == np.uint8 and pixels.dtype != torch.uint8:  # a 16-bit image
                    _check_cache_size(where, 4 * estimate, len(self), cache.shape[1:], max_bytes)
                    cache = cache.astype(np.float32) / np.float32(255.0)
                cache[i] = (pixels if cache.dtype == np.uint8 else pixels_to_float(pixels)).numpy()
        out._cache = cache
        out._cache_rows = np.arange(len(self), dtype=np.int64)
        return out


def _image_source(
    name: str,
    m: Manifest,
    *,
    channels: int | None,
    image_size: int | tuple[int, int] | None,
    mean: float | Sequence[float] | None,
    std: float | Sequence[float] | None,
    augment: Augment | None,
    check_files: bool,
    skip_corrupt: bool,
    allow_outside_root: bool = False,
) -> ImageSource:
    """An :class:`ImageSource` from an ``image`` manifest (see :meth:`Source.from_manifest`)."""
    paths = image_paths(m, allow_outside_root)
    if check_files or skip_corrupt:
        _check_exist(m, paths, allow_empty=skip_corrupt)
    keep = np.arange(len(m))
    skipped: list[str] = []
    if skip_corrupt:
        ok = _decodable(paths)
        keep = np.flatnonzero(ok)
        skipped = [str(p) for p in paths[~ok]]
        if skipped:
            warnings.warn(
                f"source {name!r}: skipped {len(skipped)} corrupt image(s) of {len(m)}, "
                f"e.g. {skipped[0]}",
                stacklevel=3,
            )
    m = m.select(keep) if skipped else m
    reference = None
    if len(keep) and (channels is None or image_size is None):  # the first image's header
        first_channels, first_size = _image_header(paths[keep[0]], m.where(0, "image"))
        channels = first_channels if channels is None else channels
        reference = None if image_size is not None else (str(paths[keep[0]]), first_size)
    source = ImageSource(
        name, m.tasks, paths[keep], m.labels, channels=channels or 3, image_size=image_size,
        ids=m.ids, splits=m.split, mean=mean, std=std, augment=augment, labels_checked=True,
    )
    source.skipped_corrupt = len(skipped)
    source.skipped_paths = skipped
    source.manifest = m
    source.reference = reference
    return source


def image_paths(m: Manifest, allow_outside_root: bool = False) -> np.ndarray:
    """Each row's image file: its path joined to the manifest's root.

    A path must stay under the root unless ``allow_outside_root``: an absolute path, or one
    whose ``..`` climb above the root once ``.`` and ``..`` are resolved as text, is an error
    naming its row. Symbolic links are not resolved: a link inside the root is followed
    (the root's owner put it there), so a root may link to images stored elsewhere.
    """
    assert m.image is not None
    if m.root is None:
        raise DataError(
            f"{m.origin}: give the root folder that the image paths are relative to"
        )
    if not allow_outside_root:
        outside = [i for i, p in enumerate(m.image) if _leaves_root(p)]
        if outside:
            first = outside[0]
            more = f" ({len(outside) - 1} more such path(s))" if len(outside) > 1 else ""
            raise DataError(
                f"{m.where(first, 'image')}: {m.image[first]!r} is outside the root folder "
                f"{m.root} (an absolute path, or '..' above the root){more}; to accept such "
                "paths set sources[].allow_outside_root: true (dmtl predict: "
                "--allow-outside-root)"
            )
    return np.asarray([str(m.root / p) for p in m.image], dtype=object)


def _leaves_root(path: str) -> bool:
    """Whether a manifest path is absolute or climbs above its root (as text)."""
    if os.path.isabs(path) or (os.altsep is not None and path.startswith(os.altsep)):
        return True
    if ".." not in path:
        return False
    parts = os.path.normpath(path).replace(os.altsep or os.sep, os.sep).split(os.sep)
    return parts[0] == ".."


_WIDE_MODES = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I": 65535.0}
"""Grey modes of more than 8 bits and the value that maps to 1.0 (Pillow's ``convert``
would clip them to 255 instead of rescaling). 32-bit ``I`` images are read as 16-bit."""


def decode_image(path: str | Path, channels: int, size: tuple[int, int] | None) -> Tensor:
    """Decode an image file to a float tensor ``(channels, H, W)`` with values in [0, 1].

    8-bit images give ``value / 255``; 16-bit grey images ``value / 65535``; float (``F``)
    images are taken as they are, clipped to [0, 1].
    """
    return pixels_to_float(decode_pixels(path, channels, size))


def pixels_to_float(pixels: Tensor) -> Tensor:
    """``uint8`` pixels as floats ``value / 255``; float pixels unchanged."""
    if pixels.dtype != torch.uint8:
        return pixels
    return _array_to_float(pixels.numpy())


def decode_pixels(path: str | Path, channels: int, size: tuple[int, int] | None) -> Tensor:
    """The pixels of an image file ``(channels, H, W)``: ``uint8`` for 8-bit images, else
    float32 in [0, 1] (see :func:`decode_image`); resized (Pillow, bilinear) to ``size``.

    JPEG files are decoded by torchvision's ``decode_jpeg`` when torchvision is installed
    (libjpeg-turbo, as in Pillow: the same pixels) and resized with its antialiased
    bilinear filter, which follows Pillow's to within 1/255 (rounding); 1.4 to 1.5 times
    Pillow's speed at 224 px. Other files, and JPEGs it does not take (CMYK, colour to
    grey), are read by Pillow.
    """
    problem = _image_file_problem(path)
    if problem == "missing":
        raise DataError(f"{path}: image file not found")
    if problem is not None:  # a named pipe is never opened (it would block)
        raise DataError(f"{path}: cannot decode the image: the path is {problem}")
    if str(path).lower().endswith(_JPEG_SUFFIXES):
        fast = _decode_jpeg_fast(path, channels)
        if fast is not None:
            return _resized(fast, size)
    try:
        return pillow_pixels(path, channels, size, str(path))
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None


def pillow_pixels(
    image: str | Path | IO[bytes], channels: int, size: tuple[int, int] | None, where: str
) -> Tensor:
    """An image (a file's path or its bytes as a binary stream) decoded by Pillow into
    ``(channels, H, W)`` pixels, as :func:`decode_pixels` gives them; a file that does not
    decode is one :class:`DataError` naming ``where`` (a missing file raises
    ``FileNotFoundError`` for the caller to name)."""
    try:
        with Image.open(image) as file:
            if file.mode in _WIDE_MODES or file.mode == "F":
                return _decode_wide(file, channels, size)
            img = file.convert("L" if channels == 1 else "RGB")
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            array = np.array(img, dtype=np.uint8)
    except FileNotFoundError:
        raise
    except Exception as error:  # Pillow raises many types for broken files
        raise DataError(
            f"{where}: cannot decode the image ({type(error).__name__}: {error})"
        ) from None
    x = torch.from_numpy(array)
    return x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1).contiguous()


_JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")


@functools.cache
def _jpeg_decoder() -> Any:
    """torchvision's ``decode_jpeg``, ``read_file`` and ``resize``, or None without it."""
    try:
        from torchvision.io import ImageReadMode, decode_jpeg, read_file
        from torchvision.transforms.v2.functional import resize
    except ImportError:  # the optional `vision` extra is not installed
        return None
    return functools.partial(decode_jpeg, mode=ImageReadMode.UNCHANGED), read_file, resize


def _decode_jpeg_fast(path: str | Path, channels: int) -> Tensor | None:
    """``uint8`` pixels ``(channels, H, W)`` of a JPEG through torchvision, or None (then
    Pillow decodes it, and names the problem of a broken file)."""
    decoder = _jpeg_decoder()
    if decoder is None:
        return None
    decode, read_file, _ = decoder
    try:
        x = decode(read_file(str(path)))
    except RuntimeError:  # missing, truncated or corrupt: Pillow gives the error
        return None
    if x.shape[0] == channels:
        return x
    if x.shape[0] == 1 and channels == 3:  # grey JPEG as RGB: the grey value thrice
        return x.expand(3, -1, -1).contiguous()
    return None  # colour to grey and CMYK: Pillow's conversions


def _resized(pixels: Tensor, size: tuple[int, int] | None) -> Tensor:
    """``uint8`` pixels ``(C, H, W)`` resized to ``size``: torchvision's antialiased bilinear
    filter (Pillow's, to within 1/255)."""
    if size is None or tuple(pixels.shape[-2:]) == size:
        return pixels
    _, _, resize = _jpeg_decoder()
    return resize(pixels, list(size), antialias=True)


def _decode_wide(file: Image.Image, channels: int, size: tuple[int, int] | None) -> Tensor:
    scale = _WIDE_MODES.get(file.mode, 1.0)
    img = Image.fromarray(np.asarray(file, dtype=np.float32) / scale, mode="F")
    if size is not None and img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    x = torch.from_numpy(np.array(img, dtype=np.float32)).clamp_(0.0, 1.0).unsqueeze(0)
    return x.expand(channels, -1, -1).clone() if channels == 3 else x


def _check_exist(m: Manifest, paths: np.ndarray, allow_empty: bool = False) -> None:
    """Every image path names a regular file (never opened: a named pipe would block), not
    an empty one unless ``allow_empty`` (``skip_corrupt`` leaves those out); else one error
    with the count and the first rows."""
    problems = [
        (i, why) for i, p in enumerate(paths)
        if (why := _image_file_problem(p)) is not None and not (allow_empty and why == _EMPTY)
    ]
    if not problems:
        return
    shown = problems[:_SHOW_MISSING]
    if all(why == "missing" for _, why in problems):
        listed = "; ".join(f"row {m.row_number(i)}: {paths[i]}" for i, _ in shown)
        raise DataError(
            f"{m.origin}, column 'image': {len(problems)} of {len(paths)} image file(s) are "
            f"missing under {m.root}; first {len(shown)}: {listed}"
        )
    listed = "; ".join(f"row {m.row_number(i)}: {paths[i]} ({why})" for i, why in shown)
    raise DataError(
        f"{m.origin}, column 'image': {len(problems)} of {len(paths)} image path(s) name no "
        f"readable image file under {m.root} (expected a regular, non-empty file); first "
        f"{len(shown)}: {listed}"
    )


_EMPTY = "an empty file, 0 bytes"


def _image_file_problem(path: str | Path) -> str | None:
    """Why ``path`` is no image file to decode (missing, a folder, a named pipe, a link loop,
    empty), without opening it; ``None`` if it is a non-empty regular file."""
    try:
        status = os.stat(path)  # one stat for a good file
    except OSError:
        return not_a_file(path, "image file")
    if not S_ISREG(status.st_mode):
        return not_a_file(path, "image file")
    return _EMPTY if status.st_size == 0 else None


def _image_header(path: str, where: str) -> tuple[int, tuple[int, int]]:
    """The channels (1 grey, 3 RGB) and size ``(H, W)`` of an image, from its header."""
    problem = _image_file_problem(path)
    if problem is not None:
        raise DataError(f"{where}: {path} is {problem}")
    try:
        with Image.open(path) as img:
            return (1 if img.mode in _GREY_MODES else 3), (img.size[1], img.size[0])
    except FileNotFoundError:
        raise DataError(f"{where}: image file not found: {path}") from None
    except Exception as error:
        raise DataError(f"{where}: cannot open {path} ({type(error).__name__})") from None


def _hw(size: tuple[int, ...]) -> str:
    """A size ``(H, W)`` as ``HxW``."""
    return f"{size[0]}x{size[1]}"


def _decode_report(path: str) -> tuple[str | None, tuple[int, int] | None]:
    """Why an image file does not decode completely (``None``: it does), and its size
    ``(H, W)`` when it does."""
    problem = _image_file_problem(path)
    if problem is not None:
        return f"the path is {problem}", None
    try:
        with Image.open(path) as img:
            img.load()
            return None, (img.size[1], img.size[0])
    except Exception as error:  # Pillow raises many types for broken files
        return f"{type(error).__name__}: {' '.join(str(error).split())}", None


def _decode_reports(
    paths: Sequence[str] | np.ndarray, progress: Callable[[int], None] | None = None
) -> list[tuple[str | None, tuple[int, int] | None]]:
    """:func:`_decode_report` of every path, decoded in a thread pool, in order;
    ``progress(1)`` after each."""
    out: list[tuple[str | None, tuple[int, int] | None]] = []
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for report in pool.map(_decode_report, paths):
            out.append(report)
            if progress is not None:
                progress(1)
    return out


def _decodable(paths: np.ndarray) -> np.ndarray:
    """Whether each image decodes completely (checked in a thread pool)."""
    return np.array([p is None for p, _ in _decode_reports(paths)], dtype=bool).reshape(-1)


@dataclass(frozen=True)
class UnreadableImage:
    """An image file that does not decode: its path, its manifest row, why."""

    path: str
    where: str
    problem: str


@dataclass(frozen=True)
class OddSizedImage:
    """An image whose size ``(H, W)`` differs from most of its source's (not resized)."""

    path: str
    where: str
    size: tuple[int, int]


@dataclass(frozen=True)
class ImageCheck:
    """What decoding every image of a source found: the unreadable images, and, when the
    source does not resize its images, those of another size than ``common_size`` (the
    size most images have; on a tie, the first image's)."""

    unreadable: list[UnreadableImage]
    odd_sized: list[OddSizedImage]
    common_size: tuple[int, int] | None


def check_images(source: Source, progress: Callable[[int], None] | None = None) -> ImageCheck:
    """Decode every image of ``source`` (threads); report those that fail and, without
    ``image_size``, those of another size than most, each with its manifest row. A source
    of another kind has no image to decode: nothing found."""
    if not isinstance(source, ImageSource):
        return ImageCheck([], [], None)
    reports = _decode_reports(source.paths, progress)
    sizes = Counter(size for _, size in reports if size is not None)
    common = sizes.most_common(1)[0][0] if sizes and source.image_size is None else None
    bad = [
        i for i, (problem, size) in enumerate(reports)
        if problem is not None or (common is not None and size != common)
    ]
    where = _row_names(source, bad)
    unreadable = [
        UnreadableImage(str(source.paths[i]), where[i], problem)
        for i in bad if (problem := reports[i][0]) is not None
    ]
    odd_sized = [
        OddSizedImage(str(source.paths[i]), where[i], size)
        for i in bad if (size := reports[i][1]) is not None
    ]
    return ImageCheck(unreadable, odd_sized, common)


def unreadable_images(
    source: Source, progress: Callable[[int], None] | None = None
) -> list[UnreadableImage]:
    """Decode every image of ``source`` (threads) and return those that fail, each with its
    manifest row. A source of another kind has no image to decode: ``[]``."""
    return check_images(source, progress).unreadable


def _row_names(source: ImageSource, rows: Sequence[int]) -> dict[int, str]:
    """Where each of ``rows`` is in the source's manifest (file, row, line), else its id."""
    manifest = source.manifest
    if not rows:
        return {}
    position = {} if manifest is None else {k: i for i, k in enumerate(manifest.ids)}
    out = {}
    for i in rows:
        row = position.get(source.ids[i])
        out[i] = (
            manifest.where(row) if manifest is not None and row is not None
            else f"source {source.name!r}, id {source.ids[i]!r}"
        )
    return out


def _usable_cores() -> int:
    """Cores this process may run on (``sched_getaffinity`` where there is one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (``MemAvailable``), None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _check_cache_size(
    where: str, estimate: int, count: int, shape: tuple[int, ...], max_bytes: float
) -> None:
    """Refuse a cache above ``max_bytes`` or above half the memory available."""
    what = f"{count:,} images of {'x'.join(map(str, shape))}"
    if estimate > max_bytes:
        raise DataError(
            f"{where}: caching {what} takes {estimate / 2**30:.2f} GiB, above the limit of "
            f"{max_bytes / 2**30:.2f} GiB (input.cache_max_gb); raise it, lower "
            "input.image_size, or set input.cache: none"
        )
    free = available_memory()
    if free is not None and estimate > free / 2:
        raise DataError(
            f"{where}: caching {what} takes {estimate / 2**30:.2f} GiB, more than half the "
            f"{free / 2**30:.2f} GiB of memory available; lower input.image_size or set "
            "input.cache: none"
        )


class ArraySource(Source):
    """Inputs from an array ``(N, C, H, W)`` or ``(N, D)``, optionally through a row ``index``.

    ``array`` may be a path to a ``.npy`` file, opened memory-mapped; such a source
    pickles (to DataLoader workers) as its path, not its data.
    """

    def __init__(
        self,
        name: str,
        tasks: Sequence[Task],
        array: np.ndarray | str | Path,
        labels: Mapping[str, np.ndarray],
        *,
        index: Sequence[int] | np.ndarray | None = None,
        ids: Sequence[str] | np.ndarray | None = None,
        splits: Sequence[str] | np.ndarray | None = None,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        augment: Augment | None = None,
        eval_transform: Augment | None = None,
        labels_checked: bool = False,
    ) -> None:
        self._array_path: Path | None = None
        self.array_origin: str | None = None
        """What the array is (its ``.npy`` file, absolute; or e.g. a built-in dataset's name),
        kept when it is read into memory: rows of two sources with the same origin and index
        are the same input."""
        if isinstance(array, (str, Path)):
            self._array_path = Path(array)
            self.array_origin = os.path.abspath(self._array_path)
            array = _load_npy(self._array_path)
        if not isinstance(array, np.ndarray):
            raise DataError(f"source {name!r}: expected a NumPy array, got {type(array).__name__}")
        if array.ndim not in (2, 4):
            raise DataError(
                f"source {name!r}: expected an array of shape (N, C, H, W) or (N, D), "
                f"got {array.shape}"
            )
        if array.dtype.kind != "f" and array.dtype != np.uint8:
            raise DataError(f"source {name!r}: expected a float or uint8 array, got {array.dtype}")
        self._array: np.ndarray | None = array
        self.index = (
            np.arange(len(array), dtype=np.int64) if index is None else np.asarray(index, np.int64)
        )
        if len(self.index) and (self.index.min() < 0 or self.index.max() >= len(array)):
            bad = int(np.flatnonzero((self.index < 0) | (self.index >= len(array)))[0])
            raise DataError(
                f"source {name!r}, sample {bad}: index {int(self.index[bad])} outside the "
                f"array's {len(array)} rows"
            )
        super().__init__(
            name, tasks, labels, num_samples=len(self.index), ids=ids, splits=splits,
            mean=mean, std=std, augment=augment, eval_transform=eval_transform,
            labels_checked=labels_checked,
        )
        if (augment is not None or eval_transform is not None) and array.ndim != 4:
            raise DataError(f"source {name!r}: augmentation needs image arrays (N, C, H, W)")
        channels = array.shape[1]
        for what, stat in (("mean", self.mean), ("std", self.std)):
            if stat is not None and stat.numel() not in (1, channels if array.ndim == 4 else 1):
                raise DataError(
                    f"source {name!r}: {what} has {stat.numel()} values; expected 1"
                    + (f" or {channels} (one per channel)" if array.ndim == 4 else "")
                )

    @property
    def array(self) -> np.ndarray:
        """The whole underlying array (all rows, not only those of this source)."""
        if self._array is None:
            assert self._array_path is not None
            self._array = _load_npy(self._array_path)
        return self._array

    def raw_input(self, i: int) -> Tensor:
        return _array_to_float(np.array(self.array[self.index[i]]))

    def raw_inputs(self, rows: np.ndarray) -> Tensor:
        return _array_to_float(np.asarray(self.array[self.index[rows]]))

    def _take_inputs(self, rows: np.ndarray) -> None:
        self.index = self.index[rows]

    @property
    def cached(self) -> bool:
        """Whether the array is in memory (not memory-mapped from its ``.npy`` file)."""
        return self._array_path is None

    @property
    def cache_bytes(self) -> int:
        """Memory the array holds once read into memory (0 when memory-mapped)."""
        return 0 if self._array_path is not None else int(self.array.nbytes)

    def cache_in_memory(self, max_bytes: float, where: str | None = None) -> ArraySource:
        """A copy with a memory-mapped ``.npy`` array read into memory (the whole array;
        refused above ``max_bytes`` or half the memory available, as for images)."""
        out = copy.copy(self)
        if self._array_path is None:
            return out
        array = self.array
        where = where or f"source {self.name!r}"
        _check_cache_size(where, int(array.nbytes), len(array), array.shape[1:], max_bytes)
        out._array = np.array(array)
        out._array_path = None
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self._array_path is not None:
            state["_array"] = None  # re-opened (memory-mapped) on first use
        return state


def _array_to_float(block: np.ndarray) -> Tensor:
    """Array rows as float32: ``uint8 / 255``, floats as they are.

    NumPy converts (one thread, the same floats as torch's ``x.float() / 255``): torch would
    split so small an operation over its threads, which on a shared machine wait for a core
    held by another process (20 times slower, measured on 2 busy cores).
    """
    if block.dtype == np.uint8:
        out = block.astype(np.float32)
        out /= np.float32(255.0)
        return torch.from_numpy(out)
    return torch.from_numpy(block.astype(np.float32, copy=False))


def _array_source(
    name: str,
    m: Manifest,
    array: np.ndarray | str | Path,
    *,
    mean: float | Sequence[float] | None,
    std: float | Sequence[float] | None,
    augment: Augment | None,
) -> ArraySource:
    """An :class:`ArraySource` from an ``index`` manifest; a relative array path is under root."""
    assert m.index is not None
    if isinstance(array, (str, Path)):
        path = Path(array)
        if not path.is_absolute() and m.root is not None:
            path = m.root / path
        array = path
        rows = len(_load_npy(path))
    else:
        rows = len(array)
    bad = np.flatnonzero(m.index >= rows)
    if len(bad):
        more = f" ({len(bad) - 1} more)" if len(bad) > 1 else ""
        raise DataError(
            f"{m.where(int(bad[0]), 'index')}: index {int(m.index[bad[0]])} is outside the "
            f"array's {rows} rows (expected 0..{rows - 1}){more}"
        )
    return ArraySource(
        name, m.tasks, array, m.labels, index=m.index, ids=m.ids, splits=m.split,
        mean=mean, std=std, augment=augment, labels_checked=True,
    )


def _load_npy(path: Path) -> np.ndarray:
    """A ``.npy`` file, memory-mapped; never unpickled (an object array is refused)."""
    if path.suffix.lower() != ".npy":
        raise DataError(f"{path}: expected a .npy array file")
    problem = not_a_file(path, "array file")
    if problem is not None:
        raise DataError(
            f"{path}: array file not found" if problem == "missing" else f"{path}: {problem}"
        )
    try:
        with path.open("rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            _, _, dtype = read_header(handle)
    except (ValueError, OSError, EOFError) as error:
        problem = " ".join(str(error).split())
        raise DataError(
            f"{path}: not a .npy array file ({problem}); dmtl reads arrays saved with numpy.save"
        ) from None
    if dtype.hasobject:
        raise DataError(
            f"{path}: the array holds Python objects (dtype {dtype}); dmtl never unpickles a "
            "data file: save a numeric array (float or uint8)"
        )
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as error:
        problem = " ".join(str(error).split())
        raise DataError(f"{path}: cannot read the array ({problem})") from None


load_npy = _load_npy
"""Read a ``.npy`` file memory-mapped, refusing pickled objects (public name)."""
