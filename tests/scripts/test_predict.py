"""scripts/predict.py: the same file for the same input, sampling on request, any slice size,
and one-line refusals that write nothing."""

import errno
import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import LPS_AFFINE, OBLIQUE_AFFINE, ct_like, write_nifti, write_raw_header_nifti
from tests.tiny_runs import dropout_and_plain_runs, load_script, tiny_run


@pytest.fixture(scope="module")
def predict():
    return load_script("scripts/predict.py", "ct_predict_script")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """checkpoints/run (dropout) and checkpoints/plain (--no_dropout)."""
    return dropout_and_plain_runs(tmp_path_factory.mktemp("ck"))


def argv(runs: Path, src: Path, out: Path, *extra: str, name: str = "run") -> list[str]:
    return ["--name", name, "--checkpoints_dir", str(runs), "--input", str(src), "--output",
            str(out), "--gpu_ids", "-1", *extra]


def avg(tmp_path: Path, shape=(64, 64, 4), affine=LPS_AFFINE, name="avg.nii.gz") -> Path:
    return write_nifti(tmp_path / "in" / name, ct_like(shape), affine, np.float32)


def test_two_runs_write_bit_identical_files(tmp_path, predict, runs):
    src = avg(tmp_path)
    for out in ("one.nii.gz", "two.nii.gz"):
        assert predict.main(argv(runs, src, tmp_path / out)) == 0  # no --eval
    assert (tmp_path / "one.nii.gz").read_bytes() == (tmp_path / "two.nii.gz").read_bytes()
    assert predict.main(argv(runs, src, tmp_path / "eval.nii.gz", "--eval")) == 0
    assert (tmp_path / "eval.nii.gz").read_bytes() == (tmp_path / "one.nii.gz").read_bytes()


def test_samples_write_a_reproducible_mean_and_std_with_the_avg_geometry(tmp_path, predict,
                                                                          runs):
    src = avg(tmp_path, affine=OBLIQUE_AFFINE)
    out = tmp_path / "out" / "phase0.nii.gz"
    assert predict.main(argv(runs, src, out, "--samples", "3", "--seed", "5")) == 0
    std_path = tmp_path / "out" / "phase0_std.nii.gz"
    mean, std = nib.load(out).get_fdata(), nib.load(std_path)
    assert std.get_data_dtype() == np.float32
    assert std.shape == mean.shape == (64, 64, 4)
    np.testing.assert_allclose(std.affine, OBLIQUE_AFFINE, atol=1e-6)
    assert std.get_fdata().min() >= 0
    assert std.get_fdata().max() > 1.0  # dropout passes differ by HU
    other = tmp_path / "again.nii.gz"
    assert predict.main(argv(runs, src, other, "--samples", "3", "--seed", "5", "--std_output",
                             str(tmp_path / "s.nii"))) == 0
    assert other.read_bytes() == out.read_bytes()
    np.testing.assert_array_equal(nib.load(tmp_path / "s.nii").get_fdata(), std.get_fdata())
    assert predict.main(argv(runs, src, other, "--samples", "3", "--seed", "6")) == 0
    assert not np.array_equal(nib.load(other).get_fdata(), mean)
    deterministic = tmp_path / "one.nii.gz"
    assert predict.main(argv(runs, src, deterministic)) == 0
    assert not (tmp_path / "one_std.nii.gz").exists()


def test_samples_are_refused_for_a_generator_without_dropout(tmp_path, predict, runs, caplog):
    out = tmp_path / "out" / "p.nii.gz"
    with caplog.at_level(logging.ERROR):
        assert predict.main(argv(runs, avg(tmp_path), out, "--samples", "4",
                                 name="plain")) == 1
    assert "--samples 4" in caplog.text
    assert "no dropout (trained with --no_dropout)" in caplog.text
    assert not out.parent.exists() or not list(out.parent.iterdir())


def test_std_output_may_overwrite_neither_the_input_nor_the_output(tmp_path, predict, runs,
                                                                   caplog):
    src = avg(tmp_path, name="x_std.nii.gz")
    before = src.read_bytes()
    with caplog.at_level(logging.ERROR):
        assert predict.main(argv(runs, src, tmp_path / "in" / "x.nii.gz", "--samples",
                                 "2")) == 1
        assert predict.main(argv(runs, src, tmp_path / "y.nii.gz", "--samples", "2",
                                 "--std_output", str(tmp_path / "y.nii.gz"))) == 1
    assert f"--std_output {src} is the input" in caplog.text
    assert "is also --output" in caplog.text
    assert src.read_bytes() == before
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["x_std.nii.gz"]


def test_an_output_under_a_file_is_one_line_naming_it(tmp_path, predict, runs, caplog):
    blocker = tmp_path / "existing"
    blocker.write_text("a file")
    with caplog.at_level(logging.ERROR):
        assert predict.main(argv(runs, avg(tmp_path), blocker / "y.nii.gz")) == 1
    assert f"{blocker} is a file, not a folder" in caplog.text
    assert blocker.read_text() == "a file"


def test_a_read_only_output_folder_is_one_line_and_nothing_is_written(tmp_path, predict, runs,
                                                                      caplog, monkeypatch):
    real_mkdir = os.mkdir

    def read_only(path, *args, **kwargs):
        if "results" in str(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", read_only)
    with caplog.at_level(logging.ERROR):
        assert predict.main(argv(runs, avg(tmp_path), tmp_path / "results" / "y.nii.gz")) == 1
    assert f"{tmp_path / 'results'}: cannot create the folder (Read-only" in caplog.text
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("shape", [(61, 12, 9), (61, 75, 12)])
def test_any_slice_size_is_predicted_with_the_avg_geometry(tmp_path, predict, runs, shape):
    src = avg(tmp_path, shape=shape, affine=OBLIQUE_AFFINE)
    out = tmp_path / "p.nii.gz"
    assert predict.main(argv(runs, src, out)) == 0
    img = nib.load(out)
    assert img.shape == shape
    np.testing.assert_allclose(img.affine, OBLIQUE_AFFINE, atol=1e-6)
    assert -1024 <= img.get_fdata().min() <= img.get_fdata().max() <= 3071


def test_predict_leaves_the_run_folder_byte_identical(tmp_path, predict, runs):
    def snapshot() -> dict[str, tuple[bytes, int]]:
        return {str(p.relative_to(runs)): (p.read_bytes(), p.stat().st_mtime_ns)
                for p in sorted(runs.rglob("*")) if p.is_file()}

    before = snapshot()
    src = avg(tmp_path)
    assert predict.main(argv(runs, src, tmp_path / "a.nii.gz")) == 0
    assert predict.main(argv(runs, src, tmp_path / "b.nii.gz", "--samples", "2")) == 0
    assert predict.main(argv(runs, src, tmp_path / "c.nii.gz", "--epoch", "7")) == 1  # refused
    assert snapshot() == before


@pytest.fixture(scope="module")
def motion_run(tmp_path_factory) -> Path:
    """checkpoints/motion: an untrained motion3d_3 generator (the identity: zero field) whose
    last layer is set to a constant field of +1 slice (superior) and +2 rows (posterior)."""
    import torch

    from models.networks import MotionGenerator
    from models.trained_run import load_generator

    checkpoints = tiny_run(tmp_path_factory.mktemp("ck_motion"), "--netG", "motion3d_3",
                           "--dataset_mode", "nifti_volume", "--no_dropout", name="motion")
    generator = load_generator(checkpoints / "motion", "latest")
    net = generator.net
    assert isinstance(net, MotionGenerator)
    head = net.field_net.output_layer
    with torch.no_grad():
        head.bias[:3] = torch.tensor([1.0, 2.0, 0.0])  # u = (1, 2, 0) voxels along (S, H, W)
    torch.save(net.state_dict(), checkpoints / "motion" / "latest_net_G.pth")
    return checkpoints


def test_motion_run_writes_the_field_in_world_mm_beside_the_output(tmp_path, predict,
                                                                    motion_run):
    src = avg(tmp_path, shape=(20, 18, 7))  # LPS, 0.9 mm pixels, 3 mm slices, odd sides
    out = tmp_path / "out" / "p0.nii.gz"
    assert predict.main(argv(motion_run, src, out, name="motion")) == 0
    field = nib.load(tmp_path / "out" / "p0_displacement.nii.gz")
    assert field.shape == (20, 18, 7, 1, 3)
    np.testing.assert_allclose(field.affine, LPS_AFFINE, atol=1e-6)
    vectors = np.asarray(field.dataobj)[:, :, :, 0, :]
    # +1 slice = 3 mm superior (+z); +2 rows = 1.8 mm posterior, which is -y in RAS
    np.testing.assert_allclose(vectors[..., 2], 3.0, atol=1e-4)
    np.testing.assert_allclose(vectors[..., 1], -1.8, atol=1e-4)
    np.testing.assert_allclose(vectors[..., 0], 0.0, atol=1e-4)


@pytest.mark.parametrize("clash", ["--output", "--input"])
def test_a_field_path_on_another_file_is_refused_before_writing(tmp_path, predict, motion_run,
                                                                clash, caplog):
    src = avg(tmp_path)
    out = tmp_path / "p0.nii.gz"
    target = out if clash == "--output" else src
    with caplog.at_level(logging.ERROR):
        code = predict.main(argv(motion_run, src, out, "--displacement_output", str(target),
                                 name="motion"))
    assert code == 1
    assert "--displacement_output" in caplog.text
    assert not out.exists()


@pytest.mark.parametrize(("dtype", "inter"), [(np.int8, 0.0), (np.uint8, -1024.0)])
def test_an_8bit_avg_gives_a_phase_in_int16_with_the_float_avgs_hu(tmp_path, predict, runs,
                                                                   caplog, dtype, inter):
    shape = (64, 64, 4)
    low = -128.0 if inter == 0 else -1024.0
    hu = np.random.default_rng(2).integers(low, low + 256, size=shape).astype(np.float32)
    narrow = write_nifti(tmp_path / "in" / "avg8.nii.gz", hu, LPS_AFFINE, dtype, 1.0, inter)
    wide = write_nifti(tmp_path / "in" / "avg32.nii.gz", hu, LPS_AFFINE, np.float32)
    assert predict.main(argv(runs, wide, tmp_path / "ref.nii.gz")) == 0
    out = tmp_path / "p.nii.gz"
    with caplog.at_level(logging.WARNING):
        assert predict.main(argv(runs, narrow, out)) == 0
    img = nib.load(out)
    assert img.get_data_dtype() == np.int16
    assert (img.dataobj.slope, img.dataobj.inter) == (1.0, inter)
    np.testing.assert_allclose(img.affine, LPS_AFFINE, atol=1e-6)
    expected = np.rint(nib.load(tmp_path / "ref.nii.gz").get_fdata())
    np.testing.assert_array_equal(img.get_fdata(), expected)  # not clipped to 8 bits
    assert expected.max() > low + 255 or expected.min() < low  # beyond the 8-bit range
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                and "do not fit" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{out}: HU ")
    assert f"the source {narrow}'s storage {np.dtype(dtype).name}" in warnings[0]
    assert warnings[0].endswith("written as int16 instead")


@pytest.mark.parametrize("qform_code", [1, 0])
def test_an_avg_with_a_zero_voxel_size_is_refused_in_one_line(tmp_path, predict, runs, caplog,
                                                              qform_code):
    src = write_raw_header_nifti(tmp_path / "in" / "flat.nii.gz", ct_like((64, 64, 4)),
                                 LPS_AFFINE, qform_code=qform_code, sform_code=0,
                                 pixdim=(0.9, 0.9, 0.0))
    out = tmp_path / "out" / "p.nii.gz"
    with caplog.at_level(logging.ERROR):
        assert predict.main(argv(runs, src, out)) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].startswith(f"{src}: the voxel size along axis K (pixdim[3]) is 0")
    assert "no usable geometry" in errors[0]
    assert "\n" not in errors[0]
    assert "Traceback" not in caplog.text
    assert not out.exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())
