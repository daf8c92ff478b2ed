"""Compare two results stores run for run: are the metrics bit-identical?

Used to check that a change which should change no result (a refactor, input validation) indeed
changes none: run the notebooks in ci mode before and after (``tutorfinetune notebooks --mode ci --out
DIR``), then::

    python benchmarks/compare_stores.py BEFORE/runs AFTER/runs

Runs are matched by (study, method, seed, tags, config, n_train) -- not by run id or fingerprint, so a
change to how fingerprints are computed does not hide a run -- and, where several runs share that key,
in the order they started. Every metric of every eval set must be equal to the last bit (floats
compared with ``==``). Prints each difference, each run found on one side only, and a summary line;
exits 1 when anything differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tutorfinetune.results import load_records  # noqa: E402

#: record fields that never identify a run: they change with time, machine and code layout
_IGNORE_CONFIG: set[str] = set()
#: tags that differ between identical runs: a cache folder, and the ids of sparse differences (a random
#: uuid per SparseDiff, so the same diff has a new id in every run)
_IGNORE_TAGS = {"cache", "start_from", "diffs"}


def key(rec: dict) -> str:
    cfg = {k: v for k, v in (rec.get("config") or {}).items() if k not in _IGNORE_CONFIG}
    tags = {k: v for k, v in (rec.get("tags") or {}).items() if k not in _IGNORE_TAGS}
    return json.dumps({"study": rec.get("study"), "method": rec.get("method"), "seed": rec.get("seed"),
                       "task": rec.get("task"), "backbone": rec.get("backbone"), "tags": tags, "config": cfg,
                       "methods": rec.get("methods")}, sort_keys=True, default=str)


def group(store: Path, studies: set[str] | None = None) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for rec in load_records(store):
        if studies and rec.get("study") not in studies:
            continue
        if rec.get("status") == "finished":
            out[key(rec)].append(rec)
    return out


def compare(a: Path, b: Path, studies: set[str] | None = None) -> tuple[int, int, list[str]]:
    """(pairs compared, pairs identical, lines to print)."""
    ga, gb = group(a, studies), group(b, studies)
    lines, compared, identical = [], 0, 0
    for k in sorted(set(ga) | set(gb)):
        ra, rb = ga.get(k, []), gb.get(k, [])
        desc = json.loads(k)
        label = f"{desc['study']} | {desc['method']} | seed {desc['seed']} | {desc['tags']}"
        if len(ra) != len(rb):
            lines.append(f"COUNT {label}: {len(ra)} run(s) in {a}, {len(rb)} in {b}")
        for x, y in zip(ra, rb):
            compared += 1
            mx, my = x.get("metrics") or {}, y.get("metrics") or {}
            diffs = []
            for ev in sorted(set(mx) | set(my)):
                for m in sorted(set(mx.get(ev, {})) | set(my.get(ev, {}))):
                    vx, vy = mx.get(ev, {}).get(m), my.get(ev, {}).get(m)
                    if vx != vy:
                        diffs.append(f"{ev}/{m}: {vx!r} != {vy!r}")
            if not diffs:
                identical += 1
            else:
                lines.append(f"DIFF {label} ({x['run_id']} vs {y['run_id']}): " + "; ".join(diffs))
    return compared, identical, lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--study", action="append", default=[],
                    help="compare only runs of this study (a notebook's name); repeat for several")
    args = ap.parse_args(argv)
    for p in (args.before, args.after):
        if not p.is_dir():
            print(f"{p} is not a results store folder.", file=sys.stderr)
            return 2
    compared, identical, lines = compare(args.before, args.after, set(args.study) or None)
    for line in lines:
        print(line)
    unmatched = sum(line.startswith("COUNT") for line in lines)
    print(f"compared {compared} pairs of finished runs: {identical} identical, {compared - identical} differing; "
          f"{unmatched} configuration(s) with a different number of runs on the two sides")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
