"""Install-time promises: environment.yml agrees with pyproject.toml; the wheel ships the data."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]


def test_environment_yml_agrees_with_pyproject():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    conda_py = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert conda_py.replace("python", "") == requires
    assert sorted(p for p in pip if not p.startswith("-e")) == sorted(deps)
    assert "-e ." in pip


def test_adapters_pin_is_the_one_adapters_forces():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "transformers~=4.57.6" in deps
    assert not [d for d in deps if "==" in d], "no exact pins in install requirements"


@pytest.mark.slow
def test_wheel_installs_and_loads_bundled_task(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(REPO)], check=True)
    (wheel,) = wheels.glob("tutorfinetune-*.whl")
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True)
    code = ("import tutorfinetune as t, pathlib; d = t.data.data_dir(); "
            "assert pathlib.Path(t.__file__).is_relative_to(pathlib.Path(r'%s')), t.__file__; "
            "assert pathlib.Path(d).is_relative_to(pathlib.Path(r'%s')), d; "
            "task = t.load_task('reviews'); print(len(task.frame), len(task.unlabelled))") % (target, target)
    env = dict(os.environ, PYTHONPATH=str(target))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    n_labelled, n_unlabelled = map(int, out.stdout.split())
    assert n_labelled > 2000 and n_unlabelled > 1000
