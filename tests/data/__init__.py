"""Tests of dmtl.data."""
