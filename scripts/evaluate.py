"""Score a folder of predicted phase-0 volumes against the truth (and the AVG baseline), in HU.

    python scripts/evaluate.py --pred results/run/test_latest/volumes \\
        --truth datasets/ct_phases_dataset/testB --avg datasets/ct_phases_dataset/testA

Volumes are matched by patient id: the file name without ``.nii``/``.nii.gz`` and without a
trailing ``_fake_B`` (so this project's outputs and plain ``<id>.nii.gz`` files both match); a
truth ``<id>`` without a prediction of that id takes the one of its safe name, as test.py writes
it (``PT 1`` -> ``PT_1_fake_B.nii.gz``), and two truths matching one prediction are refused.
``--samples`` standard-deviation volumes (``*_fake_B_std``) are not predictions. Each
prediction must be on its truth's voxel grid (shape and affine) and in HU; predictions still in
the network's [-1, 1] (or [0, 1]) are refused. Writes ``metrics.csv`` and ``metrics.json`` to
``--out`` (default ``<pred>/evaluation``) and prints the tables. Nothing else is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.ct_volumes import check_same_geometry
from data.nifti_io import Volume, is_nifti_file, load_volume, nifti_stem
from data.structures import load_structures
from evaluation.metrics import RegionSettings, evaluate_volumes
from evaluation.report import write_and_describe
from options.base_options import region_settings
from util.cli import run_cli
from util.errors import DataError
from util.hu_window import DEFAULT_HU_MAX, DEFAULT_HU_MIN
from util.names import PREDICTION_SUFFIX, STD_SUFFIX, safe_name, unique_output_names

#: A volume whose values all lie within this many units of 0 is not in HU (air is -1000 HU).
NOT_HU_ABS_MAX = 2.0


def volumes_by_id(folder: Path, strip_suffix: str = "") -> dict[str, Path]:
    """{patient id: path} of the NIfTI files directly in ``folder``; DataError on duplicates.

    With ``strip_suffix`` (a folder of predictions) the suffix is taken off the ids and
    ``<id><strip_suffix>_std`` files (standard deviations of ``--samples``) are left out.
    """
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    found: dict[str, Path] = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and is_nifti_file(p)):
        pid = nifti_stem(path)
        if strip_suffix and pid.endswith(f"{strip_suffix}{STD_SUFFIX}"):
            continue
        pid = pid.removesuffix(strip_suffix) if strip_suffix else pid
        if pid in found:
            raise DataError(f"{folder}: two files for patient {pid!r}: {found[pid].name} and "
                            f"{path.name}")
        found[pid] = path
    if not found:
        raise DataError(f"{folder}: no NIfTI volumes (.nii, .nii.gz)")
    return found


def check_hu(vol: Volume) -> None:
    """DataError naming the file when its values cannot be HU (all within +-2: a network output
    in [-1, 1] or an image normalised to [0, 1])."""
    lo, hi = float(vol.hu.min()), float(vol.hu.max())
    if max(abs(lo), abs(hi)) <= NOT_HU_ABS_MAX:
        raise DataError(f"{vol.path}: values span [{lo:.3g}, {hi:.3g}], which is not HU (air is "
                        f"about -1000 HU); a network output in [-1, 1] converts as "
                        f"HU = (x + 1) / 2 * ({DEFAULT_HU_MAX:g} - ({DEFAULT_HU_MIN:g})) + "
                        f"({DEFAULT_HU_MIN:g})")


def prediction_id(pid: str, pred: dict[str, Path]) -> str | None:
    """The key of ``pred`` holding patient ``pid``'s prediction: ``pid`` itself, else its safe
    name (test.py's file name for it), else None."""
    if pid in pred:
        return pid
    try:
        safe = safe_name(pid)
    except DataError:
        return None
    return safe if safe in pred else None


def match(pred: dict[str, Path], truth: dict[str, Path],
          avg: dict[str, Path] | None) -> dict[str, Path]:
    """{truth id: its prediction} for every truth; DataError listing every missing partner, or
    naming both truths that would be scored against one prediction."""
    missing = [f"{pid}: no prediction in {next(iter(pred.values())).parent}"
               for pid in truth if prediction_id(pid, pred) is None]
    if avg is not None:
        missing += [f"{pid}: no AVG in {next(iter(avg.values())).parent}"
                    for pid in truth if pid not in avg]
    if missing:
        raise DataError("cannot pair every truth volume:\n  " + "\n  ".join(missing))
    paths = {pid: pred[str(prediction_id(pid, pred))] for pid in truth}
    unique_output_names(truth, lambda pid: str(paths[pid]), "would both be scored against",
                        fold_case=False)  # existing files: the disk tells them apart
    return paths


def score(pred_path: Path, truth_path: Path, avg_path: Path | None,
          settings: RegionSettings, structures: Path | None = None) -> dict:
    """Check one patient's files and score them (see
    :func:`evaluation.metrics.evaluate_volumes`), with the patient's masks in the
    ``structures`` folder (``<structure>/<truth id>.nii.gz``, on the truth's grid) when given."""
    truth = load_volume(truth_path)
    pred = load_volume(pred_path)
    check_same_geometry(pred.info, truth.info)
    check_hu(pred)
    avg = None
    if avg_path is not None:
        avg = load_volume(avg_path)
        check_same_geometry(avg.info, truth.info)
        check_hu(avg)
    masks = (load_structures(structures, nifti_stem(truth_path), truth.info)
             if structures is not None else None)
    return evaluate_volumes(pred.hu, truth.hu, avg.hu if avg is not None else None,
                            truth.affine, settings, structures=masks)


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the standalone scorer."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = RegionSettings()
    parser.add_argument("--pred", type=Path, required=True, help="folder of predicted volumes")
    parser.add_argument("--truth", type=Path, required=True, help="folder of phase-0 volumes")
    parser.add_argument("--avg", type=Path, help="folder of AVG volumes: baseline and regions")
    parser.add_argument("--out", type=Path, help="where the metric files go (<pred>/evaluation)")
    parser.add_argument("--structures", type=Path,
                        help="folder of phase-0 structure masks, <structure>/<id>.nii.gz (e.g. "
                             "testB_structures/ of a dataset): centre-of-mass error in mm")
    for name, help_text in (("body_threshold_hu", "body: AVG (or truth) above this, HU"),
                            ("motion_threshold_hu", "motion: |truth - AVG| above this, HU"),
                            ("motion_margin_mm", "margin of the motion region, mm"),
                            ("lung_threshold_hu", "lung: below this inside the body, HU"),
                            ("hu_min", "PSNR/SSIM data range: lower end, HU"),
                            ("hu_max", "PSNR/SSIM data range: upper end, HU")):
        default = getattr(defaults, name)
        parser.add_argument(f"--{name}", type=type(default), default=default, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Score every patient of ``--truth``; 0 on success, 1 on a data or option error."""
    args = build_parser().parse_args(argv)

    def go() -> int:
        settings = region_settings(args)
        pred = volumes_by_id(args.pred, PREDICTION_SUFFIX)
        truth = volumes_by_id(args.truth)
        avg = volumes_by_id(args.avg) if args.avg is not None else None
        scores = {pid: score(path, truth[pid], avg[pid] if avg else None, settings,
                             args.structures)
                  for pid, path in match(pred, truth, avg).items()}
        print(write_and_describe(args.out or args.pred / "evaluation", scores))  # noqa: T201
        return 0

    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
