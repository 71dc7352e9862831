"""dmtl.training."""
