"""The synthetic 4DCT's patient parameters and the ranges they are drawn from."""

from __future__ import annotations

import pytest

from synthetic import DEFAULT_RANGES, ParamRanges, PatientParams, patient_params
from util.errors import ConfigError


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"amplitude_mm": -1.0}, "amplitude_mm"),
    ({"noise_hu": -2.0}, "noise_hu"),
    ({"tumour_side": "middle"}, "tumour_side"),
])
def test_bad_patient_params_raise(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PatientParams(**kwargs)


def test_parameters_stay_in_their_ranges_and_follow_the_seed() -> None:
    ranges = ParamRanges(amplitude_mm=(20.0, 25.0), lung_scale=(1.0, 1.05),
                         tumour_radius_mm=(6.0, 6.0), noise_hu=(5.0, 30.0))
    drawn = [patient_params(3, k, ranges) for k in range(40)]
    for field, bounds in (("amplitude_mm", ranges.amplitude_mm),
                          ("lung_scale", ranges.lung_scale),
                          ("tumour_radius_mm", ranges.tumour_radius_mm),
                          ("noise_hu", ranges.noise_hu),
                          ("body_half_width_mm", DEFAULT_RANGES.body_half_width_mm)):
        values = [getattr(p, field) for p in drawn]
        assert bounds[0] <= min(values) <= max(values) <= bounds[1], field
    assert len({p.noise_hu for p in drawn}) == 40  # a range, not one value
    assert {p.tumour_radius_mm for p in drawn} == {6.0}
    assert all(p.chest_expansion_mm == pytest.approx(0.2 * p.amplitude_mm) for p in drawn)
    assert patient_params(3, 7, ranges) == drawn[7]
    assert patient_params(4, 7, ranges) != drawn[7]


@pytest.mark.parametrize("bounds", [(5.0, 1.0), (-1.0, 2.0), (1.0,)])
def test_bad_ranges_raise(bounds: tuple) -> None:
    with pytest.raises(ConfigError, match="amplitude_mm"):
        ParamRanges(amplitude_mm=bounds)
