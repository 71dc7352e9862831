"""IDX reader: checked against files built byte by byte, plain and gzip, and broken ones."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from dmtl.data.builtin.idx import read_idx, write_idx
from dmtl.errors import DataError


def _by_hand(array: np.ndarray, code: int, big_endian_dtype: str) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(big_endian_dtype).tobytes()


def test_reads_a_hand_built_uint8_file(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(_by_hand(images, 0x08, "u1"))
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, images)


@pytest.mark.parametrize(
    ("dtype", "code", "disk"),
    [
        ("i1", 0x09, "i1"),
        ("i2", 0x0B, ">i2"),
        ("i4", 0x0C, ">i4"),
        ("f4", 0x0D, ">f4"),
        ("f8", 0x0E, ">f8"),
    ],
)
def test_reads_big_endian_types_into_native_arrays(
    tmp_path: Path, dtype: str, code: int, disk: str
) -> None:
    values = np.array([[-3, 1, 300 if dtype != "i1" else 100], [0, 2, -1]], dtype=dtype)
    path = tmp_path / "x.idx"
    path.write_bytes(_by_hand(values, code, disk))
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, values)


def test_gzip_is_detected_by_content(tmp_path: Path) -> None:
    labels = np.array([9, 0, 3], dtype=np.uint8)
    raw = _by_hand(labels, 0x08, "u1")
    (tmp_path / "a-idx1-ubyte.gz").write_bytes(gzip.compress(raw))
    (tmp_path / "b-idx1-ubyte").write_bytes(gzip.compress(raw))  # gzip without the suffix
    (tmp_path / "c-idx1-ubyte.gz").write_bytes(raw)  # plain despite the suffix
    for name in ("a-idx1-ubyte.gz", "b-idx1-ubyte", "c-idx1-ubyte.gz"):
        np.testing.assert_array_equal(read_idx(tmp_path / name), labels)


@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
def test_write_then_read_round_trip(tmp_path: Path, name: str) -> None:
    array = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3)).astype(np.uint8)
    write_idx(tmp_path / name, array)
    assert ((tmp_path / name).read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    np.testing.assert_array_equal(read_idx(tmp_path / name), array)


def test_empty_array(tmp_path: Path) -> None:
    write_idx(tmp_path / "e", np.zeros((0, 28, 28), dtype=np.uint8))
    assert read_idx(tmp_path / "e").shape == (0, 28, 28)


def test_truncated_data_names_the_file(tmp_path: Path) -> None:
    raw = _by_hand(np.zeros((4, 2, 2), dtype=np.uint8), 0x08, "u1")
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(raw[:-3])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.*truncated.*needs 16"):
        read_idx(path)


def test_truncated_header_and_magic(tmp_path: Path) -> None:
    raw = _by_hand(np.zeros((4, 2, 2), dtype=np.uint8), 0x08, "u1")
    (tmp_path / "h").write_bytes(raw[:9])
    with pytest.raises(DataError, match="truncated IDX header"):
        read_idx(tmp_path / "h")
    (tmp_path / "m").write_bytes(raw[:2])
    with pytest.raises(DataError, match="no magic number"):
        read_idx(tmp_path / "m")


def test_truncated_gzip_stream(tmp_path: Path) -> None:
    packed = gzip.compress(_by_hand(np.arange(1000, dtype=np.uint8) % 7, 0x08, "u1"))
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz.*gzip"):
        read_idx(path)


def test_bad_magic_unknown_dtype_and_trailing_bytes(tmp_path: Path) -> None:
    raw = _by_hand(np.zeros(3, dtype=np.uint8), 0x08, "u1")
    (tmp_path / "magic").write_bytes(b"\x01" + raw[1:])
    with pytest.raises(DataError, match=r"magic.*magic"):
        read_idx(tmp_path / "magic")
    (tmp_path / "code").write_bytes(raw[:2] + b"\x0a" + raw[3:])
    with pytest.raises(DataError, match="dtype code 0x0a"):
        read_idx(tmp_path / "code")
    (tmp_path / "tail").write_bytes(raw + b"\x00\x00")
    with pytest.raises(DataError, match="2 unexpected trailing bytes"):
        read_idx(tmp_path / "tail")


def test_errors_are_data_errors(tmp_path: Path) -> None:
    assert issubclass(DataError, DataError)
    with pytest.raises(DataError, match="nowhere-idx1-ubyte"):
        read_idx(tmp_path / "nowhere-idx1-ubyte")
    with pytest.raises(DataError, match="cannot be stored"):
        write_idx(tmp_path / "bad", np.zeros(2, dtype=np.uint16))
