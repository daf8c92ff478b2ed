"""The notebook sweep driver (grid, resume, a failing cell) and the command line."""

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from tutorfinetune import results
from tutorfinetune.cli import main
from tutorfinetune.studies.notebooks import (
    SweepError,
    cell_key,
    expand_grid,
    notebook_sweep,
    parse_grid_option,
)

REPO = Path(__file__).resolve().parents[1]


def small_notebook(path: Path, train: bool = False) -> Path:
    """A notebook with a parameters cell that fails for x == 2 and records every execution."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('mode = "ci"\nstore = "runs"\nx = 0\nlog = "log.txt"')
    params.metadata["tags"] = ["parameters"]
    body = (
        "from pathlib import Path\n"
        "with open(log, 'a') as f:\n    f.write(f'{x}\\n')\n"
        "if x == 2:\n    raise ValueError('x must not be 2')\n"
    )
    if train:
        body += (
            "import tutorfinetune as tft\n"
            "task = tft.load_task({'train': 'toy.csv', 'test': 'toy.csv'})\n"
            "cfg = tft.TrainConfig(lr=1e-3, max_steps=2, batch_size=8, max_length=32, seed=int(x))\n"
            "tft.train(tft.load_backbone('tiny', num_labels=2, seed=int(x)), task, cfg, store=store, study='grid',"
            " verbose=False)\n"
        )
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_grid_parsing_and_keys():
    assert parse_grid_option("p=0.1,0.3") == ("p", [0.1, 0.3])
    assert parse_grid_option("seeds=[[0], [1]]") == ("seeds", [[0], [1]])
    assert parse_grid_option("regime=low,full") == ("regime", ["low", "full"])
    for bad in ("p", "1p=3", "p=", "p=[1"):
        with pytest.raises(SweepError):
            parse_grid_option(bad)
    cells = expand_grid({"a": [1, 2], "b": ["x", "y", "z"]})
    assert len(cells) == 6 and cells[0] == {"a": 1, "b": "x"} and cells[1] == {"a": 1, "b": "y"}
    with pytest.raises(SweepError, match="non-empty list"):
        expand_grid({"a": []})
    with pytest.raises(SweepError, match="non-empty list"):
        expand_grid({"a": "abc"})
    k1, k2 = cell_key({"p": 0.1}, {"mode": "ci"}), cell_key({"p": 0.1}, {"mode": "full"})
    assert k1 != k2 and k1.startswith("p-0.1__")
    assert cell_key({"seeds": [0, 1]}).startswith("seeds-0+1__")


def test_sweep_records_a_failure_goes_on_and_resumes(tmp_path):
    from conftest import toy_frame

    toy_frame().to_csv(tmp_path / "toy.csv", index=False)
    nb = small_notebook(tmp_path / "grid_nb.ipynb", train=True)
    log = tmp_path / "log.txt"
    out = tmp_path / "out"
    df = notebook_sweep(nb, {"x": [1, 2, 3]}, out=out, params={"log": str(log)}, verbose=False)
    assert list(df.status) == ["finished", "failed", "finished"]
    assert "x must not be 2" in df.error.iloc[1]
    manifest = json.loads((out / "grid_nb" / "manifest.json").read_text())
    assert {c["status"] for c in manifest["cells"].values()} == {"finished", "failed"}
    assert all(Path(p).is_file() for p in df.output)  # every executed notebook is kept, the failed one too
    recs = results.load_records(out / "runs")
    assert sorted(r["seed"] for r in recs) == [1, 3] and all(r["status"] == "finished" for r in recs)
    # resume: the finished cells are skipped, the failed one is tried again
    df2 = notebook_sweep(nb, {"x": [1, 2, 3]}, out=out, params={"log": str(log)}, verbose=False)
    assert list(df2.status) == ["skipped", "failed", "skipped"]
    assert log.read_text().split() == ["1", "2", "3", "2"]
    assert len(results.load_records(out / "runs")) == 2
    manifest = json.loads((out / "grid_nb" / "manifest.json").read_text())
    failed = [c for c in manifest["cells"].values() if c["status"] == "failed"]
    assert failed[0]["attempts"] == 2
    # another fixed parameter makes other cells
    df3 = notebook_sweep(nb, {"x": [1]}, out=out, params={"log": str(log)}, mode="full", verbose=False)
    assert list(df3.status) == ["finished"]


def test_interrupted_sweep_leaves_a_readable_manifest(tmp_path):
    nb = small_notebook(tmp_path / "nb.ipynb")
    calls = []

    def execute(notebook, output, params, timeout, kernel):
        calls.append(params["x"])
        if params["x"] == 2:
            raise KeyboardInterrupt
        output.write_text("{}")

    with pytest.raises(KeyboardInterrupt):
        notebook_sweep(nb, {"x": [1, 2, 3]}, out=tmp_path / "o", execute=execute, verbose=False)
    manifest = json.loads((tmp_path / "o" / "nb" / "manifest.json").read_text())
    assert sorted(c["status"] for c in manifest["cells"].values()) == ["finished", "interrupted"]
    df = notebook_sweep(nb, {"x": [1, 2, 3]}, out=tmp_path / "o", execute=lambda n, o, p, t, k: o.write_text("{}"),
                        verbose=False)
    assert list(df.status) == ["skipped", "finished", "finished"]


def test_sweep_refuses_bad_input(tmp_path):
    nb = small_notebook(tmp_path / "nb.ipynb")
    with pytest.raises(SweepError, match="No notebook"):
        notebook_sweep(tmp_path / "missing.ipynb", {"x": [1]}, out=tmp_path / "o")
    with pytest.raises(SweepError, match="both fixed and in the grid"):
        notebook_sweep(nb, {"x": [1]}, params={"x": 2}, out=tmp_path / "o")
    with pytest.raises(SweepError, match="mode"):
        notebook_sweep(nb, {"x": [1]}, mode="fast", out=tmp_path / "o")


def _fake_store(path: Path) -> Path:
    store = results.RunStore(path)
    for i, (method, seed, acc) in enumerate([("full", 0, 0.8), ("full", 1, 0.84), ("adapter", 0, 0.7),
                                             ("adapter", 1, 0.72)]):
        store.write({"run_id": f"r{i}", "study": "s", "method": method, "seed": seed, "status": "finished",
                     "config": {"lr": 1e-4}, "metrics": {"in-distribution": {"accuracy": acc}}, "tags": {}})
    return path


def test_results_command_prints_and_exports(tmp_path, capsys):
    store = _fake_store(tmp_path / "runs")
    assert main(["results", "--store", str(store), "--csv", str(tmp_path / "agg.csv")]) == 0
    out = capsys.readouterr().out
    assert "82.0 ± " in out and "71.0 ± " in out
    agg = pd.read_csv(tmp_path / "agg.csv")
    assert set(agg.method) == {"full", "adapter"} and agg.loc[agg.method == "full", "mean"].item() == pytest.approx(0.82)
    assert main(["results", "--store", str(store), "--by", "method", "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("method,n,mean")
    assert main(["results", "--store", str(store), "--by", "nope"]) == 2
    assert main(["results", "--store", str(tmp_path / "empty")]) == 1


def test_train_command_trains_and_reuses(tmp_path, capsys, toy_csv):
    args = ["train", "--backbone", "tiny", "--task", str(toy_csv), "--steps", "2", "--seeds", "0,1", "--method", "full",
            "--lr", "1e-3", "--store", str(tmp_path / "runs"), "--max-length", "32"]
    assert main(args) == 0
    assert "test" in capsys.readouterr().out
    assert len(results.load_records(tmp_path / "runs")) == 2
    assert main(args) == 0
    assert "2 runs (0 trained now, 2 reused" in capsys.readouterr().out
    assert main(["train", "--backbone", "tiny", "--task", str(toy_csv), "--steps", "1", "--store", str(tmp_path / "r2"),
                 "--method", "graddrop:p=0.3,variant=element", "--max-length", "32"]) == 0
    rec = results.load_records(tmp_path / "r2")[0]
    assert rec["methods"][0]["p"] == 0.3


def test_train_command_selects_on_dev_by_default_and_keeps_the_final_step(tmp_path, capsys, toy_csv):
    base = ["train", "--backbone", "tiny", "--task", str(toy_csv), "--steps", "6", "--lr", "1e-3", "--max-length", "32"]
    assert main([*base, "--store", str(tmp_path / "a"), "--evaluations", "3"]) == 0
    rec = results.load_records(tmp_path / "a")[0]
    assert rec["config"]["select_best"] is True and rec["config"]["eval_every"] == 2
    assert rec["best_step"] in (2, 4, 6) and rec["selected_on"] == "dev"
    assert set(rec["final_metrics"]) == set(rec["metrics"])  # the final step's metrics kept beside the best's
    assert "readout" not in rec["config"]  # tiny is a plain BERT config: auto resolved to its pooler
    assert main([*base, "--store", str(tmp_path / "b"), "--no-select-best", "--readout", "mean"]) == 0
    rec = results.load_records(tmp_path / "b")[0]
    assert "select_best" not in rec["config"] and rec.get("best_step") is None and rec["config"]["readout"] == "mean"
    assert main([*base, "--store", str(tmp_path / "c"), "--no-select-best", "--early-stopping", "2"]) == 2
    assert "needs --select-best" in capsys.readouterr().err
    # a task without a dev split: a note, and the final step
    nodev = tmp_path / "nodev.csv"
    frame = pd.read_csv(toy_csv)
    frame[frame.split != "dev"].to_csv(nodev, index=False)
    assert main(["train", "--backbone", "tiny", "--task", str(nodev), "--steps", "2", "--max-length", "32",
                 "--store", str(tmp_path / "d")]) == 0
    assert "no 'dev' split" in capsys.readouterr().err
    assert results.load_records(tmp_path / "d")[0].get("best_step") is None


@pytest.mark.parametrize("cmd", ["notebooks", "study", "sweep", "train", "results", "summary"])
def test_every_command_has_help(cmd):
    out = subprocess.run([sys.executable, "-m", "tutorfinetune", cmd, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "usage: tutorfinetune" in out.stdout


def test_sweep_command_exit_code_reports_failures(tmp_path, capsys):
    nb = small_notebook(tmp_path / "nb.ipynb")
    rc = main(["sweep", str(nb), "-g", "x=1,2", "-p", f"log={tmp_path / 'log.txt'}", "--out", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert rc == 1 and "failed" in out and "finished" in out
    assert main(["sweep", str(nb), "-g", "x"]) == 2
