"""Build notebooks from plain Python lists of cells (stored without outputs).

The notebooks under notebooks/ are the product; their sources here make diffs readable. Run
``python notebooks/_build/build.py`` after editing a source; the test suite checks that the stored
notebooks match what the sources build.
"""

from __future__ import annotations

import json
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

#: the project's repository, read from pyproject.toml ([project.urls] Repository): the one place it is set
REPO_URL = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]["urls"][
    "Repository"].rstrip("/")
_SLUG = REPO_URL.removeprefix("https://github.com/")

COLAB = ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
         f"(https://colab.research.google.com/github/{_SLUG}/blob/main/notebooks/{{name}})")

INSTALL = f'''# Set-up. With tutorfinetune installed this only prints versions and the device. In Colab or a fresh
# kernel it installs the package from GitHub first, never touching the torch, ipykernel and ipython this
# kernel already has (pip gets them pinned), and says in plain words if the runtime must restart.
import importlib as _il
import importlib.metadata as _md
import importlib.util as _iu
import subprocess as _sp
import sys as _sys
import tempfile as _tf

TUTORFINETUNE_GIT = "git+{REPO_URL}"
if _iu.find_spec("tutorfinetune") is None:
    def _version(name):
        try:
            return _md.version(name)
        except _md.PackageNotFoundError:
            return None

    _before = {{n: _version(n) for n in ("torch", "ipykernel", "ipython", "transformers", "tokenizers")}}
    with _tf.NamedTemporaryFile("w", suffix=".txt", delete=False) as _pins:
        _pins.write("".join(f"{{n}}=={{v}}\\n" for n, v in _before.items() if v and n in ("torch", "ipykernel", "ipython")))
    print(f"tutorfinetune is not installed: installing it from {{TUTORFINETUNE_GIT}} (a minute or two) ...")
    _sp.check_call([_sys.executable, "-m", "pip", "install", "-q", "-c", _pins.name, f"tutorfinetune @ {{TUTORFINETUNE_GIT}}"])
    _replaced = [f"{{n}} {{_before[n]}} -> {{_version(n)}}" for n in ("transformers", "tokenizers")
                 if _before[n] and _version(n) != _before[n]]
    if _replaced and any(n.split()[0] in _sys.modules for n in _replaced):
        print("RESTART NEEDED: pip replaced " + ", ".join(_replaced) + " (adapters needs transformers 4.57), and the old "
              "version is already loaded in this kernel. In Colab: Runtime > Restart session, then run this notebook "
              "again from the top. The install is kept; it will not run again.")
    elif _replaced:
        print("pip replaced " + ", ".join(_replaced) + "; it was not loaded yet, so no restart is needed.")
    _il.invalidate_caches()
import tutorfinetune  # noqa: E402

tutorfinetune.notebook.banner()'''


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
