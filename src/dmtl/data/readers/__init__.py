"""Readers for the paper's datasets: official folder layouts -> dmtl manifests.

>>> from dmtl.data.readers import READERS
>>> sorted(READERS)
['affectnet', 'affwild2', 'bp4d', 'celeba', 'cub', 'deepfashion', 'disfa', 'rafdb', 'ut_zappos']

EmotioNet has no reader: its manual-annotation format is not publicly
documented (see ``docs/datasets.md``).
"""

from dmtl.data.readers import (  # noqa: F401 - imported so that they register
    affectnet,
    affwild2,
    bp4d,
    celeba,
    cub,
    deepfashion,
    disfa,
    rafdb,
    ut_zappos,
)
from dmtl.data.readers.base import (
    READERS,
    ReaderResult,
    get_reader,
    read_dataset,
    reader_options,
    register_reader,
)
from dmtl.errors import DataError, DatasetLayoutError

__all__ = [
    "READERS",
    "DataError",
    "DatasetLayoutError",
    "ReaderResult",
    "get_reader",
    "read_dataset",
    "reader_options",
    "register_reader",
]
