"""Datasets by name: ``--dataset_mode Y`` loads ``data/Y_dataset.py`` (placeholder, see below)."""
