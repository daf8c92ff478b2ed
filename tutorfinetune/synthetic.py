"""The synthetic real-vs-fake intermediate task of Chang & Lu (Findings of EMNLP 2021), offline.

docs/methods.md §8. Chang & Lu take SQuAD sentences, cut each in half, and ask a model to tell the real
second half from three GPT-2 continuations of the first half. GPT-2 cannot be downloaded here, so
the fakes come from :class:`NGramGenerator` [D]: an interpolated word trigram model fitted on the
same corpus, sampled with nucleus (top-p 0.9) sampling, length-matched to the real ending. It
generates text word by word; it never copies "the ending of another sentence" (which would turn the
task into a coherence task with fully real text).

:func:`build_real_fake` follows the released script where our short review sentences allow:

1. split each text on ``". "``; keep the first ``max_words`` (30) whitespace tokens of a sentence;
   skip sentences with fewer than ``min_words`` tokens (the script: 20; our default 8 [D]: review
   sentences are short, median 15 words);
2. prefix = the first ⌊n/2⌋ words; real ending = the remaining words minus the last one;
3. shuffle, keep at most ``max_examples`` (30,000);
4. ``n_fakes`` (3) generated endings per prefix, each with as many words as the real ending, from a
   generator that never saw the sentence (cross-fitted over folds [D], see :func:`build_real_fake`);
5. the real ending's position is drawn at random per example (the script stores it at index 0, which
   is harmless only with per-choice scoring; shuffling is harmless always), and a seeded dev split
   is held out (the script writes none).

Everything is deterministic under ``seed``. :func:`real_fake_task` wraps the result as a
multiple-choice :class:`~tutorfinetune.data.Task`; :func:`ending_stats` and :func:`ngram_baseline`
say how easy the fakes are to spot without understanding. Taught in
notebooks/07_intermediate_tasks.ipynb.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from .data import multiple_choice_task

__all__ = ["SyntheticError", "NGramGenerator", "sentences_for_task", "build_real_fake", "real_fake_task", "ending_stats",
           "ngram_baseline", "MIN_SENTENCES"]

#: the fewest usable sentences :func:`build_real_fake` accepts (a dev split of 10% needs some rows)
MIN_SENTENCES = 50
_BOS, _EOS = "<s>", "</s>"


class SyntheticError(ValueError):
    """A corpus too small or malformed to build the synthetic task from."""


def _tokens(text: str) -> list[str]:
    return text.split()


@dataclass
class NGramGenerator:
    """An interpolated word n-gram model (default trigram) with nucleus sampling.

    ``fit(texts)`` counts n-grams of whitespace tokens (case kept, punctuation attached, as in the
    text); ``generate(prefix, n_words, rng)`` continues a prefix with exactly ``n_words`` words.
    At each step it mixes the n-gram orders whose context was seen (weights ``lambdas``, renormalised),
    keeps the smallest set of words with ``top_p`` of the probability, and samples from it.
    """

    order: int = 3
    lambdas: tuple[float, ...] = (0.6, 0.3, 0.1)
    top_p: float = 0.9
    counts: list = field(default_factory=list, repr=False)
    n_tokens: int = 0
    _cache: dict = field(default_factory=dict, repr=False)

    def fit(self, texts: Sequence[str]) -> "NGramGenerator":
        if self.order < 1 or len(self.lambdas) != self.order:
            raise SyntheticError(f"order={self.order} needs {self.order} lambdas (highest order first), got {self.lambdas}.")
        self.counts = [defaultdict(Counter) for _ in range(self.order)]  # counts[k][context of k words][word]
        n = 0
        for t in texts:
            toks = [_BOS] * (self.order - 1) + _tokens(t) + [_EOS]
            n += len(toks) - (self.order - 1)
            for i in range(self.order - 1, len(toks)):
                for k in range(self.order):
                    self.counts[k][tuple(toks[i - k:i])][toks[i]] += 1
        if n == 0:
            raise SyntheticError("The corpus has no words to fit the generator on.")
        self.n_tokens = n
        self._cache = {}
        return self

    def distribution(self, context: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """Words and probabilities after ``context`` (interpolated over the seen orders, no end token)."""
        if not self.counts:
            raise SyntheticError("Call fit(texts) before generating.")
        ctx = ([_BOS] * (self.order - 1) + list(context))[-(self.order - 1):] if self.order > 1 else []
        mix: dict[str, float] = defaultdict(float)
        total_w = 0.0
        for k in range(self.order - 1, -1, -1):
            c = self.counts[k].get(tuple(ctx[len(ctx) - k:]) if k else ())
            if not c:
                continue
            w = self.lambdas[self.order - 1 - k]
            z = sum(v for word, v in c.items() if word != _EOS)
            if z == 0:
                continue
            total_w += w
            for word, v in c.items():
                if word != _EOS:
                    mix[word] += w * v / z
        words = list(mix)
        probs = np.array([mix[w] for w in words]) / total_w
        return words, probs

    def _table(self, k: int, ctx: tuple) -> tuple[list[str], np.ndarray] | None:
        """Words after a k-word context, most frequent first, with cumulative probabilities (cached)."""
        key = (k, ctx)
        if key not in self._cache:
            c = self.counts[k].get(ctx)
            items = sorted(((w, v) for w, v in (c or {}).items() if w != _EOS), key=lambda x: -x[1])
            if not items:
                self._cache[key] = None
            else:
                v = np.array([x[1] for x in items], dtype=float)
                self._cache[key] = ([x[0] for x in items], np.cumsum(v) / v.sum())
        return self._cache[key]

    def sample_next(self, context: Sequence[str], rng: np.random.Generator) -> str:
        """One word: choose an order among those whose context was seen (probability ∝ its lambda),
        then sample from that order's nucleus (top-p) [D: top-p per order, not over the mixture]."""
        if not self.counts:
            raise SyntheticError("Call fit(texts) before generating.")
        ctx = ([_BOS] * (self.order - 1) + list(context))[-(self.order - 1):] if self.order > 1 else []
        tables, weights = [], []
        for k in range(self.order - 1, -1, -1):
            tab = self._table(k, tuple(ctx[len(ctx) - k:]) if k else ())
            if tab is not None:
                tables.append(tab)
                weights.append(self.lambdas[self.order - 1 - k])
        w = np.array(weights) / sum(weights)
        words, cum = tables[int(rng.choice(len(tables), p=w))]
        cut = int(np.searchsorted(cum, self.top_p)) + 1  # the nucleus: the most frequent words up to top_p
        r = rng.random() * cum[cut - 1]
        return words[int(np.searchsorted(cum[:cut], r, side="right"))]

    def generate(self, prefix: Sequence[str] | str, n_words: int, rng: np.random.Generator) -> str:
        """``n_words`` words continuing ``prefix`` (a string or a list of words)."""
        ctx = _tokens(prefix) if isinstance(prefix, str) else list(prefix)
        out: list[str] = []
        for _ in range(int(n_words)):
            w = self.sample_next(ctx + out, rng)
            out.append(w)
        return " ".join(out)

    def log_prob(self, prefix: Sequence[str] | str, ending: str) -> float:
        """Mean log-probability per word of ``ending`` after ``prefix`` (for the generator's own
        real-vs-fake baseline: does the n-gram model itself prefer the real ending?)."""
        ctx = _tokens(prefix) if isinstance(prefix, str) else list(prefix)
        total, words = 0.0, _tokens(ending)
        for w in words:
            vocab, probs = self.distribution(ctx)
            p = dict(zip(vocab, probs)).get(w, 0.0)
            total += math.log(max(p, 1e-12))
            ctx = ctx + [w]
        return total / max(1, len(words))


def sentences_for_task(texts: Sequence[str], min_words: int = 8, max_words: int = 30) -> list[list[str]]:
    """Step 1: split on ``". "``, truncate to ``max_words`` tokens, keep those with >= ``min_words``."""
    out = []
    for t in texts:
        if not isinstance(t, str):
            raise SyntheticError(f"Texts must be strings, got {type(t).__name__}: {t!r:.60}.")
        for s in re.split(r"\. ", t):
            toks = _tokens(s)[:max_words]
            if len(toks) >= min_words:
                out.append(toks)
    return out


def build_real_fake(texts: Sequence[str], *, n_fakes: int = 3, seed: int = 0, dev_fraction: float = 0.1,
                    max_examples: int = 30_000, min_words: int = 8, max_words: int = 30, n_folds: int = 5,
                    generator: NGramGenerator | None = None, max_tries: int = 20) -> pd.DataFrame:
    """The real-vs-fake multiple-choice task: one row per example with ``prefix``, ``endings`` (a list of
    ``n_fakes + 1`` strings), ``label`` (the real ending's index), ``real``, ``split`` (train/dev),
    ``n_words`` and ``fold``.

    The generator [D]: an n-gram model that has seen a sentence can simply recite its real ending (most
    trigram contexts of a small corpus occur once). So the sentences are split into ``n_folds`` folds
    and a sentence's fakes come from a generator fitted on the *other* folds (cross-fitting: like
    GPT-2, the generator never saw the sentence it continues). It is fitted on what the task shows,
    prefix + real ending (the sentence without its last word), so sentence-final words do not leak
    into fakes. A fake equal to the real ending or to another fake is drawn again (up to
    ``max_tries`` times); ``df.attrs["generator"]["duplicates"]`` counts those that stayed equal.
    Pass ``generator`` to use one fitted model for every sentence instead (no cross-fitting).

    Raises :class:`SyntheticError` for bad arguments and for a corpus with fewer than
    :data:`MIN_SENTENCES` usable sentences (it says how many it found and how many it needs).
    """
    n_fakes, n_folds, max_tries = int(n_fakes), int(n_folds), int(max_tries)
    if n_fakes < 1:
        raise SyntheticError(f"n_fakes must be >= 1, got {n_fakes}.")
    if not 0 < dev_fraction < 1:
        raise SyntheticError(f"dev_fraction must be in (0, 1), got {dev_fraction}.")
    if generator is None and n_folds < 2:
        raise SyntheticError(f"n_folds must be >= 2 (a sentence's fakes come from the other folds), got {n_folds}.")
    if isinstance(texts, str):
        raise SyntheticError("texts must be a list of strings, not one string (wrap it: [text]).")
    sents = sentences_for_task(texts, min_words=min_words, max_words=max_words)
    if len(sents) < MIN_SENTENCES:
        raise SyntheticError(
            f"Only {len(sents)} sentences have >= {min_words} words; the real-vs-fake task needs at least "
            f"{MIN_SENTENCES} (better thousands: Chang & Lu use 30,000). Pass more text, or lower min_words.")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(sents))[:max_examples]
    fold_of = np.random.default_rng([seed, 2]).permutation(len(sents)) % n_folds
    shown = [" ".join(s[:-1]) for s in sents]  # prefix + real ending: the text the task shows
    if generator is not None:
        gens = {f: generator for f in range(n_folds)}
    else:
        gens = {f: NGramGenerator().fit([t for t, g in zip(shown, fold_of) if g != f]) for f in range(n_folds)}
    rows, dupes = [], 0
    for i in order:
        toks = sents[i]
        half = len(toks) // 2
        prefix, real = toks[:half], toks[half:-1]
        if not real:
            continue
        gen, real_text, fakes = gens[int(fold_of[i])], " ".join(real), []
        for _ in range(n_fakes):
            for _try in range(max_tries):
                fake = gen.generate(prefix, len(real), rng)
                if fake != real_text and fake not in fakes:
                    break
            else:
                dupes += 1
            fakes.append(fake)
        label = int(rng.integers(0, n_fakes + 1))
        endings = fakes[:label] + [real_text] + fakes[label:]
        rows.append({"prefix": " ".join(prefix), "endings": endings, "label": label, "real": real_text,
                     "n_words": len(real), "fold": int(fold_of[i])})
    df = pd.DataFrame(rows)
    n_dev = max(1, int(round(dev_fraction * len(df))))
    dev = set(np.random.default_rng([seed, 1]).permutation(len(df))[:n_dev].tolist())
    df["split"] = ["dev" if k in dev else "train" for k in range(len(df))]
    g0 = gens[0]
    df.attrs["generator"] = {"kind": "interpolated word n-gram", "order": g0.order, "lambdas": list(g0.lambdas),
                             "top_p": g0.top_p, "tokens": int(sum(g.n_tokens for g in gens.values()) / len(gens)),
                             "cross_fitted": generator is None, "n_folds": n_folds if generator is None else 1,
                             "sentences": len(sents), "duplicates": dupes, "seed": seed}
    return df


def real_fake_task(texts: Sequence[str], *, name: str = "real-vs-fake", **kw):
    """:func:`build_real_fake` as a multiple-choice :class:`~tutorfinetune.data.Task` (context = the
    prefix, choices = the endings, eval set ``"dev"``); keyword arguments go to :func:`build_real_fake`.
    The frame keeps ``real`` and ``fold``; ``task.meta["generator"]`` describes the generator."""
    df = build_real_fake(texts, **kw)
    gen = dict(df.attrs.get("generator", {}))
    frame = df.rename(columns={"prefix": "text", "endings": "choices"})
    frame.attrs = {}
    return multiple_choice_task(frame, name, domain="synthetic",
                                meta={"generator": gen, "builder": {k: v for k, v in kw.items() if k != "generator"}})


_END_PUNCT = re.compile(r"[.!?]$")


def ending_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Surface statistics of real vs fake endings: does anything but meaning give the real one away?

    ``df`` is :func:`build_real_fake`'s frame (or a task frame with ``choices``/``text``). Rows: real,
    fake; columns: endings, mean words, mean characters, share with a sentence-final mark (. ! ?) on
    some word, share of words never seen in any prefix, distinct-word ratio."""
    endings = df["endings"] if "endings" in df.columns else df["choices"]
    prefixes = df["prefix"] if "prefix" in df.columns else df["text"]
    seen = {w.lower() for p in prefixes for w in p.split()}
    parts: dict[str, list[str]] = {"real": [], "fake": []}
    for es, lab in zip(endings, df["label"]):
        for k, e in enumerate(es):
            parts["real" if k == lab else "fake"].append(e)
    rows = []
    for kind, es in parts.items():
        words = [e.split() for e in es]
        flat = [w for ws in words for w in ws]
        rows.append({"ending": kind, "endings": len(es), "mean words": float(np.mean([len(w) for w in words])),
                     "mean characters": float(np.mean([len(e) for e in es])),
                     "has . ! ? on a word": float(np.mean([any(_END_PUNCT.search(w) for w in ws) for ws in words])),
                     "words unseen in prefixes": float(np.mean([w.lower() not in seen for w in flat])) if flat else 0.0,
                     "distinct words / words": len(set(flat)) / max(1, len(flat))})
    return pd.DataFrame(rows).set_index("ending")


def ngram_baseline(df: pd.DataFrame, texts: Sequence[str] | None = None, **fit_kw) -> float:
    """Accuracy of picking the ending with the highest mean log-probability under an n-gram model.

    With ``texts`` the model is fitted on them; otherwise on the *train* rows' prefix + real ending
    (so dev sentences are unseen) and scored on the dev rows. A low value means the fakes are
    plausible to the kind of model that wrote them; chance is 1 / choices."""
    endings_col = "endings" if "endings" in df.columns else "choices"
    prefix_col = "prefix" if "prefix" in df.columns else "text"
    train, dev = df[df["split"] == "train"], df[df["split"] == "dev"]
    if dev.empty:
        raise SyntheticError("ngram_baseline needs dev rows (split == 'dev').")
    if texts is None:
        texts = [p + " " + es[lab] for p, es, lab in zip(train[prefix_col], train[endings_col], train["label"])]
    gen = NGramGenerator(**fit_kw).fit(texts)
    hits = [int(np.argmax([gen.log_prob(p, e) for e in es])) == lab
            for p, es, lab in zip(dev[prefix_col], dev[endings_col], dev["label"])]
    return float(np.mean(hits))
