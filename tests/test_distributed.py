"""One run on several processes (``torchrun``/``accelerate launch``, gloo on CPU): the replicas stay identical
for every plug-in family, rank 0 alone writes the store, the run equals a single-process run on the same global
batch within float noise, resume is exact, and the Hugging Face Trainer bridge keeps its guarantees.

The launched processes run ``tests/ddp_worker.py``. Tolerance against one process: dropout is off, so the two
runs compute the same function and differ only in the order of float sums (each rank sums its share, then the
shares are summed). Adam turns such 1e-7 differences in near-zero gradient entries into lr-sized steps, so the
weights are compared between ranks (bit-identical) and the *run* against one process through its per-step loss
and gradient norm (|diff| <= 5e-3 and 1% relative) and its eval metrics (accuracy equal, loss within 5e-3).
A scaling bug (gradients summed instead of averaged) would double the gradient norms; a rank that skipped the
all-reduce would make the replicas differ.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import tutorfinetune as tft
from tutorfinetune.distributed import SINGLE, Dist
from tutorfinetune.errors import TrainingError

WORKER = Path(__file__).with_name("ddp_worker.py")
METHODS = ["full", "graddrop", "fun", "lt-sft-sparse", "adapter"]
pytestmark = pytest.mark.xdist_group("ddp")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(out: Path, *args: str, procs: int = 2) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TUTORFINETUNE_PROGRESS": "off"}
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, str(WORKER), str(out), *args]
    if procs > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs), "--master_addr",
               "127.0.0.1", "--master_port", str(_port()), *cmd[1:]]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("ddp")
    _run(base / "two")
    _run(base / "one", procs=1)
    return base


def _load(folder: Path) -> dict:
    return torch.load(folder, weights_only=False)


# -- unit: the sharding and the checks, in one process ----------------------------------------
def test_shards_partition_the_global_batch():
    idx = np.arange(10, 21)
    shards = [Dist(world_size=3, rank=r).shard(idx) for r in range(3)]
    assert np.array_equal(np.concatenate(shards), idx)
    assert sorted(len(s) for s in shards) == [3, 4, 4]
    assert SINGLE.shard(idx) is idx and not SINGLE.active and SINGLE.is_main


def test_global_batch_must_give_every_rank_a_row():
    with pytest.raises(TrainingError, match="batch_size >= 8"):
        Dist(world_size=4, rank=0).check_batch(6, grad_accum_steps=2)
    Dist(world_size=4, rank=0).check_batch(8, grad_accum_steps=2)


def test_gradient_accumulation_is_the_same_optimisation(tiny, toy_task, fast_config):
    """One process, grad_accum_steps=2: the same global batch in two micro-batches gives the same gradient
    norms and losses (float noise only; dropout off, so both compute the same function)."""
    runs = []
    for acc in (1, 2):
        bb = tiny()
        for m in bb.model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        runs.append(tft.train(bb, toy_task, fast_config.replace(grad_accum_steps=acc, max_steps=4), store=None,
                              verbose=False).history)
    np.testing.assert_allclose(runs[0]["grad_norm"], runs[1]["grad_norm"], rtol=1e-2)  # a scaling bug: x2
    np.testing.assert_allclose(runs[0]["loss"], runs[1]["loss"], atol=1e-3)
    assert "grad_accum_steps" not in fast_config.to_dict()  # its neutral value leaves fingerprints as they were


# -- two processes ------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_replicas_stay_identical(runs, method):
    r0, r1 = _load(runs / "two" / method / "rank0.pt"), _load(runs / "two" / method / "rank1.pt")
    assert r0["world_size"] == r1["world_size"] == 2
    different = [n for n in r0["params"] if not torch.equal(r0["params"][n], r1["params"][n])]
    assert not different, f"{method}: ranks differ in {different[:5]}"
    assert r0["metrics"] == r1["metrics"]  # sharded evaluation, summed: the same numbers on every rank


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_matches_one_process_on_the_same_global_batch(runs, method):
    two, one = _load(runs / "two" / method / "rank0.pt"), _load(runs / "one" / method / "rank0.pt")
    assert one["world_size"] == 1
    np.testing.assert_allclose(two["loss"], one["loss"], atol=5e-3)
    np.testing.assert_allclose(two["grad_norm"], one["grad_norm"], rtol=1e-2)
    for name, m in one["metrics"].items():
        assert two["metrics"][name]["accuracy"] == m["accuracy"]
        assert abs(two["metrics"][name]["loss"] - m["loss"]) <= 5e-3
    moved = max((_load(runs / "one" / method / "rank0.pt")["params"][n] != two["params"][n]).any().item()
                for n in two["params"])
    assert moved  # float noise exists: the comparison above is not of one file with itself


@pytest.mark.slow
def test_only_rank_0_writes_the_store(runs):
    recs = tft.results.load_records(runs / "two" / "store")
    assert len(recs) == len(METHODS)  # one record per run, not one per process
    assert {r["world_size"] for r in recs} == {2}
    assert all(r["status"] == "finished" for r in recs)
    ones = tft.results.load_records(runs / "one" / "store")
    assert {r["world_size"] for r in ones} == {1}
    assert {r["fingerprint"] for r in recs} == {r["fingerprint"] for r in ones}  # the same runs, store reuse works


@pytest.mark.slow
def test_resume_under_two_processes_is_exact_and_another_number_is_refused(tmp_path):
    _run(tmp_path, "--resume")
    resumed = [_load(tmp_path / "resumed" / f"rank{r}.pt")["params"] for r in (0, 1)]
    whole = _load(tmp_path / "uninterrupted" / "rank0.pt")["params"]
    for n in whole:
        assert torch.equal(resumed[0][n], resumed[1][n]) and torch.equal(resumed[0][n], whole[n]), n
    meta = json.loads((tmp_path / "ckpt" / "step-0000004" / "meta.json").read_text())
    assert meta["world_size"] == 2
    # the same run in one process: the checkpoint fits (same fingerprint) but was written by 2 processes
    sys.path.insert(0, str(WORKER.parent))
    import ddp_worker as w

    task = tft.load_task(tmp_path / "rank0" / "toy.csv")
    with pytest.raises(TrainingError, match="written by a run of 2 processes.*--num_processes 2"):
        tft.train(w.backbone(), task, w.config(checkpoint_every=2, select_best=False),
                  ["full", ("graddrop", {"p": 0.5})], store=None, checkpoint_dir=tmp_path / "elsewhere",
                  resume_from=tmp_path / "ckpt" / "step-0000004",
                  verbose=False)


@pytest.mark.slow
def test_trainer_bridge_keeps_replicas_identical_under_its_ddp(tmp_path):
    """FUN unfreezes units after the Trainer's DDP wrapped the model (DDP does not average those: the bridge
    does) and GradDrop masks them; both ranks must end with the same weights and the same FUN decisions."""
    _run(tmp_path, "--trainer")
    r0, r1 = _load(tmp_path / "hf" / "rank0.pt"), _load(tmp_path / "hf" / "rank1.pt")
    different = [n for n in r0["params"] if not torch.equal(r0["params"][n], r1["params"][n])]
    assert not different, different[:5]
    events = json.loads(r0["events"])
    assert events == json.loads(r1["events"]) and len(events) >= 2
