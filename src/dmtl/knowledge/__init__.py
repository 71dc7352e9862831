"""dmtl.knowledge."""
