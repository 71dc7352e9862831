"""dmtl.inference: predictions of a trained model, and exported models.

``card`` (the model card: tasks, input, thresholds, zero-shot tables), ``export`` (ONNX and
TorchScript files carrying the card), ``runtime`` (checkpoints and exported files behind one
``Predictor`` interface), ``predict`` (the predictions table).
"""
