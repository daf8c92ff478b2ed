"""Exercises that teach: "implement it" stubs checked numerically against the package, and reasoning
questions whose answers are checked here, so the notebook never shows them.

**Implement it.** A notebook gives a function stub (its body between ``### BEGIN SOLUTION`` and
``### END SOLUTION`` in the notebook's source, replaced by ``raise NotImplementedError`` in the learner's
notebook by ``notebooks/build.py``; ``build.py --solutions DIR`` writes the instructors' variant with the
solutions in). The learner completes it and calls :func:`implement`, which runs the function on random
inputs and compares it with the package's own implementation (or the library the package uses: PEFT for
LoRA, torch for the rest), within a stated tolerance::

    ex.implement("lora-update", lora_update)      # -> True, or what differs and a hint

**Reasoning.** :func:`ask` checks an answer to a question whose correct answer is stored as a salted hash
(multiple choice: a letter; ``tutorfinetune/exercise_questions/<notebook>.json``) and prints the explanation once it is right; a wrong answer gets a hint
that does not give it away. Questions about the learner's own numbers stay in the notebook
(:func:`tutorfinetune.notebook.check`), phrased as "read it off your table".

A stub that is not implemented yet, or an unanswered question (``None``), prints "not done yet": a
notebook always runs end to end.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import diffs
from .analysis import stats
from .methods import dropout as dm

__all__ = ["implement", "ask", "digest", "questions", "IMPLEMENTATIONS", "Question"]

_SALT = "tutorfinetune-exercises-v1"


def _close(got: Any, want: torch.Tensor, tol: float) -> tuple[bool, str]:
    if not isinstance(got, torch.Tensor):
        try:
            got = torch.as_tensor(np.asarray(got, dtype=np.float64))
        except (TypeError, ValueError):
            return False, f"returned {type(got).__name__}, expected a tensor of shape {tuple(want.shape)}"
    if tuple(got.shape) != tuple(want.shape):
        return False, f"shape {tuple(got.shape)}, expected {tuple(want.shape)}"
    err = float((got.double() - want.double()).abs().max())
    return err <= tol, f"largest difference {err:.2e} (tolerance {tol:g})"


# ----------------------------------------------------------------------------------------------------------
# Implement it: one checker per exercise; each returns (ok, message)
# ----------------------------------------------------------------------------------------------------------
def _check_parameter_count(fn: Callable) -> tuple[bool, str]:
    """fn(module) -> the number of parameters (all, trainable or not), checked on real modules."""
    from transformers import BertConfig, BertModel

    cases = [torch.nn.Linear(7, 3), torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.LayerNorm(5)),
             BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                                  vocab_size=101, max_position_embeddings=40))]
    cases[1][0].weight.requires_grad_(False)  # frozen parameters count too
    for m in cases:
        want = sum(p.numel() for p in m.parameters())
        got = fn(m)
        if int(got) != want:
            return False, f"{type(m).__name__}: got {got}, expected {want} (frozen parameters count too)"
    return True, "matches on a linear layer, a partly frozen stack and a small BERT"


def _check_mean_ci(fn: Callable) -> tuple[bool, str]:
    """fn(values) -> (mean, half-width of the 95% Student-t interval), as tutorfinetune.analysis reports."""
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 12):
        x = rng.normal(0.85, 0.02, size=n)
        mean, half = fn(list(x))
        want_half = stats.t_critical(n - 1) * float(np.std(x, ddof=1)) / math.sqrt(n)
        if not (math.isclose(mean, float(x.mean()), abs_tol=1e-9) and math.isclose(half, want_half, rel_tol=1e-3)):
            return False, (f"n={n}: got ({mean:.4f}, {half:.4f}), expected ({x.mean():.4f}, {want_half:.4f}); "
                           "hint: the sample standard deviation (ddof=1) and t with n-1 degrees of freedom")
    return True, "matches the t interval for n = 2, 3, 5, 12"


def _check_adapter_forward(fn: Callable) -> tuple[bool, str]:
    """fn(h, w_down, b_down, w_up, b_up) -> h + up(ReLU(down(h))): the bottleneck adapter with its residual."""
    g = torch.Generator().manual_seed(0)
    d, b = 16, 4
    h = torch.randn(2, 5, d, generator=g)
    down, up = torch.nn.Linear(d, b), torch.nn.Linear(b, d)
    for p in (*down.parameters(), *up.parameters()):
        torch.nn.init.normal_(p, generator=g)
    with torch.no_grad():
        want = h + up(torch.relu(down(h)))
        got = fn(h, down.weight, down.bias, up.weight, up.bias)
    ok, msg = _close(got, want, 1e-5)
    return ok, msg + ("" if ok else "; hint: nn.Linear computes x @ W.T + b, and the input is added back")


def _check_lora_update(fn: Callable) -> tuple[bool, str]:
    """fn(w0, a, b, alpha, r) -> the merged weight W0 + (alpha / r) B A, checked against PEFT's own merge."""
    from peft import LoraConfig, get_peft_model

    g = torch.Generator().manual_seed(0)
    for r, alpha in ((4, 8.0), (2, 2.0)):
        base = torch.nn.Sequential()
        base.add_module("proj", torch.nn.Linear(12, 10))
        model = get_peft_model(base, LoraConfig(r=r, lora_alpha=alpha, target_modules=["proj"]))
        layer = model.base_model.model.proj
        with torch.no_grad():
            layer.lora_A["default"].weight.copy_(torch.randn(r, 12, generator=g))
            layer.lora_B["default"].weight.copy_(torch.randn(10, r, generator=g))
        w0 = layer.base_layer.weight.detach().clone()
        a, b = layer.lora_A["default"].weight.detach().clone(), layer.lora_B["default"].weight.detach().clone()
        merged = model.merge_and_unload().proj.weight.detach()
        ok, msg = _close(fn(w0, a, b, alpha, r), merged, 1e-5)
        if not ok:
            return False, f"r={r}, alpha={alpha}: {msg}; hint: the scaling is alpha / r, and B (out x r) comes first"
    return True, "matches PEFT's merged weights for (r, alpha) = (4, 8) and (2, 2)"


def _check_graddrop_kept(fn: Callable) -> tuple[bool, str]:
    """fn(shape, p, generator) -> a 0/1 float mask that keeps each entry with probability 1 - p."""
    for p in (0.1, 0.5, 0.8):
        g = torch.Generator().manual_seed(1)
        m = fn((400, 250), p, g)
        if not isinstance(m, torch.Tensor) or tuple(m.shape) != (400, 250):
            return False, f"p={p}: expected a tensor of shape (400, 250)"
        vals = set(torch.unique(m).tolist())
        if not vals <= {0.0, 1.0}:
            return False, f"p={p}: the mask holds {sorted(vals)[:5]}, not only 0 and 1"
        kept = float(m.float().mean())
        if abs(kept - (1 - p)) > 0.01:
            return False, f"p={p}: keeps {kept:.3f} of the entries, expected {1 - p:.2f} (p is the DROP probability)"
    return True, "keeps 1 - p of the entries for p = 0.1, 0.5, 0.8"


def _check_guided_map(fn: Callable) -> tuple[bool, str]:
    """fn(scores: dict site -> Fisher score, p_upper) -> dict site -> dropout probability, rank mapping."""
    rng = np.random.default_rng(3)
    scores = {f"block{i // 2}.{'attention' if i % 2 == 0 else 'ffn'}": float(v) for i, v in enumerate(rng.random(9))}
    want = dm.dropout_map(scores, p_upper=0.1, mapping="rank")
    got = fn(dict(scores), 0.1)
    if set(got) != set(want):
        return False, f"sites {sorted(got)[:3]}..., expected {sorted(want)[:3]}..."
    err = max(abs(float(got[k]) - float(want[k])) for k in want)
    ok = err <= 1e-9
    return ok, (f"largest difference {err:.2e}" + ("" if ok else "; hint: the LOWEST score gets the largest p, "
                                                    "the highest gets 0, evenly spaced by rank"))


def _check_top_k(fn: Callable) -> tuple[bool, str]:
    """fn(deltas: dict name -> tensor of |θ1 - θ0|, k) -> dict name -> bool mask of the k largest entries overall."""
    g = torch.Generator().manual_seed(2)
    deltas = {"a": torch.randn(6, 5, generator=g).abs(), "b": torch.randn(17, generator=g).abs(),
              "c": torch.randn(3, 3, 2, generator=g).abs()}
    for k in (2, 10, 40):
        want = diffs.select_mask(deltas, k)
        got = fn({n: t.clone() for n, t in deltas.items()}, k)
        if set(got) != set(want) or any(not torch.equal(got[n].bool(), want[n].bool()) for n in want):
            n_sel = sum(int(v.sum()) for v in got.values()) if isinstance(got, dict) else "?"
            return False, (f"k={k}: the mask differs (selected {n_sel} entries); hint: one threshold over ALL "
                           "tensors together, not k per tensor")
    return True, "matches the package's global top-K for K = 2, 10, 40"


def _check_paired_interval(fn: Callable) -> tuple[bool, str]:
    """fn(a, b) -> (mean of a - b, half-width of its 95% t interval), paired by position (seed)."""
    import pandas as pd

    rng = np.random.default_rng(4)
    a = rng.normal(0.80, 0.02, 5)
    b = a - rng.normal(0.01, 0.01, 5)
    rows = [{"method": m, "seed": s, "value": v, "metric": "accuracy"} for m, xs in (("a", a), ("b", b))
            for s, v in enumerate(xs)]
    want = stats.paired_difference(pd.DataFrame(rows), "a", "b")
    mean, half = fn(list(a), list(b))
    ok = math.isclose(mean, want["mean"], abs_tol=1e-9) and math.isclose(half, want["ci95"], rel_tol=1e-3)
    return ok, (f"got ({mean:.4f}, {half:.4f}), expected ({want['mean']:.4f}, {want['ci95']:.4f})"
                + ("" if ok else "; hint: the interval of the per-seed DIFFERENCES, not of each method"))


def _check_trace_fisher(fn: Callable) -> tuple[bool, str]:
    """fn(grads: list of per-batch gradient lists) -> tr(F): the mean over batches of the sum of squared entries."""
    g = torch.Generator().manual_seed(5)
    grads = [[torch.randn(4, 3, generator=g), torch.randn(3, generator=g)] for _ in range(6)]
    want = float(np.mean([sum(float((t ** 2).sum()) for t in batch) for batch in grads]))
    got = float(fn(grads))
    ok = math.isclose(got, want, rel_tol=1e-6)
    return ok, f"got {got:.5f}, expected {want:.5f}" + ("" if ok else "; hint: square, sum within a batch, average over batches")


def _check_mde(fn: Callable) -> tuple[bool, str]:
    """fn(std, n) -> the minimal detectable effect of a paired t test at 80% power, alpha 0.05 (two-sided)."""
    for std, n in ((0.02, 5), (0.01, 3), (0.05, 10)):
        want = stats.minimal_detectable_effect(std, n)
        got = float(fn(std, n))
        if not math.isclose(got, want, rel_tol=2e-3):
            return False, (f"std={std}, n={n}: got {got:.4f}, expected {want:.4f}; hint: (t_0.975 + t_0.80) with n-1 "
                           "degrees of freedom, times std / sqrt(n)")
    return True, "matches for (std, n) = (0.02, 5), (0.01, 3), (0.05, 10)"


@dataclass(frozen=True)
class _Impl:
    check: Callable[[Callable], tuple[bool, str]]
    what: str


#: exercise name -> its checker and what the function must do
IMPLEMENTATIONS: dict[str, _Impl] = {
    "parameter-count": _Impl(_check_parameter_count, "count a module's parameters"),
    "mean-ci": _Impl(_check_mean_ci, "mean and 95% t half-width over seeds"),
    "adapter-forward": _Impl(_check_adapter_forward, "the bottleneck adapter's forward pass"),
    "lora-update": _Impl(_check_lora_update, "LoRA's merged weight"),
    "graddrop-mask": _Impl(_check_graddrop_kept, "a GradDrop element mask"),
    "guided-dropout-map": _Impl(_check_guided_map, "guided dropout's rank map"),
    "top-k-mask": _Impl(_check_top_k, "LT-SFT's global top-K selection"),
    "paired-interval": _Impl(_check_paired_interval, "a paired t interval"),
    "trace-fisher": _Impl(_check_trace_fisher, "tr(F) from per-batch gradients"),
    "mde": _Impl(_check_mde, "the minimal detectable effect"),
}


def implement(name: str, fn: Callable) -> bool | None:
    """Check the learner's ``fn`` for exercise ``name`` (:data:`IMPLEMENTATIONS`). Prints the verdict; returns
    True / False, or None while the stub still raises NotImplementedError."""
    if name not in IMPLEMENTATIONS:
        raise KeyError(f"No implementation exercise {name!r}; known: {sorted(IMPLEMENTATIONS)}.")
    item = IMPLEMENTATIONS[name]
    try:
        ok, msg = item.check(fn)
    except NotImplementedError:
        print(f"{name} ({item.what}): not done yet. Complete the function above and run this cell again.")
        return None
    except Exception as e:  # the learner's code failed: say where, do not crash the notebook
        print(f"{name} ({item.what}): your function raised {type(e).__name__}: {e}")
        return False
    print(f"{name} ({item.what}): {'correct' if ok else 'not quite'}: {msg}.")
    return ok


# ----------------------------------------------------------------------------------------------------------
# Reasoning questions: answers stored as salted hashes, explanations shown once answered correctly
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Question:
    digest: str        # sha256 of salt + question id + normalised answer
    hint: str          # shown after a wrong answer; never the answer itself
    explanation: str   # shown after the right answer


def _digest(qid: str, answer: Any) -> str:
    norm = str(answer).strip().lower().rstrip(".)").lstrip("(")
    return hashlib.sha256(f"{_SALT}|{qid}|{norm}".encode()).hexdigest()


#: where the questions live: one JSON file per notebook, ``{"<notebook>.<name>": {"digest", "hint", "explanation"}}``
QUESTIONS_DIR = Path(__file__).resolve().parent / "exercise_questions"


def digest(qid: str, answer: Any) -> str:
    """The stored form of a correct answer (for authors adding a question)."""
    return _digest(qid, answer)


def questions() -> dict[str, Question]:
    """Every reasoning question: id -> :class:`Question` (read from :data:`QUESTIONS_DIR`)."""
    out: dict[str, Question] = {}
    for f in sorted(QUESTIONS_DIR.glob("*.json")):
        for qid, q in json.loads(f.read_text(encoding="utf-8")).items():
            out[qid] = Question(q["digest"], q["hint"], q["explanation"])
    return out


def ask(qid: str, answer: Any) -> bool | None:
    """Check the answer to reasoning question ``qid``; prints a hint or the explanation."""
    known = questions()
    if qid not in known:
        raise KeyError(f"No question {qid!r}; known: {sorted(known)}.")
    q = known[qid]
    if answer is None:
        print(f"{qid}: not answered yet.")
        return None
    ok = _digest(qid, answer) == q.digest
    print(f"{qid}: {'correct. ' + q.explanation if ok else 'not quite. ' + q.hint}")
    return ok
