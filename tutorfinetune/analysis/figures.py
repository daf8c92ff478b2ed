"""The standard figures (DESIGN.md, "Results"): every figure in the notebooks is drawn by one of these,
from the tidy frames of the results store and the aggregates of :mod:`.stats`. matplotlib and seaborn
are imported when a figure is drawn, so the statistics import without them."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .. import results
from .stats import aggregate, fisher_curves

__all__ = ["plot_comparison", "plot_learning_curves", "plot_bottleneck", "plot_trainability", "plot_fisher_curves", "plot_unfreeze_orders", "plot_vs_param", "plot_masks", "plot_sites", "plot_distributions"]


def plot_comparison(df: pd.DataFrame, x: str = "eval_set", hue: str = "method", metric: str = "accuracy",
                    ax=None, title: str | None = None, order: Iterable[str] | None = None,
                    baseline: float | None = None):
    """Grouped bars of the mean with 95% CI error bars, one group per ``x`` value, one bar per ``hue``."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    agg = results.label_extra_keys(aggregate(df, by=(x, hue), metric=metric), hue, x)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6, 1.2 * agg[x].nunique() * max(1, agg[hue].nunique()) / 1.5), 4))
    xs = list(order) if order is not None else list(dict.fromkeys(agg[x]))
    hues = list(dict.fromkeys(agg[hue]))
    width = 0.8 / max(1, len(hues))
    colors = sns.color_palette("deep", len(hues))
    for j, h in enumerate(hues):
        sub = agg[agg[hue] == h].set_index(x).reindex(xs)
        pos = np.arange(len(xs)) - 0.4 + width * (j + 0.5)
        ax.bar(pos, sub["mean"], width, yerr=sub["ci95"].fillna(0), capsize=3, label=str(h), color=colors[j])
    ax.set_xticks(np.arange(len(xs)))
    ax.set_xticklabels(xs, rotation=20, ha="right")
    ax.set_ylabel(f"{metric} (mean, 95% CI over seeds)")
    if baseline is not None:
        ax.axhline(baseline, ls="--", color="grey", lw=1, label="majority class")
    lo = np.nanmin(agg["mean"] - agg["ci95"].fillna(0)) if len(agg) else 0
    ax.set_ylim(max(0.0, lo - 0.1), 1.0)
    ax.legend(title=hue, fontsize=8, loc="lower left")
    if title:
        ax.set_title(title)
    return ax


def plot_learning_curves(hist: pd.DataFrame, hue: str = "method", curve_col: str = "dev_accuracy",
                         smooth: int = 10, axes=None):
    """Training loss (moving average) and curve-set accuracy against optimiser steps.

    Args:
        hist: from :func:`histories` (columns step, loss, ``curve_col``, ``hue``, run_id).
        smooth: window of the loss moving average.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    h = hist.sort_values(["run_id", "step"]).copy()
    h["loss_smooth"] = h.groupby("run_id")["loss"].transform(lambda s: s.rolling(smooth, min_periods=1).mean())
    sns.lineplot(data=h, x="step", y="loss_smooth", hue=hue, units="run_id", estimator=None, lw=0.8,
                 alpha=0.7, ax=axes[0])
    axes[0].set_ylabel(f"training loss (moving avg {smooth})")
    if curve_col in h.columns and h[curve_col].notna().any():
        ev = h[h[curve_col].notna()]
        agg = aggregate(ev, by=(hue, "step"), value=curve_col, metric=None)
        for (name, sub), color in zip(agg.groupby(hue, sort=False), sns.color_palette("deep")):
            axes[1].plot(sub["step"], sub["mean"], marker="o", color=color, label=str(name))
            if sub["ci95"].notna().any():
                axes[1].fill_between(sub["step"], sub["lo"], sub["hi"], color=color, alpha=0.2)
        axes[1].set_ylabel(curve_col.replace("_", " ") + " (mean, 95% CI)")
        axes[1].set_xlabel("step")
        axes[1].legend(title=hue, fontsize=8)
    else:
        axes[1].set_visible(False)
    return axes


def plot_bottleneck(hidden: int = 384, reduction_factor: float = 16, ax=None, title: str | None = None):
    """Diagram of a sequential bottleneck adapter after a block's feed-forward sublayer.

    Boxes are drawn to scale in width: the hidden size and the bottleneck ``hidden / reduction_factor``.
    Parameters of one adapter: 2 * hidden * bottleneck + hidden + bottleneck.
    """
    import matplotlib.patches as mp
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.2))
    b = max(1, int(hidden // reduction_factor))
    w_h, w_b = 4.0, max(0.15, 4.0 * b / hidden)
    boxes = [  # (label, y, width, colour)
        ("feed-forward output (frozen)", 0.0, w_h, "#cccccc"),
        (f"down-projection {hidden}->{b}", 1.3, (w_h + w_b) / 2, "#f4a261"),
        (f"ReLU, bottleneck {b}", 2.3, w_b, "#e76f51"),
        (f"up-projection {b}->{hidden}", 3.3, (w_h + w_b) / 2, "#f4a261"),
        ("+ residual, LayerNorm (frozen)", 4.6, w_h, "#cccccc"),
    ]
    for label, y, w, c in boxes:
        ax.add_patch(mp.FancyBboxPatch((-w / 2, y), w, 0.7, boxstyle="round,pad=0.05", fc=c, ec="black"))
        narrow = w < 2.5 and "ReLU" in label
        ax.text(w / 2 + 0.15 if narrow else 0, y + 0.35, label, ha="left" if narrow else "center", va="center",
                fontsize=9)
    for y0, y1 in ((0.75, 1.3), (2.05, 2.3), (3.05, 3.3), (4.05, 4.6)):
        ax.annotate("", xy=(0, y1), xytext=(0, y0), arrowprops=dict(arrowstyle="->"))
    ax.annotate("", xy=(w_h / 2 + 0.2, 4.95), xytext=(w_h / 2 + 0.2, 0.35),
                arrowprops=dict(arrowstyle="->", connectionstyle="arc3,rad=-0.4", ls="--"))
    ax.text(w_h / 2 + 0.7, 2.65, "residual", fontsize=9)
    n = 2 * hidden * b + hidden + b
    ax.set_xlim(-3, 3.6)
    ax.set_ylim(-0.3, 5.6)
    ax.axis("off")
    ax.set_title(title or f"Bottleneck adapter, reduction factor {reduction_factor:g}: {n:,} parameters per block")
    return ax


def plot_trainability(mat: np.ndarray, units: Sequence[str], ax=None, title: str | None = None,
                      k: int | None = None):
    """Heatmap of a ``[unit, step]`` trainability matrix (bottom unit at the bottom of the plot)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.35 * len(units) + 1.2))
    ax.imshow(mat.astype(float), aspect="auto", origin="lower", interpolation="nearest",
              cmap=ListedColormap(["#e8e8e8", "#2a6f97"]), vmin=0, vmax=1,
              extent=(-0.5, mat.shape[1] - 0.5, -0.5, len(units) - 0.5))
    ax.set_yticks(range(len(units)))
    ax.set_yticklabels(units, fontsize=8)
    ax.set_xlabel("optimiser step")
    if k:
        for s in range(k, mat.shape[1], k):
            ax.axvline(s - 0.5, color="white", lw=0.5, alpha=0.6)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def plot_fisher_curves(hist: pd.DataFrame, hue: str = "method", column: str = "trF_trainable", smooth: int = 1,
                       ax=None, title: str | None = None, logy: bool = False):
    """tr(F) against optimiser steps: mean over seeds per ``hue`` with a 95% CI band."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    h = fisher_curves(hist, column, smooth)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.8))
    agg = aggregate(h, by=(hue, "step"), value=f"{column}_smooth", metric=None)
    for (name, sub), color in zip(agg.groupby(hue, sort=False), sns.color_palette("deep")):
        ax.plot(sub["step"] - 1, sub["mean"], marker=".", color=color, label=str(name))
        if sub["ci95"].notna().any():
            ax.fill_between(sub["step"] - 1, sub["lo"], sub["hi"], color=color, alpha=0.2)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(column.replace("_", " ") + (f" (moving avg {smooth})" if smooth > 1 else ""))
    if logy:
        ax.set_yscale("log")
    ax.legend(title=hue, fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def plot_unfreeze_orders(orders: pd.DataFrame, units: Sequence[str], ax=None, title: str | None = None):
    """Chosen unit against event number, one line per run, with the top-down (GU) diagonal."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4))
    n = len(units)
    ax.plot(range(n), range(n - 1, -1, -1), ls="--", color="grey", lw=2, label="top-down (GU)")
    for i, (_rid, sub) in enumerate(orders.groupby("run_id", sort=False)):
        jitter = (i - orders.run_id.nunique() / 2) * 0.04
        ax.plot(sub["event"], sub["unit_index"] + jitter, marker="o", alpha=0.8,
                label=f"seed {sub['seed'].iloc[0]}")
    ax.set_yticks(range(n))
    ax.set_yticklabels(units, fontsize=8)
    ax.set_xticks(range(n))
    ax.set_xlabel("unfreezing event (0 = trainable from the start)")
    ax.set_ylabel("unit unfrozen")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def plot_vs_param(df: pd.DataFrame, x: str, hue: str = "eval_set", metric: str = "accuracy", ax=None,
                  title: str | None = None, baselines: dict[str, pd.DataFrame] | None = None, xlabel: str | None = None):
    """Mean with 95% CI error bars against a numeric knob ``x`` (e.g. GradDrop's p), one line per ``hue``;
    ``baselines`` (name -> rows of the same shape without ``x``) are drawn as horizontal bands per hue."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    agg = results.label_extra_keys(aggregate(df, by=(hue, x), metric=metric), hue, x).sort_values(x)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4))
    hues = list(dict.fromkeys(agg[hue]))
    colors = dict(zip(hues, sns.color_palette("deep", len(hues))))
    styles = ["--", ":", "-."]
    for h in hues:
        sub = agg[agg[hue] == h]
        ax.errorbar(sub[x], sub["mean"], yerr=sub["ci95"].fillna(0), marker="o", capsize=3, color=colors[h], label=str(h))
    for i, (name, rows) in enumerate((baselines or {}).items()):
        b = results.label_extra_keys(aggregate(rows, by=(hue,), metric=metric), hue, hue)
        for r in b.itertuples():
            if r[1] not in colors:
                continue
            c = colors[r[1]]
            ax.axhline(r.mean, color=c, ls=styles[i % len(styles)], lw=1.2,
                       label=f"{name} ({r[1]})" if len(hues) > 1 else name)
            if np.isfinite(r.ci95):
                ax.axhspan(r.lo, r.hi, color=c, alpha=0.08)
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(f"{metric} (mean, 95% CI over seeds)")
    ax.legend(fontsize=7, loc="lower left")
    if title:
        ax.set_title(title)
    return ax


def plot_masks(masks, ax=None, title: str | None = None, ylabels: Sequence[str] | None = None, xlabel: str = "step"):
    """Keep-masks as pictures: a ``(steps, h, w)`` stack drawn side by side (dark = kept), or a
    ``(units, steps)`` matrix (layer variant; unit 0 at the bottom)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    m = np.asarray(masks, dtype=float)
    cmap = ListedColormap(["#f1f1f1", "#1d3557"])
    if m.ndim == 3:
        steps, h, w = m.shape
        gap = np.full((h, 2), np.nan)
        img = np.concatenate([x for t in range(steps) for x in (m[t], gap)][:-1], axis=1)
        if ax is None:
            _, ax = plt.subplots(figsize=(1.3 * steps + 1, 1.8))
        ax.imshow(img, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([t * (w + 2) + w / 2 for t in range(steps)])
        ax.set_xticklabels([str(t) for t in range(steps)])
        ax.set_yticks([])
        ax.set_xlabel(xlabel)
    elif m.ndim == 2:
        if ax is None:
            _, ax = plt.subplots(figsize=(max(4, 0.3 * m.shape[1] + 1), 2.6))
        ax.imshow(m, cmap=cmap, vmin=0, vmax=1, aspect="auto", origin="lower", interpolation="nearest")
        ax.set_yticks(range(m.shape[0]))
        ax.set_yticklabels(list(ylabels) if ylabels is not None else [str(i) for i in range(m.shape[0])], fontsize=8)
        ax.set_xlabel(xlabel)
    else:
        raise ValueError(f"masks must be (steps, h, w) or (units, steps), got shape {m.shape}.")
    ax.grid(False)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def plot_sites(values: dict, ax=None, title: str | None = None, log: bool = False, fmt: str = ".2g",
               cmap: str = "viridis", label: str = ""):
    """A value per dropout site (Fisher score, dropout probability) as a heatmap: one row per sublayer kind
    (embeddings, attention, attention output, FFN output), one column per unit, bottom to top."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    kinds = ["embeddings", "attention", "attention_output", "ffn_output"]
    units = ["embeddings"] + sorted({k.split(".")[0] for k in values if k != "embeddings"},
                                    key=lambda u: int(u[5:]) if u[5:].isdigit() else 0)
    mat = pd.DataFrame(np.nan, index=kinds, columns=units)
    for k, v in values.items():
        unit, _, kind = k.partition(".")
        mat.loc[kind or "embeddings", unit] = float(v)
    mat = mat.dropna(how="all")
    if ax is None:
        _, ax = plt.subplots(figsize=(1.0 * len(units) + 2, 2.8))
    data = np.log10(mat) if log else mat
    annot = mat.map(lambda v: "" if not np.isfinite(v) else format(v, fmt))
    sns.heatmap(data, annot=annot, fmt="", cmap=cmap, ax=ax, cbar_kws={"label": ("log10 " if log else "") + label},
                linewidths=0.5, annot_kws={"fontsize": 7})
    ax.set_xlabel("unit (bottom to top)")
    ax.set_ylabel("")
    ax.grid(False)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def plot_distributions(df: pd.DataFrame, x: str, metric: str = "accuracy", value: str = "value", hue: str | None = None,
                       order: Sequence[str] | None = None, ax=None, title: str | None = None,
                       chance: float | None = None, ylabel: str | None = None):
    """Violins of every run's ``metric`` per ``x`` (one point per run: e.g. learning rate x seed), with
    the mean and its 95% CI drawn as a black diamond and bar: mean, spread and best run in one picture.
    ``hue`` colours the points (e.g. by learning rate); the violins stay one per ``x``."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    d = df[df["metric"] == metric] if "metric" in df.columns else df
    d = d.assign(_v=d[value].astype(float))
    order = list(order) if order is not None else list(dict.fromkeys(d[x]))
    if ax is None:
        _, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(order)), 4))
    sns.violinplot(data=d, x=x, y="_v", order=order, cut=0, inner=None, density_norm="width", ax=ax,
                   color="#cfe2f3", linewidth=0.8)
    if hue is None:
        sns.stripplot(data=d, x=x, y="_v", order=order, size=4, alpha=0.8, ax=ax, color="#1d3557", jitter=0.15)
    else:
        sns.stripplot(data=d.assign(**{hue: d[hue].astype(str)}), x=x, y="_v", hue=hue, order=order, size=5,
                      alpha=0.9, ax=ax, jitter=0.15, palette="deep")
    agg = aggregate(d, by=(x,), value="_v", metric=None, per_configuration=False).set_index(x).reindex(order)
    ax.errorbar(np.arange(len(order)) + 0.3, agg["mean"], yerr=agg["ci95"].fillna(0), fmt="D", color="black",
                capsize=4, label="mean, 95% CI")
    if chance is not None:
        ax.axhline(chance, ls="--", color="grey", lw=1, label="chance")
    ax.legend(fontsize=8, loc="lower right", title=hue)
    ax.set_xlabel("")
    ax.set_ylabel(ylabel or f"{metric} (one point per run)")
    if title:
        ax.set_title(title, fontsize=10)
    return ax
