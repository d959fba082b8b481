"""benchmarks/default_job.py: its stall rule, and the benchmark from a plain shell in quick mode,
one smoke-space run read back phase by phase (the full run is ten default jobs in a row,
docs/default_job.md)."""

import json
import os
import subprocess
import sys

from benchmarks.default_job import is_stall

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_slow_release_is_a_stall():
    assert is_stall(release_s=5.1, outside_clock_s=1.0, pause_s=5.0)


def test_a_long_time_outside_the_jobs_clock_is_a_stall():
    assert is_stall(release_s=0.1, outside_clock_s=10.1, pause_s=5.0)


def test_a_clean_run_is_not_a_stall_even_at_the_limits():
    assert not is_stall(release_s=0.1, outside_clock_s=1.0, pause_s=5.0)
    assert not is_stall(release_s=5.0, outside_clock_s=10.0, pause_s=5.0)


def test_the_default_job_benchmark_reports_each_run_phase_by_phase(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.default_job", "--runs=1", "--quick",
         f"--output_dir={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode in (0, 1), result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["runs"] == 1
    assert result.returncode == (1 if summary["stalls"] else 0)
    with open(tmp_path / "results.json") as f:
        run = json.load(f)["per_run"][0]
    assert {"setup", "latency check", "search", "release", "export"} <= run["phases_s"].keys()
    assert run["phases_s"]["total"] <= run["wall_s"]
    assert 0 < run["measured_ms"] and 0 < run["predicted_ms"] and 0 < run["target_ms"]
    assert (tmp_path / "results.md").read_text().startswith("# The default job, 1 run in a row")
