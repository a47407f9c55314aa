"""benchmarks/gpu_check.py: the dry run on the CPU (so the GPU script cannot rot), the budget,
failure and time-limit handling of its jobs, and its report."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check as gc
from util.speed import compile_supported

REPO = Path(__file__).resolve().parents[1]


def row_line(case: str, status: str = "ok", seconds: float = 1.0) -> str:
    """What a child prints to report one row."""
    return gc.ROW_PREFIX + json.dumps(dataclasses.asdict(gc.Row(case, status, seconds, "run")))


def fake_child(code: str) -> list[str]:
    """A child process running ``code``."""
    return [sys.executable, "-c", code]


def table_lines(markdown: str) -> list[str]:
    """The body rows of the Markdown table."""
    return [line for line in markdown.splitlines()
            if line.startswith("| ") and not line.startswith("| stage |")]


def is_running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@pytest.mark.slow
def test_dry_run_measures_every_stage_and_writes_json_and_markdown(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"),
                           "--dry_run", "--out", str(out)], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "gpu_check.json").read_text())
    stages = {s["name"]: s for s in report["stages"]}
    assert list(stages) == list(gc.STAGES)
    compiles = compile_supported(torch.device("cpu")) is None
    for name, stage in stages.items():
        expected = "skipped" if name == "compile" and not compiles else "ok"
        assert stage["status"] == expected, stage
        assert stage["error"] is None
    planned = gc.plan_jobs(gc.DRY_PLAN)
    for name, jobs in planned.items():
        assert [r["case"] for r in stages[name]["rows"]] == [c for j in jobs for c in j.cases]
    measured = [(name, r) for name, s in stages.items() for r in s["rows"] if r["status"] == "ok"]
    assert all(r["seconds"] > 0 for _, r in measured)
    timed = [r for _, r in measured if r["per"] in ("step", "volume")]  # train, DDP, inference
    assert len(timed) == 2 * 3 + 1 + 2 + compiles
    for field in ("slices_per_s", "tflops", "peak_gib"):
        assert all(r[field] > 0 for r in timed), field
    assert len([r for n, r in measured if n == "train"]) == 2 * 3  # batches 1, 2 x 3 variants
    if compiles:
        assert stages["compile"]["rows"][0]["compile_s"] > 0
    assert " 0 failed, " in stages["pytest"]["rows"][0]["note"]
    assert "1 epoch on cpu" in stages["ddp"]["rows"][0]["note"]
    markdown = (out / "gpu_check.md").read_text()
    assert torch.__version__ in markdown.splitlines()[2]
    lines = table_lines(markdown)
    assert len(lines) == sum(len(s["rows"]) for s in stages.values())
    for name, stage in stages.items():
        for row in stage["rows"]:
            assert any(line.startswith(f"| {name} | {row['case']} | {row['status']} | ")
                       for line in lines), row["case"]
    assert sorted(p.name for p in (out / "logs").iterdir()) == [
        "compile-unet_64_64.log", "ddp.log", "inference.log", "pytest.log",
        "train-unet_64_64.log"]


def test_no_budget_skips_every_job_and_still_writes_the_report(tmp_path: Path) -> None:
    assert gc.main(["--dry_run", "--budget", "0", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [s["status"] for s in report["stages"]] == ["skipped"] * len(gc.STAGES)
    rows = [r for s in report["stages"] for r in s["rows"]]
    assert len(rows) == sum(len(j.cases) for js in gc.plan_jobs(gc.DRY_PLAN).values() for j in js)
    assert all(r["status"] == "skipped" and "budget spent" in r["note"] for r in rows)
    assert len(table_lines((tmp_path / "gpu_check.md").read_text())) == len(rows)


def test_a_failing_job_is_recorded_and_the_other_jobs_still_run(tmp_path: Path) -> None:
    jobs = {"train": [gc.Job("train", "a", ("a1", "a2")), gc.Job("train", "b", ("b1",))],
            "ddp": [gc.Job("ddp", "", ("d1",))]}
    codes = {"a": f"print({row_line('a1')!r}); raise SystemExit('CUDA error: out of memory')",
             "b": f"print({row_line('b1', seconds=2.0)!r})",
             "": f"print({row_line('d1')!r})"}
    results = gc.run_stages(jobs, lambda job, _left: fake_child(codes[job.key]), 60.0,
                            tmp_path / "logs")
    train, ddp = results
    assert train.status == "failed"
    assert train.error == "CUDA error: out of memory"
    assert [(r.case, r.status) for r in train.rows] == [("a1", "ok"), ("a2", "failed"),
                                                        ("b1", "ok")]
    assert train.rows[1].note == "CUDA error: out of memory"
    assert train.rows[2].seconds == 2.0
    assert (ddp.status, ddp.error, [r.status for r in ddp.rows]) == ("ok", None, ["ok"])


def test_a_job_past_its_time_limit_is_stopped_with_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    hang = (f"import subprocess, sys, time; print({row_line('t1')!r}, flush=True); "
            f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
            f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(120)")
    jobs = {"inference": [gc.Job("inference", "", ("t1", "t2"))],
            "compile": [gc.Job("compile", "", ("c1",))]}
    start = time.monotonic()
    inference, compile_ = gc.run_stages(jobs, lambda _job, _left: fake_child(hang),
                                        gc.MIN_JOB_S + 2.0, tmp_path / "logs")
    assert time.monotonic() - start < gc.MIN_JOB_S + 2.0 + gc.STOP_GRACE_S + 10.0
    assert inference.status == "timeout"
    assert str(inference.error).startswith("stopped at its time limit")
    assert [(r.case, r.status) for r in inference.rows] == [("t1", "ok"), ("t2", "skipped")]
    assert inference.rows[1].note.startswith("not reached: stopped at its time limit")
    assert compile_.status == "skipped"
    assert compile_.rows[0].note == "budget spent before the job started"
    deadline = time.monotonic() + 5.0
    while is_running(int(pid_file.read_text())) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not is_running(int(pid_file.read_text()))


def test_stage_status_ranks_failure_over_timeout_over_skipped() -> None:
    ok, failed, skipped = (gc.Row("x", s) for s in ("ok", "failed", "skipped"))
    assert gc.stage_status([ok, skipped], [], []) == "ok"
    assert gc.stage_status([skipped, skipped], [], []) == "skipped"
    assert gc.stage_status([ok, skipped], [], ["stopped"]) == "timeout"
    assert gc.stage_status([ok, failed], [], ["stopped"]) == "failed"
    assert gc.stage_status([ok], ["Segmentation fault"], []) == "failed"


def test_markdown_has_one_line_per_row_with_its_figures() -> None:
    rows = (gc.Row("unet_256@256 batch 8 bf16", "ok", 0.125, "step", 64.0, 42.5, 3.25, None,
                   "a | b"),
            gc.Row("unet_256@256 batch 8 compile", "skipped", note="no triton"))
    results = [gc.StageResult("train", "ok", 12.0, None, rows[:1]),
               gc.StageResult("compile", "skipped", 0.0, None, rows[1:])]
    meta = {"device": "GPU X", "torch": "9.9", "cuda": "12.8", "python": "3.11",
            "date": "2026-12-01", "dry_run": False, "gpu_memory_gib": 139.8,
            "compute_capability": "9.0", "cpu": "Y", "budget_s": 480.0, "elapsed_s": 12.0}
    markdown = gc.markdown(gc.make_report(meta, results))
    assert markdown.startswith("# GPU check: GPU X\n")
    assert "train **ok** (12 s)" in markdown
    assert table_lines(markdown) == [
        "| train | unet_256@256 batch 8 bf16 | ok | 0.125 | step | 64 | 42.5 | 3.25 |  | "
        "a \\| b |",
        "| compile | unet_256@256 batch 8 compile | skipped |  |  |  |  |  |  | no triton |"]


def test_junit_outcomes_counts_passed_failed_and_skipped(tmp_path: Path) -> None:
    xml = tmp_path / "junit.xml"
    xml.write_text('<testsuites><testsuite name="pytest">'
                   '<testcase classname="tests.test_cuda" name="test_a"/>'
                   '<testcase classname="tests.test_cuda" name="test_b"><failure message="x"/>'
                   '</testcase><testcase classname="tests.test_cuda" name="test_c">'
                   '<skipped message="needs a CUDA GPU"/></testcase>'
                   '<testcase classname="tests.test_cuda" name="test_d"><error message="y"/>'
                   '</testcase></testsuite></testsuites>')
    assert gc.junit_outcomes(xml) == {"tests.test_cuda::test_a": "passed",
                                      "tests.test_cuda::test_b": "failed",
                                      "tests.test_cuda::test_c": "skipped",
                                      "tests.test_cuda::test_d": "failed"}


def test_the_cuda_test_files_are_found() -> None:
    assert REPO / "tests" / "test_cuda.py" in gc.cuda_test_files()
    assert REPO / "tests" / "test_gpu_check.py" not in gc.cuda_test_files()


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the wrapper runs the full check")
def test_the_wrapper_refuses_a_machine_without_a_gpu(tmp_path: Path) -> None:
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"),
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "no CUDA GPU visible to torch" in proc.stderr
    assert not (tmp_path / "out").exists()
