"""Tests of the display package (windows, CT views, curves, the training visualizer)."""
