"""Assembled tables: one call turns tidy results into the table a notebook shows (the leaderboard, the
claims table of a notebook's papers)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import pandas as pd

from .stats import claim_verdict, format_ci, held_out_mean, holm, paired_difference, t_critical

__all__ = ["leaderboard_table", "Claim", "claims_table", "best_steps"]


def leaderboard_table(df: pd.DataFrame, cost: pd.DataFrame, eval_sets: Sequence[str], held_out: Sequence[str],
                      regime: str, order: Sequence[str] | None = None) -> pd.DataFrame:
    """One regime's leaderboard: per entry, accuracy mean ± 95% CI on every eval set and on the held-out
    mean, the paired difference to full fine-tuning on the held-out mean, and the median costs (and the
    learning rate chosen on dev, for runs of the protocol). Sorted by held-out mean (best first)."""
    d = df[(df["regime"] == regime) & (df["metric"] == "accuracy")]
    if d.empty:
        return pd.DataFrame()
    held = held_out_mean(d, list(held_out), by=["entry"])
    rows = []
    for name, g in d.groupby("entry", sort=False):
        row: dict[str, Any] = {"entry": name, "family": g["family"].iloc[0], "seeds": g["seed"].nunique()}
        if "chosen_lr" in g.columns and g["chosen_lr"].notna().any():  # under the protocol: the lr chosen on dev
            row["lr (dev)"] = float(g["chosen_lr"].dropna().iloc[0])
        for ev in eval_sets:
            v = g[g["eval_set"] == ev]["value"]
            row[ev] = format_ci(v.mean(), _ci(v)) if len(v) else ""
        h = held[held["entry"] == name]["value"]
        row["held-out mean"] = format_ci(h.mean(), _ci(h))
        row["_held"] = float(h.mean())
        if name != "full fine-tuning" and "full fine-tuning" in set(held["entry"]):
            pd_ = paired_difference(held, name, "full fine-tuning", by="entry")
            row["vs full FT (held-out, paired)"] = format_ci(pd_["mean"], pd_["ci95"])
        c = cost[(cost["entry"] == name) & (cost["regime"] == regime)]
        row["trainable"] = int(c["trainable"].median()) if len(c) else None
        row["ms/step"] = round(float(c["ms_per_step"].median()), 0) if len(c) else None
        row["stored MiB"] = round(float(c["stored_mib"].median()), 2) if len(c) else None
        rows.append(row)
    out = pd.DataFrame(rows).sort_values("_held", ascending=False)
    if order is not None:
        out = out.set_index("entry").reindex([o for o in order if o in set(out["entry"])]).reset_index()
    return out.drop(columns=["_held"]).reset_index(drop=True)


def _ci(v: pd.Series) -> float:
    n = len(v)
    return t_critical(n - 1) * float(v.std()) / math.sqrt(n) if n > 1 else math.nan


@dataclass(frozen=True)
class Claim:
    """A paper's claim, as a comparison of two methods (or entries) on the same seeds.

    Attributes:
        paper: who claims it (``"Howard & Ruder (ULMFiT)"``).
        claim: the claim in words.
        a, b: the two groups compared (values of the ``by`` column): the claim is about a − b.
        kind: ``"greater"`` (a > b), ``"less"`` (a < b) or ``"at least"`` (a ≥ b: non-inferiority with a margin).
        paper_number: what the paper reports, as text (``"+1.9 points on XNLI"``), or ``""``.
        eval_sets: which eval sets the claim is judged on (averaged per seed); empty: every set in the frame.
        label: a short name of those sets for the table (``"held-out"``).
        where: only the rows whose columns have these values (``{"regime": "low-data"}``): a claim about
            one part of the frame, e.g. the setting that did best in that regime; empty: every row.
    """

    paper: str
    claim: str
    a: str
    b: str
    kind: str = "greater"
    paper_number: str = ""
    eval_sets: tuple[str, ...] = ()
    label: str = ""
    where: Mapping[str, Any] = field(default_factory=dict)


def claims_table(df: pd.DataFrame, claims: Sequence[Claim], by: str = "method", split: str | None = None,
                 metric: str = "accuracy", adjust: str | None = "holm", margin: float = 0.01,
                 scale: float = 100.0, pair_on: str = "seed") -> pd.DataFrame:
    """The claims table every notebook shows: per claim (and per value of ``split``, e.g. the regime) the
    paper's number, ours (the paired difference a − b over seeds, mean ± 95% CI in points), n, the
    minimal detectable effect at 80% power, the p-value and its Holm adjustment over all rows of the
    table, and the verdict (:func:`~tutorfinetune.analysis.claim_verdict`: reproduced / contradicted /
    inconclusive (could detect ≥ x points)). Rows whose groups are missing are skipped.

    ``adjust="holm"`` judges significance on the Holm-adjusted p-values (the table runs many tests);
    ``adjust=None`` on each row's own 95% interval (the table then says so in its ``verdict basis``).
    ``pair_on``: the column that pairs a's runs with b's (default the seed; e.g. a grid cell of learning
    rate x seed, when each cell is one trial); ``n`` counts the pairs."""
    d = df[df["metric"] == metric] if "metric" in df.columns else df
    parts = [(None, d)] if split is None else list(d.groupby(split, sort=False))
    rows = []
    for c in claims:
        if c.kind not in ("greater", "less", "at least"):
            raise ValueError(f"Claim {c.claim!r}: kind must be 'greater', 'less' or 'at least', got {c.kind!r}.")
        for key, sub in parts:
            if c.eval_sets:
                sub = sub[sub["eval_set"].isin(c.eval_sets)]
            for col, val in c.where.items():
                sub = sub[sub[col] == val]
            if not {c.a, c.b} <= set(sub[by]):
                continue
            diff = paired_difference(sub, c.a, c.b, by=by, pair_on=pair_on)
            row = {"paper": c.paper, "claim": c.claim}
            if split is not None:
                row[split] = key
            row.update({"eval": c.label or (", ".join(c.eval_sets) if c.eval_sets else "all"),
                        "compared": f"{c.a} − {c.b}", "paper's number": c.paper_number,
                        "ours (points)": format_ci(diff["mean"], diff["ci95"], scale), "n": int(diff["n"]),
                        "MDE (points)": round(scale * diff["mde"], 1) if math.isfinite(diff["mde"]) else math.nan,
                        "p": diff["p"], "_diff": diff, "_kind": c.kind})
            rows.append(row)
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows)
    table["p (Holm)"] = holm(table["p"].tolist()) if adjust == "holm" else math.nan
    verdicts = []
    for _, r in table.iterrows():
        p_adj = r["p (Holm)"] if adjust == "holm" and r["_kind"] != "at least" else None
        verdicts.append(claim_verdict(r["_diff"], r["_kind"], scale=scale, p_adjusted=p_adj, margin=margin))
    table["verdict"] = verdicts
    table["verdict basis"] = ["95% CI vs margin" if k == "at least" else ("Holm-adjusted p < 0.05" if adjust == "holm"
                              else "95% CI") for k in table["_kind"]]
    return table.drop(columns=["_diff", "_kind"])


def best_steps(frame: pd.DataFrame, records: Sequence[Mapping[str, Any]], by: str | Sequence[str]) -> pd.DataFrame:
    """Did the runs reach their plateau? Per group of ``by`` (columns of the tidy ``frame``, joined to the run
    records by ``run_id``): the median step at which dev peaked (``best_step``, the step whose test metrics
    the protocol reports), the median final step, and the share of runs whose best step was their last
    evaluation (a dev curve still rising: the budget was too short for them). Runs without model selection
    are left out."""
    by = [by] if isinstance(by, str) else list(by)
    meta = frame.drop_duplicates("run_id").set_index("run_id")[by]
    rows = []
    for r in records:
        if r.get("run_id") not in meta.index or r.get("best_step") is None:
            continue
        final = r.get("final_step")
        evals = [h["step"] for h in r.get("history") or []
                 if any(k.endswith("_accuracy") and v is not None for k, v in h.items())]  # the curve set's evaluations
        last_eval = max(evals) if evals else final
        rows.append({**meta.loc[r["run_id"]].to_dict(), "best dev step": r["best_step"], "final step": final,
                     "peaked at the last evaluation": r["best_step"] == last_eval})
    if not rows:
        return pd.DataFrame(columns=[*by, "runs", "best dev step", "final step", "still rising (share)"])
    d = pd.DataFrame(rows)
    out = d.groupby(by, sort=False).agg(runs=("best dev step", "size"), **{
        "best dev step": ("best dev step", "median"), "final step": ("final step", "median"),
        "still rising (share)": ("peaked at the last evaluation", "mean")})
    return out.reset_index()
