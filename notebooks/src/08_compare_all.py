# %% [markdown]
# # 08 · Every method side by side: one protocol, one leaderboard
#
# {{colab}}
#
# **Learning goals.** After this notebook you can
#
# 1. explain why results from different notebooks are not comparable, and what a *fair* protocol
#    fixes: the same data, seeds, evaluation sets and step budgets for every method, a head that reads
#    the encoder the way it was pretrained, each entry's learning rate chosen on dev, and test metrics
#    at the best dev step;
# 2. read a leaderboard with uncertainty: mean ± 95% CI over seeds, paired differences to a baseline,
#    in distribution and on held-out domains, in a low-data and a full-data regime;
# 3. weigh accuracy against cost: trainable parameters, step time and the size of what must be stored;
# 4. say which findings of the papers behind notebooks 02-07 held at our scale and which did not.
#
# The notebook reads the results store and **runs only what is missing** (finished runs are reused by
# fingerprint), so after `run.py study` it mostly reads; rerun it with other seeds and it trains only
# the new ones. Recap: notebooks 01-07 each taught one method with the settings that suit it; here
# every method gets the same protocol.

# %%
# {{install}}

# %% [markdown]
# ## Parameters

# %% tags=["parameters"]
mode: str = "ci"                 # "ci": minutes on 2 CPU cores; "full": results worth teaching from
backbone: str = "minilm"
seeds: list[int] = [0, 1, 2, 3, 4]  # the protocol's 5 seeds; ci mode uses the first one
task: str = "reviews"
store: str = "runs"
entries: str | list[str] = "all"  # "all", or a list of entry names or families (see the protocol table)
run_missing: bool = True         # False: only read what the store holds
executor: str = "serial"         # "ray": the missing runs in parallel (pip install 'tutorfinetune[scale]')
workers: int = 0                 # runs at once on Ray (0: the default for this machine)
low_data: int = 128              # training reviews of the low-data regime
low_steps: int = 200             # optimiser steps of the low-data regime (25 epochs of 128 reviews)
full_steps: int = 600            # optimiser steps with every training review (8 epochs: the plateau of 02b's dev curves)
fisher_n: int = 256              # sentences for guided dropout's Fisher scores (as notebook 05)
inter_lr: float = 1e-5           # intermediate phase of the STILTs entries (1e-5 as in Phang et al.; notebook 07 ablates 1e-4)
inter_epochs: int = 2

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import display

import tutorfinetune as tft
from tutorfinetune import analysis as an
from tutorfinetune import exercises as ex
from tutorfinetune import notebook as nb
from tutorfinetune.fisher import sublayer as sf
from tutorfinetune.recipes import stilts as st
from tutorfinetune.studies import leaderboard as lb

info = nb.setup(mode, seeds)
P = nb.typed_parameters(globals())  # papermill passes text: every parameter gets its annotated type
chosen = lb.entries(entries if entries == "all" else tft.as_list(entries, str, "entries"))  # a list given as text too
data = tft.load_task(task)
S = nb.mode_settings(
    mode,
    ci=dict(seeds=info["seeds"][:1], regimes=lb.default_regimes("ci"), max_eval_examples=16, fisher_n=16,
            inter_steps=8, inter_examples=200, batch_size=4, max_length=64, domains=data.eval_set_names("domains")[:1],
            fun_batches=2),
    full=dict(seeds=info["seeds"], regimes=[lb.Regime("low-data", low_data, low_steps), lb.Regime("full-data", None, full_steps)],
              max_eval_examples=None, fisher_n=fisher_n, inter_steps=None, inter_examples=None, batch_size=16,
              max_length=128, domains=data.eval_set_names("domains"), fun_batches=10),
)
held_out = S["domains"]
eval_sets = data.eval_set_names("in-distribution") + held_out
base = tft.TrainConfig(batch_size=S["batch_size"], max_length=S["max_length"], max_eval_examples=S["max_eval_examples"],
                       eval_sets=data.eval_set_names("dev") + eval_sets)
protocol = tft.studies.Protocol.for_mode(mode, seeds=tuple(S["seeds"]), lr_seeds=tuple(S["seeds"][:1]))
STUDY = "08_compare_all"
sns.set_theme(style="whitegrid", context="notebook")
print(f"protocol: {protocol}")
pd.DataFrame([{"entry": e.name, "family": e.family, "lr grid": protocol.grid(e.grid), "taught in": f"notebook {e.notebook}",
               "how": "two phases (dense, then sparse)" if e.recipe == "lt-sft" else
               ("intermediate model, then target" if e.family == "stilts" else "one run")} for e in chosen])

# %% [markdown]
# ## 1. The protocol
#
# * **Data**: the bundled reviews; training on the four source domains, evaluation on the
#   in-distribution test and the three held-out domains (hotels, games, health).
# * **Regimes**: *low-data* (a stratified subsample of the training reviews, the same rows for a given
#   seed in every entry) and *full-data* (every review), each with a fixed number of optimiser steps.
# * **Seeds**: every entry runs the same seeds; a seed fixes the head initialisation, the subsample
#   and the data order, so differences between entries are **paired by seed**.
# * **Readout**: the head reads the encoder the way the checkpoint was pretrained (`readout="auto"`:
#   mean pooling for all-MiniLM-L6-v2). BERT's `[CLS]` pooler, which this backbone never trained,
#   penalises every method that moves the body little (probe, adapters, LoRA, small-K sparse).
# * **Model selection on dev**: every run evaluates dev about ten times (twice in ci mode) and reports
#   the test sets at its best dev step; a test set never decides anything.
# * **Learning rate per entry, chosen on dev**: each entry tries its grid (methods that train the
#   whole body {3e-5, 1e-4, 3e-4}, light ones {3e-4, 1e-3, 3e-3}) on the first seed in each regime,
#   then every seed runs at the rate with the best dev score (the table shows it). Every entry gets the
#   same three tries, so entries with more knobs are not favoured. In ci mode each grid is its middle
#   value: the same code path, nothing chosen.
# * What needs a one-off computation gets it once: the Fisher scores of guided dropout (cached per
#   backbone) and the intermediate models of STILTs (cached in the store, shared with notebook 07).

# %%
probe = tft.load_backbone(backbone, num_labels=data.num_labels, readout=protocol.readout)  # the head the runs train
head_params = sum(p.numel() for p in probe.blocks.parameters("head"))
total_params = sum(p.numel() for p in probe.model.parameters())
needs = {n for e in chosen for n in e.needs}
scores = (sf.sublayer_scores(probe, "contrastive", data.texts(), corpus=task, n=S["fisher_n"], seed=0)
          if "scores" in needs else None)
inter_names = [n for n in st.INTERMEDIATE_TASKS if n in needs]
inters = (st.train_intermediates(backbone, st.intermediate_tasks(data, inter_names), f"{store}/intermediate", lr=inter_lr,
                                 epochs=inter_epochs, max_steps=S["inter_steps"], max_examples=S["inter_examples"],
                                 max_eval_examples=S["max_eval_examples"], batch_size=S["batch_size"], store=store,
                                 study=STUDY, select_best=True)
          if inter_names else {})
res = lb.run_leaderboard(backbone, data, chosen, S["regimes"], S["seeds"], base=base, store=store, study=STUDY,
                         scores=scores, intermediates=inters, run_missing=run_missing, protocol=protocol,
                         executor=executor, workers=workers or None, fisher_batches=S["fun_batches"])
lr_table = pd.DataFrame(res.attrs.get("lr_table", []))
cost = lb.costs(store, res.run_id.unique(), head_params)
regimes = [r.name for r in S["regimes"]]
print(f"{res.run_id.nunique()} runs: {len(chosen)} entries x {len(regimes)} regimes x {len(S['seeds'])} seeds "
      f"(backbone: {total_params:,} parameters, head {head_params:,})")

# %% [markdown]
# ## 2. The leaderboards
#
# One table per regime, sorted by the held-out mean (best first). Accuracy in %, mean ± 95% CI over
# seeds; *vs full FT* is the paired difference to full fine-tuning on the held-out mean, in points.
# `lr (dev)` is the learning rate chosen on dev for the entry in that regime (all candidates' dev
# scores: `lr_table`). Costs are medians over seeds: trainable parameters (the most that trained at any step), ms per
# optimiser step on this machine (noisy: `benchmarks/` measures ratios side by side), and MiB to
# store the result next to the pretrained backbone.

# %%
boards = {r: an.leaderboard_table(res, cost, eval_sets, held_out, r) for r in regimes}
for r, t in boards.items():
    print(f"\n{r} ({next(x for x in S['regimes'] if x.name == r).steps} steps)")
    display(t)

# %%
if lr_table.get("dev accuracy") is not None:  # full mode: every candidate's dev score, the chosen one marked
    display(lr_table.pivot_table(index=["regime", "entry"], columns="lr", values="dev accuracy").round(3))

# %% [markdown]
# **The budgets.** The full-data budget, 600 steps (8 epochs), comes from the dev curves of notebook
# 02b, measured under this protocol: at its chosen learning rate every LoRA seed peaked between about
# step 240 and 420 of 600, and the slower learning-rate candidates kept improving until about 540. The
# low-data budget (200 steps on 128 reviews) gives light methods as many steps to converge; the
# best-dev-step checkpoint keeps full fine-tuning from paying for over-training. Both are parameters;
# the check below says whether this run's curves flattened.
#
# **Did every entry reach its plateau?** Dev accuracy against optimiser steps (mean over seeds), one
# panel per family and regime, and the median step at which each entry's dev score peaked. A curve
# still rising at the end means the budget favours the entries that learn fastest; a best step far
# before the end means the budget was long enough (the best-dev checkpoint keeps what was reached).

# %%
records = [r for r in tft.results.load_records(store) if r["run_id"] in set(res.run_id)]
run_meta = res.drop_duplicates("run_id").set_index("run_id")[["entry", "family", "regime"]]
hist = an.histories(records)
hist = hist.drop(columns=[c for c in run_meta.columns if c in hist]).join(run_meta, on="run_id")
if "dev_accuracy" in hist and hist["dev_accuracy"].notna().any():
    sns.relplot(data=hist.dropna(subset=["dev_accuracy"]), x="step", y="dev_accuracy", hue="entry", col="family",
                row="regime", kind="line", errorbar=None, height=2.4, aspect=1.25, facet_kws={"sharex": "row"})
    plt.show()
an.best_steps(res, records, ["regime", "entry"])

# %% [markdown]
# ## 3. Accuracy against what it costs
#
# Each point is an entry (mean over seeds, 95% CI bars), its trainable parameters on a log axis. The
# dashed line is full fine-tuning. Entries in the upper left buy accuracy cheaply.

# %%
acc = res[res.metric == "accuracy"]
held = an.held_out_mean(acc, held_out, by=["entry", "family", "regime"])
both = pd.concat([acc[acc.eval_set == "in-distribution"], held], ignore_index=True)
agg = an.aggregate(both, by=("regime", "eval_set", "entry", "family"))
agg = agg.merge(cost.groupby(["entry", "regime"], as_index=False)["trainable"].median(), on=["entry", "regime"])
fams = list(dict.fromkeys(agg.family))
colors = dict(zip(fams, sns.color_palette("deep", len(fams))))
fig, axes = plt.subplots(len(regimes), 2, figsize=(15, 5.2 * len(regimes)), squeeze=False)
for i, r in enumerate(regimes):
    for j, ev in enumerate(["in-distribution", "held-out (mean)"]):
        ax, sub = axes[i, j], agg[(agg.regime == r) & (agg.eval_set == ev)].sort_values("mean").copy()
        # entries that train the same number of parameters are spread a little along x so that each stays readable
        sub["x"] = sub.trainable * 1.4 ** sub.groupby("trainable").cumcount()
        for f in fams:
            s = sub[sub.family == f]
            ax.errorbar(s.x, s["mean"], yerr=s.ci95.fillna(0), fmt="o", capsize=3, color=colors[f], label=f)
        for row in sub.itertuples():
            ax.annotate(row.entry, (row.x, row.mean), fontsize=7, xytext=(4, 4), textcoords="offset points", rotation=35)
        ref = sub[sub.entry == "full fine-tuning"]
        if len(ref):
            ax.axhline(ref["mean"].iloc[0], ls="--", color="grey", lw=1)
        ax.set(xscale="log", xlabel="trainable parameters (same counts spread apart slightly)",
               ylabel="accuracy (mean, 95% CI)", title=f"{r}: {ev}")
    axes[i, 0].legend(fontsize=7, loc="lower right")
plt.tight_layout()
key_figure = plt.gcf()  # saved with the measured summary (the full-mode reference shows it)
plt.show()

# %% [markdown]
# ## 4. In distribution vs each held-out domain
#
# The gap between the in-distribution test and each held-out domain, per entry: does any method
# shrink the domain gap, or does it move every column together?

# %%
mean_by = an.aggregate(acc, by=("regime", "entry", "eval_set"))
fig, axes = plt.subplots(1, len(regimes), figsize=(7 * len(regimes), 0.38 * len(chosen) + 2), squeeze=False)
for ax, r in zip(axes[0], regimes):
    mat = mean_by[mean_by.regime == r].pivot(index="entry", columns="eval_set", values="mean")[eval_sets]
    mat = mat.loc[boards[r].entry] if len(boards[r]) else mat
    sns.heatmap(100 * mat, annot=True, fmt=".1f", cmap="viridis", ax=ax, cbar_kws={"label": "accuracy %"})
    ax.set(title=f"{r}: mean accuracy per eval set", xlabel="", ylabel="")
    ax.tick_params(axis="x", rotation=25)
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Explore: filter by family, regime and eval set
#
# A bar per entry with its 95% CI (static figure: every family, the first regime, the held-out mean).

# %%
full_rows = pd.concat([acc, held], ignore_index=True)


def show_board(family, regime, eval_set):
    sub = full_rows[(full_rows.regime == regime) & (full_rows.eval_set == eval_set)]
    if family != "all":
        sub = sub[sub.family == family]
    a = an.aggregate(sub, by=("entry", "family")).sort_values("mean")
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(a) + 1.5))
    ax.barh(a.entry, 100 * a["mean"], xerr=100 * a.ci95.fillna(0), color=[colors[f] for f in a.family], capsize=3)
    ax.set(xlabel="accuracy % (mean, 95% CI)", title=f"{regime}, {eval_set}, family: {family}",
           xlim=(max(0, 100 * (a["mean"] - a.ci95.fillna(0)).min() - 5), 100))


nb.explore(show_board, {"family": ["all"] + fams, "regime": regimes, "eval_set": ["held-out (mean)"] + eval_sets})

# %% [markdown]
# ## 5. The papers' findings at our scale
#
# Each row is a claim of a paper behind notebooks 02-07, tested on this run's leaderboard (paired by
# seed, held-out mean unless it says otherwise) by `an.claims_table`: "reproduced" or "contradicted" when
# the difference is significant after Holm's adjustment over every row, else "inconclusive", with the
# smallest effect these seeds could have detected (MDE). "At least as good" claims are non-inferiority
# claims, judged on the 95% interval against a margin of one point: "reproduced" when the whole
# interval lies above −1 point, "contradicted" when it lies below (an interval that merely contains 0
# proves nothing). With a dozen claims in two regimes, some "significant" rows would appear by chance
# without the Holm adjustment, which keeps the chance of any false verdict at 5% or less. Two rows
# test the papers' ideas rather than their recipes, marked [D]: LPFT here probes and then trains
# adapters (Kumar et al.'s LP-FT fine-tunes the whole model), and the STILTs domain row uses domain
# classification, not a data-rich labelled task like Phang et al.'s MNLI.

# %%
HELD, IN_DIST = {"eval_sets": ("held-out (mean)",), "label": "held-out"}, {"eval_sets": ("in-distribution",), "label": "in-dist."}
CLAIMS = [
    an.Claim("Houlsby/Pfeiffer (adapters)", "a task adapter is as good as full fine-tuning", "task adapter (rf 16)",
             "full fine-tuning", "at least", **HELD),
    an.Claim("Liu et al. (FUN)", "gradual unfreezing of adapters helps on shifted data", "adapter + GU",
             "task adapter (rf 16)", "greater", **HELD),
    an.Claim("Liu et al. (FUN)", "FUN is at least as good as standard adapter training", "adapter + FUN",
             "task adapter (rf 16)", "at least", paper_number="+2.0 points on average (mBERT adapters; notebook 03)",
             **HELD),
    # Kumar et al.'s LP-FT probes the head, then fine-tunes the whole model; the entry here is the LPFT schedule
    # of Liu et al. on adapters (probe, then the adapters), so the row tests the idea, not their recipe [D]
    an.Claim("Liu et al. (LPFT, after Kumar et al.)", "probing the head first helps out of distribution", "adapter + LPFT",
             "task adapter (rf 16)", "greater", **HELD),
    an.Claim("O'Neill & Dutta (GradDrop)", "GradDrop beats standard fine-tuning on shifted data", "GradDrop element p=0.3",
             "full fine-tuning", "greater", **HELD),
    an.Claim("O'Neill & Dutta (GradDrop)", "GradDrop beats gradual unfreezing", "GradDrop element p=0.3", "full + GU",
             "greater", **HELD),
    an.Claim("Sharma et al. (guided dropout)", "guided dropout beats standard dropout", "guided dropout", "full fine-tuning",
             "greater", **IN_DIST),
    an.Claim("Sharma et al. (guided dropout)", "guided dropout beats Gaussian dropout", "guided dropout", "Gaussian dropout",
             "greater", **IN_DIST),
    an.Claim("Ansell et al. (LT-SFT)", "a few percent of the entries come close to dense fine-tuning", "LT-SFT K=2%",
             "full fine-tuning", "at least", **IN_DIST),
    an.Claim("Ansell et al. (LT-SFT)", "lottery-ticket entries beat a random mask of the same size", "LT-SFT K=2%",
             "random-mask SFT K=2%", "greater", **IN_DIST),
    an.Claim("Chang & Lu (STILTs)", "the synthetic real-vs-fake task helps the target", "STILTs: real-vs-fake",
             "full fine-tuning", "greater", **IN_DIST),
    # Phang et al. used data-rich labelled tasks (MNLI, QQP); the only intermediate task here with no synthetic
    # text is domain classification of the bundled unlabelled reviews [D], a far weaker test of their claim
    an.Claim("Phang et al. (STILTs), with domain classification [D]", "an intermediate task helps the target",
             "STILTs: domain", "full fine-tuning",
             "greater", **IN_DIST),
]
# `both`: in-distribution and held-out-mean rows of every run (section 3), in the regimes' order
claims = an.claims_table(pd.concat([both[both.regime == r] for r in regimes]), CLAIMS, by="entry", split="regime")
claims

# %% [markdown]
# ## Exercises
#
# **Implement it.** Complete `minimal_detectable_effect(std, n)`: the "could detect ≥ x points" of an
# inconclusive verdict. It receives `std`, the sample standard deviation of the n paired differences
# (a float, in accuracy units), and `n`, the number of pairs (seeds, an int ≥ 2). It returns a float:
# the smallest true mean difference that a two-sided paired t-test at level 0.05 would find
# significant with probability 0.8 (80% power). Derive it from two facts, both with n − 1 degrees of
# freedom and the standard error s/√n: the test is significant when the observed mean exceeds
# t(0.975) standard errors, and the observed mean falls more than t(0.80) standard errors below the
# true difference only 20% of the time. `student_t.ppf(q, n - 1)` gives t(q) (`student_t` is
# `scipy.stats.t`, imported in the cell). The check compares it with the package for three (std, n).
#
# **Reasoning.** Answer with a letter; the check says whether it is right (the answers are not in this
# notebook) and explains once it is.
#
# 1. Each entry's learning rate is chosen on dev. What would go wrong if each entry kept instead the
#    rate with the best *test* score? (a) nothing, since dev and test come from the same distribution;
#    (b) the test set would have to be split, so each half would be noisier; (c) the reported score
#    would be the best of several noisy test estimates, biased upwards, and more so for entries whose
#    candidates are noisier: the test set would no longer estimate accuracy on unseen data.
# 2. "A task adapter is as good as full fine-tuning" is judged as non-inferiority: "reproduced" only
#    when the whole 95% interval lies above −1 point. Why a margin, rather than "the interval
#    contains 0"? (a) with few seeds an interval containing 0 is what a noisy comparison gives for
#    almost any true difference, so "contains 0" would reward imprecision; the margin says how much
#    worse still counts as "as good", and only an interval entirely above it shows that; (b) the
#    margin compensates for the Holm adjustment of the other rows; (c) accuracies are rounded to a
#    point, so smaller differences cannot be measured.
# 3. Why are the claims' p-values Holm-adjusted over the whole table? (a) Holm makes each interval
#    narrower, so more claims are decided; (b) with many tests at level 0.05 each, the chance that at
#    least one claim with no real effect comes out "reproduced" or "contradicted" grows with the number
#    of tests; Holm keeps the chance of any such false verdict in the table at 5% at most; (c) the
#    tests share the full fine-tuning runs, and Holm removes that correlation.
# 4. A claim reads "inconclusive (could detect ≥ x points)". What does it tell you? (a) had the true
#    difference been x points or more, these seeds would have found it significant about 80% of the
#    time; a smaller effect, or none, is consistent with the run, so it neither supports nor rules out
#    the claim below that size; (b) the true difference is smaller than x points; (c) the method is
#    x points worse than its comparison.

# %%
# Implement it: complete the function, then run this cell.
from scipy.stats import t as student_t


def minimal_detectable_effect(std, n):
    """Spread of the paired differences and number of pairs -> the MDE at 80% power, two-sided alpha 0.05."""
    ### BEGIN SOLUTION
    return (student_t.ppf(0.975, n - 1) + student_t.ppf(0.80, n - 1)) * std / np.sqrt(n)
    ### END SOLUTION


ex.implement("mde", minimal_detectable_effect)

answer_1 = None  # "a", "b" or "c"
answer_2 = None
answer_3 = None
answer_4 = None
### BEGIN SOLUTION
answer_1, answer_2, answer_3, answer_4 = "c", "a", "b", "a"
### END SOLUTION
ex.ask("08.lr-on-dev", answer_1)
ex.ask("08.margin", answer_2)
ex.ask("08.holm", answer_3)
ex.ask("08.mde", answer_4)

# %% [markdown]
# ## Measured summary
#
# Built from this run's numbers.

# %%
sentences = []
for r in regimes:
    t = boards[r]
    if t.empty:
        continue
    top = t.iloc[0]
    ft = t[t.entry == "full fine-tuning"]
    sentences.append(f"{r}: best held-out mean {top['entry']} ({top['held-out mean']}%)"
                     + (f", full fine-tuning {ft['held-out mean'].iloc[0]}%" if len(ft) else "") + ".")
    sub = held[held.regime == r]
    better, worse = [], []
    for e in [x for x in sub.entry.unique() if x != "full fine-tuning"] if "full fine-tuning" in set(sub.entry) else []:
        d = an.paired_difference(sub, e, "full fine-tuning", by="entry")
        if np.isfinite(d["ci95"]) and d["lo"] > 0:
            better.append(f"{e} ({an.format_ci(d['mean'], d['ci95'])})")
        elif np.isfinite(d["ci95"]) and d["hi"] < 0:
            worse.append(f"{e} ({an.format_ci(d['mean'], d['ci95'])})")
    sentences.append(f"{r}, held-out vs full fine-tuning (paired, points): above beyond seed noise: "
                     f"{'; '.join(better) or 'none'}; below: {'; '.join(worse) or 'none'}.")
if len(claims):
    def listed(rows):
        return "; ".join(f"{r['claim']} ({r['regime']}, {r['ours (points)']})" for _, r in rows.iterrows()) or "none"

    held_up = claims[claims.verdict == "reproduced"]
    failed = claims[claims.verdict == "contradicted"]
    unclear = claims[claims.verdict.str.startswith("inconclusive")]
    sentences.append(f"Of {len(claims)} claim x regime tests (Holm-adjusted), {len(held_up)} were reproduced "
                     f"({listed(held_up)}); {len(failed)} were contradicted ({listed(failed)}); {len(unclear)} were "
                     "inconclusive.")
for r in regimes:
    sub = held[held.regime == r]
    if "full fine-tuning" not in set(sub.entry):
        continue
    ok = []
    for e in sub.entry.unique():
        d = an.paired_difference(sub, e, "full fine-tuning", by="entry") if e != "full fine-tuning" else None
        if d is None or not np.isfinite(d["ci95"]) or d["hi"] >= 0:
            c = cost[(cost.entry == e) & (cost.regime == r)]
            ok.append((float(c.trainable.median()), float(c.stored_mib.median()), e, d))
    t, mib, e, d = min(ok)
    sentences.append(f"{r}: the cheapest entry not below full fine-tuning on held-out domains is {e} "
                     f"({int(t):,} trainable parameters, {mib:.1f} MiB to store"
                     + (f", {an.format_ci(d['mean'], d['ci95'])} points" if d is not None else "") + ").")
nb.save_summary(STUDY, " ".join(sentences), claims, store=store, mode=mode, seeds=S["seeds"],
                figures={"key": key_figure})

# %% [markdown]
# ### Discussion
#
# * **Read the intervals, not the ranks.** Even with five seeds, neighbours on the leaderboard are usually
#   within noise of each other; the paired column says which differences are real.
# * **Scale.** Every paper here worked with larger models, more data and far longer runs (thousands
#   of steps, often cross-lingual transfer); our runs are a few hundred steps of MiniLM on English
#   domain shift (the regimes' budgets are printed above the tables). A claim that does not hold here may still hold there; the method notebooks discuss why each
#   one might not transfer.
# * **Three learning rates per entry, chosen on dev.** A bigger grid would help every entry a little;
#   what matters for fairness is that every entry gets the same number of tries and the choice never
#   sees a test set. The paper-specific knobs (GradDrop's p, K of LT-SFT, schedules' k) are fixed.
# * **Costs.** Step times come from this run's machine and include the methods' own work (FUN's
#   Fisher passes, LT-SFT's two phases), but not one-off work (guided dropout's Fisher scores, the
#   STILTs intermediate model). Stored size counts what must be kept beside the pretrained backbone.
# * In `mode="ci"` (what CI runs) every run is cut short (the next cell prints this run's scale from
#   its settings): the pipeline is exercised, the numbers are not evidence. Quote `mode="full"`.

# %%
print(nb.describe_scale(mode, S))
