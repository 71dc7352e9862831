"""Tests of the dataset readers (dmtl.data.readers)."""
