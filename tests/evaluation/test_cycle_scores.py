"""Scoring a synthesised cycle: perfect and identity answers on the synthetic 4DCT."""

import pytest

from evaluation.cycle_scores import score_cycle
from synthetic import ParamRanges, SyntheticGrid, patient_params, synthetic_patient, tumour_masks
from util.phases import STANDARD_PHASES


@pytest.fixture(scope="module")
def patient():
    grid = SyntheticGrid(size=48, n_slices=40)
    params = patient_params(0, 2, ParamRanges(amplitude_mm=(20.0, 20.0)))
    return synthetic_patient(params, grid), tumour_masks(params, grid)


def test_the_true_cycle_scores_perfectly_and_the_avg_does_not_move(patient):
    phantom, masks = patient
    truths = {p: phantom.phases_hu[k] for k, p in enumerate(STANDARD_PHASES)}
    structures = {p: {"GTV": masks[k]} for k, p in enumerate(STANDARD_PHASES)}
    perfect = score_cycle(truths, truths, phantom.avg_hu, phantom.affine, structures=structures)
    assert perfect["phases"]["50"]["model"]["body"]["mae_hu"] == 0.0
    summary = perfect["diaphragm"]["summary"]
    assert summary["amplitude_error_mm"] == 0.0
    assert summary["amplitude_truth_mm"] > 10.0
    assert perfect["consistency"]["model"]["body"]["mae_hu"] < 1e-3  # the AVG is their mean
    assert perfect["structures"]["GTV"]["si"]["error_max_mm"] < 1e-6
    identity = score_cycle(dict.fromkeys(STANDARD_PHASES, phantom.avg_hu), truths,
                           phantom.avg_hu, phantom.affine)
    flat = identity["diaphragm"]["summary"]
    assert flat["amplitude_model_mm"] == 0.0  # the AVG does not breathe
    assert flat["amplitude_error_mm"] == pytest.approx(-flat["amplitude_truth_mm"])
    assert identity["consistency"]["model"]["whole"]["mae_hu"] == pytest.approx(0.0, abs=1e-3)


def test_a_partial_cycle_has_no_consistency_and_phases_without_truth_are_not_scored(patient):
    phantom, _ = patient
    preds = {0.0: phantom.phases_hu[0], 50.0: phantom.phases_hu[5]}
    scores = score_cycle(preds, {0.0: phantom.phases_hu[0]}, phantom.avg_hu, phantom.affine)
    assert scores["consistency"] is None
    assert list(scores["phases"]) == ["0"]
    assert set(scores["diaphragm"]["model_mm"]) == {"0", "50"}
    assert set(scores["diaphragm"]["truth_mm"]) == {"0"}
