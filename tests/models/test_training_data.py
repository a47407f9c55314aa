"""A resume notices a changed training set: a patient removed or added, or a file swapped for
another of the same size, is refused naming it unless --allow_data_change, which records both
sets; a training state from before the record still resumes, with a warning."""

import json

import torch

import train
from models.training_data import data_changes, training_digests
from tests.conftest import ct_like, write_nifti
from tests.test_train_resume import train_argv


def write_patient(root, pid, seed):
    """Uncompressed ``trainA/<pid>.nii`` and ``trainB/<pid>.nii`` of 64 x 64 x 2 voxels: every
    patient's files have one size whatever their content."""
    hu = ct_like((64, 64, 2), seed=seed)
    write_nifti(root / "trainA" / f"{pid}.nii", hu)
    write_nifti(root / "trainB" / f"{pid}.nii", hu + 100)


def test_resume_on_changed_training_data_is_refused_unless_allowed(tmp_path, caplog):
    root, ck = tmp_path / "data", tmp_path / "ck"
    for seed, pid in enumerate(("t1", "t2", "t3")):
        write_patient(root, pid, seed)
    argv = train_argv(root, ck, "run", "--n_epochs_decay", "0")
    assert train.main(argv) == 0
    resume = [*argv, "--continue_train", "--n_epochs", "2"]
    run_dir = ck / "run"
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    # a patient removed
    for side in "AB":
        (root / f"train{side}" / "t3.nii").rename(tmp_path / f"t3{side}.nii")
    assert train.main(resume) == 1
    assert "the training data changed since this state was saved (removed: t3)" in caplog.text
    assert "--allow_data_change" in caplog.text
    for side in "AB":
        (tmp_path / f"t3{side}.nii").rename(root / f"train{side}" / "t3.nii")
    # a file swapped for another of the same size
    swapped = root / "trainA" / "t2.nii"
    size = swapped.stat().st_size
    write_nifti(swapped, ct_like((64, 64, 2), seed=9))
    assert swapped.stat().st_size == size
    caplog.clear()
    assert train.main(resume) == 1
    assert "(files changed: t2 (A))" in caplog.text
    write_patient(root, "t2", 1)  # as trained
    # a patient added
    write_patient(root, "t4", 4)
    caplog.clear()
    assert train.main(resume) == 1
    assert "(added: t4)" in caplog.text
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
    # going on with the flag records both sets
    caplog.clear()
    assert train.main([*resume, "--allow_data_change"]) == 0, caplog.text
    assert "resuming on a changed training set (added: t4)" in caplog.text
    patients = json.loads((run_dir / "latest_metadata.json").read_text())["patients"]
    assert patients["train"] == ["t1", "t2", "t3", "t4"]
    assert patients["train_history"] == [{"patients": ["t1", "t2", "t3"],
                                          "until_total_iters": 6}]
    state = torch.load(run_dir / "latest_training_state.pth", weights_only=True)
    assert sorted(state["data"]) == ["t1", "t2", "t3", "t4"]
    # a state of format 1 (no data record, no pools) still resumes, with a warning
    for key in ("data", "data_history", "pools"):
        del state[key]
    torch.save(state | {"format_version": 1}, run_dir / "latest_training_state.pth")
    caplog.clear()
    assert train.main([*resume, "--n_epochs", "3"]) == 0, caplog.text
    assert "saved without the record of its training data" in caplog.text


def test_digests_come_from_the_manifest_when_it_lists_the_file(tmp_path):
    from data.nifti_aligned_dataset import NiftiAlignedDataset
    root = tmp_path / "data"
    write_patient(root, "t1", 0)
    write_patient(root, "t2", 1)
    (root / "manifest.json").write_text(json.dumps({"patients": [
        {"safe_id": "t1", "split": "train", "avg_sha256": "aa", "phase0_sha256": "bb",
         "files": {"A": "trainA/t1.nii", "B": "trainB/t1.nii"}}]}))
    dataset = NiftiAlignedDataset(root / "trainA", root / "trainB")
    digests = training_digests(dataset, root)
    assert digests["t1"] == {"A": "manifest:aa", "B": "manifest:bb"}
    assert digests["t2"]["A"].startswith("file:")
    assert len(digests["t2"]["A"]) == len("file:") + 64
    assert data_changes(digests, {"t1": digests["t1"]}) == ["removed: t2"]
