"""The study command and the helpers notebooks share (parameter checks, exercises, summaries)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tutorfinetune import ConfigError
from tutorfinetune import notebook as nb

REPO = Path(__file__).resolve().parents[1]


def test_setup_validates_papermill_parameters(capsys):
    info = nb.setup("ci", "[0, 1]")
    assert info["seeds"] == [0, 1] and info["mode"] == "ci"
    assert "torch" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="mode must be 'ci' or 'full'"):
        nb.setup("fast", [0])
    with pytest.raises(ConfigError, match=r"seeds\[1\] must be an integer"):
        nb.setup("ci", "[0, 'a']")
    with pytest.raises(ConfigError, match="at least one seed"):
        nb.setup("ci", "[]")
    with pytest.raises(ConfigError, match="lr must be a number"):
        nb.coerce_param("lr", "fast", float)


def test_check_exercises(capsys):
    assert nb.check("E1", None, 3) is None
    assert nb.check("E1", 0.51, 0.5, tol=0.02) is True
    assert nb.check("E1", "x", 0.5) is False
    assert nb.check("E2", "shift:de", "shift:de") is True
    out = capsys.readouterr().out
    assert "not answered yet" in out and "correct" in out and "not quite" in out


def test_summaries_round_trip(tmp_path):
    import pandas as pd

    nb.save_summary("demo", "Accuracy was 88.0%.", pd.DataFrame({"a": [1]}), store=tmp_path, mode="ci")
    (s,) = nb.load_summaries(tmp_path)
    assert s["study"] == "demo" and s["text"] == "Accuracy was 88.0%." and s["mode"] == "ci"
    assert "## demo (mode=ci)" in nb.summary_markdown(tmp_path)


def test_explore_draws_a_static_figure_without_front_end(capsys):
    import matplotlib

    matplotlib.use("Agg")
    seen = []
    nb.explore(lambda x: seen.append(x), {"x": [3, 4]})
    assert seen == [3] and "static figure" in capsys.readouterr().out


@pytest.mark.slow
def test_study_command_writes_executed_notebooks_and_summary(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "tutorfinetune", "study", "--mode", "ci", "--only", "00_",
                           "--out", str(out)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (out / "notebooks" / "00_start_here.ipynb").is_file()
    summary = (out / "summary.md").read_text()
    assert "00_start_here" in summary and "training examples" in summary
    assert "00_start_here" in proc.stdout
    assert json.loads((out / "summary.json").read_text())["notebooks"]["00_start_here.ipynb"]["ok"]


def test_study_command_reports_missing_notebooks(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tutorfinetune", "study", "--notebooks", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "No notebooks found" in proc.stderr


def test_describe_scale_renders_the_modes_settings():
    from tutorfinetune.notebook import describe_scale

    text = describe_scale("ci", {"seeds": [0], "max_steps": 16, "max_eval_examples": None, "lr": 1e-4,
                                 "regimes": {"low-data": 64}, "sizes": list(range(10))})
    assert text.startswith("This run (mode='ci', a quick check")
    assert "seeds: [0]" in text and "max steps: 16" in text and "max eval examples: all / default" in text
    assert "lr: 0.0001" in text and "regimes: low-data" in text and "sizes: 10 values" in text
    assert "the full study" in describe_scale("full", {})
