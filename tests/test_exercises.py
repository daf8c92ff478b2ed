"""Exercises: every checker accepts a right answer and rejects wrong ones; every notebook's solutions pass their
checks, its learner's variant runs with the stubs unanswered, and no answer is shown in a learner's notebook."""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tutorfinetune import exercises as ex

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted((REPO / "notebooks" / "src").glob("[0-9]*.py"))


def _build():
    spec = importlib.util.spec_from_file_location("nb_build", REPO / "notebooks" / "build.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["nb_build"] = mod
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------------------------------------------------
# The checkers: right implementations pass, plausible wrong ones fail
# ---------------------------------------------------------------------------------------------------------
def _t(n):
    from tutorfinetune.analysis import stats
    return stats.t_critical(n - 1)


RIGHT = {
    "parameter-count": lambda m: sum(p.numel() for p in m.parameters()),
    "mean-ci": lambda x: (float(np.mean(x)), _t(len(x)) * float(np.std(x, ddof=1)) / math.sqrt(len(x))),
    "adapter-forward": lambda h, wd, bd, wu, bu: h + torch.relu(h @ wd.T + bd) @ wu.T + bu,
    "lora-update": lambda w0, a, b, alpha, r: w0 + (alpha / r) * (b @ a),
    "graddrop-mask": lambda shape, p, g: (torch.rand(shape, generator=g) >= p).float(),
    "guided-dropout-map": lambda s, pu: {n: pu * (1 - r / (len(s) - 1)) for r, n in enumerate(sorted(s, key=s.get))},
    "top-k-mask": lambda d, k: (lambda thr: {n: t >= thr for n, t in d.items()})(
        torch.cat([t.reshape(-1) for t in d.values()]).topk(k).values.min()),
    "paired-interval": lambda a, b: (float(np.mean(np.subtract(a, b))),
                                     _t(len(a)) * float(np.std(np.subtract(a, b), ddof=1)) / math.sqrt(len(a))),
    "trace-fisher": lambda grads: float(np.mean([sum(float((t ** 2).sum()) for t in b) for b in grads])),
    "mde": None,  # filled below (needs scipy's t quantiles)
}
WRONG = {
    "parameter-count": lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad),
    "mean-ci": lambda x: (float(np.mean(x)), 1.96 * float(np.std(x)) / math.sqrt(len(x))),
    "adapter-forward": lambda h, wd, bd, wu, bu: torch.relu(h @ wd.T + bd) @ wu.T + bu,  # no residual
    "lora-update": lambda w0, a, b, alpha, r: w0 + alpha * (b @ a),  # no 1/r
    "graddrop-mask": lambda shape, p, g: (torch.rand(shape, generator=g) < p).float(),  # keeps p, not 1 - p
    "guided-dropout-map": lambda s, pu: {n: pu * r / (len(s) - 1) for r, n in enumerate(sorted(s, key=s.get))},
    "top-k-mask": lambda d, k: {n: t >= t.reshape(-1).topk(min(k, t.numel())).values.min() for n, t in d.items()},
    "paired-interval": lambda a, b: (float(np.mean(a) - np.mean(b)),
                                     _t(len(a)) * math.hypot(np.std(a, ddof=1), np.std(b, ddof=1)) / math.sqrt(len(a))),
    "trace-fisher": lambda grads: float(sum(sum(float((t ** 2).sum()) for t in b) for b in grads)),
    "mde": lambda std, n: 1.96 * std / math.sqrt(n),
}


def _mde(std, n):
    from scipy import stats as sps
    return (sps.t.ppf(0.975, n - 1) + sps.t.ppf(0.8, n - 1)) * std / math.sqrt(n)


RIGHT["mde"] = _mde


@pytest.mark.parametrize("name", sorted(ex.IMPLEMENTATIONS))
def test_each_checker_accepts_a_right_and_rejects_a_wrong_implementation(name, capsys):
    assert ex.implement(name, RIGHT[name]) is True, capsys.readouterr().out
    assert ex.implement(name, WRONG[name]) is False
    assert "not quite" in capsys.readouterr().out


def test_unfinished_stub_and_crashing_code_do_not_stop_a_notebook(capsys):
    def stub(*a):
        raise NotImplementedError

    assert ex.implement("lora-update", stub) is None
    assert "not done yet" in capsys.readouterr().out
    assert ex.implement("lora-update", lambda *a: 1 / 0) is False
    assert "ZeroDivisionError" in capsys.readouterr().out
    with pytest.raises(KeyError, match="No implementation exercise"):
        ex.implement("nope", stub)


def test_questions_hide_their_answers_and_explain_after_the_right_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ex, "QUESTIONS_DIR", tmp_path)
    (tmp_path / "99.json").write_text(
        '{"99.q": {"digest": "%s", "hint": "think", "explanation": "because"}}' % ex.digest("99.q", "b"))
    assert ex.ask("99.q", None) is None
    assert ex.ask("99.q", "a") is False and "think" in capsys.readouterr().out
    assert ex.ask("99.q", " B. ") is True and "because" in capsys.readouterr().out  # case, spaces, a dot
    assert '"b"' not in (tmp_path / "99.json").read_text()  # stored hashed, never as the answer itself
    with pytest.raises(KeyError, match="No question"):
        ex.ask("99.other", "a")


# ---------------------------------------------------------------------------------------------------------
# The notebooks' exercise cells: solutions pass, learners' variants run and reveal nothing
# ---------------------------------------------------------------------------------------------------------
def _exercise_cells(src: Path, solutions: bool) -> list[str]:
    cells = _build().read_source(src, solutions=solutions)
    raw = _build().read_source(src, solutions=True)
    return [c["source"] for c, r in zip(cells, raw) if c["cell_type"] == "code"
            and ("ex.implement(" in r["source"] or "ex.ask(" in r["source"]) and "BEGIN SOLUTION" in src.read_text()]


def _run_cells(cells: list[str], monkeypatch) -> list:
    results = []
    real_impl, real_ask = ex.implement, ex.ask
    monkeypatch.setattr(ex, "implement", lambda *a, **k: results.append(("implement", a[0], real_impl(*a, **k))))
    monkeypatch.setattr(ex, "ask", lambda *a, **k: results.append(("ask", a[0], real_ask(*a, **k))))
    ns = {"ex": ex, "torch": torch, "np": np, "math": math}
    for code in cells:
        exec(compile(code, "<exercise cell>", "exec"), ns)
    return results


WITH_EXERCISES = [s for s in SOURCES if "### BEGIN SOLUTION" in s.read_text()]


def test_every_notebook_has_exercises_with_solutions():
    assert [s.stem for s in WITH_EXERCISES] == [s.stem for s in SOURCES]


@pytest.mark.parametrize("src", WITH_EXERCISES, ids=[s.stem for s in WITH_EXERCISES])
def test_solutions_pass_and_learners_variant_runs_unanswered(src, monkeypatch):
    solved = _run_cells(_exercise_cells(src, solutions=True), monkeypatch)
    assert solved and all(ok is True for _, _, ok in solved), solved
    kinds = [k for k, _, _ in solved]
    assert kinds.count("implement") >= 1 and kinds.count("ask") >= 2, f"{src.stem}: {kinds}"
    learner = _run_cells(_exercise_cells(src, solutions=False), monkeypatch)
    assert learner and all(ok is None for _, _, ok in learner), learner  # nothing answered, nothing crashed
    shown = (REPO / "notebooks" / f"{src.stem}.ipynb").read_text()
    assert "BEGIN SOLUTION" not in shown and "END SOLUTION" not in shown


def test_solutions_variant_and_stripping_rules(tmp_path):
    b = _build()
    text = "def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n\n\nanswer = None\n" \
           "### BEGIN SOLUTION\nanswer = 'c'\n### END SOLUTION\nex.ask('q', answer)"
    learner = b.split_solutions(text, solutions=False)
    assert "return 2 * x" not in learner and "NotImplementedError" in learner and "'c'" not in learner
    teacher = b.split_solutions(text, solutions=True)
    assert "return 2 * x" in teacher and "answer = 'c'" in teacher and "SOLUTION" not in teacher
    with pytest.raises(ValueError, match="without"):
        b.split_solutions("### BEGIN SOLUTION\nx = 1", solutions=False)
    written = b.build_solutions(tmp_path / "sol")
    assert len(written) == len(SOURCES) and all("BEGIN SOLUTION" not in p.read_text() for p in written)


def test_every_stored_question_is_asked_by_a_notebook():
    asked = set()
    for src in SOURCES:
        asked |= set(re.findall(r"ex\.ask\(\s*[\"']([^\"']+)[\"']", src.read_text()))
    assert set(ex.questions()) <= asked, set(ex.questions()) - asked
