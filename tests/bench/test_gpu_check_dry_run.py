"""``bash benchmarks/gpu_check.sh OUT --device cpu --tiny``: the GPU check's own dry run. Every step must run
and report what it measured in OUT/summary.json, so the check is ready for the first machine with a card.
No timing is asserted (numbers from a shared CPU say nothing about a GPU)."""
from __future__ import annotations

import pytest

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402


@pytest.mark.slow
def test_every_step_reports_a_result(tmp_path):
    out = tmp_path / "check"
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(out), "--device", "cpu", "--tiny"],
                          cwd=tmp_path, env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    meta = summary["meta"]
    assert meta["device"] == "cpu" and meta["tiny"] is True and meta["commit"] and meta["date"]
    assert meta["command"].startswith("bash benchmarks/gpu_check.sh") and meta["machine"]["torch"]
    steps = {s["name"]: s for s in summary["steps"]}
    assert list(steps) == list(gpu_check.STEPS)
    for name, step in steps.items():
        assert step["status"] == "ok", (name, step)
        assert step["wall_s"] > 0 and step["result"], (name, step)
        assert (out / step["log"]).exists()

    for name in ("cuda_tests", "cuda_fusions"):
        tests = steps[name]["result"]
        assert tests["passed"] > 0 and tests["failures"] == tests["errors"] == 0, (name, tests)
    assert (out / "cuda-tests.xml").exists() and (out / "cuda-fusions.xml").exists()
    for name in ("train_digits", "train_shapes"):
        run = steps[name]["result"]
        assert run["device"] == "cpu" and run["steps"] > 0 and run["train_seconds"] > 0, run
    side = steps["mopoe_vs_multivae"]["result"]
    assert side["modkit"]["samples_per_s"] > 0, side
    assert side["multivae"].get("samples_per_s", 0) > 0 or side["multivae"]["not_run"], side  # skipped only with a reason
    for name, amp in (("bench_fp32", "off"), ("bench_bf16_compile", "bf16")):
        bench = steps[name]["result"]
        assert bench["amp"] == amp and bench["rows"] and bench["rows"][0]["modkit_ms"] > 0, bench
    assert steps["bench_bf16_compile"]["result"]["compile"] is True

    page = gpu_check.markdown(summary)
    assert "a dry run" in page and all(f"| {name} | ok |" in page for name in gpu_check.STEPS)


def test_a_step_past_its_timeout_is_recorded_and_the_check_goes_on(tmp_path):
    (tmp_path / "logs").mkdir()
    slow = {"name": "cuda_tests", "timeout": 1, "command": [sys.executable, "-c", "import time; time.sleep(60)"],
            "read": lambda: None}
    record = gpu_check.run_step(slow, tmp_path)
    assert record["status"] == "timed out" and record["returncode"] is None and record["wall_s"] < 30
    failing = {**slow, "timeout": 30, "command": [sys.executable, "-c", "raise SystemExit('broken on purpose')"]}
    record = gpu_check.run_step(failing, tmp_path)
    assert record["status"] == "failed" and record["returncode"] == 1 and "broken on purpose" in record["tail"][-1]


def test_a_step_past_the_checks_budget_is_skipped_with_the_reason(tmp_path):
    assert gpu_check.main([str(tmp_path), "--device", "cpu", "--tiny", "--steps", "bench_fp32", "--budget", "5"]) == 0
    (step,) = json.loads((tmp_path / "summary.json").read_text())["steps"]
    assert step["status"] == "skipped" and "budget" in step["reason"]
    assert "budget" in gpu_check.markdown(json.loads((tmp_path / "summary.json").read_text()))
