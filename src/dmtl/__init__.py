"""dmtl: distribution matching for multi-task learning of classification tasks."""

__version__ = "0.1.0"
