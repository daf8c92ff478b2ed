"""The synthetic real-vs-fake task (Chang & Lu) and its offline n-gram generator (METHODS.md §5)."""

import numpy as np
import pytest

from tutorfinetune import synthetic as sy

CORPUS = [
    f"The {a} {b} was {c} and the staff were {d} during our stay in {e}. We would {f} come back next {g} year."
    for a in ("small", "old", "new", "quiet") for b in ("hotel", "room", "lobby") for c in ("clean", "dusty", "loud")
    for d in ("kind", "slow") for e in ("May", "June") for f in ("gladly", "never") for g in ("summer",)
]


def test_generator_is_seeded_and_length_matched():
    gen = sy.NGramGenerator().fit(CORPUS)
    a = gen.generate("The small hotel was", 7, np.random.default_rng(3))
    b = gen.generate("The small hotel was", 7, np.random.default_rng(3))
    c = [gen.generate("The small hotel was", 7, np.random.default_rng(s)) for s in range(10)]
    assert a == b and len(a.split()) == 7
    assert len(set(c)) > 1
    vocab = {w for t in CORPUS for w in t.split()}
    assert all(w in vocab for w in a.split())  # words of the corpus, in a generated order


def test_build_real_fake_structure_and_determinism():
    df = sy.build_real_fake(CORPUS, seed=1, n_fakes=3)
    df2 = sy.build_real_fake(CORPUS, seed=1, n_fakes=3)
    df3 = sy.build_real_fake(CORPUS, seed=2, n_fakes=3)
    assert df.equals(df2) and not df.equals(df3)
    assert set(df.split) == {"train", "dev"} and 0.05 < (df.split == "dev").mean() < 0.2
    for r in df.itertuples():
        assert len(r.endings) == 4 and r.endings[r.label] == r.real
        assert all(len(e.split()) == r.n_words for e in r.endings)  # fakes are length-matched
        words = (r.prefix + " " + r.real).split()
        # prefix = first half; real ending = the rest minus the last word of the (truncated) sentence
        assert len(r.prefix.split()) == (len(words) + 1) // 2
    assert df.label.nunique() == 4  # the real ending's position is shuffled


def test_fakes_on_real_text_are_generated_not_copied():
    from tutorfinetune import load_task

    texts = load_task("reviews").texts(lang="en")
    df = sy.build_real_fake(texts, seed=0, max_examples=300)
    reals = set(df.real)
    fakes = [e for r in df.itertuples() for k, e in enumerate(r.endings) if k != r.label]
    assert len(fakes) == 3 * len(df)
    assert np.mean([f in reals for f in fakes]) < 0.1  # not "the ending of another sentence"
    gen = sy.NGramGenerator().fit(texts)
    assert gen.log_prob(df.prefix.iloc[0], df.real.iloc[0]) > gen.log_prob(df.prefix.iloc[0], "zzz qqq")


def test_sentence_rules():
    s = sy.sentences_for_task(["one two three four five six seven eight nine. short one. " + " ".join(["w"] * 40)],
                              min_words=8, max_words=30)
    assert [len(x) for x in s] == [9, 30]


def test_bad_corpora():
    with pytest.raises(sy.SyntheticError, match="at least 50"):
        sy.build_real_fake(["too short a corpus to build anything from it at all"] * 3)
    with pytest.raises(sy.SyntheticError, match="strings"):
        sy.build_real_fake([1, 2, 3])
    with pytest.raises(sy.SyntheticError, match="n_fakes"):
        sy.build_real_fake(CORPUS, n_fakes=0)
    with pytest.raises(sy.SyntheticError, match="fit"):
        sy.NGramGenerator().generate("a b", 3, np.random.default_rng(0))
