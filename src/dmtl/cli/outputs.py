"""The checks every command runs on the files and folders it is told to write (``-o``).

An existing file is never replaced without ``--overwrite``; a file is never written
where a folder is (or under a file), and the reverse; each refusal is one
:class:`~dmtl.errors.OutputError` line naming the path and the option. They run before
any work, so a long command does not fail at its last step.
"""

from __future__ import annotations

from pathlib import Path

from dmtl.errors import OutputError


def _check_parent(path: Path, option: str) -> None:
    """The nearest existing folder above ``path`` is a folder, and the missing ones can be made."""
    for ancestor in path.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise OutputError(f"{path} ({option}): {ancestor} is a file, not a folder")
            return


def check_output_file(path: Path, overwrite: bool, option: str = "--output") -> Path:
    """Refuse to write file ``path`` over a folder, under a file, or over an existing file
    unless ``overwrite``; create its missing parent folders. Returns ``path``."""
    if path.is_dir():
        raise OutputError(f"{path} ({option}) is a folder; give a file path")
    if path.exists() and not overwrite:
        raise OutputError(f"{path} exists; pass --overwrite to replace it")
    _check_parent(path, option)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(
            f"{path} ({option}): cannot create its folder ({error.strerror or error})"
        ) from None
    return path


def check_output_folder(path: Path, option: str = "--out") -> Path:
    """Refuse a folder ``path`` that is an existing file or lies under a file. Returns ``path``.

    Whether an existing folder may be reused is the command's to decide (``--resume``,
    ``--overwrite``).
    """
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} ({option}) is a file; give a folder")
    _check_parent(path, option)
    return path
