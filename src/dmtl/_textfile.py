"""Reading a user's text file (config, manifest, relatedness table) as UTF-8, with one clear error.

A leaf module (no dmtl imports but :mod:`dmtl.errors`): the config loader, the manifest
reader and the relatedness tables share it. The error names the file, the line and the
byte offset of the first byte that is not UTF-8, and refuses a file larger than a limit
before reading it whole.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "m.csv"
>>> _ = path.write_bytes(b"image,digit\\na.png,caf\\xe9\\n")
>>> read_text(path, "manifest", ValueError)
Traceback (most recent call last):
...
ValueError: ...m.csv: line 2, byte 21: not UTF-8 text (byte 0xe9); save the manifest as UTF-8
"""

from __future__ import annotations

import codecs
import errno
import os
import stat
from pathlib import Path

_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def read_text(
    path: Path,
    what: str,
    error: type[Exception],
    max_bytes: int | None = None,
) -> str:
    """The text of ``path`` decoded as UTF-8 (a leading byte-order mark is dropped).

    Raises ``error(message)`` with a one-line message naming ``path`` when the file cannot
    be read, is larger than ``max_bytes``, or holds bytes that are not UTF-8.
    """
    problem_kind = not_a_file(path, what)
    if problem_kind is not None and problem_kind != "missing":  # never open a pipe: it blocks
        raise error(f"{path}: {problem_kind}")
    try:
        if max_bytes is not None:
            size = path.stat().st_size
            if size > max_bytes:
                raise error(
                    f"{path}: the {what} is {size:,} bytes, more than the {max_bytes:,} "
                    f"bytes a {what} may have"
                )
        with path.open("rb") as handle:
            data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
    except OSError as problem:
        raise error(f"{path}: cannot read the {what} ({problem.strerror or problem})") from None
    if max_bytes is not None and len(data) > max_bytes:  # it grew since stat()
        raise error(f"{path}: the {what} is more than the {max_bytes:,} bytes a {what} may have")
    return decode_utf8(data, path, what, error)


def decode_utf8(data: bytes, path: Path | str, what: str, error: type[Exception]) -> str:
    """``data`` decoded as UTF-8 (BOM dropped); else ``error`` naming the line and byte
    (of the first byte that is not UTF-8, or of a NUL byte: binary data)."""
    if data.startswith(_UTF16_BOMS):
        raise error(f"{path}: the {what} is UTF-16 text; save it as UTF-8")
    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise error(
            f"{path}: line {line}, byte {nul}: a NUL byte; the {what} must be text (is it a "
            "binary file?)"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as problem:
        offset = problem.start
        line = data.count(b"\n", 0, offset) + 1
        raise error(
            f"{path}: line {line}, byte {offset}: not UTF-8 text "
            f"(byte 0x{data[offset]:02x}); save the {what} as UTF-8"
        ) from None


def not_a_file(path: str | os.PathLike[str], what: str = "file") -> str | None:
    """Why ``path`` names no regular file, in words (``None`` if it does); never opens it.

    ``"missing"``; ``"a broken symbolic link"``; ``"a symbolic link loop"``; ``"a folder,
    not a <what>"``; ``"a named pipe, not a regular file"`` (or a socket, a device: opening
    a pipe would wait for a writer forever); ``"cannot be read (<reason>)"``.

    >>> import tempfile
    >>> not_a_file(tempfile.mkdtemp(), "image file")
    'a folder, not an image file'
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a broken symbolic link" if os.path.islink(path) else "missing"
    except OSError as problem:
        if problem.errno == errno.ELOOP:
            return "a symbolic link loop"
        if problem.errno == errno.ENOTDIR:
            return "missing (a part of its path is a file, not a folder)"
        return f"cannot be read ({problem.strerror or problem})"
    if stat.S_ISDIR(mode):
        article = "an" if what[:1] in "aeiou" else "a"
        return f"a folder, not {article} {what}"
    if not stat.S_ISREG(mode):
        kind = (
            "a named pipe" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode)
            else "a device"
        )
        return f"{kind}, not a regular file"
    return None
