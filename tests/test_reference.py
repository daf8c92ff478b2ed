"""Reference results: full-mode summaries kept with the package and shown beside a quick run."""

import json

import pandas as pd
import pytest

from tutorfinetune import notebook as nb
from tutorfinetune import reference
from tutorfinetune.cli import main
from tutorfinetune.config import ConfigError


def _store_with(tmp_path, study, mode, text):
    store = tmp_path / "runs"
    nb.save_summary(study, text, pd.DataFrame({"acc": [0.9]}, index=["full"]), store=store, mode=mode,
                    seeds=[0, 1, 2, 3, 4], show_reference=False)
    return store


def test_export_keeps_only_full_mode_summaries_and_they_read_back(tmp_path):
    store = _store_with(tmp_path, "demo_full", "full", "Full fine-tuning 90.0 ± 1.0%.")
    nb.save_summary("demo_ci", "quick", None, store=store, mode="ci", show_reference=False)
    (store / "summaries" / "broken.json").write_text("{not json")
    written = reference.export_references(store, tmp_path / "ref")
    assert [w.name for w in written] == ["demo_full.json"]
    ref = reference.reference_summary("demo_full", tmp_path / "ref")
    assert ref["text"] == "Full fine-tuning 90.0 ± 1.0%." and ref["seeds"] == [0, 1, 2, 3, 4] and ref["machine"]
    assert reference.reference_table(ref).loc["full", "acc"] == 0.9
    assert reference.reference_summary("demo_ci", tmp_path / "ref") is None
    assert reference.reference_summary("nothing", tmp_path / "ref") is None
    (tmp_path / "ref" / "other.json").write_text(json.dumps({"study": "not-other"}))
    assert reference.reference_summary("other", tmp_path / "ref") is None  # a file under the wrong name
    with pytest.raises(ConfigError, match="No summaries"):
        reference.export_references(tmp_path / "missing", tmp_path / "ref")


def test_differences_name_mode_seeds_and_machine():
    mine = {"mode": "ci", "seeds": [0], "machine": "CPU, 2 cores"}
    ref = {"mode": "full", "seeds": [0, 1, 2, 3, 4], "machine": "GPU NVIDIA H200"}
    text = reference.differences(mine, ref)
    assert "ci mode" in text and "[0, 1, 2, 3, 4]" in text and "GPU NVIDIA H200" in text
    assert "should agree" in reference.differences(dict(ref), dict(ref))


def test_a_ci_summary_shows_the_reference_beside_it(tmp_path, monkeypatch, capsys):
    store = _store_with(tmp_path, "demo", "full", "Reference sentence 91.2%.")
    reference.export_references(store, tmp_path / "ref")
    monkeypatch.setattr(reference, "REFERENCE_DIR", tmp_path / "ref")
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda x: shown.append(getattr(x, "data", x)))
    nb.save_summary("demo", "My quick run 55.0%.", None, store=tmp_path / "mine", mode="ci", seeds=[0])
    text = "\n".join(str(s) for s in shown)
    assert "My quick run 55.0%." in text and "Reference sentence 91.2%." in text and "Why the numbers differ" in text
    shown.clear()
    nb.save_summary("unknown", "x", None, store=tmp_path / "mine", mode="ci")
    assert any("No full-mode reference" in str(s) for s in shown)


def test_cli_reference_writes_and_refuses_ci_only_stores(tmp_path, capsys):
    store = _store_with(tmp_path, "demo_full", "full", "text")
    assert main(["reference", "--store", str(store), "--to", str(tmp_path / "ref")]) == 0
    assert (tmp_path / "ref" / "demo_full.json").is_file()
    ci = tmp_path / "ci"
    nb.save_summary("x", "t", None, store=ci, mode="ci", show_reference=False)
    assert main(["reference", "--store", str(ci), "--to", str(tmp_path / "ref2")]) == 1
    assert "never becomes the reference" in capsys.readouterr().err


def test_key_figures_are_saved_small_exported_and_shown_with_the_reference(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([0, 1], [0, 1])
    store = tmp_path / "runs"
    nb.save_summary("demo", "full text", None, store=store, mode="full", figures={"curves / dev": fig},
                    show_reference=False)
    png = store / "summaries" / "demo" / "curves___dev.png"
    assert png.is_file() and png.stat().st_size < 60_000
    reference.export_references(store, tmp_path / "ref")
    ref = reference.reference_summary("demo", tmp_path / "ref")
    assert [p.name for p in reference.reference_figures(ref, tmp_path / "ref")] == ["curves___dev.png"]
    monkeypatch.setattr(reference, "REFERENCE_DIR", tmp_path / "ref")
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda x: shown.append(x))
    nb.save_summary("demo", "quick", None, store=tmp_path / "mine", mode="ci")
    assert any(type(x).__name__ == "Image" for x in shown)
