"""DICOM -> model -> DICOM: the prediction path of test.py/predict.py (models.inference) run on a
DICOM series and written back as a derived series, against the same volume stored as NIfTI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from torch import nn

from data.ct_volumes import SliceStack, compact_hu, load_slice_stack
from data.dicom_io import load_series
from data.dicom_write import write_derived_series
from data.nifti_io import Volume, save_volume
from models.inference import predict_volume
from tests.data.test_dicom_io import GEOMETRIES, ct_hu, write_ct_series
from util.geometry import to_slice_stack

HU_MIN, HU_MAX = -1024.0, 3071.0


def _net() -> nn.Module:
    """A small fixed random image-to-image network with a [-1, 1] output."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1),
                         nn.Tanh()).eval()


def _stack(vol: Volume) -> SliceStack:
    """The axial slice stack of a volume read from DICOM, as load_slice_stack makes one."""
    return SliceStack(hu=compact_hu(to_slice_stack(vol.hu, vol.affine)), info=vol.info)


@pytest.mark.parametrize("name", ["oblique", "feet_first_scaled"])
def test_dicom_to_model_to_dicom_keeps_hu_and_slice_positions(tmp_path: Path, name: str) -> None:
    spec = GEOMETRIES[name]
    files = write_ct_series(tmp_path / "avg", ct_hu(spec), spec)
    series = load_series(tmp_path / "avg")
    fake = predict_volume(_net(), _stack(series.volume), hu_min=HU_MIN, hu_max=HU_MAX)
    out = write_derived_series(fake, series.source, tmp_path / "fake", "phase 0", "tiny")
    back = load_series(out)
    np.testing.assert_allclose(back.volume.hu, fake, atol=spec.slope / 2 + 1e-3)
    np.testing.assert_array_equal(back.volume.affine, series.volume.affine)
    source_positions = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p).ImagePositionPatient
                        for p in files}
    for path in out.iterdir():  # every slice at the position of the source slice it refers to
        ds = pydicom.dcmread(path)
        ref = ds.SourceImageSequence[0].ReferencedSOPInstanceUID
        assert [float(v) for v in ds.ImagePositionPatient] == \
            [float(v) for v in source_positions[ref]]


def test_nifti_and_dicom_copies_give_the_same_prediction(tmp_path: Path) -> None:
    spec = GEOMETRIES["oblique"]
    write_ct_series(tmp_path / "avg", ct_hu(spec, seed=2), spec)
    vol = load_series(tmp_path / "avg").volume
    nifti = save_volume(vol.hu, vol, tmp_path / "avg.nii.gz")
    from_nifti = load_slice_stack(nifti)
    np.testing.assert_allclose(from_nifti.info.affine, vol.affine, atol=1e-4)
    net = _net()
    pred_dicom = predict_volume(net, _stack(vol), hu_min=HU_MIN, hu_max=HU_MAX)
    pred_nifti = predict_volume(net, from_nifti, hu_min=HU_MIN, hu_max=HU_MAX)
    np.testing.assert_array_equal(pred_dicom, pred_nifti)
    assert np.ptp(pred_dicom) > 0  # the network does something
