"""Every notebook under notebooks/ is stored clean, has a parameters cell, and runs in ci mode.

Notebooks are discovered, not listed: a new notebook cannot escape this test.
"""

import json
import os
import re
import shutil
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
    for name in ("mode", "backbone", "seeds", "task", "store"):  # `name = value` or `name: type = value`
        assert re.search(rf"^{name}\s*(:[^=\n]+)?=", src, re.M), f"parameters cell lacks {name}"
    assert "\"ci\"" in src
    # papermill reads every parameter line with a plain annotation (a "=" in a comment makes it skip the
    # line: `papermill --help-notebook` would not list it); union annotations (`int | str`) it never reads,
    # and nb.typed_parameters types those
    import papermill as pm

    names = re.findall(r"^([A-Za-z_]\w*)\s*(?::[^=|\n]+)?=", src, re.M)
    assert set(names) <= set(pm.inspect_notebook(str(path)))


def test_notebooks_match_their_sources():
    out = subprocess.run([sys.executable, str(REPO / "notebooks/build.py"), "--check"], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def _build_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("notebooks_build", REPO / "notebooks/build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_build_fills_the_colab_and_install_placeholders(tmp_path):
    build = _build_module()
    src = tmp_path / "99_demo.py"
    src.write_text('# %% [markdown]\n# # Demo\n#\n# {{colab}}\n\n# %%\n# {{install}}\n\n'
                   '# %% tags=["parameters"]\nmode = "ci"\n\n# %%\nx = 1\n\n\ny = 2\nx + y\n')
    cells = build.notebook(build.read_source(src))
    assert [c["cell_type"] for c in cells["cells"]] == ["markdown", "code", "code", "code"]
    assert [c["id"] for c in cells["cells"]] == ["c00", "c01", "c02", "c03"]
    assert build.COLAB.format(name="99_demo.ipynb") in "".join(cells["cells"][0]["source"])
    assert "".join(cells["cells"][1]["source"]) == build.INSTALL
    assert cells["cells"][2]["metadata"] == {"tags": ["parameters"]}
    assert "".join(cells["cells"][3]["source"]) == "x = 1\n\n\ny = 2\nx + y"
    src.write_text("# %% [markdown]\n# # No badge\n\n# %%\n# {{install}}\n")
    with pytest.raises(ValueError, match="colab"):
        build.read_source(src)
    src.write_text("# %% [markdown]\n# {{colab}}\n\n# %%\n# {{install}}\nx = 1\n")
    with pytest.raises(ValueError, match="cell of its own"):
        build.read_source(src)


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
    keep = os.environ.get("TUTORFINETUNE_EXECUTED")  # CI keeps the executed notebooks: the course site is built from them
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, Path(keep) / path.name)
    errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    figures = [o for c in executed["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(figures) >= 2, "a notebook that shows nothing is not done"
    summaries = {s["study"]: s for s in load_summaries(store)}
    assert path.stem in summaries and len(summaries[path.stem]["text"]) > 40
    assert summaries[path.stem]["mode"] == "ci"
    src = "".join("".join(c["source"]) for c in executed["cells"] if c["cell_type"] == "code")
    if any(call in src for call in ("tft.studies.sweep(", "tft.studies.run_entry(", "tft.train(")):
        recs = [r for r in results.load_records(store) if r.get("study") == path.stem]
        assert recs and all(r["status"] == "finished" for r in recs)
        assert all(r["metrics"] for r in recs)
