"""dmtl.data: manifests, sources, multi-source batches, label-hiding regimes, datasets.

- :mod:`~dmtl.data.manifest`: the manifest format (``docs/manifest.md``), read and validated;
- :mod:`~dmtl.data.sources`: ``Source`` datasets over images on disk or arrays;
- :mod:`~dmtl.data.transforms`: augmentation presets, the evaluation crop;
- :mod:`~dmtl.data.pipeline`: a source over a run's tasks, the sampler's strata, the
  checks that a held-out row never trains and that the inputs share one shape;
- :mod:`~dmtl.data.batching`: every source in every batch, DDP-aware;
- :mod:`~dmtl.data.regimes`: disjoint, scarce, imbalance and overlap label hiding;
- :mod:`~dmtl.data.builtin`: digits and Fashion-MNIST with their tasks and tables;
- :mod:`~dmtl.data.readers`: the paper's datasets in their official layouts;
- :mod:`~dmtl.data.inspect` and :mod:`~dmtl.data.export`: label tables, PNG export.

Nothing here reads the config: :mod:`dmtl.build` turns it into the plain arguments these
take (``dmtl.build.data``: config -> sources, experiment; ``dmtl.build.loaders``).

The names below are imported on first use, so that importing a light submodule
(e.g. :mod:`dmtl.data.builtin` to list the datasets) does not load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dmtl._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        ("Batch", "MultiSourceBatchSampler", "build_eval_loader", "build_train_loader",
         "collate_samples"),
        "dmtl.data.batching",
    ),
    **dict.fromkeys(("BuiltinDataset", "list_builtin", "load_builtin"), "dmtl.data.builtin"),
    **dict.fromkeys(("Manifest", "read_manifest", "write_manifest"), "dmtl.data.manifest"),
    **dict.fromkeys(("RegimeRecord", "RegimeSpec", "apply_regime"), "dmtl.data.regimes"),
    **dict.fromkeys(
        ("ArraySource", "Augment", "ImageSource", "Sample", "SampleBatch", "Source"),
        "dmtl.data.sources",
    ),
    "DataError": "dmtl.errors",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from dmtl.data.batching import (
        Batch,
        MultiSourceBatchSampler,
        build_eval_loader,
        build_train_loader,
        collate_samples,
    )
    from dmtl.data.builtin import BuiltinDataset, list_builtin, load_builtin
    from dmtl.data.manifest import Manifest, read_manifest, write_manifest
    from dmtl.data.regimes import RegimeRecord, RegimeSpec, apply_regime
    from dmtl.data.sources import ArraySource, Augment, ImageSource, Sample, SampleBatch, Source
    from dmtl.errors import DataError

__all__ = [
    "ArraySource",
    "Augment",
    "Batch",
    "BuiltinDataset",
    "DataError",
    "ImageSource",
    "Manifest",
    "MultiSourceBatchSampler",
    "RegimeRecord",
    "RegimeSpec",
    "Sample",
    "SampleBatch",
    "Source",
    "apply_regime",
    "build_eval_loader",
    "build_train_loader",
    "collate_samples",
    "list_builtin",
    "load_builtin",
    "read_manifest",
    "write_manifest",
]
