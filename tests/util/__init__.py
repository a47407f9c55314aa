"""Tests of the util package."""
