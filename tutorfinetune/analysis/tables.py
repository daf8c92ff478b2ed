"""Assembled tables: one call turns tidy results into the table a notebook shows (the leaderboard)."""

from __future__ import annotations

import math
from typing import Any, Sequence

import pandas as pd

from .stats import format_ci, held_out_mean, paired_difference, t_critical

__all__ = ["leaderboard_table"]


def leaderboard_table(df: pd.DataFrame, cost: pd.DataFrame, eval_sets: Sequence[str], held_out: Sequence[str],
                      regime: str, order: Sequence[str] | None = None) -> pd.DataFrame:
    """One regime's leaderboard: per entry, accuracy mean ± 95% CI on every eval set and on the held-out
    mean, the paired difference to full fine-tuning on the held-out mean, and the median costs. Sorted
    by held-out mean (best first)."""
    d = df[(df["regime"] == regime) & (df["metric"] == "accuracy")]
    if d.empty:
        return pd.DataFrame()
    held = held_out_mean(d, list(held_out), by=["entry"])
    rows = []
    for name, g in d.groupby("entry", sort=False):
        row: dict[str, Any] = {"entry": name, "family": g["family"].iloc[0], "seeds": g["seed"].nunique()}
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
