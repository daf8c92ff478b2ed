"""The bundled `reviews` task: counts, balance, no (near-)duplicates, aligned translations, data card."""

import re
from collections import Counter
from itertools import combinations

import pytest

from tutorfinetune import load_task
from tutorfinetune.data import data_dir, vocabulary_shift


@pytest.fixture(scope="module")
def task():
    return load_task("reviews")


def words(t):
    return set(re.findall(r"[a-zà-ÿß0-9']+", t.lower()))


def test_counts(task):
    f, m = task.frame, task.meta
    en = f[f.lang == "en"]
    assert len(set(m["source_domains"]) | set(m["target_domains"])) >= 6
    src = en[en.domain.isin(m["source_domains"])]
    assert (src.split == "train").sum() >= 1000
    assert (src.split == "dev").sum() >= 200
    assert (src.split == "test").sum() >= 300
    assert len(task.eval_set("in-distribution")) >= 300
    for d in m["target_domains"]:
        assert len(task.eval_set(f"shift:{d}")) >= 150
        assert not ((en.domain == d) & (en.split != "test")).any(), "held-out domains never appear in train/dev"
    for lg in m["languages"]:
        assert len(task.eval_set(f"shift:{lg}")) >= 200
        assert len(task.texts(lang=lg)) >= 200
    for d in m["source_domains"] + m["target_domains"]:
        assert len(task.texts(domain=d, lang="en")) >= 200


def test_eval_sets_are_named_as_promised(task):
    assert list(task.eval_set_specs)[:2] == ["dev", "in-distribution"]
    assert {"shift:hotels", "shift:games", "shift:de", "shift:es", "shift:fr"} <= set(task.eval_set_specs)


def test_label_balance_per_split_and_eval_set(task):
    for (split, lang), g in task.frame.groupby(["split", "lang"]):
        assert 0.45 <= g.label.mean() <= 0.55, (split, lang)
    for name, g in task.eval_sets.items():
        assert 0.45 <= g.label.mean() <= 0.55, name


def test_no_duplicates_or_near_duplicates(task):
    texts = []
    for lang in ["en", *task.meta["languages"]]:
        lab = task.frame[task.frame.lang == lang].text.tolist()
        unl = task.unlabelled[task.unlabelled.lang == lang].text.tolist()
        texts = lab + unl
        norm = [" ".join(t.lower().split()) for t in texts]
        assert len(set(norm)) == len(norm), f"exact duplicates in {lang}"
        sets = [words(t) for t in texts]
        index = {}
        for i, ws in enumerate(sets):
            for w in ws:
                index.setdefault(w, []).append(i)
        near = []
        for i, ws in enumerate(sets):
            cands = Counter(j for w in ws for j in index[w] if j > i)
            for j, shared in cands.items():
                if shared / len(ws | sets[j]) > 0.6:
                    near.append((texts[i], texts[j]))
        assert not near, f"near-duplicates in {lang}: {near[:3]}"


def test_translations_are_aligned_and_translated(task):
    f = task.frame
    en = f[(f.lang == "en") & (f.split == "test")].set_index("id")
    markers = {"de": {"und", "nicht", "der", "die", "das", "ist", "ein", "eine"},
               "es": {"el", "la", "que", "no", "es", "una", "los", "y"},
               "fr": {"le", "la", "et", "pas", "est", "une", "les", "ce"}}
    for lg in task.meta["languages"]:
        tr = f[f.lang == lg].set_index("id")
        assert tr.index.is_unique and set(tr.index) <= set(en.index)
        assert (tr.label == en.loc[tr.index, "label"]).all()
        assert (tr.domain == en.loc[tr.index, "domain"]).all()
        assert set(tr.domain) <= set(task.meta["source_domains"])
        assert (tr.text != en.loc[tr.index, "text"]).all()
        in_lang = sum(bool(words(t) & markers[lg]) for t in tr.text) / len(tr)
        assert in_lang >= 0.9, f"{lg}: only {in_lang:.0%} look like {lg}"


def test_texts_are_natural_and_varied(task):
    en = task.frame[task.frame.lang == "en"]
    n_words = en.text.str.split().str.len()
    assert n_words.min() >= 4 and 12 <= n_words.mean() <= 40
    assert n_words.std() >= 4, "lengths should vary"
    for d, g in en.groupby("domain"):
        openings = Counter(" ".join(t.lower().split()[:2]) for t in g.text)
        assert openings.most_common(1)[0][1] / len(g) <= 0.03, (d, openings.most_common(3))
    negations = en.text.str.contains(r"\b(?:not|never|no)\b|n't\b", case=False).mean()  # "didn't": no \b before n't
    contrast = en.text.str.contains(  # contrast and concession connectives
        r"\b(?:but|although|though|however|yet|despite|except|whereas|while|still|instead)\b", case=False).mean()
    assert negations >= 0.15 and contrast >= 0.15


def test_held_out_domains_show_vocabulary_shift(task):
    # running words (the OOV rate), not types: the unseen share of types grows with the size of a set,
    # so it is biased against comparing the 480-row in-distribution test with 200-row domains
    v = vocabulary_shift(task).set_index("eval_set")
    for d in task.meta["target_domains"]:
        assert v.loc[f"shift:{d}", "unseen_tokens"] > 1.15 * v.loc["in-distribution", "unseen_tokens"], d
    for lg in task.meta["languages"]:
        assert v.loc[f"shift:{lg}", "unseen_tokens"] > 3 * max(v.loc[f"shift:{d}", "unseen_tokens"]
                                                                for d in task.meta["target_domains"]), lg


def test_data_card_lists_the_counts(task):
    card = (data_dir() / "README.md").read_text(encoding="utf-8")
    for needle in ["Licence", "Schema", "negative", "positive", "hotels", "games", "German", "held-out"]:
        assert needle.lower() in card.lower(), needle
    assert str(len(task.train)) in card.replace(",", "")


def test_splits_of_one_domain_never_share_a_text(task):
    en = task.frame[task.frame.lang == "en"]
    for a, b in combinations(["train", "dev", "test"], 2):
        assert not set(en[en.split == a].text) & set(en[en.split == b].text)
