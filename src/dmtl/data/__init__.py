"""dmtl.data."""
