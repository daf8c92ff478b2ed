"""How data/reviews was assembled from the written pools (kept for the record; see data/README.md).

Input: a folder of pools written for this project, one pair per domain
(``<domain>_labelled.jsonl`` with text/label, ``<domain>_unlabelled.jsonl`` with text), and per
language ``translations_<lang>.jsonl`` (id/text) and ``unlabelled_<lang>.jsonl`` (text).

Steps: normalise whitespace; drop exact duplicates and near-duplicates (word-set Jaccard > 0.6)
across every pool, labelled ones first; split each source domain's labelled pool per label with a
fixed seed into train / dev / test; take the whole labelled pool of each held-out domain as test;
pick a label-balanced subset of the source test for translation; write labelled.jsonl and
unlabelled.jsonl.

``--append`` keeps the bundled labelled.jsonl/unlabelled.jsonl as they are and adds only what they
lack: a held-out domain or a language whose pool is in POOL_DIR. New text is de-duplicated against
everything already bundled. (The data were assembled in two stages this way: source domains,
hotels, games and German first; health, Spanish and French appended.)

    python data/reviews/assemble.py POOL_DIR [--pick-translations | --append]
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

SOURCE = ["movies", "books", "restaurants", "electronics"]
TARGET = ["hotels", "games", "health"]  # health last: adding it leaves the source splits unchanged
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


def main(pool: Path, pick_translations: bool, append: bool = False) -> None:
    rng = random.Random(SEED)
    dedup = Dedup()
    labelled, unlabelled, dropped = [], [], 0
    have_domains, have_langs = set(), set()
    if append:
        labelled, unlabelled = read(HERE / "labelled.jsonl"), read(HERE / "unlabelled.jsonl")
        for r in labelled + unlabelled:
            dedup.add(r["text"])
        have_domains = {r["domain"] for r in labelled if r["lang"] == "en"}
        have_langs = {r["lang"] for r in labelled + unlabelled} - {"en"}
    target = [d for d in TARGET if d in have_domains or (pool / f"{d}_labelled.jsonl").exists()]
    new_domains = [d for d in SOURCE + target if d not in have_domains]
    for domain in new_domains:
        items = [{"text": " ".join(r["text"].split()), "label": r["label"]} for r in read(pool / f"{domain}_labelled.jsonl")]
        keep = [r for r in items if dedup.add(r["text"])]
        dropped += len(items) - len(keep)
        by_label = {lab: [r for r in keep if r["label"] == lab] for lab in ("negative", "positive")}
        for _lab, rows in by_label.items():
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
    for domain in new_domains:
        items = read(pool / f"{domain}_unlabelled.jsonl")
        kept = [x for x in items if dedup.add(" ".join(x["text"].split()))]
        print(f"{domain}: unlabelled {len(kept)} of {len(items)} kept")
        for i, r in enumerate(kept, 1):
            unlabelled.append({"id": f"{domain[:3]}-u{i:04d}", "text": " ".join(r["text"].split()),
                               "domain": domain, "lang": "en"})
    if pick_translations:
        rng_pick = random.Random(SEED + 1)  # independent of the held-out pools
        pick = []
        for domain in SOURCE:
            for lab in ("negative", "positive"):
                test = [r for r in labelled if r["domain"] == domain and r["split"] == "test" and r["label"] == lab]
                pick += rng_pick.sample(test, TRANSLATE_PER_LABEL)
        with open(pool / "to_translate.jsonl", "w", encoding="utf-8") as f:
            for r in sorted(pick, key=lambda r: r["id"]):
                f.write(json.dumps({"id": r["id"], "text": r["text"]}, ensure_ascii=False) + "\n")
        print(f"wrote {len(pick)} items to translate")
    en_by_id = {r["id"]: r for r in labelled}
    for lang in (lg for lg in LANGS if lg not in have_langs):
        parts = [pool / f"translations_{lang}.jsonl"] if (pool / f"translations_{lang}.jsonl").exists() else \
            sorted(pool.glob(f"translations_{lang}_*.jsonl"))  # written in parts: _a, _b, ...
        if parts:
            for r in (x for part in parts for x in read(part)):
                src = en_by_id[r["id"]]
                labelled.append({"text": " ".join(r["text"].split()), "label": src["label"], "split": "test",
                                 "domain": src["domain"], "lang": lang, "id": r["id"]})
        un = pool / f"unlabelled_{lang}.jsonl"
        if un.exists():
            items = read(un)
            kept = [x for x in items if dedup.add(" ".join(x["text"].split()))]
            print(f"{lang}: unlabelled {len(kept)} of {len(items)} kept")
            for i, r in enumerate(kept, 1):
                unlabelled.append({"id": f"{lang}-u{i:04d}", "text": " ".join(r["text"].split()),
                                   "domain": "mixed", "lang": lang})
    order = ["en", *LANGS]  # English first, then each language; stable, so rows keep their order within
    labelled.sort(key=lambda r: order.index(r["lang"]))
    unlabelled.sort(key=lambda r: order.index(r["lang"]))
    cols = ["id", "split", "domain", "lang", "label", "text"]
    with open(HERE / "labelled.jsonl", "w", encoding="utf-8") as f:
        for r in labelled:
            f.write(json.dumps({k: r[k] for k in cols}, ensure_ascii=False) + "\n")
    with open(HERE / "unlabelled.jsonl", "w", encoding="utf-8") as f:
        for r in unlabelled:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"labelled {len(labelled)}, unlabelled {len(unlabelled)}, near-duplicates dropped {dropped}")
    meta_path = HERE / "task.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["target_domains"] = target
    meta["description"] = (
        f"English review sentiment written for tutorfinetune: {len(SOURCE)} source domains, {len(target)} held-out "
        "domains, translations of the in-distribution test into German, Spanish and French, and unlabelled text "
        "per domain and language.")
    meta_path.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    write_counts(labelled, unlabelled, SOURCE, target)


def counts_table(labelled: list[dict], unlabelled: list[dict], source: list[str], target: list[str]) -> str:
    """Markdown counts per domain/language and split, with the share of positives."""
    def cell(rows: list[dict]) -> str:
        return f"{len(rows)} ({100 * sum(r['label'] == 'positive' for r in rows) / len(rows):.0f}% pos)" if rows else "–"

    lines = ["| domain / language | role | train | dev | test | unlabelled |", "|---|---|---|---|---|---|"]
    keys = [(d, "en", "source") for d in source] + [(d, "en", "held-out") for d in target] + \
        [("all", lg, "translation") for lg in LANGS]
    tot = {"train": [], "dev": [], "test": []}
    for dom, lang, role in keys:
        rows = [r for r in labelled if r["lang"] == lang and (dom == "all" or r["domain"] == dom)]
        unl = [r for r in unlabelled if r["lang"] == lang and (dom == "all" or r["domain"] == dom)]
        by = {s: [r for r in rows if r["split"] == s] for s in tot}
        if lang == "en" and role == "source":
            for s in tot:
                tot[s] += by[s]
        name = dom if lang == "en" else {"de": "German", "es": "Spanish", "fr": "French"}[lang]
        lines.append(f"| {name} | {role} | {cell(by['train'])} | {cell(by['dev'])} | {cell(by['test'])} | {len(unl)} |")
    lines.append(f"| **source total** | | **{cell(tot['train'])}** | **{cell(tot['dev'])}** | **{cell(tot['test'])}** | |")
    lines.append(f"\nLabelled rows in all: {len(labelled)}; unlabelled sentences: {len(unlabelled)}.")
    return "\n".join(lines)


def write_counts(labelled: list[dict], unlabelled: list[dict], source: list[str], target: list[str]) -> None:
    """Rewrite the counts section of data/README.md between its markers."""
    card = HERE.parent / "README.md"
    start, end = "<!-- counts:start -->", "<!-- counts:end -->"
    text = card.read_text(encoding="utf-8")
    if start not in text or end not in text:
        print(f"{card}: no counts markers; table not written")
        return
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    card.write_text(f"{head}{start}\n{counts_table(labelled, unlabelled, source, target)}\n{end}{tail}", encoding="utf-8")
    print(f"counts written to {card}")


if __name__ == "__main__":
    if len(sys.argv) < 2 or ("--pick-translations" in sys.argv and "--append" in sys.argv):
        sys.exit(__doc__)
    main(Path(sys.argv[1]), "--pick-translations" in sys.argv, "--append" in sys.argv)
