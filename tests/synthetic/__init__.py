"""Tests of the synthetic 4DCT package (parameters, phantom, export)."""
