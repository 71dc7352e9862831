"""dmtl.inference: predictions of a trained model (and, later, exported models)."""
