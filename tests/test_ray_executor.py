"""Executors (issue 20): serial and Ray give the same results; the store stays consistent when runs fail,
workers die or two drivers meet; the CLI and the notebook drivers run on Ray. The Ray tests share one
real local cluster (``ray.init(num_cpus=2)``, started once for the module, shut down at its end)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from tutorfinetune import results
from tutorfinetune.cli import main
from tutorfinetune.studies import executors as ex
from tutorfinetune.studies import leaderboard as lb
from tutorfinetune.studies import notebook_sweep, run_notebooks, sweep
from tutorfinetune.studies.executors import (
    ExecutorError,
    RayExecutor,
    SerialExecutor,
    make_executor,
)
from tutorfinetune.studies.runs import StudyError

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.xdist_group("ray")  # under pytest -n, one process holds the module's one cluster
KEY = ["seed", "lr", "eval_set", "metric"]


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="the Ray executor needs ray (pip install -e '.[dev]' installs it)")
    if ray.is_initialized():
        ray.shutdown()
    for attempt in range(3):  # Ray gives its raylet 30 s to start; on 2 busy cores (pytest -n 2) it may need a retry
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            break
        except Exception as e:  # noqa: BLE001 - Ray raises a bare Exception for a node that timed out
            ray.shutdown()
            if attempt == 2 or "timed out" not in str(e):
                raise
    yield ray
    ray.shutdown()


def _values(df: pd.DataFrame, key=KEY) -> pd.DataFrame:
    return df.sort_values(key)[key + ["value"]].reset_index(drop=True)


def _finished(store) -> list[dict]:
    return [r for r in results.load_records(store) if r["status"] == "finished"]


# --------------------------------------------------------------------------------------------
# Without Ray
# --------------------------------------------------------------------------------------------
def test_ray_missing_says_what_to_install(monkeypatch, tmp_path, toy_task, fast_config):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as where it is not installed
    with pytest.raises(ExecutorError, match=r"pip install 'tutorfinetune\[scale\]'"):
        sweep("tiny", toy_task, fast_config, seeds=[0], store=tmp_path, executor="ray")
    assert not list(tmp_path.glob("*.json"))  # refused before anything ran


def test_executor_names_and_options_are_checked():
    assert isinstance(make_executor("serial"), SerialExecutor)
    with pytest.raises(ExecutorError, match="Unknown executor"):
        make_executor("dask")
    with pytest.raises(ExecutorError, match="apply to executor='ray'"):
        make_executor("serial", workers=4)
    assert isinstance(make_executor("serial", workers=0), SerialExecutor)  # 0: the default, as notebooks pass it
    with pytest.raises(ExecutorError, match="threads must be >= 1"):
        SerialExecutor(threads=0)


def test_serial_failures_are_recorded_and_the_others_finish(tmp_path, toy_task, fast_config, capsys):
    """A run that raises inside train() (NaN loss) and one that fails before train() could record it (a
    max_length the backbone cannot read) are both recorded as failed; the sweep goes on and lists them."""
    cfg = fast_config.replace(max_steps=3)
    df = sweep("tiny", toy_task, cfg, seeds=[0], grid={"lr": [1e-3, 1e30], "max_length": [32, 4096]},
               store=tmp_path, executor=SerialExecutor(threads=1))
    out = capsys.readouterr().out
    assert set(zip(df.lr, df.max_length)) == {(1e-3, 32)}
    assert "1 trained now" in out and "3 failed" in out and out.count("FAILED") == 3
    failed = [r for r in results.load_records(tmp_path) if r["status"] == "failed"]
    assert len(failed) == 3 and all(r["error"] and r["fingerprint"] for r in failed)
    assert any("NonFiniteLoss" in r["error"] for r in failed) and any("max_length" in r["error"] for r in failed)
    assert len(df.attrs["failed"]) == 3
    # every run failing is an error of the study, with the first error in the message
    with pytest.raises(StudyError, match="max_length"):
        sweep("tiny", toy_task, cfg.replace(max_length=4096), seeds=[0], store=tmp_path / "b")


def test_claims_keep_a_second_driver_off_and_stale_claims_are_taken_over(tmp_path, toy_task, fast_config):
    store = tmp_path / "runs"
    spec = ex.RunSpec("tiny", toy_task, fast_config.replace(max_steps=1), key="abc", label="x")
    claims = ex.Claims(store)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        claims.dir.mkdir(parents=True)
        claims.path("abc").write_text(json.dumps({"host": os.uname().nodename, "pid": live.pid}))
        out = ex.run_specs([spec], SerialExecutor(), store=store)
        assert out["abc"].status == "busy" and str(live.pid) in out["abc"].error
        assert not _finished(store) and claims.path("abc").is_file()  # not ours: left alone
    finally:
        live.kill()
        live.wait()
    # the other driver is gone: its claim is stale and taken over; ours is released at the end
    out = ex.run_specs([spec, spec], SerialExecutor(), store=store)  # the same run twice in a plan: once
    assert out["abc"].status == "finished" and len(_finished(store)) == 1
    assert not claims.path("abc").exists()


# --------------------------------------------------------------------------------------------
# On a real local Ray cluster
# --------------------------------------------------------------------------------------------
def test_serial_and_ray_give_the_same_metrics(ray_cluster, tmp_path, toy_task, fast_config, capsys):
    """The same sweep serially (1 thread), on Ray with workers writing the store, and on Ray with the
    driver writing what workers send (the mode for clusters without a shared file system)."""
    cfg = fast_config.replace(max_steps=4)
    kw = {"seeds": [0, 1], "grid": {"lr": [1e-3, 3e-3]}, "study": "det"}
    serial = sweep("tiny", toy_task, cfg, store=tmp_path / "serial", executor=SerialExecutor(threads=1), **kw)
    shared = sweep("tiny", toy_task, cfg, store=tmp_path / "shared", executor="ray", workers=2, **kw)
    relay = RayExecutor(workers=2, store_mode="driver")
    assert (relay.workers, relay.threads, relay.relay) == (2, 1, True)
    driver = sweep("tiny", toy_task, cfg, store=tmp_path / "driver", executor=relay, **kw)
    assert len(serial) > 0 and serial.run_id.nunique() == 4
    pd.testing.assert_frame_equal(_values(serial), _values(shared))
    pd.testing.assert_frame_equal(_values(serial), _values(driver))
    for store in ("shared", "driver"):
        recs = results.load_records(tmp_path / store)
        assert len(recs) == 4 and all(r["status"] == "finished" and r["pid"] != os.getpid() for r in recs)
        assert not list((tmp_path / store / ".claims").iterdir())
    assert "ray (local: 2 workers x 1 threads" in capsys.readouterr().out
    # a rerun schedules nothing: every run is in the store
    again = sweep("tiny", toy_task, cfg, store=tmp_path / "shared", executor="ray", workers=2, **kw)
    assert "4 runs (0 trained now, 4 reused" in capsys.readouterr().out
    assert len(results.load_records(tmp_path / "shared")) == 4
    pd.testing.assert_frame_equal(_values(again), _values(shared))


def test_a_failing_run_is_recorded_and_the_others_finish_on_ray(ray_cluster, tmp_path, toy_task, fast_config,
                                                                capsys):
    cfg = fast_config.replace(max_steps=2)
    kw = {"seeds": [0], "grid": {"max_length": [32, 4096]}, "store": tmp_path, "executor": "ray", "workers": 2}
    df = sweep("tiny", toy_task, cfg, **kw)
    out = capsys.readouterr().out
    assert set(df.max_length) == {32} and "1 failed" in out and "FAILED max_length=4096" in out
    failed = [r for r in results.load_records(tmp_path) if r["status"] == "failed"]
    assert len(failed) == 1 and "max_length" in failed[0]["error"] and failed[0]["tags"]["max_length"] == 4096
    sweep("tiny", toy_task, cfg, **kw)  # a rerun tries the failed run again and reuses the finished one
    assert "1 reused" in capsys.readouterr().out and len(_finished(tmp_path)) == 1


def test_a_killed_worker_leaves_a_loadable_store_and_a_rerun_completes(ray_cluster, tmp_path, toy_task, fast_config):
    store = tmp_path / "runs"
    cfg = fast_config.replace(max_steps=150)  # long enough to be killed in the middle
    killed: list[dict] = []

    def kill_seed_1():
        deadline = time.time() + 300
        while time.time() < deadline:
            for f in store.glob("*.json"):
                try:
                    rec = json.loads(f.read_text())
                except (OSError, ValueError):
                    continue
                if rec.get("status") == "running" and rec.get("seed") == 1:
                    os.kill(rec["pid"], signal.SIGKILL)  # a Ray worker process of this test's cluster
                    killed.append(rec)
                    return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_seed_1)
    killer.start()
    df = sweep("tiny", toy_task, cfg, seeds=[0, 1], store=store, executor=RayExecutor(workers=2, retries=0))
    killer.join()
    assert killed, "the run of seed 1 was never seen running"
    assert set(df.seed) == {0}
    (error,) = df.attrs["failed"].values()
    assert "died" in error
    assert len(results.load(store, status=None))  # loadable, the killed run included
    status = {r["run_id"]: r["status"] for r in results.load_records(store)}
    assert status[killed[0]["run_id"]] == "interrupted"
    # the rerun trains only seed 1; one finished record per fingerprint
    df2 = sweep("tiny", toy_task, cfg, seeds=[0, 1], store=store, executor="ray", workers=2)
    assert set(df2.seed) == {0, 1}
    fins = _finished(store)
    assert len(fins) == 2 and len({r["fingerprint"] for r in fins}) == 2
    assert not list((store / ".claims").iterdir())


def test_leaderboard_on_ray_matches_serial(ray_cluster, tmp_path, toy_task):
    chosen = lb.entries(["full fine-tuning", "LT-SFT K=2%"])
    regimes = [lb.Regime("low-data", 32, 3)]
    base = lb.TrainConfig(batch_size=8, max_length=32, warmup=0.0)
    a = lb.run_leaderboard("tiny", toy_task, chosen, regimes, [0], base=base, store=tmp_path / "s",
                           executor=SerialExecutor(threads=1))
    b = lb.run_leaderboard("tiny", toy_task, chosen, regimes, [0], base=base, store=tmp_path / "r", executor="ray",
                           workers=2)
    assert set(a.entry) == set(b.entry) == {"full fine-tuning", "LT-SFT K=2%"}
    key = ["entry", "seed", "eval_set", "metric"]
    pd.testing.assert_frame_equal(_values(a, key), _values(b, key))
    assert len(results.load_records(tmp_path / "r")) == 3  # full + LT-SFT's dense and sparse phases


def test_cli_train_on_ray(ray_cluster, tmp_path, toy_csv, capsys):
    args = ["train", "--backbone", "tiny", "--task", str(toy_csv), "--steps", "2", "--seeds", "0,1", "--lr", "1e-3",
            "--store", str(tmp_path / "runs"), "--max-length", "32", "--executor", "ray", "--workers", "2"]
    assert main(args) == 0
    assert "ray (local: 2 workers" in capsys.readouterr().out
    assert len(_finished(tmp_path / "runs")) == 2


def test_notebook_sweep_and_study_on_ray(ray_cluster, tmp_path):
    """Cells run in parallel on Ray; the driver alone writes the manifest; a failing cell is recorded;
    with store_mode='driver' the executed notebooks and records come back through the driver."""
    nb = tmp_path / "nb.ipynb"
    nb.write_text("{}")

    def execute(notebook, output, params, timeout, kernel):  # pickled by value to the workers
        import json as _json
        import os as _os

        if params["x"] == 2:
            raise ValueError("x must not be 2")
        store = params["store"]
        _os.makedirs(store, exist_ok=True)
        rec = {"run_id": f"run{params['x']}", "status": "finished", "seed": params["x"], "metrics": {}}
        with open(_os.path.join(store, f"run{params['x']}.json"), "w") as f:
            _json.dump(rec, f)
        output.write_text(_json.dumps({"x": params["x"], "threads": _os.environ.get("OMP_NUM_THREADS")}))

    for mode in ("shared", "driver"):
        out = tmp_path / mode
        df = notebook_sweep(nb, {"x": [1, 2, 3]}, out=out, execute=execute, verbose=False,
                            executor=RayExecutor(workers=2, store_mode=mode))
        assert list(df.status) == ["finished", "failed", "finished"] and "x must not be 2" in df.error.iloc[1]
        manifest = json.loads((out / "nb" / "manifest.json").read_text())
        assert sorted(c["status"] for c in manifest["cells"].values()) == ["failed", "finished", "finished"]
        assert sorted(r["seed"] for r in results.load_records(out / "runs")) == [1, 3]
        done = json.loads(Path(df.output.iloc[0]).read_text())
        assert done == {"x": 1, "threads": "1"}
        df2 = notebook_sweep(nb, {"x": [1, 2, 3]}, out=out, execute=execute, verbose=False, executor="ray", workers=2)
        assert list(df2.status) == ["skipped", "failed", "skipped"]
    status = run_notebooks([nb], tmp_path / "study", {"x": 1, "store": str(tmp_path / "study" / "runs")},
                           execute=execute, executor="ray", workers=2, verbose=False)
    assert status["nb.ipynb"]["ok"] and (tmp_path / "study" / "nb.ipynb").is_file()


def test_cli_sweep_runs_a_real_notebook_on_ray(ray_cluster, tmp_path, capsys):
    from test_sweeps_cli import small_notebook

    nb = small_notebook(tmp_path / "grid_nb.ipynb")
    out = tmp_path / "out"
    rc = main(["sweep", str(nb), "-g", "x=1,2", "--out", str(out), "--executor", "ray", "--workers", "2"])
    assert rc == 1  # x == 2 fails in the notebook (recorded), x == 1 finishes
    manifest = json.loads((out / "grid_nb" / "manifest.json").read_text())
    assert sorted(c["status"] for c in manifest["cells"].values()) == ["failed", "finished"]


@pytest.mark.slow
def test_benchmark_smoke(tmp_path):
    """benchmarks/bench_ray.py end to end on the tiny backbone (its own Ray instance in a subprocess)."""
    out = tmp_path / "out.json"
    env = {**os.environ, "TUTORFINETUNE_PROGRESS": "off"}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_ray.py"), "--smoke", "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    blob = json.loads(out.read_text())
    assert blob["ratios"] and all(v > 0 for v in blob["ratios"].values())
    assert blob["overhead"]["startup_seconds"] > 0 and "| contender |" in proc.stdout
