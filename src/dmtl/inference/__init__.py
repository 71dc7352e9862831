"""dmtl.inference: predictions of a trained model, and exported models.

``card`` (the model card: tasks, input, thresholds, zero-shot tables, face crop recipe),
``export`` (ONNX and TorchScript files carrying the card), ``runtime`` (checkpoints and
exported files behind one ``Predictor`` interface), ``predict`` (the predictions table).
Faces in photos and videos: ``faces`` (``dmtl.Predictor``: one row per face per frame),
``detectors`` (the face detector registry), ``downloads`` (model files fetched once,
SHA-256 checked), ``media`` (photos and video frames, PyAV), ``tracking`` (IoU tracks,
smoothing), ``face_plots`` (track pictures, annotated photos and videos).
"""
