"""Fuzzing the NIfTI loader over the header fields it reads: whatever the header says, loading
either succeeds with finite HU and a usable affine, or fails with the project's DataError naming
the file. Nothing else may escape (no nibabel, numpy or struct error, no crash)."""

import gzip
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from data.ct_volumes import load_slice_stack
from data.nifti_io import read_geometry
from util.errors import CTPix2PixError

ODD_FLOATS = st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, 1e-30, 1e30, 3.4e38, float("nan"),
                              float("inf"), float("-inf")])
FLOATS = st.one_of(st.floats(-1000, 1000), ODD_FLOATS)
#: NIfTI data type codes: the usual ones, the exotic ones (binary, complex, RGB) and nonsense.
DATATYPES = st.sampled_from([2, 4, 8, 16, 64, 256, 512, 768, 1024, 1280, 1, 32, 128, 1792,
                             2048, 2304, 0, 3, 99, 32767, -4])
SIZES = st.one_of(st.integers(1, 9), st.sampled_from([-1, 0, 32767, -32768]))
CODES = st.one_of(st.integers(0, 4), st.sampled_from([-1, 7, 255, 1000]))
#: Header fields the loader reads, and what a damaged or unusual export may hold in them.
FIELDS = {
    "dim": st.tuples(st.one_of(st.integers(2, 5), st.sampled_from([-1, 0, 1, 7, 8, 9])),
                     *[SIZES] * 7),
    "pixdim": st.lists(FLOATS, min_size=8, max_size=8),
    "datatype": DATATYPES,
    "bitpix": st.sampled_from([0, 8, 16, 32, 64, 7]),
    "scl_slope": FLOATS, "scl_inter": FLOATS,
    "qform_code": CODES, "sform_code": CODES,
    "quatern_b": FLOATS, "quatern_c": FLOATS, "quatern_d": FLOATS,
    "qoffset_x": FLOATS, "qoffset_y": FLOATS, "qoffset_z": FLOATS,
    "srow_x": st.lists(FLOATS, min_size=4, max_size=4),
    "srow_y": st.lists(FLOATS, min_size=4, max_size=4),
    "srow_z": st.lists(FLOATS, min_size=4, max_size=4),
    "vox_offset": st.sampled_from([0.0, 348.0, 351.5, 400.0, -16.0, 1e9, float("nan")]),
    "magic": st.sampled_from([b"ni1", b"n+2", b"xyz"]),
}
#: A valid base: (6, 5, 4) int16 HU, scl_slope 1, scl_inter -1024, oblique sform and qform.
BASE_SHAPE = (6, 5, 4)


def base_image() -> nib.Nifti1Image:
    raw = np.random.default_rng(0).integers(0, 2500, size=BASE_SHAPE).astype(np.int16)
    affine = np.array([[-0.9, 0.05, 0, 100], [0.05, -0.9, 0.1, 80], [0, 0.1, 3, -50],
                       [0, 0, 0, 1]])
    img = nib.Nifti1Image(raw, affine)
    img.header.set_slope_inter(1.0, -1024.0)
    img.header.set_qform(affine, code=1)
    return img


@st.composite
def mutations(draw) -> dict:
    """A few header fields (each with a chance of 1 in 4) set to unusual or invalid values."""
    chosen = draw(st.lists(st.booleans(), min_size=len(FIELDS), max_size=len(FIELDS)))
    chosen = [c and draw(st.integers(0, 1)) == 1 for c in chosen]
    return {key: draw(strategy) for (key, strategy), pick in zip(FIELDS.items(), chosen,
                                                                  strict=True) if pick}


def nifti_bytes(fields: dict, extra_bytes: int) -> bytes:
    """The base image as a single-file NIfTI-1 with ``fields`` set raw in its header (no
    validation), its voxel data cut short (``extra_bytes`` < 0) or padded (> 0)."""
    img = base_image()
    header = img.header.copy()
    header.set_data_offset(352)
    for key, value in fields.items():
        header.structarr[key] = value
    voxels = np.asarray(img.dataobj).tobytes(order="F")
    voxels = voxels[:max(0, len(voxels) + extra_bytes)] + b"\0" * max(0, extra_bytes)
    return header.binaryblock + b"\0\0\0\0" + voxels


def check_loads_or_refuses(path: Path) -> None:
    """The property: a result with finite HU and a finite affine, or a project error naming
    ``path``."""
    for load in (read_geometry, load_slice_stack):
        message = ""
        try:
            result = load(path)
        except CTPix2PixError as exc:
            message = str(exc)
        if message:
            assert str(path) in message
        elif load is load_slice_stack:
            assert result.hu.ndim == 3
            assert np.isfinite(result.hu).all()
            assert np.isfinite(result.info.affine).all()


@settings(max_examples=2500, deadline=None)
@given(fields=mutations(), extra_bytes=st.one_of(st.just(0), st.integers(-300, 300)),
       gz=st.booleans())
@example(fields={"dim": (4, 1, 1, 0, 1, 1, 1, 1)}, extra_bytes=0, gz=False)  # found by the fuzz
def test_fuzzed_headers_load_or_fail_with_a_data_error(fields, extra_bytes, gz):
    data = nifti_bytes(fields, extra_bytes)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("fuzz.nii.gz" if gz else "fuzz.nii")
        path.write_bytes(gzip.compress(data, compresslevel=1) if gz else data)
        check_loads_or_refuses(path)


@settings(max_examples=500, deadline=None)
@given(cut=st.integers(0, 4000), flip_at=st.integers(0, 4000), flip=st.integers(1, 255),
       gz=st.booleans())
def test_fuzzed_truncation_and_corruption_of_a_valid_file(cut, flip_at, flip, gz):
    hu = np.random.default_rng(0).integers(-1000, 1500, size=(8, 8, 6)).astype(np.int16)
    img = nib.Nifti1Image(hu, np.diag([0.9, 0.9, 3.0, 1.0]))
    img.header.set_slope_inter(1.0, 0.0)
    data = bytearray(img.to_bytes())
    if flip_at < len(data):
        data[flip_at] ^= flip
    data = bytes(data[: max(0, len(data) - cut)])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("cut.nii.gz" if gz else "cut.nii")
        path.write_bytes(gzip.compress(data, compresslevel=1) if gz else data)
        check_loads_or_refuses(path)
