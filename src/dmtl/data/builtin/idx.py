"""Reader (and writer) for the IDX format of MNIST and Fashion-MNIST, plain or gzip-compressed.

Layout (all integers big-endian):

- magic number, 4 bytes: ``0x00 0x00 <dtype code> <number of dimensions>``;
- one unsigned 32-bit size per dimension;
- the data, C order, in the dtype of the code: ``0x08`` uint8, ``0x09`` int8,
  ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64.

A file is read as gzip when it starts with the gzip signature (``1f 8b``),
whatever its name. Bad magic, unknown dtype code, a truncated file or
trailing bytes raise :class:`DataError` (a ``DataError``) naming the file; a
missing file raises ``DataError``.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "x-idx1-ubyte.gz"
>>> write_idx(path, np.arange(3, dtype=np.uint8))
>>> read_idx(path).tolist()
[0, 1, 2]
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from dmtl.errors import DataError

IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
"""IDX dtype code -> on-disk (big-endian) NumPy dtype."""

_GZIP_SIGNATURE = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise DataError(f"{path}: IDX file not found")
    raw = path.read_bytes()
    if raw[:2] != _GZIP_SIGNATURE:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: corrupt or truncated gzip data ({error})") from None


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a native-endian array of its shape."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: truncated IDX file ({len(data)} bytes, no magic number)")
    if data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{path}: bad IDX magic number 0x{data[:4].hex()} (must start with 0x0000)"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise DataError(
            f"{path}: unknown IDX dtype code 0x{code:02x}; expected one of "
            + ", ".join(f"0x{c:02x}" for c in IDX_DTYPES)
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{path}: truncated IDX header ({len(data)} bytes, {ndim} dimensions need {header})"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    body = len(data) - header
    if body < expected:
        raise DataError(
            f"{path}: truncated IDX file: shape {shape} of {dtype.name} needs {expected} bytes "
            f"of data, found {body}"
        )
    if body > expected:
        raise DataError(
            f"{path}: {body - expected} unexpected trailing bytes after the IDX data "
            f"of shape {shape}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` as IDX; gzip it if ``compress`` (default: the name ends in ``.gz``)."""
    path = Path(path)
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise DataError(f"{path}: dtype {array.dtype} cannot be stored in IDX")
    if array.ndim > 255:
        raise DataError(f"{path}: too many dimensions for IDX ({array.ndim})")
    code = codes[native]
    payload = (
        bytes([0, 0, code, array.ndim])
        + np.asarray(array.shape, dtype=">u4").tobytes()
        + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    )
    if compress is None:
        compress = path.suffix == ".gz"
    path.write_bytes(gzip.compress(payload, mtime=0) if compress else payload)


__all__ = ["IDX_DTYPES", "DataError", "read_idx", "write_idx"]
