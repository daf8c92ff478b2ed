"""Write notebooks/*.ipynb from the sources in this folder (run: python notebooks/_build/build.py)."""

import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from nbtools import notebook, write  # noqa: E402

SOURCES = sorted(p.stem for p in HERE.glob("nb[0-9]*.py"))


def build_all(check: bool = False) -> list[str]:
    stale = []
    for name in SOURCES:
        mod = importlib.import_module(name)
        target = HERE.parent / mod.NAME
        if check:
            import json

            want = notebook(mod.CELLS)
            have = json.loads(target.read_text()) if target.exists() else None
            if have != want:
                stale.append(mod.NAME)
        else:
            write(target, mod.CELLS)
    return stale


if __name__ == "__main__":
    stale = build_all(check="--check" in sys.argv)
    if stale:
        print("stale notebooks (run python notebooks/_build/build.py):", stale)
        sys.exit(1)
