"""dmtl.data.readers."""
