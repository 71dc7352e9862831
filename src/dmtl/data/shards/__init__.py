"""Sources packed as LitData chunks (``dmtl datasets pack``), read by row id.

- :mod:`~dmtl.data.shards.layout`: the files of a pack, opened and checked;
- :mod:`~dmtl.data.shards.writer`: :func:`pack_source`, resumable;
- :mod:`~dmtl.data.shards.source`: :class:`ShardSource`, the pack as a source.

LitData is the optional ``stream`` extra (``pip install 'dmtl[stream]'``).
"""

from __future__ import annotations

from dmtl.data.shards.layout import Pack, is_url, open_pack
from dmtl.data.shards.source import ShardSource, shard_source
from dmtl.data.shards.writer import pack_source

__all__ = ["Pack", "ShardSource", "is_url", "open_pack", "pack_source", "shard_source"]
