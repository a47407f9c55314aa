"""benchmarks/bench_clinical.py: per-child peak memory, the linked export, the options, and one
``--quick`` run whose table and JSON hold every stage."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import bench_clinical as bc
from synthetic import avg_file_name, patient_id, phase_file_name

ROOT = Path(__file__).resolve().parents[1]


def test_run_child_reports_each_childs_own_peak_not_the_parents(tmp_path: Path) -> None:
    big, small = tmp_path / "big.py", tmp_path / "small.py"
    big.write_text("b = bytearray(300 * 2**20)\nb[::4096] = b'x' * len(b[::4096])\n"
                   "print('allocated', len(b))\n")
    small.write_text("print('nothing held')\n")
    large = bc.run_child(bc.script_cmd(str(big)), tmp_path / "big.log", threads=1)
    little = bc.run_child(bc.script_cmd(str(small)), tmp_path / "small.log", threads=1)
    assert large.peak_mib >= 300
    assert little.peak_mib < 100  # this test process (torch loaded) is several times that
    assert large.result == little.result == {}
    assert large.seconds > 0


def test_run_child_failure_names_the_log_and_shows_its_tail(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import sys\nsys.stderr.write('broken volume\\n')\nsys.exit(3)\n")
    with pytest.raises(SystemExit, match=r"exit 3.*fail\.log[\s\S]*broken volume"):
        bc.run_child(bc.script_cmd(str(broken)), tmp_path / "fail.log", threads=1)
    with pytest.raises(SystemExit, match=r"no figures printed.*quiet\.log"):
        bc.run_child([sys.executable, "-c", "print('ok')"], tmp_path / "quiet.log", threads=1)


def test_thread_env_pins_openmp_only_when_asked() -> None:
    assert bc.thread_env(1)["OMP_NUM_THREADS"] == "1"
    assert bc.thread_env(1)["MKL_NUM_THREADS"] == "1"
    assert bc.thread_env(0).get("OMP_NUM_THREADS") == os.environ.get("OMP_NUM_THREADS")


def test_link_export_names_every_patient_and_links_the_one_generated(tmp_path: Path) -> None:
    synthetic, export = tmp_path / "synthetic", tmp_path / "export"
    source = patient_id(0)
    for tree, name in (("res_avg", avg_file_name(source)),
                       ("res_phases", phase_file_name(source, 0))):
        (synthetic / tree / source).mkdir(parents=True)
        (synthetic / tree / source / name).write_bytes(tree.encode())
    bc.link_export(synthetic, export, 3)
    ids = [patient_id(k) for k in range(3)]
    assert sorted(p.name for p in (export / "res_avg").iterdir()) == ids
    for pid in ids:
        avg = export / "res_avg" / pid / avg_file_name(pid)
        phase0 = export / "res_phases" / pid / phase_file_name(pid, 0)
        assert avg.samefile(synthetic / "res_avg" / source / avg_file_name(source))
        assert phase0.read_bytes() == b"res_phases"
    assert (synthetic / "res_avg" / source / avg_file_name(source)).stat().st_nlink == 4


def test_quick_sets_tiny_sizes_and_full_size_is_clinical(tmp_path: Path) -> None:
    quick = bc.parse_args(["--quick"])
    assert (quick.size, quick.n_slices, quick.steps) == (64, 16, 1)
    assert quick.models == list(bc.QUICK_MODELS)
    assert quick.patch_size == [32, 32, 32]
    full = bc.parse_args([])
    assert (full.size, full.n_slices, full.pixel_mm, full.slice_mm) == (512, 120, 0.98, 3.0)
    assert full.patients == [1, 2, 4]
    assert full.models == list(bc.MODELS)
    assert full.patch_size == [32, 128, 128]
    assert bc.parse_args(["--patch_size", "16", "64", "64"]).patch_size == [16, 64, 64]
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "file").write_text("x")
    with pytest.raises(SystemExit):
        bc.parse_args(["--work", str(tmp_path / "used")])
    with pytest.raises(SystemExit):
        bc.parse_args(["--models", "unet_999"])


def test_models_parse_to_the_recipe_and_the_volumetric_variants(tmp_path: Path) -> None:
    args = bc.parse_args(["--patch_size", "32", "64", "64"])
    parsed = {name: bc.parse_training(str(tmp_path), bc.model_flags(model, args), tmp_path)
              for name, model in bc.MODELS.items()}
    generators = {name: settings.generator for name, settings in parsed.items()}
    assert {n: g.netG for n, g in generators.items()} == {
        "recipe": "unet_64", "unet512": "unet_512", "unet3d": "unet3d_4",
        "motion3d": "motion3d_4"}
    assert (generators["recipe"].ngf, parsed["recipe"].data.batch_size) == (32, 8)
    assert (generators["recipe"].context_slices, generators["unet512"].context_slices) == (2, 2)
    assert generators["unet3d"].patch_size == (32, 64, 64)
    assert (generators["unet3d"].ngf, generators["motion3d"].ngf) == (16, 16)
    assert {n for n, m in bc.MODELS.items() if m.volumetric} == {"unet3d", "motion3d"}
    assert bc.model_flags(bc.MODELS["motion3d"], args)[-4:] == ["--patch_size", "32", "64", "64"]
    assert "--patch_size" not in bc.model_flags(bc.MODELS["recipe"], args)


def test_table_has_one_line_per_row_with_seconds_and_peak() -> None:
    rows = [bc.Row("prepare", "-", 2, "-", 1.234, 256.4),
            bc.Row("train", "recipe", 2, "lazy 1", 3.5, 1024.0,
                   {"samples_per_s": 2.29, "data_mib": 130.0, "epoch_s": 1.5})]
    lines = bc.table(rows).splitlines()
    assert lines[0].startswith("| stage | model | patients | cache | seconds | peak MiB |")
    assert lines[2] == "| prepare | - | 2 | - | 1.23 | 256 |  |"
    assert lines[3].startswith("| train | recipe | 2 | lazy 1 | 3.50 | 1024 | 2.29 samples/s")
    assert len(lines) == 4


@pytest.mark.slow
def test_quick_run_prints_and_writes_every_stage(tmp_path: Path) -> None:
    out_json = tmp_path / "clinical.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "benchmarks/bench_clinical.py", "--quick",
                           "--patients", "1", "2", "--models", "recipe", "unet3d",
                           "--threads", "1", "--json", str(out_json)],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")][1:]
    report = json.loads(out_json.read_text())
    rows = report["rows"]
    keys = [(r["stage"], r["model"], r["patients"], r["cache"]) for r in rows]
    expected = [("generate", "-", 1, "-"), ("prepare", "-", 1, "-"), ("prepare", "-", 2, "-")]
    for model in ("recipe", "unet3d"):
        expected += [("train", model, n, cache) for n in (1, 2) for cache in ("all", "lazy 1")]
        expected += [("infer", model, 1, "-")]
    assert keys == expected
    assert [tuple(line.split(" | ")[:4]) for line in table] == [
        (f"| {s}", m, str(n), c) for s, m, n, c in expected]
    assert all(r["seconds"] > 0 and r["peak_mib"] > 50 for r in rows)
    assert rows[0]["figures"]["what"] == "64 x 64 x 16 voxels, 0.98 x 0.98 x 3.00 mm"
    train = [r for r in rows if r["stage"] == "train"]
    assert {r["figures"]["netG"] for r in train} == {"unet_64", "unet3d_4"}
    assert all(r["figures"]["epoch_samples"] == 16 * r["patients"]
               for r in train if r["model"] == "recipe")
    assert all(r["figures"]["epoch_samples"] == r["patients"]
               for r in train if r["model"] == "unet3d")
    infer = {r["model"]: r["figures"] for r in rows if r["stage"] == "infer"}
    assert infer["recipe"]["n_slices"] == 16
    assert infer["unet3d"]["how"] == "windows 32x32x32, overlap 0.5"
    assert report["grid"] == {"size": 64, "n_slices": 16, "pixel_mm": 0.98, "slice_mm": 3.0}
    assert report["threads"] == 1
