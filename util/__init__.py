"""Helpers shared by the data, model and command-line layers (geometry, I/O, display)."""
