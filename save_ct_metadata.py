"""Checkpoints with their CT metadata (``<epoch>_metadata.json`` beside ``<epoch>_net_*.pth``).

Kept at the top level for code written against it, e.g.
``from save_ct_metadata import load_model_with_metadata``; the code is :mod:`models.metadata`.
"""

from models.metadata import (
    METADATA_VERSION,
    Geometry,
    build_metadata,
    code_version,
    geometry_from_folder,
    load_model_with_metadata,
    save_model_with_metadata,
    summarize_geometry,
)

__all__ = ["METADATA_VERSION", "Geometry", "build_metadata", "code_version",
           "geometry_from_folder", "load_model_with_metadata", "save_model_with_metadata",
           "summarize_geometry"]
