"""The catalogue of bad inputs (issue 19): each case asserts the exact behaviour, either the error
type and a fragment of its message that names the fix, or the corrected result. Every file is made
here, in ``tmp_path``. A case another change still has to fix is marked ``xfail(strict=True)`` so that
it flips (and fails loudly) when that change lands.

Sections follow the issue: 1 labels; 2 CSV/JSONL/JSON parsing; 3 dropped rows; 4 no evaluation sets;
5 aggregation over seeds; 6 the command line; the results store (schema, and a property test over
random corruptions of a store written by real runs); configuration; 7 sparse diffs and intermediate
models; 8 adapters and truncated adapter files; checkpoints; 9 options that do nothing.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import transformers
from conftest import toy_frame
from safetensors import safe_open
from safetensors.torch import save_file

import tutorfinetune as tft
from tutorfinetune import ConfigError, TaskError, TrainConfig, analysis, load_task, results
from tutorfinetune.cli import CliError, main
from tutorfinetune.diffs import SparseDiff, SparseError, maskable_names
from tutorfinetune.methods.adapter import AdapterError, TaskAdapter, load_adapter, save_adapter
from tutorfinetune.methods.intermediate import (
    FORMAT,
    FromIntermediate,
    Intermediate,
    STILTsError,
    backbone_signature,
    encoder_state,
)


def write_csv(path: Path, labels, texts=None, **cols) -> Path:
    texts = texts or [f"text number {i}" for i in range(len(labels))]
    pd.DataFrame({"text": texts, "label": labels, **cols}).to_csv(path, index=False)
    return path


def splits(n: int = 12) -> list[str]:
    """Half train, a quarter dev, a quarter test (in blocks, so that cycling labels reach every split)."""
    return ["train"] * (n - 2 * (n // 4)) + ["dev"] * (n // 4) + ["test"] * (n // 4)


# ============================================================================================
# 1. Labels
# ============================================================================================
def test_one_based_integer_labels_are_refused_naming_label_names(tmp_path):
    f = write_csv(tmp_path / "one.csv", [1, 2] * 6, split=splits())
    with pytest.raises(TaskError, match=r"not the class indices 0\.\.1.*label_names=\['1', '2'\]"):
        load_task(f)


def test_gapped_integer_labels_are_refused_naming_label_names(tmp_path):
    f = write_csv(tmp_path / "gap.csv", [0, 1, 5] * 4, split=splits())
    with pytest.raises(TaskError, match=r"\[0, 1, 5\].*never occur.*label_names=\['0', '1', '5'\]"):
        load_task(f)


def test_one_based_labels_load_with_the_label_names_the_message_gives(tmp_path):
    f = write_csv(tmp_path / "one.csv", [1, 2] * 6, split=splits())
    task = load_task(f, label_names=["1", "2"])
    assert task.num_labels == 2 and task.frame["label"].tolist() == [0, 1] * 6


def test_one_based_labels_with_named_classes_hint_at_label_map(tmp_path):
    f = write_csv(tmp_path / "one.csv", [1, 2] * 6, split=splits())
    with pytest.raises(TaskError, match=r"one-based: pass label_map=\{1: 'neg', 2: 'pos'\}"):
        load_task(f, label_names=["neg", "pos"])
    task = load_task(f, label_names=["neg", "pos"], label_map={1: "neg", 2: "pos"})
    assert task.label_names == ["neg", "pos"] and task.frame["label"].tolist() == [0, 1] * 6


def test_zero_based_integer_labels_are_unchanged(tmp_path):
    task = load_task(write_csv(tmp_path / "z.csv", [0, 1, 2] * 4, split=splits()))
    assert task.label_names == ["0", "1", "2"] and task.frame["label"].tolist() == [0, 1, 2] * 4


def test_label_case_variants_are_refused_listing_them(tmp_path):
    f = write_csv(tmp_path / "case.csv", ["positive", "Positive", "negative"] * 4, split=splits())
    with pytest.raises(TaskError, match=r"\[\['Positive', 'positive'\]\] differ only in case.*label_map="):
        load_task(f)


def test_labels_are_stripped_of_spaces(tmp_path):
    f = tmp_path / "sp.jsonl"
    rows = [{"text": f"t{i}", "label": lab, "split": s}
            for i, (lab, s) in enumerate(zip([" positive", "positive", "negative "] * 4, splits()))]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    task = load_task(f)
    assert task.label_names == ["negative", "positive"] and task.num_labels == 2


def test_fractional_numeric_labels_are_refused(tmp_path):
    f = write_csv(tmp_path / "f.csv", [0, 0.5, 1] * 4, split=splits())
    with pytest.raises(TaskError, match=r"\[0\.5\] are numbers with a fractional part.*label_map="):
        load_task(f)


def test_case_differs_from_the_given_label_names(tmp_path):
    f = write_csv(tmp_path / "c.csv", ["Positive", "negative"] * 6, split=splits())
    with pytest.raises(TaskError, match=r"outside the label set.*Case differs for 'Positive' \(the label set has 'positive'\)"):
        load_task(f, label_names=["negative", "positive"])


# ============================================================================================
# 2. CSV, JSONL and JSON parsing
# ============================================================================================
def test_unquoted_comma_is_an_error_with_its_line_number(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text("text,label\nGreat, really great,1\nbad,0\nfine,1\nawful, truly awful,0\n")
    with pytest.raises(TaskError, match=r"line 2 has 3 fields but the header has 2 \(text, label\).*also line 5.*must be quoted"):
        load_task(f)


def test_quoted_commas_keep_the_text_whole(tmp_path):
    f = tmp_path / "q.csv"
    f.write_text('text,label,split\n"Great, really great",1,train\nbad,0,train\n"ok, fine",1,test\nno,0,test\n')
    task = load_task(f)
    assert task.frame["text"].tolist() == ["Great, really great", "bad", "ok, fine", "no"]
    assert "Unnamed: 0" not in task.frame.columns


def test_a_row_with_a_missing_field_is_an_error(tmp_path):
    f = tmp_path / "m.csv"
    f.write_text("text,label,domain\na,0,x\nb,1\n")
    with pytest.raises(TaskError, match=r"line 3 has 2 fields but the header has 3.*field is missing"):
        load_task(f)


def test_headerless_file_checks_against_column_names(tmp_path):
    f = tmp_path / "h.tsv"
    f.write_text("a\tb\t0\nc\td\t1\te\n")
    with pytest.raises(TaskError, match=r"line 2 has 4 fields but the header has 3"):
        load_task({"test": f}, column_names=["s1", "s2", "label"], text_column="s1")


def test_broken_jsonl_line_is_reported_with_its_number(tmp_path):
    f = tmp_path / "b.jsonl"
    f.write_text('{"text": "a", "label": 0}\n\n{"text": "b", "label": 1\n')
    with pytest.raises(TaskError, match=r"b\.jsonl, line 3 is not valid JSON.*fix or delete that line"):
        load_task(f)
    f.write_text('{"text": "a", "label": 0}\n[1, 2]\n')
    with pytest.raises(TaskError, match=r"line 2 holds a JSON list, not a record"):
        load_task(f)


def _records(n=12):
    return [{"text": f"text {i}", "label": i % 2, "split": s} for i, s in zip(range(n), splits(n))]


def test_json_list_of_records_loads(tmp_path):
    f = tmp_path / "list.json"
    f.write_text(json.dumps(_records()))  # one line: it was read as JSON lines before
    task = load_task(f)
    assert len(task.frame) == 12 and task.label_names == ["0", "1"]
    assert task.frame["text"].tolist() == [r["text"] for r in _records()]
    (tmp_path / "wrapped.json").write_text(json.dumps({"data": _records()}, indent=2))
    assert len(load_task(tmp_path / "wrapped.json").frame) == 12


def test_bad_json_documents_say_what_a_json_file_holds(tmp_path):
    f = tmp_path / "bad.json"
    f.write_text('[{"text": "a", "label": 0},')
    with pytest.raises(TaskError, match=r"not valid JSON.*line 1.*list of records"):
        load_task(f)
    f.write_text("42")
    with pytest.raises(TaskError, match=r"holds a JSON int, not a table"):
        load_task(f)
    f.write_text('[{"text": "a", "label": 0}, "b"]')
    with pytest.raises(TaskError, match=r"item 1 of the list is a str, not a record"):
        load_task(f)


def test_non_utf8_file_says_so(tmp_path):
    f = tmp_path / "latin.csv"
    f.write_bytes("text,label\ncaf\xe9,0\n".encode("latin-1"))
    with pytest.raises(TaskError, match="not UTF-8"):
        load_task(f)


# ============================================================================================
# 3. Dropped rows
# ============================================================================================
def test_empty_texts_are_dropped_counted_and_kept_in_the_summary(tmp_path, capsys):
    texts = ["good", "", "bad", "   ", "fine", "awful"] * 2
    f = write_csv(tmp_path / "e.csv", [1, 0, 0, 1, 1, 0] * 2, texts=texts, split=splits())
    task = load_task(f)
    assert "e: dropped 4 rows with empty or missing text (train: 2, dev: 1, test: 1)." in capsys.readouterr().out
    assert len(task.frame) == 8
    assert sum(d["n"] for d in task.meta["dropped_rows"]) == 4
    summary = task.summary().set_index("split")
    assert summary["dropped"].to_dict() == {"dev": 1, "test": 1, "train": 2}
    assert summary["n"].to_dict() == {"dev": 2, "test": 2, "train": 4}


def test_a_split_that_ends_up_empty_is_an_error(tmp_path):
    f = write_csv(tmp_path / "e.csv", [0, 1, 0, 1, 0, 1], texts=["a", "b", "c", "d", "", " "],
                  split=["train"] * 4 + ["test"] * 2)
    with pytest.raises(TaskError, match=r"Split 'test' of task 'e' is empty: all its 2 rows were dropped.*text_column="):
        load_task(f)


def test_rows_without_a_label_name_the_rows(tmp_path):
    f = write_csv(tmp_path / "n.csv", [0, 1, None, 1], split=["train", "train", "test", "test"])
    with pytest.raises(TaskError, match=r"1 rows have no label \(ids \['train-2'\]\)"):
        load_task(f)


# ============================================================================================
# 4. No evaluation sets
# ============================================================================================
def test_a_single_file_without_splits_gets_a_seeded_stratified_dev_and_test(tmp_path, capsys):
    f = write_csv(tmp_path / "one.csv", [0, 1] * 50)
    task = load_task(f)
    out = capsys.readouterr().out
    assert "10 rows were held out as dev and 10 as test (10% each, stratified by label, split_seed=0)" in out
    assert list(task.eval_sets) == ["dev", "test"] and len(task.train) == 80
    for s in ("dev", "test"):
        assert task.eval_set(s)["label"].value_counts().tolist() == [5, 5]
    assert task.meta["carved_eval_split"] == {"fraction": 0.1, "seed": 0, "train": 80, "dev": 10, "test": 10}
    again, other = load_task(f), load_task(f, split_seed=1)
    assert again.frame.equals(task.frame) and not other.frame.equals(task.frame)
    assert task.frame["text"].tolist() == [f"text number {i}" for i in range(100)]  # rows keep their order


def test_training_on_a_single_file_reports_metrics(tmp_path, tiny):
    task = load_task(write_csv(tmp_path / "one.csv", [0, 1] * 20))
    cfg = TrainConfig(lr=1e-3, max_steps=2, batch_size=8, max_length=32, warmup=0.0)
    res = tft.train(tiny(), task, cfg, store=None, verbose=False)
    assert set(res.metrics) == {"dev", "test"}


def test_too_few_rows_to_hold_out_say_how_to_give_a_split(tmp_path):
    f = write_csv(tmp_path / "few.csv", [0, 1, 0, 1])
    with pytest.raises(TaskError, match=r"too few rows per label.*'split' column.*\{split: path\}.*eval_fraction=0"):
        load_task(f)
    task = load_task(f, eval_fraction=0)
    assert task.eval_set_specs == {} and len(task.train) == 4
    with pytest.raises(TaskError, match=r"eval_fraction must be in \[0, 0\.5\)"):
        load_task(f, eval_fraction=0.7)


# ============================================================================================
# 5. Aggregation over seeds
# ============================================================================================
def _run_record(run_id, seed, lr, acc, minute, method="full", status="finished"):
    return {"run_id": run_id, "study": "s", "method": method, "task": "t", "backbone": "tiny", "seed": seed,
            "status": status, "config": {"lr": lr, "seed": seed, "batch_size": 8},
            "metrics": {"test": {"accuracy": acc}} if status == "finished" else {},
            "tags": {}, "started_at": f"2026-01-01T00:{minute:02d}:00", "finished_at": f"2026-01-01T00:{minute:02d}:30"}


@pytest.fixture
def repeated_seed_store(tmp_path):
    """Seed 0 run three times at lr 1e-4 (the newest scores 0.9) and once at lr 1e-3; seed 1 once at 1e-4."""
    store = results.RunStore(tmp_path / "runs")
    for rec in [_run_record("a", 0, 1e-4, 0.5, 1), _run_record("b", 0, 1e-4, 0.6, 2),
                _run_record("c", 0, 1e-4, 0.9, 3), _run_record("d", 0, 1e-3, 0.7, 4),
                _run_record("e", 1, 1e-4, 0.8, 5), _run_record("f", 0, 1e-4, 0.1, 6, status="failed")]:
        store.write(rec)
    return tmp_path / "runs"


def test_aggregate_keys_groups_by_configuration_and_counts_a_seed_once(repeated_seed_store):
    agg = analysis.aggregate(results.load(repeated_seed_store), by=("method", "eval_set"))
    assert list(agg.columns[:3]) == ["method", "eval_set", "lr"]  # lr added: the group mixed two
    by_lr = agg.set_index("lr")
    assert by_lr.loc[1e-4, "n"] == 2 and by_lr.loc[1e-4, "mean"] == pytest.approx((0.9 + 0.8) / 2)
    assert by_lr.loc[1e-3, "n"] == 1 and by_lr.loc[1e-3, "mean"] == pytest.approx(0.7)


def test_dedup_seeds_keeps_the_newest_finished_run(repeated_seed_store):
    df = results.load(repeated_seed_store, status=None)
    rows, keys = results.dedup_seeds(df[df.metric == "accuracy"], by=["method", "eval_set"])
    assert sorted(rows.run_id) == ["c", "d", "e"] and keys == ["method", "eval_set", "lr"]
    same, keys = results.dedup_seeds(df[(df.metric == "accuracy") & (df.lr == 1e-4)], by=["method"])
    assert sorted(same.run_id) == ["c", "e"] and keys == ["method"]


def test_aggregate_of_rows_without_run_ids_is_unchanged():
    df = pd.DataFrame({"method": "m", "eval_set": "e", "metric": "accuracy", "seed": [0, 0, 1],
                       "value": [0.8, 0.9, 0.7]})
    assert analysis.aggregate(df).iloc[0]["n"] == 3


def test_results_command_says_n_per_configuration(repeated_seed_store, capsys):
    assert main(["results", "--store", str(repeated_seed_store), "--by", "method", "--format", "csv"]) == 0
    out = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    assert out.set_index("lr")["n"].to_dict() == {1e-4: 2, 1e-3: 1}
    assert main(["results", "--store", str(repeated_seed_store)]) == 0
    table = capsys.readouterr().out
    assert "full (lr=0.0001)" in table and "(n=2)" in table and "(n=1)" in table


# ============================================================================================
# 6. The command line
# ============================================================================================
@pytest.mark.parametrize("option,fragment", [
    (["--steps", "0"], "--steps must be at least 1"),
    (["--epochs", "0"], "--epochs must be > 0"),
    (["--seeds", ""], "holds no seed"),
    (["--lr", "nan"], "lr must be finite"),
    (["--method", "nosuch"], "nosuch"),
    (["--method", "graddrop:p"], "write id:key=value"),
])
def test_train_command_user_errors_print_the_message_alone(tmp_path, toy_csv, capsys, option, fragment):
    store = tmp_path / "runs"
    args = ["train", "--backbone", "tiny", "--task", str(toy_csv), "--store", str(store), "--max-length", "32", *option]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and fragment in err and "Traceback" not in err
    assert not results.load_records(store)  # nothing trained


def test_debug_shows_the_traceback(toy_csv):
    with pytest.raises(CliError, match="--steps"):
        main(["--debug", "train", "--backbone", "tiny", "--task", str(toy_csv), "--steps", "0"])
    with pytest.raises(TaskError):
        main(["train", "--task", "nosuchtask", "--debug"])


def test_user_error_exit_code_in_a_real_process(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tutorfinetune", "train", "--task", str(tmp_path / "nope.csv")],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.startswith("error: No such file or folder")
    assert "Traceback" not in out.stderr


def test_results_unknown_metric_and_summary_of_a_missing_folder_are_errors(repeated_seed_store, tmp_path, capsys):
    assert main(["results", "--store", str(repeated_seed_store), "--metric", "nosuch"]) == 2
    assert "Unknown metric 'nosuch'" in capsys.readouterr().err
    assert main(["summary", "--out", str(tmp_path / "nonexistent")]) == 2
    assert "the folder does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["summary", "--out", str(tmp_path / "empty")]) == 1
    assert "No notebook summaries" in capsys.readouterr().err


def _notebook(path: Path) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("x = 0")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("y = x")]
    nbformat.write(nb, path)
    return path


@pytest.mark.parametrize("text,fragment", [
    ("x: [1, 2\n", "Cannot read grid file"),
    ("- 1\n- 2\n", "holds a list, not a mapping"),
    ("", "holds nothing"),
])
def test_bad_grid_file(tmp_path, capsys, text, fragment):
    grid = tmp_path / "grid.yaml"
    grid.write_text(text)
    rc = main(["sweep", str(_notebook(tmp_path / "nb.ipynb")), "--grid-file", str(grid), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and fragment in err and "NAME: [v1, v2]" in err


def test_corrupted_manifest_is_a_user_error(tmp_path, capsys):
    nb = _notebook(tmp_path / "nb.ipynb")
    (tmp_path / "o" / "nb").mkdir(parents=True)
    (tmp_path / "o" / "nb" / "manifest.json").write_text("{torn")
    assert main(["sweep", str(nb), "-g", "x=1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "is not a sweep manifest" in err and "Traceback" not in err


# ============================================================================================
# The results store: one schema, on write and on read
# ============================================================================================
def _good(run_id="ok", seed=0):
    return _run_record(run_id, seed, 1e-4, 0.8, seed)


@pytest.mark.parametrize("field,value,fragment", [
    ("metrics", "0.9", "field 'metrics' must be an object"),
    ("metrics", {"test": {"accuracy": "high"}}, "field 'metrics'"),
    ("timings", None, "field 'timings'"),
    ("config", [1, 2], "field 'config'"),
    ("started_at", 5, "field 'started_at'"),
    ("seed", "zero", "field 'seed'"),
    ("status", "done", "field 'status' must be one of"),
    ("history", {"step": 1}, "field 'history'"),
])
def test_a_wrong_typed_field_skips_the_record_naming_file_and_field(tmp_path, field, value, fragment):
    store = results.RunStore(tmp_path)
    store.write(_good("ok"))
    bad = {**_good("bad", seed=1), field: value}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.warns(UserWarning, match=rf"Skipping .*bad\.json.*{fragment}"):
        df = results.load(tmp_path)
    assert set(df.run_id) == {"ok"}
    with pytest.raises(results.RecordError, match=rf"Refusing to write run record 'bad'.*{fragment}"):
        store.write(bad)


def test_a_missing_required_field_skips_the_record(tmp_path):
    results.RunStore(tmp_path).write(_good("ok"))
    rec = _good("nostatus")
    del rec["status"]
    (tmp_path / "nostatus.json").write_text(json.dumps(rec))
    with pytest.warns(UserWarning, match=r"nostatus\.json.*field 'status' is missing"):
        assert results.load_records(tmp_path)[0]["run_id"] == "ok"


def test_results_command_survives_a_bad_record(tmp_path, capsys):
    store = results.RunStore(tmp_path)
    store.write(_good("ok"))
    (tmp_path / "bad.json").write_text(json.dumps({**_good("bad", 1), "metrics": "oops"}))
    assert main(["results", "--store", str(tmp_path), "--by", "method"]) == 0
    captured = capsys.readouterr()
    assert "80.0 (n=1)" in captured.out and "bad.json" in captured.err and "'metrics'" in captured.err


def test_history_of_a_bad_record_is_a_clear_error(tmp_path):
    (tmp_path / "bad.json").write_text('{"run_id": "bad", "status": "fini')
    with pytest.raises(results.RecordError, match=r"bad\.json is not a valid run record \(not valid JSON"):
        results.history(tmp_path, "bad")
    with pytest.raises(results.RecordError, match="No record of run 'nope'"):
        results.history(tmp_path, "nope")


# --- property test: random corruptions of a store written by real short runs ------------------
@pytest.fixture(scope="module")
def real_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("real_store")
    toy_frame(n_train=24, n_dev=8, n_test=8).to_csv(root / "toy.csv", index=False)
    task = load_task(root / "toy.csv")
    store = root / "runs"
    cfg = TrainConfig(lr=1e-3, max_steps=2, batch_size=8, max_length=32, warmup=0.0, eval_every=1)
    for seed, lr, methods in [(0, 1e-3, ["full"]), (1, 1e-3, ["full"]), (0, 1e-3, ["full"]),
                              (0, 2e-3, ["freeze-embeddings"])]:
        bb = tft.load_backbone("tiny", num_labels=2, seed=seed)
        tft.train(bb, task, cfg.replace(seed=seed, lr=lr), methods=methods, store=store, verbose=False)
    return store


_WRONG = [None, "text", 3, 2.5, True, [], [1, "a"], {}, {"x": "y"}, {"test": "0.9"}, {"test": {"accuracy": "a"}}]


def _corrupt(path: Path, rng: random.Random) -> str:
    text = path.read_text(encoding="utf-8")
    kind = rng.choice(["truncate", "wrong_type", "missing", "garbage", "scalar", "empty", "nested"])
    if kind == "truncate":
        path.write_text(text[:rng.randrange(0, len(text))], encoding="utf-8")
    elif kind == "wrong_type":
        rec = json.loads(text)
        field = rng.choice(sorted(set(rec) | {"metrics", "timings", "config", "status", "run_id", "seed"}))
        rec[field] = rng.choice(_WRONG)
        path.write_text(json.dumps(rec), encoding="utf-8")
    elif kind == "missing":
        rec = json.loads(text)
        for field in rng.sample(sorted(rec), rng.randint(1, 3)):
            del rec[field]
        path.write_text(json.dumps(rec), encoding="utf-8")
    elif kind == "garbage":
        path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))))
    elif kind == "scalar":
        path.write_text(json.dumps(rng.choice([1, "x", [1, 2], None, [{"run_id": "r"}]])), encoding="utf-8")
    elif kind == "empty":
        path.write_text("", encoding="utf-8")
    else:
        rec = json.loads(text)
        rec["metrics"] = {"test": {"accuracy": {"nested": [1, 2]}}}
        path.write_text(json.dumps(rec), encoding="utf-8")
    return kind


def _extra_junk(root: Path, rng: random.Random) -> None:
    kind = rng.choice(["dir", "file", "none"])
    if kind == "dir":
        (root / f"junk{rng.randrange(1000)}.json").mkdir(exist_ok=True)
    elif kind == "file":
        (root / f"junk{rng.randrange(1000)}.json").write_bytes(bytes(rng.randrange(256) for _ in range(50)))


def test_store_property_random_corruptions_never_break_load(real_store, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pristine = results.load(real_store)
        records = results.load_records(real_store)
    assert len(records) == 4 and len(pristine) > 0
    files = sorted(real_store.glob("*.json"))
    rng = random.Random(19)
    for trial in range(60):
        root = tmp_path / f"t{trial}"
        shutil.copytree(real_store, root)
        victims = rng.sample(files, rng.randint(1, len(files)))
        kinds = {f.stem: _corrupt(root / f.name, rng) for f in victims}
        _extra_junk(root, rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            df = results.load(root)  # must not raise
            results.load(root, status=None)
            analysis.aggregate(df)
        for f in files:
            if f.stem in kinds:
                continue
            mine = df[df.run_id == f.stem].reset_index(drop=True)
            theirs = pristine[pristine.run_id == f.stem].reset_index(drop=True)
            assert mine[["eval_set", "metric", "value"]].equals(theirs[["eval_set", "metric", "value"]]), (trial, kinds)


def test_real_store_aggregates_a_repeated_seed_once(real_store):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        agg = analysis.aggregate(results.load(real_store), by=("method", "eval_set"))
    full = agg[(agg.method == "full") & (agg.eval_set == "test")]
    assert full["n"].tolist() == [2]  # seeds 0 (run twice) and 1


# ============================================================================================
# Configuration
# ============================================================================================
def test_unknown_keyword_suggests_the_field():
    with pytest.raises(ConfigError, match=r"'learning_rate' \(did you mean 'lr'\?\)"):
        TrainConfig(learning_rate=1e-4)
    with pytest.raises(TypeError, match="did you mean 'num_epochs'"):
        TrainConfig(epochs=3)


def test_numpy_numbers_are_accepted():
    cfg = TrainConfig(batch_size=np.int64(8), lr=np.float32(1e-4), max_train_examples=np.int32(10),
                      group_by_length=np.bool_(False), num_epochs=np.int64(2))
    assert cfg.batch_size == 8 and type(cfg.batch_size) is int and type(cfg.lr) is float
    assert cfg.max_train_examples == 10 and cfg.group_by_length is False and cfg.num_epochs == 2.0
    assert json.loads(cfg.to_json())["batch_size"] == 8
    with pytest.raises(ConfigError, match="batch_size must be an integer"):
        TrainConfig(batch_size=np.float64(8.5))


def test_numpy_label_count_is_accepted():
    assert tft.load_backbone("tiny", num_labels=np.int64(3)).model.config.num_labels == 3


@pytest.mark.parametrize("text,fragment", [
    ('{"lr": 1e-4,', r"not valid JSON \(Expecting property name.*line 1, column 13\)"),
    ("[1, 2]", "needs a JSON object of fields, got a JSON list"),
    ('{"learning_rate": 1e-4}', "did you mean 'lr'"),
])
def test_from_json_of_bad_json(text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        TrainConfig.from_json(text)


def test_a_missing_local_path_says_it_does_not_exist(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mytask2").mkdir()
    with pytest.raises(TaskError, match=r"^No such file or folder: data/mytask .*Did you mean 'data/mytask2'\?.*hf:data/mytask"):
        load_task("data/mytask")
    with pytest.raises(TaskError, match=r"^No such file or folder: elsewhere/mytask .*Hugging Face"):
        load_task("elsewhere/mytask")
    with pytest.raises(TaskError, match=r"^No such file or folder: train\.csv"):
        load_task("train.csv")


# ============================================================================================
# 7. Sparse differences and intermediate models
# ============================================================================================
def _tiny_diff(tiny, seed: int = 0):
    """A small SparseDiff made on the tiny backbone (a few encoder entries moved, the head copied)."""
    bb = tiny(seed=seed)
    ref = {n: p.detach().clone() for n, p in bb.model.named_parameters()}
    names = maskable_names(bb.model, bb.blocks)[:2]
    params = dict(bb.model.named_parameters())
    with torch.no_grad():
        for n in names:
            params[n].view(-1)[:5] += 0.5
    return SparseDiff.from_models(bb.model, {n: ref[n] for n in names}, bb.blocks), bb


def _rewrite(path: Path, change) -> None:
    """Edit a safetensors file's tensors (``change(tensors)``) keeping its header, as a tamperer would."""
    with safe_open(str(path), "pt") as f:
        header, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    change(tensors)
    save_file(tensors, str(path), metadata=header)


def test_diff_head_entry_naming_an_encoder_weight_is_refused_at_apply(tmp_path, tiny):
    diff, bb = _tiny_diff(tiny)
    path = diff.save(tmp_path / "d.sft")
    target = "bert.encoder.layer.1.attention.self.query.weight"
    _rewrite(path, lambda t: t.__setitem__(f"head::{target}", torch.zeros_like(dict(bb.model.named_parameters())[target])))
    tampered = SparseDiff.load(path)
    fresh = tiny(seed=0)
    before = dict(fresh.model.named_parameters())[target].detach().clone()
    for blocks in (fresh.blocks, None):
        with pytest.raises(SparseError, match=r"not head parameters of this model \(encoder weights\).*re-create"):
            tampered.apply(fresh.model, blocks)
    assert torch.equal(dict(fresh.model.named_parameters())[target], before)


def test_diff_head_entry_naming_a_diff_tensor_and_unknown_keys_are_refused_at_load(tmp_path, tiny):
    diff, _ = _tiny_diff(tiny)
    name = next(iter(diff.deltas))
    path = diff.save(tmp_path / "d.sft")
    _rewrite(path, lambda t: t.__setitem__(f"head::{name}", torch.zeros(diff.deltas[name][2])))
    with pytest.raises(SparseError, match=r"head entries \[.*\] name tensors of the encoder"):
        SparseDiff.load(path)
    path = diff.save(tmp_path / "e.sft")
    _rewrite(path, lambda t: t.__setitem__("extra::x", torch.zeros(3)))
    with pytest.raises(SparseError, match=r"holds tensors a sparse diff never has \(\['extra::x'\]\)"):
        SparseDiff.load(path)


def test_diff_values_are_checked_finite_at_load(tmp_path, tiny):
    diff, _ = _tiny_diff(tiny)
    path = diff.save(tmp_path / "d.sft")
    head = next(k for k in diff.head)
    _rewrite(path, lambda t: t[f"head::{head}"].view(-1).__setitem__(0, float("nan")))
    with pytest.raises(SparseError, match=rf"head tensor '{re.escape(head)}' holds NaN"):
        SparseDiff.load(path)
    name = next(iter(diff.deltas))
    path = diff.save(tmp_path / "v.sft")
    _rewrite(path, lambda t: t[f"values::{name}"].__setitem__(0, float("inf")))
    with pytest.raises(SparseError, match="NaN or infinite"):
        SparseDiff.load(path)
    assert torch.isfinite(SparseDiff.load(diff.save(tmp_path / "ok.sft")).deltas[name][1]).all()


def test_apply_without_blocks_checks_the_backbone(tiny):
    diff, _ = _tiny_diff(tiny, seed=0)
    other = tiny(seed=1)  # another random initialisation: another backbone
    with pytest.raises(SparseError, match="made for another backbone"):
        diff.apply(other.model, None)
    diff.apply(tiny(seed=0).model)  # the same backbone without blocks: fine


def _intermediate(tiny, tmp_path: Path, change_state=None, change_head=None) -> Path:
    bb = tiny()
    head = {k: v.detach().clone() for k, v in bb.model.state_dict().items() if not k.startswith("bert.")}
    state = encoder_state(bb.model)
    if change_state:
        change_state(state)
    if change_head:
        change_head(head, state)
    meta = {"id": "inter0", "format": FORMAT, "backbone": "tiny", "signature": backbone_signature(bb.model),
            "kind": "classification", "label_names": ["0", "1"], "task": "t"}
    return Intermediate(state=state, head=head, meta=meta).save(tmp_path / "inter")


def test_nan_in_an_intermediate_encoder_is_refused_at_load(tmp_path, tiny):
    def unused_row_nan(state):
        state["embeddings.word_embeddings.weight"][-1, 0] = float("nan")  # a row no text uses

    folder = _intermediate(tiny, tmp_path, change_state=unused_row_nan)
    with pytest.raises(STILTsError, match=r"encoder weight 'embeddings\.word_embeddings\.weight' holds 1 NaN.*train the intermediate"):
        Intermediate.load(folder)


def test_nan_in_an_intermediate_in_memory_is_refused_before_training(tmp_path, tiny):
    inter = Intermediate.load(_intermediate(tiny, tmp_path))
    inter.state["encoder.layer.0.output.dense.weight"][0, 0] = float("nan")
    bb = tiny()
    with pytest.raises(STILTsError, match="holds 1 NaN or infinite values"):
        FromIntermediate(inter).prepare(bb.model, bb.blocks)


def test_encoder_key_in_an_intermediate_head_file_is_refused(tmp_path, tiny):
    def smuggle(head, state):
        head["bert.embeddings.word_embeddings.weight"] = state["embeddings.word_embeddings.weight"] * 0

    folder = _intermediate(tiny, tmp_path, change_head=smuggle)
    with pytest.raises(STILTsError, match=r"head holds encoder weights \(\['bert\.embeddings\.word_embeddings\.weight'\]\)"):
        Intermediate.load(folder)


# ============================================================================================
# 8. Adapters; truncated adapter files
# ============================================================================================
@pytest.fixture
def saved_adapter(tiny, tmp_path):
    bb = tiny()
    TaskAdapter().prepare(bb.model, bb.blocks)
    return save_adapter(bb.model, "task", tmp_path / "adapter", backbone="tiny")


def _bert_with(tiny, **changes):
    cfg = {**tiny().model.config.to_dict(), **changes}
    return transformers.BertForSequenceClassification(transformers.BertConfig(**cfg))


@pytest.mark.parametrize("layers", [1, 4])
def test_plain_adapterhub_folder_into_another_depth_is_refused(saved_adapter, tiny, layers):
    (saved_adapter / "tutorfinetune.json").unlink()  # a plain AdapterHub folder
    with pytest.raises(AdapterError, match=rf"weights for blocks \[0, 1\].*this model has {layers} blocks: it would load only partially"):
        load_adapter(_bert_with(tiny, num_hidden_layers=layers), saved_adapter)


def test_plain_adapterhub_folder_into_another_width_is_refused(saved_adapter, tiny):
    (saved_adapter / "tutorfinetune.json").unlink()
    with pytest.raises(AdapterError, match=r"made for another backbone.*hidden_size 64 != 32"):
        load_adapter(_bert_with(tiny, hidden_size=32, intermediate_size=64), saved_adapter)


@pytest.mark.parametrize("name,fragment", [("adapter.safetensors", "is damaged or truncated"),
                                           ("head.safetensors", "head.safetensors is damaged or truncated"),
                                           ("tutorfinetune.json", "tutorfinetune.json is damaged")])
def test_truncated_adapter_files(saved_adapter, tiny, name, fragment):
    f = saved_adapter / name
    f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
    with pytest.raises(AdapterError, match=fragment):
        load_adapter(tiny().model, saved_adapter)


# ============================================================================================
# Checkpoints: truncated files, a pickle payload
# ============================================================================================
@pytest.fixture
def checkpoint(toy_task, tiny, tmp_path):
    cfg = TrainConfig(lr=1e-3, max_steps=3, batch_size=8, max_length=32, warmup=0.0, checkpoint_every=1)
    tft.train(tiny(), toy_task, cfg, store=None, checkpoint_dir=tmp_path / "ck", verbose=False)
    first = sorted((tmp_path / "ck").glob("step-*"))[0]
    return first, lambda: tft.train(tiny(), toy_task, cfg, store=None, checkpoint_dir=tmp_path / "ck2",
                                    resume_from=first, verbose=False)


@pytest.mark.parametrize("name", ["trainer_state.pt", "model.safetensors", "meta.json"])
def test_truncated_checkpoint_says_it_is_damaged(checkpoint, name):
    folder, resume = checkpoint
    f = folder / name
    f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
    with pytest.raises(tft.TrainingError, match=rf"is damaged: {re.escape(name)} cannot be read.*Delete that folder"):
        resume()


def test_pickle_payload_checkpoint_is_refused_without_suggesting_unsafe_loading(checkpoint):
    folder, resume = checkpoint
    torch.save({"optimizer": _Payload()}, folder / "trainer_state.pt")
    with pytest.raises(tft.TrainingError, match="not a checkpoint this package wrote.*pickle payload") as e:
        resume()
    assert "weights_only" not in str(e.value) and not _Payload.ran


class _Payload:
    ran = False

    def __reduce__(self):
        return (setattr, (_Payload, "ran", True))


# ============================================================================================
# 9. Options that do nothing, and errors deep inside other libraries (fixed by the engine/methods rewrite)
# ============================================================================================
@pytest.fixture
def short(toy_task, tiny):
    cfg = TrainConfig(lr=1e-3, max_steps=2, batch_size=8, max_length=32, warmup=0.0)
    return lambda config=cfg, methods=("full",), **kw: tft.train(tiny(), toy_task, config, methods=list(methods),
                                                                  verbose=False, **kw)


def test_checkpoint_every_without_a_store_warns(short):
    with pytest.warns(UserWarning, match=r"checkpoint_every=1 but store=None and no checkpoint_dir.*checkpoint_dir="):
        short(TrainConfig(max_steps=2, batch_size=8, max_length=32, checkpoint_every=1), store=None)


def test_the_same_method_twice_is_refused(short):
    with pytest.raises(tft.methods.MethodError, match="Two 'full' plug-ins in one run: use one"):
        short(methods=["full", "full"], store=None)


def test_two_fisher_trackers_are_refused(short):
    tracker = ("fisher-tracker", {"every": 1, "batches": 1})
    with pytest.raises(tft.methods.MethodError, match="Two Fisher trackers in one run: use one"):
        short(methods=["full", tracker, tracker], store=None)


def test_unknown_curve_eval_set_without_eval_every_warns(short):
    with pytest.warns(UserWarning, match=r"curve_eval_set='nosuch' is not an eval set of task 'toy'"):
        short(TrainConfig(max_steps=2, batch_size=8, max_length=32, curve_eval_set="nosuch"), store=None)


def test_max_length_above_the_position_limit_is_refused(short):
    with pytest.raises(tft.TrainingError, match=r"max_length=4096 is more than 'tiny' can read \(512 positions\); use max_length <= 512"):
        short(TrainConfig(max_steps=2, batch_size=8, max_length=4096), store=None)


def test_reduction_factor_zero_is_refused(short):
    with pytest.raises(AdapterError, match="reduction_factor must be > 0"):
        short(methods=[("adapter", {"reduction_factor": 0})], store=None)
