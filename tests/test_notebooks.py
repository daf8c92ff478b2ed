"""Every notebook under notebooks/ is stored clean, has a parameters cell, and runs in ci mode.

Notebooks are discovered, not listed: a new notebook cannot escape this test.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (REPO / "notebooks").glob("*.ipynb") if not p.name.startswith(("_", ".")))


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS][:2] == ["00_start_here.ipynb", "01_full_finetuning.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_stored_without_outputs_and_with_parameters(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "strip outputs"
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    src = "".join(params[0]["source"])
    for name in ("mode", "backbone", "seeds", "task", "store"):
        assert f"{name} =" in src, f"parameters cell lacks {name}"
    assert "\"ci\"" in src


def test_notebooks_match_their_sources():
    out = subprocess.run([sys.executable, str(REPO / "notebooks/_build/build.py"), "--check"], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_executes_in_ci_mode_and_records_results(path, tmp_path):
    import papermill as pm

    from tutorfinetune import results
    from tutorfinetune.notebook import load_summaries

    store = tmp_path / "runs"
    os.environ["TUTORFINETUNE_PROGRESS"] = "text"
    out = tmp_path / path.name
    pm.execute_notebook(str(path), str(out), parameters={"mode": "ci", "store": str(store)},
                        kernel_name="python3", cwd=str(path.parent), progress_bar=False)
    executed = json.loads(out.read_text())
    errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    figures = [o for c in executed["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(figures) >= 2, "a notebook that shows nothing is not done"
    summaries = {s["study"]: s for s in load_summaries(store)}
    assert path.stem in summaries and len(summaries[path.stem]["text"]) > 40
    assert summaries[path.stem]["mode"] == "ci"
    src = "".join("".join(c["source"]) for c in executed["cells"] if c["cell_type"] == "code")
    if "tft.study.sweep(" in src or "tft.train(" in src:
        recs = [r for r in results.load_records(store) if r.get("study") == path.stem]
        assert recs and all(r["status"] == "finished" for r in recs)
        assert all(r["metrics"] for r in recs)
