"""The plain ``aligned`` mode the original pix2pix users know: one picture per pair, A | B.

Each file in ``<dataroot>/<phase>/`` holds A on its left half and B on its right half.
"""

from __future__ import annotations

import random
from typing import Any

import torch
from PIL import Image

from data.base_dataset import BaseDataset, apply_transform, draw_transform
from data.image_folder import make_dataset
from data.settings import DataSettings
from util.errors import DataError


class AlignedDataset(BaseDataset):
    """Side-by-side A|B pictures, split in half, transformed identically, scaled to [-1, 1]."""

    def __init__(self, settings: DataSettings) -> None:
        super().__init__(settings)
        folder = f"{settings.dataroot}/{settings.phase}"
        self.paths = make_dataset(folder, settings.max_dataset_size)
        if not self.paths:
            raise DataError(f"{folder}: no images found")
        self.a_to_b = settings.a_to_b
        self.input_nc, self.output_nc = settings.input_nc, settings.output_nc
        self.preprocess = settings.preprocess
        self.load_size, self.crop_size = settings.load_size, settings.crop_size
        self.flip = settings.flip

    def __len__(self) -> int:
        """Number of A|B pictures."""
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """``A``: (input_nc, H, W), ``B``: (output_nc, H, W), float32 in [-1, 1], plus paths."""
        path = self.paths[index]
        try:
            with Image.open(path) as img:
                pair = img.convert("RGB")
        except OSError as exc:
            raise DataError(f"{path}: not a readable image ({exc})") from exc
        w, h = pair.size
        left, right = pair.crop((0, 0, w // 2, h)), pair.crop((w // 2, 0, w, h))
        rng = random.Random(int(torch.randint(2**31, ()).item()))  # torch RNG: seeded per worker
        t = draw_transform(left.size, self.preprocess, self.load_size, self.crop_size, self.flip,
                           rng)
        a, b = (left, right) if self.a_to_b else (right, left)
        return {"A": apply_transform(a, t, self.input_nc),
                "B": apply_transform(b, t, self.output_nc),
                "A_paths": str(path), "B_paths": str(path)}
