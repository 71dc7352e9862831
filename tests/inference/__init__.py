"""Tests of dmtl.inference: model cards, export, predictions from exported models."""
