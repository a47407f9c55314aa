"""The recipes ``--recipe`` names: option values that replace pix2pix's defaults.

- ``recommended`` (the default): README's recommended recipe for pix2pix on CT, measured on
  axial slices (benchmarks/README.md: the ablation, time_to_quality.py, cross_source.py); for
  ``--dataset_mode nifti_volume`` its CT part alone; nothing for other models and datasets.
- ``pix2pix``: nothing; the classic defaults stay.

The plan (:mod:`options.plan_rules`) then fits some of these values to the data and machine.
"""

from __future__ import annotations

from typing import Any

#: ``--recipe`` choices; the first is the default.
RECIPES = ("recommended", "pix2pix")

#: The recommended recipe for pix2pix on CT, slices or volumes (benchmarks/README.md, ablation):
#: the lung/soft-tissue HU window, the motion-weighted L1 with the vanilla GAN term, no dropout
#: (inference runs without it anyway) and instance norm.
CT_RECIPE: dict[str, Any] = {
    "hu_min": -1024.0, "hu_max": 1024.0, "motion_weight": 4.0, "no_dropout": True,
    "lambda_L1": 100.0, "gan_mode": "vanilla", "norm": "instance"}
#: What the recipe adds for axial slices (``--dataset_mode nifti_aligned``, where it was
#: measured): a narrow ``unet_64`` fed batches of 8, 2.5-D input with residual output, twice
#: pix2pix's learning rate with a moving average of G, the residual gate chosen on held-out
#: sources, and the 60 epochs (30 + 30 decaying) quality.py trains (the plan scales them).
SLICE_RECIPE: dict[str, Any] = {
    "netG": "unet_64", "ngf": 32, "batch_size": 8, "context_slices": 2, "residual": True,
    "lr": 0.0004, "ema_decay": 0.99, "residual_gate_hu": 150.0, "n_epochs": 30,
    "n_epochs_decay": 30}


def recipe_values(recipe: str, model: str, dataset_mode: str) -> dict[str, Any]:
    """The option values ``--recipe`` sets for ``--model``/``--dataset_mode``: the slice recipe
    for pix2pix on nifti_aligned, its CT part for pix2pix on nifti_volume, nothing otherwise
    (pix2pix's defaults stay; the recipe was measured on CT slices)."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe '{recipe}'; valid: {', '.join(RECIPES)}")
    if recipe == "pix2pix" or model != "pix2pix":
        return {}
    if dataset_mode == "nifti_aligned":
        return {**CT_RECIPE, **SLICE_RECIPE}
    if dataset_mode == "nifti_volume":
        return dict(CT_RECIPE)
    return {}
