"""dmtl's version, in one place (the package root and ``results.json`` read it from here)."""

__version__ = "0.1.0"
