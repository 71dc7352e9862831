"""Readers for the paper's datasets: official folder layouts -> dmtl manifests.

>>> from dmtl.data.readers import READERS
>>> sorted(READERS)  # doctest: +NORMALIZE_WHITESPACE
['affectnet', 'affwild2', 'bp4d', 'celeba', 'cub', 'deepfashion', 'disfa', 'emotionet',
 'rafdb', 'ut_zappos']

The reader modules (pandas, torch) are imported on first use of a name below;
:data:`READER_SUMMARIES` names them without importing anything.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

READER_MODULES = (
    "affectnet", "affwild2", "bp4d", "celeba", "cub", "deepfashion", "disfa", "emotionet",
    "rafdb", "ut_zappos",
)
"""The modules that register a reader when imported."""

READER_SUMMARIES: dict[str, str] = {
    "affectnet": "Read AffectNet's manually annotated lists (expression; flat or nested "
    "layout).",
    "affwild2": "Read Aff-Wild2's ABAW expression, AU and valence-arousal annotations, "
    "frames joined.",
    "bp4d": "Read BP4D AU occurrence for the AUs ``aus`` (9 = not coded -> missing).",
    "celeba": "Read CelebA's identities (classes named by identity number) and 40 attributes.",
    "cub": "Read CUB-200-2011: ``species`` (200 classes) and ``attributes`` (312 labels).",
    "deepfashion": "Read the DeepFashion category and attribute benchmark.",
    "disfa": "Read DISFA AU occurrence (intensity >= ``threshold``) for every subject.",
    "emotionet": "Read EmotioNet AU occurrence (999 = not annotated -> missing).",
    "rafdb": "Read RAF-DB basic.",
    "ut_zappos": "Read UT-Zappos50K: ``category`` + binary ``attributes`` from the metadata.",
}
"""Reader name -> the first line of its docstring, for ``dmtl datasets list`` (a test keeps
it equal to the registered readers)."""

_BASE_NAMES = (
    "CROP_RECIPES", "READERS", "ReaderResult", "get_reader", "read_dataset",
    "reader_crop_recipe", "reader_options",
    "register_reader",
)


def __getattr__(name: str) -> Any:
    """Import the readers (so that they register) on first use of a name (PEP 562)."""
    if name in _BASE_NAMES:
        for module in READER_MODULES:
            import_module(f"dmtl.data.readers.{module}")
        value = getattr(import_module("dmtl.data.readers.base"), name)
    elif name in ("DataError", "DatasetLayoutError"):
        value = getattr(import_module("dmtl.errors"), name)
    else:
        raise AttributeError(f"module 'dmtl.data.readers' has no attribute {name!r}")
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from dmtl.data.readers.base import (
        CROP_RECIPES,
        READERS,
        ReaderResult,
        get_reader,
        read_dataset,
        reader_crop_recipe,
        reader_options,
        register_reader,
    )
    from dmtl.errors import DataError, DatasetLayoutError

__all__ = [
    "CROP_RECIPES",
    "READERS",
    "READER_MODULES",
    "READER_SUMMARIES",
    "DataError",
    "DatasetLayoutError",
    "ReaderResult",
    "get_reader",
    "read_dataset",
    "reader_crop_recipe",
    "reader_options",
    "register_reader",
]
