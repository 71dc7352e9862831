"""A source's ``input`` settings as transforms, and the inputs a pretrained backbone asks for.

- :func:`resolve_inputs`: the config with each source's unset ``input`` values taken from
  a pretrained timm or torchvision backbone;
- :func:`input_transforms`: a loaded source with the training and evaluation transforms
  of its ``input`` section (:func:`dmtl.data.transforms.with_input_transforms`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dmtl.config import Config, SourceConfig
from dmtl.data.transforms import with_input_transforms

if TYPE_CHECKING:
    from dmtl.data.sources import Source


def is_image_file_source(source: SourceConfig) -> bool:
    """Whether a source reads image files (a manifest without an array, a reader, or a pack
    of image files)."""
    if source.shards is not None:
        from dmtl.data.shards import open_pack

        return bool(open_pack(source.shards, source.shards_cache).kind == "image")
    return source.builtin is None and source.array is None


def input_transforms(source: Source, config: SourceConfig, where: str) -> Source:
    """``source`` with the transforms of ``config.input`` (``where``: ``sources.<i>``).

    The output size is ``input.image_size`` for image files (decoded at
    ``input.decode_size()``), else the inputs' own size.
    """
    given = config.input
    return with_input_transforms(
        source,
        augment=given.augment,
        image_size=given.image_size,
        crop_scale=given.crop_scale,
        image_files=given.image_size is not None and is_image_file_source(config),
        where=where,
    )


def resolve_inputs(config: Config) -> Config:
    """``config`` with each source's unset ``input`` values taken from the backbone.

    With a pretrained timm or torchvision backbone (:func:`dmtl.backbones.backbone_data_config`):
    ``mean`` and ``std`` for every source (averaged to one value for grey
    ``channels: 1``); ``image_size``, ``crop_pct`` and ``channels`` for sources of image
    files. Values the config sets are kept. Other backbones: ``config`` unchanged.
    """
    from dmtl.backbones import backbone_data_config

    spec = config.backbone
    data = backbone_data_config(spec.name, spec.pretrained, spec.options)
    if data is None:
        return config
    sources = []
    for source in config.sources:
        given = source.input
        update: dict[str, Any] = {}
        if is_image_file_source(source):
            if given.image_size is None:
                update["image_size"] = data.image_size
            if given.crop_pct is None:
                update["crop_pct"] = data.crop_pct
            if given.channels is None:
                update["channels"] = data.channels
        channels = update.get("channels", given.channels)
        if given.mean is None and given.std is None:
            update["mean"] = _per_channel(data.mean, channels)
            update["std"] = _per_channel(data.std, channels)
        new_input = given.model_copy(update=update)
        sources.append(source.model_copy(update={"input": new_input}))
    return config.model_copy(update={"sources": sources})


def _per_channel(values: tuple[float, ...], channels: int | None) -> list[float]:
    """RGB statistics, or their mean for one (grey) channel."""
    if channels == 1 and len(values) > 1:
        return [sum(values) / len(values)]
    return list(values)


__all__ = ["input_transforms", "is_image_file_source", "resolve_inputs"]
