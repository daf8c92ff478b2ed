"""How data/reviews was assembled from the written pools (kept for the record; see data/README.md).

Input: a folder of pools written for this project, one pair per domain
(``<domain>_labelled.jsonl`` with text/label, ``<domain>_unlabelled.jsonl`` with text), and per
language ``translations_<lang>.jsonl`` (id/text) and ``unlabelled_<lang>.jsonl`` (text).

Steps: normalise whitespace; drop exact duplicates and near-duplicates (word-set Jaccard > 0.6)
across every pool, labelled ones first; split each source domain's labelled pool per label with a
fixed seed into train / dev / test; take the whole labelled pool of each held-out domain as test;
pick a label-balanced subset of the source test for translation; write labelled.jsonl and
unlabelled.jsonl.

    python data/reviews/assemble.py POOL_DIR [--pick-translations]
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

SOURCE = ["movies", "books", "restaurants", "electronics"]
TARGET = ["hotels", "games"]
LANGS = ["de", "es", "fr"]
SPLIT = {"train": 150, "dev": 30, "test": 60}  # per label and source domain
TRANSLATE_PER_LABEL = 30  # per source domain
SEED = 20261122
HERE = Path(__file__).resolve().parent


def words(t: str) -> set[str]:
    return set(re.findall(r"[a-z0-9']+", t.lower()))


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / max(1, len(a | b))


def read(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


class Dedup:
    def __init__(self, threshold: float = 0.6) -> None:
        self.threshold = threshold
        self.kept: list[set[str]] = []
        self.exact: set[str] = set()
        self.index: dict[str, list[int]] = {}

    def add(self, text: str) -> bool:
        key = " ".join(text.lower().split())
        if key in self.exact:
            return False
        ws = words(text)
        cands = {i for w in ws for i in self.index.get(w, [])}
        if any(jaccard(ws, self.kept[i]) > self.threshold for i in cands):
            return False
        self.exact.add(key)
        self.kept.append(ws)
        for w in ws:
            self.index.setdefault(w, []).append(len(self.kept) - 1)
        return True


def main(pool: Path, pick_translations: bool) -> None:
    rng = random.Random(SEED)
    dedup = Dedup()
    labelled, unlabelled, dropped = [], [], 0
    for domain in SOURCE + TARGET:
        items = [{"text": " ".join(r["text"].split()), "label": r["label"]} for r in read(pool / f"{domain}_labelled.jsonl")]
        keep = [r for r in items if dedup.add(r["text"])]
        dropped += len(items) - len(keep)
        by_label = {lab: [r for r in keep if r["label"] == lab] for lab in ("negative", "positive")}
        for lab, rows in by_label.items():
            rng.shuffle(rows)
            if domain in SOURCE:
                n_test, n_dev = SPLIT["test"], SPLIT["dev"]
                n_train = min(SPLIT["train"], len(rows) - n_test - n_dev)
                splits = ["test"] * n_test + ["dev"] * n_dev + ["train"] * n_train
            else:
                splits = ["test"] * len(rows)
            for r, s in zip(rows, splits):
                r.update(split=s, domain=domain, lang="en")
        # balance: every split of a domain keeps as many positives as negatives
        for s in ("train", "dev", "test"):
            groups = [[r for r in by_label[lab] if r.get("split") == s] for lab in ("negative", "positive")]
            n = min(len(g) for g in groups)
            for g in groups:
                for r in g[n:]:
                    r["split"] = None
        rows = sorted((r for lab in by_label.values() for r in lab if r.get("split")), key=lambda r: (
            ["train", "dev", "test"].index(r["split"]), rng.random()))
        for i, r in enumerate(rows, 1):
            r["id"] = f"{domain[:3]}-{i:04d}"
            labelled.append(r)
    for domain in SOURCE + TARGET:
        items = read(pool / f"{domain}_unlabelled.jsonl")
        for i, r in enumerate((x for x in items if dedup.add(" ".join(x["text"].split()))), 1):
            unlabelled.append({"id": f"{domain[:3]}-u{i:04d}", "text": " ".join(r["text"].split()),
                               "domain": domain, "lang": "en"})
    if pick_translations:
        pick = []
        for domain in SOURCE:
            for lab in ("negative", "positive"):
                test = [r for r in labelled if r["domain"] == domain and r["split"] == "test" and r["label"] == lab]
                pick += rng.sample(test, TRANSLATE_PER_LABEL)
        with open(pool / "to_translate.jsonl", "w", encoding="utf-8") as f:
            for r in sorted(pick, key=lambda r: r["id"]):
                f.write(json.dumps({"id": r["id"], "text": r["text"]}, ensure_ascii=False) + "\n")
        print(f"wrote {len(pick)} items to translate")
    en_by_id = {r["id"]: r for r in labelled}
    for lang in LANGS:
        tr = pool / f"translations_{lang}.jsonl"
        if tr.exists():
            for r in read(tr):
                src = en_by_id[r["id"]]
                labelled.append({"text": " ".join(r["text"].split()), "label": src["label"], "split": "test",
                                 "domain": src["domain"], "lang": lang, "id": r["id"]})
        un = pool / f"unlabelled_{lang}.jsonl"
        if un.exists():
            for i, r in enumerate(read(un), 1):
                if dedup.add(r["text"]):
                    unlabelled.append({"id": f"{lang}-u{i:04d}", "text": " ".join(r["text"].split()),
                                       "domain": "mixed", "lang": lang})
    cols = ["id", "split", "domain", "lang", "label", "text"]
    with open(HERE / "labelled.jsonl", "w", encoding="utf-8") as f:
        for r in labelled:
            f.write(json.dumps({k: r[k] for k in cols}, ensure_ascii=False) + "\n")
    with open(HERE / "unlabelled.jsonl", "w", encoding="utf-8") as f:
        for r in unlabelled:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"labelled {len(labelled)}, unlabelled {len(unlabelled)}, near-duplicates dropped {dropped}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), "--pick-translations" in sys.argv)
