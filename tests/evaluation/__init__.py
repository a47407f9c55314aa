"""Tests of the evaluation package (metrics and reports)."""
