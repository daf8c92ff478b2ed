#!/usr/bin/env python3
"""Set up a local environment and run the study or the tests: the README's two commands.

    python3 run.py study      # every notebook in full mode (tutorfinetune notebooks), outputs/, the summary
    python3 run.py test       # lint + the whole test suite (what CI runs), one test process per core
    python3 run.py book       # the course site (Jupyter Book) from notebooks executed in ci mode, checked in Chromium
    python3 run.py book --from DIR   # ... from notebooks already executed (CI: the test run's, $TUTORFINETUNE_EXECUTED)

Both create `.venv/` on first use and install what they need into it, so a fresh clone needs only
Python >= 3.10 and pip. A torch that already works in the base interpreter (Colab, a conda env) is
reused through `--system-site-packages` and never reinstalled; otherwise `torch==2.13.0` is
installed (a CPU build on this project's machines). Only the standard library is used here.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
TORCH_FALLBACK = "torch==2.13.0"


def _venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _base_has_torch() -> bool:
    probe = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True)
    return probe.returncode == 0


def _run(cmd: list[str], **kw) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kw)


def ensure_env() -> Path:
    """Create .venv (once) and install the package with its dev extras (again when pyproject changes)."""
    if sys.version_info < (3, 10):
        sys.exit(f"tutorfinetune needs Python >= 3.10; this is {sys.version.split()[0]}.")
    py = _venv_python()
    if not py.exists():
        reuse = _base_has_torch()
        print(f"Creating {VENV} (reusing the base interpreter's torch: {reuse})", flush=True)
        venv.EnvBuilder(with_pip=True, system_site_packages=reuse).create(VENV)
    stamp = VENV / ".tutorfinetune-installed"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == want:
        return py
    pip = [py, "-m", "pip", "--disable-pip-version-check", "-q"]
    if subprocess.run([str(py), "-c", "import torch"], capture_output=True).returncode != 0:
        _run(pip + ["install", TORCH_FALLBACK])
    _run(pip + ["install", "-e", f"{ROOT}[dev]"])
    stamp.write_text(want)
    return py


def _parallel(rest: list[str]) -> list[str]:
    """pytest-xdist options: one test process per core (at most 4; each runs torch on one thread, see
    tests/conftest.py), tests of one ``xdist_group`` in the same process. None when the caller chose
    (``-n``, ``-p no:xdist``) or there is one core. Small models use two one-thread processes better
    than one two-thread process (benchmarks/bench_ray.py measures the same for runs)."""
    cores = os.cpu_count() or 1
    if cores < 2 or any(a == "-n" or a.startswith(("-n", "--numprocesses")) or "xdist" in a for a in rest):
        return []
    return ["-n", str(min(cores, 4)), "--dist", "loadgroup"]


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"study", "test", "setup", "book"}:
        print(__doc__)
        return 2
    cmd, rest = argv[0], argv[1:]
    py = ensure_env()
    env = dict(os.environ, TUTORFINETUNE_PROGRESS=os.environ.get("TUTORFINETUNE_PROGRESS", "text"))
    if cmd == "setup":
        return 0
    if cmd == "test":
        _run([py, "-m", "ruff", "check", "tutorfinetune", "tests", "benchmarks", "notebooks", "book", "run.py"], cwd=ROOT)
        return subprocess.run([str(py), "-m", "pytest", *_parallel(rest), *rest], cwd=ROOT, env=env).returncode
    if cmd == "book":
        return _book(py, rest, env)
    return subprocess.run([str(py), "-m", "tutorfinetune", "notebooks", *rest], cwd=ROOT, env=env).returncode


def _book(py: Path, rest: list[str], env: dict) -> int:
    """Build the course site. Without --from, execute every notebook in ci mode first (outputs/book_run);
    --check (default here) opens every page in headless Chromium; --no-check skips that."""
    args = list(rest)
    check = "--no-check" not in args
    args = [a for a in args if a not in ("--check", "--no-check")]
    if "--from" not in args:
        run_dir = ROOT / "outputs" / "book_run"
        code = subprocess.run([str(py), "-m", "tutorfinetune", "notebooks", "--mode", "ci", "--out", str(run_dir)],
                              cwd=ROOT, env=env).returncode
        if code != 0:
            print(f"Some notebooks failed in ci mode (see {run_dir}); the site is not built.", file=sys.stderr)
            return code
        args += ["--from", str(run_dir / "notebooks")]
    return subprocess.run([str(py), str(ROOT / "book" / "build.py"), *args, *(["--check"] if check else [])],
                          cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
