"""Lazy public names for a package (PEP 562): a name is imported from its module on first
use, so that importing the package (and ``dmtl --help``) loads neither torch nor Lightning."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``exports`` maps a public name to the
    module that defines it; the value is cached in the package once imported."""
    namespace = sys.modules[package].__dict__

    def get_attribute(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module), name)
        namespace[name] = value
        return value

    def list_names() -> list[str]:
        return sorted([*namespace, *exports])

    return get_attribute, list_names
