"""The generic file loader, its errors, and the real public datasets beside the repo.

The catalogue of bad inputs is tests/test_bad_inputs.py; here, that valid input loads as it always did."""

import hashlib
import json

import pandas as pd
import pytest
from conftest import REPO, realdata, toy_frame

from tutorfinetune import TaskError, load_task, load_text


def test_csv_with_split_column(toy_task):
    assert toy_task.label_names == ["0", "1"]
    assert set(toy_task.frame["split"]) == {"train", "dev", "test"}
    assert list(toy_task.eval_sets) == ["dev", "test"]
    assert len(toy_task.train) == 80 and len(toy_task.eval_set("test")) == 20
    assert {"text", "label", "split", "domain", "lang"} <= set(toy_task.frame.columns)


def test_jsonl_and_tsv_and_split_mapping(tmp_path):
    df = toy_frame()
    df["sentiment"] = df["label"].map({0: "neg", 1: "pos"})
    df[df.split == "train"].drop(columns=["split"]).to_json(tmp_path / "a.jsonl", orient="records", lines=True)
    df[df.split == "test"].drop(columns=["split"]).to_csv(tmp_path / "b.tsv", sep="\t", index=False)
    task = load_task({"train": tmp_path / "a.jsonl", "test": tmp_path / "b.tsv"}, label_column="sentiment",
                     label_names=["neg", "pos"])
    assert task.label_names == ["neg", "pos"]
    assert (task.frame.loc[task.frame.text.str.startswith("The soup was hot"), "label"] == 1).all()
    assert list(task.eval_sets) == ["test"]


def test_label_map_renames_and_drops(tmp_path):
    df = pd.DataFrame({"text": [f"t{i}" for i in range(9)], "label": ["pos", "neg", "neutral"] * 3})
    df.to_csv(tmp_path / "train.csv", index=False)
    task = load_task(tmp_path / "train.csv", label_map={"pos": "positive", "neg": "negative", "neutral": None},
                     label_names=["negative", "positive"])
    assert len(task.frame) == 6 and task.label_names == ["negative", "positive"]


def test_subsample_is_stratified_and_seeded(toy_task):
    a = toy_task.subsample_train(20, seed=1)
    b = toy_task.subsample_train(20, seed=1)
    c = toy_task.subsample_train(20, seed=2)
    assert len(a.train) == 20 and a.train["label"].value_counts().tolist() == [10, 10]
    assert a.train.index.tolist() == b.train.index.tolist() != c.train.index.tolist()
    assert len(a.eval_set("test")) == 20


# --- valid input loads exactly as before the loaders were hardened (issue 19) ---------------------
# sha256 of the bundled task's frame as CSV, taken before the loaders were hardened (issue 19).
REVIEWS_SHA256 = "70c772438ecdaf948f018bc8ab5c08bb855c156ab0cc3f59c33a16aea5e1fe13"


def test_bundled_reviews_load_exactly_as_before():
    frame = load_task("reviews").frame
    assert hashlib.sha256(frame.to_csv().encode()).hexdigest() == REVIEWS_SHA256
    ref = pd.read_json(REPO / "data" / "reviews" / "labelled.jsonl", lines=True, dtype={"id": str})
    ref["label"] = ref["label"].map({"negative": 0, "positive": 1}).astype(int)
    assert frame.equals(ref)


def test_the_generic_loader_reads_the_bundled_file_like_the_bundled_loader():
    bundled = load_task("reviews").frame
    generic = load_task(REPO / "data" / "reviews" / "labelled.jsonl").frame
    cols = ["text", "label", "split", "domain", "lang"]
    assert generic[cols].astype(str).equals(bundled[cols].astype(str))


# --- bad input: each names the fix --------------------------------------------------------------
def test_unknown_task_name():
    with pytest.raises(TaskError, match="Unknown task 'reveiws'.*bundled task"):
        load_task("reveiws")


def test_missing_text_column_lists_columns(tmp_path):
    pd.DataFrame({"sentence": ["a", "b"], "label": [0, 1]}).to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(TaskError, match=r"no column 'text'.*\['sentence', 'label'\].*text_column="):
        load_task(tmp_path / "x.csv")


def test_missing_label_column_in_jsonl(tmp_path):
    (tmp_path / "x.jsonl").write_text(json.dumps({"text": "a", "y": 1}) + "\n")
    with pytest.raises(TaskError, match=r"no column 'label'.*\['text', 'y'\]"):
        load_task(tmp_path / "x.jsonl")


def test_mapping_names_missing_column(tmp_path, toy_csv):
    with pytest.raises(TaskError, match="no column 'review'.*text_column"):
        load_task(toy_csv, text_column="review")


def test_empty_file(tmp_path):
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(TaskError, match="empty"):
        load_task(tmp_path / "e.csv")
    (tmp_path / "h.csv").write_text("text,label\n")
    with pytest.raises(TaskError, match="empty|no usable rows"):
        load_task(tmp_path / "h.csv")


def test_single_class_split(tmp_path):
    pd.DataFrame({"text": ["a", "b", "c"], "label": [1, 1, 1]}).to_csv(tmp_path / "s.csv", index=False)
    with pytest.raises(TaskError, match="single class.*allow_single_class"):
        load_task(tmp_path / "s.csv", label_names=["neg", "pos"])


def test_labels_outside_label_set(tmp_path):
    pd.DataFrame({"text": ["a", "b", "c"], "label": [0, 1, 2]}).to_csv(tmp_path / "o.csv", index=False)
    with pytest.raises(TaskError, match=r"\[2\] are outside the label set"):
        load_task(tmp_path / "o.csv", label_names=["neg", "pos"])
    pd.DataFrame({"text": ["a", "b"], "label": ["good", "meh"]}).to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(TaskError, match=r"'meh'.*label_map"):
        load_task(tmp_path / "p.csv", label_names=["bad", "good"])


def test_hub_id_without_datasets_or_network_says_so():
    with pytest.raises(TaskError, match="Hugging Face|hub"):
        load_task("hf:someone/not-a-dataset")


def test_load_text(tmp_path):
    (tmp_path / "u.txt").write_text("one line\n\n two \n")
    assert load_text(tmp_path / "u.txt") == ["one line", "two"]
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(TaskError, match="no text"):
        load_text(tmp_path / "empty.txt")


# --- real public data beside the repo (skips cleanly without ../shared) -------------------------
def test_sst2_folder_loads():
    task = load_task(realdata("sst2"), text_column="sentence", label_names=["negative", "positive"])
    assert len(task.eval_set("dev")) == 872
    assert len(task.train) > 60000


def test_nusax_binary_through_label_map():
    task = load_task(realdata("nusax_senti", "english"), label_map={"positive": "positive", "negative": "negative",
                     "neutral": None}, label_names=["negative", "positive"])
    assert set(task.eval_set_specs) == {"dev", "test"}
    assert task.frame["label"].isin([0, 1]).all() and len(task.eval_set("test")) > 200


def test_pawsx_headerless_sentence_pairs():
    task = load_task({"test": realdata("pawsx", "dev-en.tsv")}, column_names=["s1", "s2", "label"],
                     text_column="s1", text_pair_column="s2", lang="en", allow_single_class=False)
    assert "text_pair" in task.frame and len(task.frame) == 2000


def test_xnli_and_rte():
    xnli = load_task({"test": realdata("xnli", "dev-de.tsv")}, column_names=["premise", "hypothesis", "label"],
                     text_column="premise", text_pair_column="hypothesis", lang="de",
                     label_names=["entailment", "neutral", "contradiction"])
    assert xnli.num_labels == 3 and len(xnli.frame) == 2490
    rte = load_task(realdata("rte"), text_column="sentence1", text_pair_column="sentence2")
    assert len(rte.train) == 2490 and len(rte.eval_set("dev")) == 277
