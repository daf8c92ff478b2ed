"""Build notebooks/*.ipynb from their sources in notebooks/src/ (stored without outputs).

The notebooks are the product; their sources are plain Python a linter can read. Each source
``notebooks/src/<stem>.py`` is a jupytext "percent" file and builds ``notebooks/<stem>.ipynb``:

* ``# %%`` starts a code cell; its body is ordinary Python (ruff checks it, see pyproject.toml).
* ``# %% [markdown]`` starts a markdown cell; every line is a comment (``# text``, ``#`` for a blank).
* ``# %% tags=["parameters"]`` marks the papermill parameters cell (tags are the only cell metadata
  a source may carry; anything else is an error, so a notebook holds exactly what its source says).

Two things every notebook shares are generated here, from one place, never written in a source:

* ``{{colab}}`` in a markdown cell becomes the notebook's "Open in Colab" badge (``COLAB``);
* a code cell whose whole body is ``# {{install}}`` becomes the set-up cell (``INSTALL``), which
  installs the package from git when it is not importable and prints versions otherwise.

Both use ``[project.urls] Repository`` from pyproject.toml. Each source has exactly one of each.
Cell ids are ``c00``, ``c01``, ... in order; notebook metadata is fixed (a Python 3 kernel).

Exercises: inside a code cell, the lines between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` are the
instructors' solution. The learner's notebook gets them removed (inside a function: replaced by
``raise NotImplementedError``); ``python notebooks/build.py --solutions DIR`` writes the instructors' variant
(solutions kept, markers removed) to ``DIR``. ``tests/test_exercises.py`` runs every solution against its check.

Run ``python notebooks/build.py`` after editing a source; ``python notebooks/build.py --check``
(run by tests/test_notebooks.py) fails when a stored notebook differs from what its source builds,
or when a notebook has no source. Needs ``jupytext`` (in the ``dev`` extra).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

NOTEBOOKS = Path(__file__).resolve().parent
SOURCES = NOTEBOOKS / "src"
COLAB_MARK = "{{colab}}"
INSTALL_MARK = "# {{install}}"
BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = 'raise NotImplementedError("Exercise: complete this function, then run the check below.")'

#: the project's repository, read from pyproject.toml ([project.urls] Repository): the one place it is set
REPO_URL = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["urls"][
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


def split_solutions(text: str, solutions: bool, where: str = "") -> str:
    """A code cell for learners (``solutions=False``): every ``### BEGIN SOLUTION`` ... ``### END SOLUTION``
    region is removed, and inside a function (an indented region) replaced by ``raise NotImplementedError``.
    For instructors (``solutions=True``): the region is kept, only the marker lines go."""
    out, inside, indent = [], False, ""
    for line in text.split("\n"):
        mark = line.strip()
        if mark == BEGIN_SOLUTION:
            if inside:
                raise ValueError(f"{where}: {BEGIN_SOLUTION} inside a solution region")
            inside, indent = True, line[: len(line) - len(line.lstrip())]
            if indent and not solutions:
                out.append(indent + STUB)
            continue
        if mark == END_SOLUTION:
            if not inside:
                raise ValueError(f"{where}: {END_SOLUTION} without {BEGIN_SOLUTION}")
            inside = False
            continue
        if not inside or solutions:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: {BEGIN_SOLUTION} without {END_SOLUTION}")
    return "\n".join(out)


def md(text: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": text.strip("\n")}


def code(text: str, tags: list[str] | None = None) -> dict:
    meta = {"tags": tags} if tags else {}
    return {"cell_type": "code", "execution_count": None, "metadata": meta, "outputs": [],
            "source": text.strip("\n")}


def read_source(path: Path, solutions: bool = False) -> list[dict]:
    """The cells of one percent-format source, with the Colab badge and the install cell filled in, and the
    exercises' solutions stripped (or, with ``solutions``, kept: the instructors' variant)."""
    import jupytext

    name = path.stem + ".ipynb"
    parsed = jupytext.reads(path.read_text(encoding="utf-8"), fmt="py:percent")
    cells, colabs, installs = [], 0, 0
    for i, cell in enumerate(parsed.cells):
        where = f"{path.name}, cell {i}"
        extra = set(cell.metadata) - {"tags"}
        if extra:
            raise ValueError(f"{where}: only tags may be set on a cell, found {sorted(extra)}")
        text = cell.source
        if cell.cell_type == "markdown":
            colabs += text.count(COLAB_MARK)
            cells.append(md(text.replace(COLAB_MARK, COLAB.format(name=name))))
        elif cell.cell_type == "code":
            if text.strip() == INSTALL_MARK:
                installs += 1
                text = INSTALL
            elif "{{install}}" in text:
                raise ValueError(f"{where}: the install placeholder must be a cell of its own: {INSTALL_MARK!r}")
            text = split_solutions(text, solutions, where)
            cells.append(code(text, tags=cell.metadata.get("tags")))
        else:
            raise ValueError(f"{where}: unsupported cell type {cell.cell_type!r}")
    if colabs != 1 or installs != 1:
        raise ValueError(f"{path.name}: needs exactly one {COLAB_MARK} (found {colabs}) and one "
                         f"{INSTALL_MARK!r} cell (found {installs})")
    return cells


def notebook(cells: list[dict]) -> dict:
    out = []
    for i, c in enumerate(cells):
        c = dict(c)
        c["id"] = f"c{i:02d}"
        lines = c["source"].split("\n")
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


def render(cells: list[dict]) -> str:
    return json.dumps(notebook(cells), indent=1, ensure_ascii=False) + "\n"


def build_all(check: bool = False) -> list[str]:
    """Write every notebook from its source; with ``check``, write nothing and return the stale ones."""
    stale = []
    sources = sorted(SOURCES.glob("[0-9]*.py"))
    for src in sources:
        target = NOTEBOOKS / (src.stem + ".ipynb")
        want = render(read_source(src))
        if check:
            if not target.exists() or json.loads(target.read_text(encoding="utf-8")) != json.loads(want):
                stale.append(target.name)
        else:
            target.write_text(want, encoding="utf-8")
    built = {s.stem for s in sources}
    stale += [p.name + " (no source in notebooks/src/)" for p in sorted(NOTEBOOKS.glob("[0-9]*.ipynb"))
              if p.stem not in built]
    return stale


def build_solutions(folder: Path) -> list[Path]:
    """The instructors' variant of every notebook (solutions in) written to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for src in sorted(SOURCES.glob("[0-9]*.py")):
        target = folder / (src.stem + ".ipynb")
        target.write_text(render(read_source(src, solutions=True)), encoding="utf-8")
        out.append(target)
    return out


if __name__ == "__main__":
    if "--solutions" in sys.argv:  # python notebooks/build.py --solutions DIR
        i = sys.argv.index("--solutions")
        if i + 1 >= len(sys.argv):
            sys.exit("usage: python notebooks/build.py --solutions DIR")
        written = build_solutions(Path(sys.argv[i + 1]))
        print(f"{len(written)} notebooks with solutions in {sys.argv[i + 1]}")
        sys.exit(0)
    stale = build_all(check="--check" in sys.argv)
    if stale:
        print("stale notebooks (edit notebooks/src/, then run python notebooks/build.py):", stale)
        sys.exit(1)
