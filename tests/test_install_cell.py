"""Every notebook opens with the same install cell: it does nothing but print versions when the package is
importable, and otherwise installs from the project's one git URL without touching torch/ipykernel/ipython."""

import json
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (REPO / "notebooks").glob("*.ipynb") if not p.name.startswith(("_", ".")))
URL = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["urls"]["Repository"]


def install_cell(path: Path) -> str:
    nb = json.loads(path.read_text(encoding="utf-8"))
    first = next(c for c in nb["cells"] if c["cell_type"] == "code")
    return "".join(first["source"])


def test_every_notebook_opens_with_the_same_install_cell_and_url():
    cells = {p.name: install_cell(p) for p in NOTEBOOKS}
    assert len(set(cells.values())) == 1, "install cells differ: rebuild the notebooks"
    src = next(iter(cells.values()))
    assert f'TUTORFINETUNE_GIT = "git+{URL}"' in src
    assert "%pip" not in src and "!pip" not in src  # plain Python: it runs the same in Colab, Jupyter, papermill
    slug = URL.removeprefix("https://github.com/")
    for p in NOTEBOOKS:
        assert f"colab.research.google.com/github/{slug}/blob/main/notebooks/{p.name}" in p.read_text()
    assert URL in (REPO / "README.md").read_text()


def test_install_cell_does_nothing_when_the_package_is_importable(monkeypatch, capsys):
    real = {"check_call": subprocess.check_call, "run": subprocess.run}

    def guard(name):
        def call(cmd, *a, **k):
            if "pip" in " ".join(map(str, cmd if isinstance(cmd, (list, tuple)) else [cmd])):
                raise AssertionError(f"the install cell ran pip although tutorfinetune is importable: {cmd}")
            return real[name](cmd, *a, **k)
        return call

    monkeypatch.setattr(subprocess, "check_call", guard("check_call"))
    monkeypatch.setattr(subprocess, "run", guard("run"))
    exec(compile(install_cell(NOTEBOOKS[0]), "install-cell", "exec"), {"__name__": "__main__"})
    out = capsys.readouterr().out
    assert "tutorfinetune 0." in out and "torch" in out and ("Device:" in out or "GPU found" in out)
    assert "installing" not in out


def test_install_cell_installs_pinned_and_says_when_to_restart(monkeypatch, capsys):
    import importlib.metadata as md
    import importlib.util as iu

    real_find, real_version = iu.find_spec, md.version
    calls = []
    state = {"installed": False}

    def find_spec(name, *a, **k):
        return None if name == "tutorfinetune" and not state["installed"] else real_find(name, *a, **k)

    def version(name):
        if name == "transformers":  # Colab's copy before, the pinned one after
            return "4.57.6" if state["installed"] else "4.99.0"
        return real_version(name)

    def check_call(cmd, *a, **k):
        calls.append(cmd)
        pins = Path(cmd[cmd.index("-c") + 1]).read_text()
        calls.append(pins)
        state["installed"] = True
        return 0

    monkeypatch.setattr(iu, "find_spec", find_spec)
    monkeypatch.setattr(md, "version", version)
    monkeypatch.setattr(subprocess, "check_call", check_call)
    assert "transformers" in sys.modules  # as in a kernel that imported it before the install
    exec(compile(install_cell(NOTEBOOKS[0]), "install-cell", "exec"), {"__name__": "__main__"})
    cmd, pins = calls
    assert cmd[:4] == [sys.executable, "-m", "pip", "install"] and cmd[-1] == f"tutorfinetune @ git+{URL}"
    import torch

    assert f"torch=={real_version('torch')}" in pins and "ipykernel==" in pins and "ipython==" in pins
    assert "transformers" not in pins  # the pin adapters needs may replace it
    out = capsys.readouterr().out
    assert "RESTART NEEDED" in out and "4.99.0 -> 4.57.6" in out and "Runtime > Restart session" in out
    assert torch.__version__  # torch untouched in this process


@pytest.mark.parametrize("path", NOTEBOOKS[:1], ids=lambda p: p.stem)
def test_install_cell_runs_in_a_fresh_interpreter(path):
    out = subprocess.run([sys.executable, "-c", install_cell(path)], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "installing" not in out.stdout and "tutorfinetune" in out.stdout
