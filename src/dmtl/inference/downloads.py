"""Model files fetched on the user's machine on first use, kept in a cache, checked by SHA-256.

``cached_file(url, sha256)`` returns ``<cache>/<name>`` when it is there with the right
checksum; otherwise it downloads ``url`` to a temporary file next to it, checks the
SHA-256 and only then moves it into place, so the cache never holds a partial or a
wrong file. The cache folder is ``$DMTL_CACHE_DIR``, else ``$XDG_CACHE_HOME/dmtl``, else
``~/.cache/dmtl``. A download that fails, or a file whose checksum differs, is one
:class:`~dmtl.errors.DownloadError` line naming the URL and what to do (give the file
with a local path instead).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from dmtl.errors import DmtlError

CACHE_ENV = "DMTL_CACHE_DIR"
TIMEOUT_S = 60.0
"""Seconds a download may wait for the server before it fails."""


class DownloadError(DmtlError):
    """A model file could not be fetched, or is not the file expected."""


def cache_dir() -> Path:
    """Where fetched model files are kept (see the module docstring)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "dmtl"


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, in hex."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _urlopen_to(url: str, target: Path) -> None:
    """Write the body of ``url`` to ``target`` (``urllib``; follows redirects)."""
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, target.open("wb") as out:
        while block := response.read(1 << 20):
            out.write(block)


Fetch = Callable[[str, Path], None]


def cached_file(
    url: str, sha256: str, name: str | None = None, folder: Path | None = None,
    fetch: Fetch = _urlopen_to,
) -> Path:
    """The file at ``url`` in the cache (``folder``, default :func:`cache_dir`), fetched
    once and checked against ``sha256``. ``fetch(url, target)`` writes the body (tests
    give their own)."""
    folder = folder or cache_dir()
    path = folder / (name or url.rstrip("/").rsplit("/", 1)[-1])
    if path.is_file() and sha256_of(path) == sha256.lower():
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DownloadError(f"cannot create the cache folder {folder} ({error})") from None
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    os.close(handle)
    temp = Path(temp_name)
    try:
        try:
            fetch(url, temp)
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise DownloadError(
                f"cannot download {url} ({reason}); download it yourself and give its path"
            ) from None
        found = sha256_of(temp)
        if found != sha256.lower():
            raise DownloadError(
                f"{url}: the downloaded file has SHA-256 {found}, expected {sha256.lower()}; "
                "it was not kept (a changed or broken file)"
            )
        temp.replace(path)
    finally:
        temp.unlink(missing_ok=True)
    return path


__all__ = ["CACHE_ENV", "DownloadError", "cache_dir", "cached_file", "sha256_of"]
