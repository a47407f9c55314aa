"""A history of generated images for the discriminator (Shrivastava et al., CVPR 2017)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import torch


class ImagePool:
    """Keeps up to ``size`` past fakes; each query returns, per image, either the new image or
    (with probability 0.5, once full) a stored one that the new image replaces. ``size`` 0
    returns the input unchanged. ``rng`` draws the choices (default: one seeded by the
    operating system); :meth:`state_dict` saves what a resumed training needs."""

    def __init__(self, size: int, rng: random.Random | None = None) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []
        self.rng = rng or random.Random()

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """images: (N, C, H, W) -> (N, C, H, W), a mix of these and past images (detached)."""
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif self.rng.random() < 0.5:
                k = self.rng.randrange(self.size)
                out.append(self.images[k])
                self.images[k] = image
            else:
                out.append(image)
        return torch.stack(out)

    def state_dict(self) -> dict[str, Any]:
        """The stored images and the generator's state, as tensors and plain values (for the
        training state, so that a resumed training draws what an uninterrupted one would)."""
        return {"size": self.size, "images": list(self.images), "rng": self.rng.getstate()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` of a pool of the same size (ValueError otherwise)."""
        if state["size"] != self.size:
            raise ValueError(f"a pool of {state['size']} images saved, this one holds "
                             f"{self.size} (--pool_size)")
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.images = list(state["images"])
