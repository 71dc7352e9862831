"""Errors raised for bad user data: each message names the file, row and column at fault.

Every class derives from :class:`ValueError`, so a caller (the CLI) can catch
:class:`DataError` and print its message without a traceback.
"""

from __future__ import annotations


class DataError(ValueError):
    """Bad input data: a file, a value or an argument describing a data source."""


class ManifestError(DataError):
    """A manifest is malformed: bad columns, values, ids or splits."""


class MissingFilesError(DataError):
    """Files listed in a manifest do not exist."""


class CorruptImageError(DataError):
    """An image file exists but cannot be decoded."""
