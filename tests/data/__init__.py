"""Tests of the data layer (NIfTI I/O, HU windows, datasets)."""
