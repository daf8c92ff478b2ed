"""Statistics over seeds (DESIGN.md, "Results"): :func:`aggregate` (mean, standard deviation and a
Student-t 95% confidence interval over seeds), paired differences, verdicts, spreads, and the tidy
frames behind the figures (histories, Fisher curves, unfreeze orders). The figures themselves are in
:mod:`.figures`, the assembled tables in :mod:`.tables`.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from .. import results

__all__ = ["t_critical", "aggregate", "format_ci", "ci_table", "histories", "cell", "compare_sentence", "paired_difference", "paired_table", "fisher_curves", "unfreeze_orders", "held_out_mean", "verdict", "spread_table", "paired_spread", "t_quantile", "paired_p_value", "minimal_detectable_effect", "holm", "claim_verdict"]

# Two-sided 95% critical values of Student's t for df = 1..30 (standard table values).
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042]


def t_critical(df: int) -> float:
    """Two-sided 95% critical value of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        return math.nan
    if df <= 30:
        return _T975[df - 1]
    return 1.96 + 2.4 / df  # close to the exact value beyond 30 (1.984 at 100)


def aggregate(df: pd.DataFrame, by: Sequence[str] = ("method", "eval_set"), value: str = "value",
              metric: str | None = "accuracy", per_configuration: bool = True) -> pd.DataFrame:
    """Mean over seeds with a 95% CI: columns ``by`` + n, mean, std, ci95 (half-width), lo, hi.

    Groups are keyed by the full configuration except the seed, and a seed run twice counts once (the
    newest finished run): when a group of ``by`` holds runs of several configurations, the columns
    that tell them apart (lr, ..., else ``config_id``) join the keys (:func:`tutorfinetune.results.dedup_seeds`).

    Args:
        df: a tidy frame from :func:`tutorfinetune.results.load`.
        by: grouping columns (each group's rows are the seeds).
        value: the column to aggregate.
        metric: keep rows of this metric only (None keeps all; then add "metric" to ``by``).
        per_configuration: False pools every configuration of a group (a mean over hyperparameter
            trials, as :func:`.figures.plot_distributions` draws); a repeated seed still counts once.
    """
    if metric is not None and "metric" in df.columns:
        df = df[df["metric"] == metric]
    df, by = results.dedup_seeds(df, by, split=per_configuration)
    if df.empty:
        return pd.DataFrame(columns=[*by, "n", "mean", "std", "ci95", "lo", "hi"])
    g = df.groupby(list(by), sort=False, dropna=False)[value]
    out = g.agg(n="count", mean="mean", std="std").reset_index()
    out["std"] = out["std"].fillna(0.0)
    out["ci95"] = [t_critical(int(n) - 1) * s / math.sqrt(n) if n > 1 else math.nan
                   for n, s in zip(out["n"], out["std"])]
    out["lo"] = out["mean"] - out["ci95"]
    out["hi"] = out["mean"] + out["ci95"]
    return out


def format_ci(mean: float, ci: float, scale: float = 100.0, digits: int = 1) -> str:
    """``"88.4 ± 1.2"`` (``"88.4"`` when a CI needs more than one seed)."""
    if ci is None or not np.isfinite(ci):
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} ± {ci * scale:.{digits}f}"


def ci_table(df: pd.DataFrame, rows: str = "method", cols: str = "eval_set", metric: str = "accuracy",
             scale: float = 100.0) -> pd.DataFrame:
    """A wide table of ``mean ± ci95`` strings (in percent by default) for display."""
    agg = results.label_extra_keys(aggregate(df, by=(rows, cols), metric=metric), rows, cols)
    agg["cell"] = [format_ci(m, c, scale) + f" (n={n})" for m, c, n in zip(agg["mean"], agg["ci95"], agg["n"])]
    order = list(dict.fromkeys(agg[cols]))
    return agg.pivot(index=rows, columns=cols, values="cell")[order]


def histories(records: list[dict]) -> pd.DataFrame:
    """Concatenate the per-step histories of run records (from ``results.load_records``)."""
    frames = []
    for rec in records:
        h = pd.DataFrame(rec.get("history") or [])
        if h.empty:
            continue
        h["run_id"] = rec["run_id"]
        h["method"] = rec.get("method", "")
        h["seed"] = rec.get("seed", rec.get("config", {}).get("seed"))
        for k, v in (rec.get("tags") or {}).items():
            h[k] = v
        frames.append(h)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def cell(agg: pd.DataFrame, **where) -> pd.Series:
    """The one row of an :func:`aggregate` frame matching ``where`` (e.g. ``eval_set="dev"``)."""
    m = pd.Series(True, index=agg.index)
    for k, v in where.items():
        m &= agg[k] == v
    rows = agg[m]
    if len(rows) != 1:
        raise KeyError(f"{len(rows)} rows match {where}; expected one.")
    return rows.iloc[0]


def compare_sentence(a: pd.Series, b: pd.Series, a_name: str, b_name: str, unit: str = "accuracy",
                     prep: str = "on") -> str:
    """A sentence comparing two aggregated rows (mean, ci95, lo, hi), built from the numbers.

    It says which is higher, by how many points, and whether the 95% CIs overlap (a conservative
    check: overlapping intervals do not prove equality, separated ones do show a real difference).
    """
    diff = 100 * (a["mean"] - b["mean"])
    if not (np.isfinite(a["ci95"]) and np.isfinite(b["ci95"])):
        verdict = "with one seed there is no confidence interval, so this may be seed noise"
    elif a["lo"] > b["hi"] or b["lo"] > a["hi"]:
        verdict = "the 95% confidence intervals do not overlap, so the difference is larger than seed noise"
    else:
        verdict = ("the 95% confidence intervals overlap, which does not show that the difference is noise; "
                   "the paired difference over seeds is the test")
    direction = "higher" if diff > 0 else "lower"
    return (f"{unit} {prep} {a_name} ({format_ci(a['mean'], a['ci95'])}%) is {abs(diff):.1f} points {direction} "
            f"than {prep} {b_name} ({format_ci(b['mean'], b['ci95'])}%); {verdict}.")


# --------------------------------------------------------------------------------------------
# Paired comparisons, schedules and Fisher curves (notebooks/03_scheduled_unfreezing.ipynb)
# --------------------------------------------------------------------------------------------
def paired_difference(df: pd.DataFrame, a: str, b: str, by: str = "method", pair_on: str = "seed",
                      metric: str = "accuracy", value: str = "value") -> pd.Series:
    """Mean over seeds of (a - b), with a Student-t 95% CI, pairing rows that share ``pair_on`` and the
    eval set; several eval sets are averaged per seed first. Returns n, mean, std, ci95, lo, hi, the
    two-sided p-value of the paired t-test (``p``) and the minimal detectable effect at 80% power
    (``mde``, :func:`minimal_detectable_effect`)."""
    d = df[df["metric"] == metric] if "metric" in df.columns else df
    per_seed = d.groupby([by, pair_on])[value].mean().unstack(by)
    if a not in per_seed or b not in per_seed:
        raise KeyError(f"Need rows for both {a!r} and {b!r} in column {by!r}; found {list(per_seed.columns)}.")
    diff = (per_seed[a] - per_seed[b]).dropna()
    n = len(diff)
    std = float(diff.std()) if n > 1 else 0.0
    ci = t_critical(n - 1) * std / math.sqrt(n) if n > 1 else math.nan
    mean = float(diff.mean()) if n else math.nan
    return pd.Series({"n": n, "mean": mean, "std": std, "ci95": ci, "lo": mean - ci, "hi": mean + ci,
                      "p": paired_p_value(mean, std, n), "mde": minimal_detectable_effect(std, n)})


def t_quantile(q: float, df: int) -> float:
    """The ``q`` quantile of Student's t with ``df`` degrees of freedom (scipy)."""
    from scipy.stats import t as _t

    return float(_t.ppf(q, df)) if df >= 1 else math.nan


def paired_p_value(mean: float, std: float, n: int) -> float:
    """Two-sided p-value of the paired t-test of ``mean`` = 0 (``std``: the spread of the n differences)."""
    from scipy.stats import t as _t

    if n < 2 or not np.isfinite(mean):
        return math.nan
    if std == 0:
        return 0.0 if mean != 0 else 1.0
    return float(2 * _t.sf(abs(mean) / (std / math.sqrt(n)), n - 1))


def minimal_detectable_effect(std: float, n: int, power: float = 0.8, alpha: float = 0.05) -> float:
    """The smallest true paired difference a two-sided paired t-test at level ``alpha`` would detect with
    probability ``power``, given the observed spread ``std`` of the differences over ``n`` seeds:
    ``(t_{1-alpha/2, n-1} + t_{power, n-1}) * std / sqrt(n)`` (the usual normal-approximation formula with
    t quantiles). A null result whose MDE is large says little: "inconclusive", not "no effect"."""
    if n < 2 or not np.isfinite(std):
        return math.nan
    return (t_quantile(1 - alpha / 2, n - 1) + t_quantile(power, n - 1)) * std / math.sqrt(n)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given; NaN stays NaN): with m tests, the i-th
    smallest p is multiplied by (m - i + 1), made monotone, capped at 1. Controls the chance of any false
    "reproduced"/"contradicted" across a table of claims at the nominal level."""
    ps = [float(p) for p in pvalues]
    idx = [i for i, p in enumerate(ps) if np.isfinite(p)]
    m = len(idx)
    out = [math.nan] * len(ps)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: ps[i])):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        out[i] = running
    return out


def claim_verdict(d: pd.Series, claim: str = "greater", scale: float = 100.0, p_adjusted: float | None = None,
                  alpha: float = 0.05, margin: float = 0.01) -> str:
    """The protocol's verdict on a paper's claim, from a paired difference (:func:`paired_difference`):

    * ``"reproduced"``: the difference is significant in the claimed direction (``"greater"``: a > b;
      ``"less"``: a < b; ``"at least"``, a non-inferiority claim: the whole interval lies above
      ``-margin``, by default one point of accuracy);
    * ``"contradicted"``: significant in the other direction (``"at least"``: the whole interval lies
      below ``-margin``);
    * ``"inconclusive (could detect ≥ x points)"``: neither, with the minimal detectable effect at 80%
      power in points (``scale``), so a null result is never read as "no effect".

    Significance is the 95% interval, or ``p_adjusted < alpha`` when a multiple-comparison adjusted
    p-value (:func:`holm`) is given."""
    if claim not in ("greater", "at least", "less"):
        raise ValueError(f"claim must be 'greater', 'at least' or 'less', got {claim!r}.")
    if not np.isfinite(d.get("ci95", math.nan)):
        return "inconclusive (one seed)"
    if p_adjusted is None:
        above, below = d["lo"] > 0, d["hi"] < 0
    else:
        sig = p_adjusted < alpha
        above, below = sig and d["mean"] > 0, sig and d["mean"] < 0
    if claim == "greater":
        good, bad = above, below
    elif claim == "less":
        good, bad = below, above
    else:  # at least: non-inferiority with a stated margin, judged on the interval
        good, bad = d["lo"] > -margin, d["hi"] < -margin
    if good:
        return "reproduced"
    if bad:
        return "contradicted"
    mde = d.get("mde", math.nan)
    return f"inconclusive (could detect ≥ {scale * mde:.1f} points)" if np.isfinite(mde) else "inconclusive"


def paired_table(df: pd.DataFrame, pairs: Sequence[tuple[str, str]], by: str = "method", claim: str = "greater",
                 metric: str = "accuracy", scale: float = 100.0) -> pd.DataFrame:
    """One row per ``(a, b)`` pair: the paired difference a − b over seeds (:func:`paired_difference`),
    formatted ``mean ± ci95`` (points), and its :func:`verdict` for the claim "a > b" (or "a ≥ b").
    Pairs with no rows for a or b are skipped."""
    rows = []
    for a, b in pairs:
        try:
            d = paired_difference(df, a, b, by=by, metric=metric)
        except KeyError:
            continue
        rows.append({"a": a, "b": b, "a − b (points)": format_ci(d["mean"], d["ci95"], scale),
                     "verdict (a > b)" if claim == "greater" else "verdict (a ≥ b)": verdict(d, claim),
                     "mean": d["mean"], "ci95": d["ci95"], "n": int(d["n"])})
    return pd.DataFrame(rows)


def fisher_curves(hist: pd.DataFrame, column: str = "trF_trainable", smooth: int = 1) -> pd.DataFrame:
    """Rows of a :func:`histories` frame where ``column`` (a FisherTracker column) was logged, with a
    per-run moving average ``<column>_smooth`` over ``smooth`` estimates."""
    if column not in hist.columns:
        raise KeyError(f"No {column!r} in the histories: train with the 'fisher-tracker' method.")
    h = hist[hist[column].notna()].sort_values(["run_id", "step"]).copy()
    h[f"{column}_smooth"] = h.groupby("run_id")[column].transform(lambda s: s.rolling(smooth, min_periods=1).mean())
    return h


def unfreeze_orders(records: list[dict], method_key: str) -> pd.DataFrame:
    """One row per unfreezing event of each run whose artifacts hold ``method_key`` (e.g. ``"fun"``):
    run_id, seed, event (0 = the initial set), step, unit, unit_index (0 = bottom), top_down_index
    (the unit GU would have chosen at that event)."""
    rows = []
    for rec in records:
        art = (rec.get("artifacts") or {}).get(method_key)
        if not art:
            continue
        units = list(art["units"])
        n = len(units)
        e = 0
        for ev in art["events"]:
            for u in ev["units"]:
                rows.append({"run_id": rec["run_id"], "seed": rec.get("seed"), "event": e, "step": ev["step"],
                             "unit": u, "unit_index": units.index(u), "top_down_index": n - 1 - e,
                             "method": rec.get("method", ""), **(rec.get("tags") or {})})
                e += 1
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Held-out summaries and verdicts (notebooks 03, 04), sweeps over one knob, mask pictures (04)
# --------------------------------------------------------------------------------------------
def held_out_mean(df: pd.DataFrame, eval_sets: Sequence[str], by: Sequence[str], metric: str = "accuracy",
                  label: str = "held-out (mean)") -> pd.DataFrame:
    """Per run (``by`` + seed), the mean of ``metric`` over ``eval_sets`` (e.g. the held-out domains), as rows
    shaped like the store's (``eval_set`` = ``label``) so they aggregate and pair like any eval set."""
    d = df[df["eval_set"].isin(list(eval_sets)) & (df["metric"] == metric)]
    if d.empty:
        raise KeyError(f"No {metric!r} rows for eval sets {list(eval_sets)}; found {sorted(df['eval_set'].unique())}.")
    out = d.groupby([*by, "seed"], as_index=False, dropna=False)["value"].mean()
    out["metric"], out["eval_set"] = metric, label
    return out


def verdict(d: pd.Series, claim: str = "greater") -> str:
    """A paper's claim against a paired difference (:func:`paired_difference`), in the protocol's words:
    :func:`claim_verdict` ("reproduced", "contradicted", "inconclusive (could detect ≥ x points)"); an
    ``"at least"`` claim is non-inferiority with a one-point margin."""
    return claim_verdict(d, claim)


# --------------------------------------------------------------------------------------------
# Distributions over hyperparameter trials (notebooks/07_intermediate_tasks.ipynb)
# --------------------------------------------------------------------------------------------
def spread_table(df: pd.DataFrame, by: Sequence[str], metric: str = "accuracy", value: str = "value",
                 scale: float = 100.0) -> pd.DataFrame:
    """Per group of runs (e.g. every learning rate x seed of one setting): n, mean ± 95% CI, standard
    deviation, worst and best run, in points (``scale``). Chang & Lu's point is about the mean and the
    spread over hyperparameter trials, not the best run: this table shows all three."""
    d = df[df["metric"] == metric] if "metric" in df.columns else df
    rows = []
    for key, g in d.groupby(list(by), sort=False, dropna=False):
        v = g[value].astype(float)
        n = len(v)
        sd = float(v.std()) if n > 1 else math.nan
        ci = t_critical(n - 1) * sd / math.sqrt(n) if n > 1 else math.nan
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key)), "n": n, "mean ± 95% CI": format_ci(float(v.mean()), ci, scale),
                     "std": round(sd * scale, 2) if np.isfinite(sd) else math.nan,
                     "worst": round(float(v.min()) * scale, 1), "best": round(float(v.max()) * scale, 1),
                     "mean": float(v.mean()), "ci95": ci, "sd": sd, "min": float(v.min()), "max": float(v.max())})
    return pd.DataFrame(rows)


def paired_spread(df: pd.DataFrame, a: str, b: str, by: str, pair_on: Sequence[str] | str, metric: str = "accuracy",
                  value: str = "value", n_boot: int = 2000, seed: int = 0) -> pd.Series:
    """Standard deviation over runs of ``a`` minus that of ``b`` (negative: ``a`` is more stable), with a
    95% bootstrap interval that resamples the paired cells (``pair_on``, e.g. learning rate and seed)
    together. Also the difference of the best runs and of the means. Returns n, sd_a, sd_b, diff,
    lo, hi, best_diff, mean_diff."""
    d = df[df["metric"] == metric] if "metric" in df.columns else df
    keys = [pair_on] if isinstance(pair_on, str) else list(pair_on)
    wide = d.groupby([by, *keys])[value].mean().unstack(by)
    if a not in wide or b not in wide:
        raise KeyError(f"Need rows for both {a!r} and {b!r} in column {by!r}; found {list(wide.columns)}.")
    pairs = wide[[a, b]].dropna().to_numpy(dtype=float)
    n = len(pairs)
    if n < 2:
        return pd.Series({"n": n, "sd_a": math.nan, "sd_b": math.nan, "diff": math.nan, "lo": math.nan,
                          "hi": math.nan, "best_diff": math.nan, "mean_diff": math.nan})
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(int(n_boot), n))
    boot = pairs[idx]  # (n_boot, n, 2)
    diffs = boot[:, :, 0].std(axis=1, ddof=1) - boot[:, :, 1].std(axis=1, ddof=1)
    sd_a, sd_b = float(pairs[:, 0].std(ddof=1)), float(pairs[:, 1].std(ddof=1))
    return pd.Series({"n": n, "sd_a": sd_a, "sd_b": sd_b, "diff": sd_a - sd_b,
                      "lo": float(np.quantile(diffs, 0.025)), "hi": float(np.quantile(diffs, 0.975)),
                      "best_diff": float(pairs[:, 0].max() - pairs[:, 1].max()),
                      "mean_diff": float(pairs[:, 0].mean() - pairs[:, 1].mean())})


