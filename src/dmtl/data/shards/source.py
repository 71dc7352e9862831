"""A source read from a pack: labels from its label table, inputs fetched by row from its
LitData chunks (``StreamingDataset[row]``: memory-mapped in place for a local folder,
the item's bytes fetched on demand from an object store).

Inputs are decoded as the original files or array were: image bytes through the same
decoders as :func:`dmtl.data.sources.decode_pixels` (torchvision's JPEG decoder for
``.jpg`` files, Pillow otherwise; the same resize), array rows as
:class:`~dmtl.data.sources.ArraySource` converts them. So a source and its pack give
the same tensors, and a run on either the same results for the same seeds.

The LitData dataset is opened on first read in each process (DataLoader workers and DDP
ranks each open their own) and never pickled.
"""

from __future__ import annotations

import io
import os
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dmtl.core.tasks import Task
from dmtl.data.shards.layout import Pack, litdata, open_pack, read_label_table
from dmtl.data.sources import (
    _JPEG_SUFFIXES,
    Augment,
    Source,
    _array_to_float,
    _jpeg_decoder,
    _resized,
    pillow_pixels,
    pixels_to_float,
)
from dmtl.errors import DataError


class ShardSource(Source):
    """Rows of a :class:`~dmtl.data.shards.layout.Pack` (see the module doc)."""

    def __init__(
        self,
        name: str,
        pack: Pack,
        *,
        tasks: Sequence[Task] | None = None,
        channels: int | None = None,
        image_size: int | tuple[int, int] | None = None,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        augment: Augment | None = None,
        eval_transform: Augment | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        ids, splits, labels = read_label_table(pack)
        super().__init__(
            name, pack.tasks if tasks is None else tasks, labels, num_samples=pack.rows,
            ids=ids, splits=splits, mean=mean, std=std, augment=augment,
            eval_transform=eval_transform,
        )
        self.pack = pack
        self.rows = np.arange(pack.rows, dtype=np.int64)
        """The pack's row of each sample of this source (subsets index it)."""
        self.cache_dir = None if cache_dir is None else str(cache_dir)
        if pack.kind == "image":
            if channels not in (None, 1, 3):
                raise DataError(f"source {name!r}: channels must be 1 or 3, got {channels!r}")
            self.channels: int | None = channels or pack.channels or 3
        else:
            if channels is not None or image_size is not None:
                raise DataError(
                    f"{pack.location}: an array pack; input.channels and input.image_size "
                    "apply to image files"
                )
            self.channels = None
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        self.image_size: tuple[int, int] | None = (
            None if image_size is None else (int(image_size[0]), int(image_size[1]))
        )
        self._dataset: Any = None

    # ---------------------------------------------------------------- reading

    def _open(self) -> Any:
        if self._dataset is None:
            module = litdata()
            location = self.pack.location if self.pack.remote else str(self.pack.folder)
            self._dataset = module.StreamingDataset(
                location, cache_dir=self.cache_dir, batch_decode=0
            )
        return self._dataset

    def read_item(self, row: int) -> dict[str, Any]:
        """Item ``row`` of the pack, checked (its row number and the CRC-32 of its bytes);
        ``data`` is a ``uint8`` array of the image file's bytes, or the array row."""
        try:
            item = self._open()[row]
            data = item["data"]
            raw = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data
            crc = zlib.crc32(np.ascontiguousarray(raw).data)
            same = int(item["row"]) == row and crc == int(item["crc"])
        except Exception as error:  # LitData and NumPy raise many types for broken bytes
            problem = " ".join(str(error).split())[:160]
            raise DataError(
                f"{self._where(row)}: the chunk is corrupt or unreadable "
                f"({type(error).__name__}: {problem}); pack the source again"
            ) from None
        if not same:
            raise DataError(
                f"{self._where(row)}: the item does not match its checksum (the chunk is "
                "corrupt); pack the source again"
            )
        item["data"] = raw
        return item

    def _where(self, row: int) -> str:
        return f"{self.pack.location}, chunk {self.pack.chunk_of(row).file}, row {row}"

    def raw_input(self, i: int) -> Tensor:
        row = int(self.rows[i])
        item = self.read_item(row)
        if self.pack.kind == "array":
            return _array_to_float(np.asarray(item["data"]))
        where = f"{self.pack.location}, row {row} (id {self.ids[i]!r})"
        return pixels_to_float(decode_bytes(item["data"], item["ext"], self.channels or 3,
                                            self.image_size, where))

    def raw_inputs(self, rows: np.ndarray) -> Tensor:
        if self.pack.kind == "array":
            return _array_to_float(np.stack([self._array_row(int(i)) for i in rows]))
        return super().raw_inputs(rows)

    def _array_row(self, i: int) -> np.ndarray:
        return np.asarray(self.read_item(int(self.rows[i]))["data"])

    def _take_inputs(self, rows: np.ndarray) -> None:
        self.rows = self.rows[rows]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_dataset"] = None  # each process opens its own
        return state

    def unreadable_rows(self, progress: Any = None) -> list[tuple[int, str]]:
        """Read (and, for images, decode) every row; ``(row, problem)`` of those that fail."""
        found = []
        for i in range(len(self)):
            try:
                self.raw_input(i)
            except DataError as error:
                found.append((int(self.rows[i]), str(error)))
            if progress is not None:
                progress(1)
        return found


def decode_bytes(
    data: bytes | np.ndarray, ext: str, channels: int, size: tuple[int, int] | None, where: str
) -> Tensor:
    """The pixels of an image file's bytes ``(channels, H, W)``, exactly as
    :func:`dmtl.data.sources.decode_pixels` decodes the file (``ext``: its suffix)."""
    if ext.lower() in _JPEG_SUFFIXES:
        fast = _decode_jpeg_bytes(data, channels)
        if fast is not None:
            return _resized(fast, size)
    encoded = data if isinstance(data, bytes) else data.tobytes()
    return pillow_pixels(io.BytesIO(encoded), channels, size, where)


def _decode_jpeg_bytes(data: bytes | np.ndarray, channels: int) -> Tensor | None:
    decoder = _jpeg_decoder()
    if decoder is None:
        return None
    decode = decoder[0]
    try:
        x = decode(torch.from_numpy(np.array(data, dtype=np.uint8)))
    except RuntimeError:
        return None
    if x.shape[0] == channels:
        return x
    if x.shape[0] == 1 and channels == 3:
        return x.expand(3, -1, -1).contiguous()
    return None


def shard_source(
    name: str,
    location: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    **options: Any,
) -> ShardSource:
    """Open the pack at ``location`` (checked) as a :class:`ShardSource`; ``options`` as
    for :class:`ShardSource` (channels, image_size, mean, std, augment)."""
    pack = open_pack(location, cache_dir)
    return ShardSource(name, pack, cache_dir=cache_dir, **options)


__all__ = ["ShardSource", "decode_bytes", "shard_source"]
