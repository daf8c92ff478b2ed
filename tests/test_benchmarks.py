"""The benchmark scripts run end to end (on the tiny backbone, a few steps) and write their ratios."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script, extra, key", [
    ("bench_graddrop.py", [], "element"),
    ("bench_guided_dropout.py", ["--n", "4", "--warm-steps", "2"], "guided-dropout"),
    ("bench_sparse.py", ["--k", "500"], "sparse (wd 0.01)"),
    ("bench_lora.py", ["--smoke"], "step time lora / full"),
])
def test_benchmark_script_runs_and_reports_ratios(script, extra, key, tmp_path):
    out = tmp_path / "out.json"
    env = {**os.environ, "TUTORFINETUNE_PROGRESS": "off"}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--backbone", "tiny", "--steps", "2",
                           "--repeats", "1", "--json", str(out), *extra],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    blob = json.loads(out.read_text())
    assert blob["ratios"][key] > 0 and "| contender |" in proc.stdout
