"""Build notebooks from plain Python lists of cells (stored without outputs).

The notebooks under notebooks/ are the product; their sources here make diffs readable. Run
``python notebooks/_build/build.py`` after editing a source; the test suite checks that the stored
notebooks match what the sources build.
"""

from __future__ import annotations

import json
from pathlib import Path

COLAB = ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
         "(https://colab.research.google.com/github/tutorfinetune/tutorfinetune/blob/main/notebooks/{name})")

INSTALL = '''# Set-up: installs tutorfinetune only when it is missing (Colab, a fresh kernel); never reinstalls
# ipykernel or torch. If pip replaces Colab's transformers (adapters pins transformers~=4.57.6),
# restart the runtime once (Runtime > Restart session) and run the notebook again.
try:
    import tutorfinetune  # noqa: F401
except ImportError:
    %pip install -q "tutorfinetune @ git+https://github.com/tutorfinetune/tutorfinetune"
    import tutorfinetune  # noqa: F401'''


def md(text: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": text.strip("\n")}


def code(text: str, tags: list[str] | None = None) -> dict:
    meta = {"tags": tags} if tags else {}
    return {"cell_type": "code", "execution_count": None, "metadata": meta, "outputs": [],
            "source": text.strip("\n")}


def notebook(cells: list[dict]) -> dict:
    out = []
    for i, c in enumerate(cells):
        c = dict(c)
        c["id"] = f"c{i:02d}"
        src = c["source"]
        lines = src.split("\n")
        c["source"] = [ln + "\n" for ln in lines[:-1]] + [lines[-1]]
        out.append(c)
    return {
        "cells": out,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def write(path: Path, cells: list[dict]) -> None:
    path.write_text(json.dumps(notebook(cells), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
