"""Parameters of the synthetic 4DCT's patients and the ranges they are drawn from.

Anatomy (body size, lung size, tumour size and place) and breathing (amplitude) vary per
patient within :class:`ParamRanges`; a benchmark can train on one set of ranges and test on
patients drawn from another, whose parameters were never seen in training.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from util.errors import ConfigError

Range = tuple[float, float]


@dataclass(frozen=True)
class ParamRanges:
    """Closed ranges (low, high) each patient's parameters are drawn from, uniformly.

    ``amplitude_mm``: superior-inferior breathing amplitude (mm); ``body_half_width_mm`` and
    ``body_half_depth_mm``: body ellipse half axes (mm); ``lung_scale``: lung size factor;
    ``tumour_radius_mm``: tumour radius (mm); ``noise_hu``: Gaussian noise sigma per phase (HU).
    A range with low == high fixes the parameter.
    """

    amplitude_mm: Range = (5.0, 25.0)
    body_half_width_mm: Range = (135.0, 160.0)
    body_half_depth_mm: Range = (90.0, 110.0)
    lung_scale: Range = (0.85, 1.1)
    tumour_radius_mm: Range = (5.0, 10.0)
    noise_hu: Range = (15.0, 15.0)

    def __post_init__(self) -> None:
        bad = [f"{f.name}={getattr(self, f.name)}" for f in fields(self)
               if not (len(getattr(self, f.name)) == 2
                       and 0 <= getattr(self, f.name)[0] <= getattr(self, f.name)[1])]
        if bad:
            raise ConfigError(f"invalid parameter ranges (need 0 <= low <= high): "
                              f"{', '.join(bad)}")


@dataclass(frozen=True)
class PatientParams:
    """One phantom patient. ``tumour_offset`` is unitless: (lateral, anterior, superior) fractions
    of the free room inside the tumour's lung, each in [-1, 1] (the last in [0, 1])."""

    amplitude_mm: float = 15.0
    chest_expansion_mm: float = 3.0
    noise_hu: float = 15.0
    body_half_width_mm: float = 150.0
    body_half_depth_mm: float = 100.0
    fat_mm: float = 8.0
    lung_scale: float = 1.0
    tumour_radius_mm: float = 8.0
    tumour_side: str = "right"
    tumour_offset: tuple[float, float, float] = (0.0, 0.0, 0.5)
    noise_seed: int = 0

    def __post_init__(self) -> None:
        checks = {"amplitude_mm": self.amplitude_mm >= 0, "noise_hu": self.noise_hu >= 0,
                  "chest_expansion_mm": self.chest_expansion_mm >= 0, "fat_mm": self.fat_mm >= 0,
                  "body_half_width_mm": self.body_half_width_mm > 2 * self.fat_mm + 20,
                  "body_half_depth_mm": self.body_half_depth_mm > 2 * self.fat_mm + 20,
                  "lung_scale": 0.3 <= self.lung_scale <= 1.2,
                  "tumour_radius_mm": self.tumour_radius_mm > 0}
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"invalid phantom parameters {bad} in {self}")
        if self.tumour_side not in ("right", "left"):
            raise ConfigError(f"tumour_side must be 'right' or 'left', not {self.tumour_side!r}")


#: The ranges the built-in synthetic 4DCT draws from unless told otherwise.
DEFAULT_RANGES = ParamRanges()


def _draw(rng: np.random.Generator, bounds: Range) -> float:
    """One uniform draw in ``bounds`` (low, high); always consumes one draw of ``rng``."""
    return float(rng.uniform(bounds[0], bounds[1]))


def sample_patient_params(rng: np.random.Generator, ranges: ParamRanges = DEFAULT_RANGES, *,
                          chest_expansion_mm: float | None = None,
                          fat_mm: float = 8.0) -> PatientParams:
    """Draw one patient from ``ranges``: breathing amplitude, body and lung size, tumour size,
    side and place, noise; the chest expands by a fifth of the amplitude unless
    ``chest_expansion_mm`` is given."""
    amplitude = _draw(rng, ranges.amplitude_mm)
    offset = (float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1)), float(rng.uniform(0, 1)))
    width = _draw(rng, ranges.body_half_width_mm)
    depth = _draw(rng, ranges.body_half_depth_mm)
    lung_scale = _draw(rng, ranges.lung_scale)
    tumour_radius = _draw(rng, ranges.tumour_radius_mm)
    side = str(rng.choice(["right", "left"]))
    noise_seed = int(rng.integers(0, 2**31 - 1))
    return PatientParams(
        amplitude_mm=amplitude,
        chest_expansion_mm=0.2 * amplitude if chest_expansion_mm is None
        else float(chest_expansion_mm),
        noise_hu=_draw(rng, ranges.noise_hu), body_half_width_mm=width,
        body_half_depth_mm=depth, fat_mm=float(fat_mm), lung_scale=lung_scale,
        tumour_radius_mm=tumour_radius, tumour_side=side, tumour_offset=offset,
        noise_seed=noise_seed)


def patient_params(seed: int, index: int, ranges: ParamRanges = DEFAULT_RANGES, *,
                   chest_expansion_mm: float | None = None, fat_mm: float = 8.0) -> PatientParams:
    """The parameters of patient ``index`` of the tree written with ``seed`` and ``ranges``:
    they depend on ``(seed, index)`` only, so adding patients never changes earlier ones."""
    return sample_patient_params(np.random.default_rng([seed, index]), ranges,
                                 chest_expansion_mm=chest_expansion_mm, fat_mm=fat_mm)
