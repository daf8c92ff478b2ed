# %% [markdown]
# # 03 · Scheduled unfreezing and Fisher information: GU, LPFT and FUN
#
# {{colab}}
#
# **Learning goals.** After this notebook you can
#
# 1. explain why training the units of a network on a *schedule* (top first, one more every `k`
#    steps) might transfer better than training all of them from the start;
# 2. run the schedules of Liu et al. (NAACL 2024, "FUN with Fisher") on task adapters and on full
#    fine-tuning with `methods=["adapter", ("gu", {"k": 62})]`, and read a unit × step
#    trainability map;
# 3. say what a fair test of a schedule needs (no warm-up under the first interval, intervals long
#    enough to matter, every unit trained for at least half the run, a learning rate chosen on dev
#    for each schedule) and why an earlier verdict of this notebook may have come from the set-up;
# 4. estimate the trace of the Fisher information, tr(F), per unit, follow it during training, and
#    see what FUN (*Fisher UNfreezing*: unfreeze the frozen unit with the largest tr(F)) chooses,
#    with tr(F) summed over a unit (the paper) and per parameter;
# 5. compare the schedules in distribution and on held-out domains over seeds, paired by seed, and
#    say whether the paper's claims are reproduced, contradicted or beyond what these seeds can tell.
#
# Recap: notebook 01 trained everything (the baseline), notebook 02 trained task adapters with the
# body frozen. Both used every trainable unit from the first step. Here only *when* each unit joins
# changes. The comparison follows the project's fair protocol (`tft.studies.protocol`): the head
# reads the encoder the way the checkpoint was pretrained (mean pooling for all-MiniLM-L6-v2), every
# run reports the test sets at its best dev step, and each entry (body × schedule) gets its own
# learning rate, chosen on dev.

# %%
# {{install}}

# %% [markdown]
# ## Parameters

# %% tags=["parameters"]
mode: str = "ci"                 # "ci": minutes on 2 CPU cores; "full": results worth teaching from
backbone: str = "minilm"
seeds: list[int] = [0, 1, 2, 3, 4]   # the protocol's 5 seeds in full mode; ci mode uses the first
task: str = "reviews"
store: str = "runs"
schedules: list[str] = ["standard", "gu", "lpft", "fun", "rand", "gu-rev"]   # on task adapters
full_schedules: list[str] = ["standard", "gu", "fun"]                        # on full fine-tuning
fun_scores: list[str] = ["trace", "per-parameter"]   # FUN on full fine-tuning: tr(F) summed over a unit (the paper), per parameter [D]
num_epochs: float = 10           # full mode: 750 optimiser steps, room for k of at least 50 steps
warmup: float = 0.0              # share of the steps in linear warm-up; the FUN authors ran none
k: int | str | None = "auto"     # unfreezing interval (optimiser steps); "auto": the protocol's (su.protocol_k)
fisher_batches: int = 40         # FUN: batches per tr(F) estimate (the paper: 40)
label_mode: str = "sample"       # FUN/tracker labels: "sample" (paper), "argmax" (authors' code), "empirical"
track_every: int = 25            # tr(F) curves: one estimate every this many steps ...
track_batches: int = 5           # ... on this many batches
executor: str = "serial"         # "ray": the runs of each entry in parallel (pip install 'tutorfinetune[scale]')
workers: int = 0                 # runs at once on Ray (0: the default for this machine)

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
from tutorfinetune.engine import lr_factor
from tutorfinetune.methods import MethodError
from tutorfinetune.methods import unfreezing as su

info = nb.setup(mode, seeds)
P = nb.typed_parameters(globals())  # papermill passes text: every parameter gets its annotated type
for s in schedules + full_schedules:
    if s not in su.SCHEDULES or s == "fixed":
        raise tft.ConfigError(f"Unknown schedule {s!r} in the parameters; use {[x for x in su.SCHEDULES if x != 'fixed']}.")
if "standard" not in schedules or "standard" not in full_schedules:
    raise tft.ConfigError("Keep 'standard' in schedules and full_schedules: it is the baseline every claim is measured against.")
if not fun_scores or set(fun_scores) - {"trace", "per-parameter"}:
    raise tft.ConfigError(f"fun_scores must list 'trace' and/or 'per-parameter', got {fun_scores!r}.")
if isinstance(k, str):  # typed above: a number of steps, None, or text, of which only "auto" is meant
    if k.strip().lower() != "auto":
        raise tft.ConfigError(f"k must be a number of optimiser steps, 'auto' or None, got {k!r}.")
    k = None
k = k or None  # "auto", None and 0: the protocol's k (below)
data = tft.load_task(task)
S = nb.mode_settings(
    mode,  # ci: one seed, 16 steps, and the random order left out, so ci trains no more runs than before
    ci=dict(seeds=info["seeds"][:1], schedules=[s for s in schedules if s != "rand"], max_steps=16,
            fisher_batches=min(fisher_batches, 2), track_every=4, track_batches=1, max_eval_examples=16,
            batch_size=8, max_length=64, domains=data.eval_set_names("domains")[:1]),
    full=dict(seeds=info["seeds"], schedules=schedules, max_steps=None, fisher_batches=fisher_batches,
              track_every=track_every, track_batches=track_batches, max_eval_examples=None,
              batch_size=16, max_length=128, domains=data.eval_set_names("domains")),
)
protocol = tft.studies.Protocol.for_mode(mode, seeds=tuple(S["seeds"]), lr_seeds=tuple(S["seeds"][:1]))
in_dist, held_out = data.eval_set_names("in-distribution"), S["domains"]
test_sets = in_dist + held_out
base = tft.TrainConfig(num_epochs=num_epochs, batch_size=S["batch_size"], max_length=S["max_length"], warmup=warmup,
                       max_steps=S["max_steps"],
                       max_eval_examples=S["max_eval_examples"], eval_sets=data.eval_set_names("dev") + test_sets)
total_steps = base.total_steps(len(data.train))
warmup_steps = int(round(warmup * total_steps))
probe = tft.load_backbone(backbone, num_labels=data.num_labels)
L = probe.blocks.num_blocks
units_adapter = [f"adapter{j}" for j in range(L)]
units_full = ["embeddings"] + [f"block{j}" for j in range(L)]


def choose_k(n_units):
    """The protocol's k (su.protocol_k: first unit after the warm-up, every unit at least half the run);
    a budget too short for it (ci mode) falls back to the short-run rule su.auto_k."""
    if k:
        return int(k)
    try:
        return su.protocol_k(total_steps, n_units, warmup_steps)
    except MethodError as e:
        print(f"[ci-sized budget] {e} Falling back to su.auto_k.")
        return su.auto_k(total_steps, n_units)


k_adapter, k_full = choose_k(len(units_adapter)), choose_k(len(units_full))
K = {"adapter": k_adapter, "full": k_full}
STUDY = "03_scheduled_unfreezing"
scale = dict(executor=executor, workers=workers or None)  # how the runs are executed; results do not depend on it
sns.set_theme(style="whitegrid", context="notebook")
print(f"protocol: {protocol}\n{total_steps} optimiser steps per run, {warmup_steps} warm-up steps; k = {k_adapter} "
      f"(adapters, {L} units), {k_full} (full fine-tuning, {L + 1} units).")


# %% [markdown]
# ## 1. Why a schedule might help
#
# Fine-tuning changes a pretrained network to fit a new task, and it can change it *too much*: the
# lower layers hold general features (words, syntax) that transfer across domains and languages, the
# top layers are the most task-specific. Three old ideas follow from this:
#
# * **Gradual unfreezing** (ULMFiT, Howard & Ruder 2018): train the top layer first, then unfreeze
#   one more layer at a time, so the randomly initialised head does not send large, noisy gradients
#   into the general lower layers at the start.
# * **LP-FT** (Kumar et al. 2022): *linear-probe* first (train only the head), then fine-tune
#   everything. A good head before the body moves means the body's features are distorted less.
# * **Scheduled unfreezing of task adapters** (Liu et al. 2024): the same schedules applied to the
#   task adapters of a MAD-X setup. In their cross-lingual experiments (mBERT, XLM-R) top-down
#   gradual unfreezing (GU) and LPFT close most of the gap to full fine-tuning.
#
# Liu et al. also looked at **tr(F)**, the trace of the Fisher information of the trainable
# parameters: how sensitive the model's predictions are to them. Under GU it follows a hill-shaped
# curve: it rises as units join, then falls. Their method **FUN** makes this a rule: at every event,
# compute tr(F) for every unit (frozen ones too) and unfreeze the frozen unit with the largest value.
# FUN recovered nearly the top-down order, which suggests that GU implicitly maximises tr(F).
#
# The Fisher of one parameter is $F_\theta = \mathbb{E}_x\,\mathbb{E}_{\hat y \sim p_\theta(\cdot|x)}
# \big[(\partial_\theta \log p_\theta(\hat y|x))^2\big]$; tr(F) of a unit sums it over the unit's
# parameters. We estimate it as the paper does: squared gradients of the batch-mean loss on a fixed
# set of training batches, labels sampled from the model (`label_mode="sample"`), in eval mode,
# without touching the training gradients ([methods reference §0](../docs/methods.md#0-shared-vocabulary-and-the-fair-protocol) and [methods reference §4](../docs/methods.md#4-scheduled-unfreezing-and-fun)).
#
# **Our setting, and where it differs** ([D] in the [methods reference §4](../docs/methods.md#4-scheduled-unfreezing-and-fun)): the paper trains on English and tests
# zero-shot on other languages; our English-only MiniLM cannot transfer across languages
# (notebook 01), so we test on held-out *domains* (`shift:*`). No language adapters are stacked
# below the task adapter. The paper's runs are tens of thousands of steps with k = 50 to 800; ours
# are 750 steps (10 passes over the 1,198 training reviews) in full mode, so k is the longest
# interval that still lets every unit train for half the run (section 2). FUN on full fine-tuning
# is our extension [D]: the paper used it on adapters only.

# %% [markdown]
# ## 2. The protocol for schedules, and why it matters
#
# A schedule is a claim about *when* units train. Three things in the set-up can decide the result
# instead of the schedule, and the protocol rules them out (`su.protocol_k` computes such a k):
#
# 1. **Warm-up ends before the first unfreeze.** A schedule's point is that the top unit trains
#    alone for a while. If the learning rate is still ramping up during the first interval, that head
#    start is worth only a few steps at the peak rate. The FUN authors ran **no warm-up** (lr 5e-4, k
#    of 50 to 800, [methods reference §4](../docs/methods.md#4-scheduled-unfreezing-and-fun)); so does this notebook (`warmup=0` for every entry, the standard
#    ones too, so the entries differ only in the schedule).
# 2. **Intervals long enough to matter:** k of at least 50 steps at full-data budgets (the
#    paper's smallest k outside its low-data runs).
# 3. **Every unit trains for at least half the run**, so "the bottom adapter trained less" is not
#    what a schedule is measured by: a top-down schedule that leaves the lower units a sliver of an
#    under-trained run loses to standard training for that reason alone.
#
# On top of that, each entry gets its **own learning rate, chosen on dev** (task adapters from the
# "light" grid 3e-4 / 1e-3 / 3e-3, full fine-tuning from 3e-5 / 1e-4 / 3e-4, on the first seed), every
# run reports the test sets at its **best dev step**, and the head reads the encoder by **mean
# pooling**, as all-MiniLM-L6-v2 was trained.
#
# **The earlier verdict.** This notebook's first full run (README: 225 steps, 10% warm-up, k = 12 on
# adapters, one learning rate per body, the BERT pooler readout, the final step, 3 seeds) found FUN
# *below* standard adapter training on the held-out domains. The table below puts that set-up next
# to this run's, with the lr multiplier of the engine's scheduler (`tft.engine.lr_factor`): the
# "head start" is the number of peak-rate steps the top unit gets alone before the next one joins.

# %%
def protocol_row(name, cfg, steps, kk, n_units):
    f = lr_factor(cfg, steps)
    warm = int(round(cfg.warmup * steps))
    last_join = (n_units - 1) * kk  # GU, FUN, random and bottom-up orders: one unit per event
    return {"set-up": name, "steps": steps, "warm-up steps": warm, "k": kk,
            "first unfreeze after warm-up": kk > warm, "k of at least 50": kk >= 50,
            "last unit joins at step": last_join, "last unit trains (share of run)": round(max(0, steps - last_join) / steps, 2),
            "top unit's head start (peak-lr steps)": round(sum(f(s) for s in range(min(kk, steps))), 1)}


old_cfg = tft.TrainConfig(num_epochs=3, batch_size=16, warmup=0.1)
old_steps = old_cfg.total_steps(len(data.train))
protocol_check = pd.DataFrame([
    protocol_row("earlier run: adapters", old_cfg, old_steps, su.auto_k(old_steps, L), L),
    protocol_row("this run: adapters", base, total_steps, k_adapter, L),
    protocol_row("this run: full fine-tuning", base, total_steps, k_full, L + 1),
]).set_index("set-up")
protocol_check

# %% [markdown]
# In the earlier set-up the first unfreeze came inside the warm-up, so GU and FUN were close to
# "standard training with the lower adapters trained for less of a run that was already too short
# for adapters" (issue 21 measured a task adapter gaining 3 to 5 points between 150 and 600 steps),
# at a learning rate chosen for standard training. A deficit of a schedule under those conditions
# says little about the schedule. Whether the deficit survives the protocol is what this run
# measures (sections 6 and 7). In `mode="ci"` the 16-step runs cannot satisfy the rules (the table
# shows it); only full mode can.

# %% [markdown]
# ## 3. The schedules side by side
#
# Units bottom to top: the task adapter in each of the blocks (or, for full fine-tuning, the
# embeddings and the blocks). The head always trains. Blue means *trainable at that step*.

# %%
plan_names = [s for s in su.SCHEDULES if s not in ("fixed", "fun")]
fig, axes = plt.subplots(1, len(plan_names), figsize=(3.1 * len(plan_names), 2.6), sharey=True)
for ax, s in zip(axes, plan_names):
    an.plot_trainability(su.trainability(s, L, k_adapter, total_steps, seed=0), units_adapter, ax=ax,
                         title=f"{s}", k=k_adapter)
    if ax is not axes[0]:
        ax.set_ylabel("")
fig.suptitle(f"Task adapters, k={k_adapter}, {total_steps} steps (FUN chooses its order during training: section 5)", y=1.04)
plt.show()


# %% [markdown]
# ### Explore: schedule and k
#
# Pick a schedule and an interval: the map shows which units train when, and the bars how many
# optimiser steps each unit trains in the end. The dashed line marks half the run, the protocol's
# minimum for every unit; units that never unfreeze within the budget get zero. (Static figure: GU
# with this run's k.)

# %%
def show_schedule(schedule, k):
    mat = su.trainability(schedule, L, k, total_steps, seed=0)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 2.8), gridspec_kw={"width_ratios": [3, 1]})
    an.plot_trainability(mat, units_adapter, ax=a1, title=f"{schedule}, k={k}", k=k)
    steps = mat.sum(axis=1)
    a2.barh(units_adapter, steps, color="#2a6f97")
    a2.axvline(total_steps / 2, color="black", ls="--", lw=1)
    a2.set_xlim(0, total_steps)
    a2.set_xlabel("steps trained (dashed: half the run)")
    never = [u for u, n in zip(units_adapter, steps) if n == 0]
    short = [u for u, n in zip(units_adapter, steps) if 0 < n < total_steps / 2]
    if never or short:
        a2.set_title(("never unfrozen: " + ", ".join(never) + "; " if never else "")
                     + (f"under half the run: {len(short)} unit(s)" if short else ""), fontsize=9, color="darkred")
    plt.tight_layout()


ks = sorted({max(1, k_adapter // 2), k_adapter, 2 * k_adapter, 4 * k_adapter, 10 * k_adapter})
nb.explore(show_schedule, {"schedule": plan_names, "k": ks}, static={"schedule": "gu", "k": k_adapter})

# %% [markdown]
# ## 4. Training under every schedule: task adapters and full fine-tuning
#
# One **entry** per body × schedule, each through `tft.studies.run_entry`: its learning rate is
# chosen on dev from its family's grid on the first seed, then every seed runs at that rate; every
# run evaluates dev about ten times (twice in ci mode) and reports the test sets at its best dev step.
# Each run is the same `tft.train` loop with one more plug-in: the schedule (`"gu"`, `"lpft"`,
# `"fun"`, `"rand"`, `"gu-rev"`), and for standard, GU and FUN a `"fisher-tracker"` that logs tr(F)
# of every unit every few steps (it runs in eval mode on its own fixed batches and changes nothing in
# training). Every parameter that may ever train is in the optimiser from the first step; a frozen
# unit has no gradient, so AdamW leaves it alone until it joins.
#
# FUN on full fine-tuning runs twice: scoring a unit by tr(F) summed over its parameters (the paper's
# rule) and by tr(F) per parameter (`fun_score="per-parameter"`, [D]). The embeddings hold more than
# half of MiniLM's parameters (the 30,522-word vocabulary), so under the sum they can win by size
# alone; per parameter they compete on sensitivity.

# %%
curve_schedules = {"standard", "gu", "fun"}
ENTRIES = {}  # entry -> (body, schedule, FUN's score)
for s in S["schedules"]:
    ENTRIES[f"adapter / {s}"] = ("adapter", s, "trace")
for s in full_schedules:
    for score in (fun_scores if s == "fun" else ["trace"]):
        ENTRIES[f"full / {s}" + (f" ({score})" if s == "fun" else "")] = ("full", s, score)


def entry_methods(body, schedule, score):
    tracked = schedule in curve_schedules and score == "trace"
    meths = su.schedule_methods(schedule, body, K[body], fisher_batches=S["fisher_batches"], label_mode=label_mode,
                                track_every=S["track_every"] if tracked else None, track_batches=S["track_batches"])
    if schedule == "fun" and score != "trace":
        meths[1] = ("fun", {**meths[1][1], "fun_score": score})
    return meths


entry_results = {}
for name, (body, s, score) in ENTRIES.items():
    entry_results[name] = tft.studies.run_entry(
        backbone, data, base, entry_methods(body, s, score), family="light" if body == "adapter" else "full",
        protocol=protocol, store=store, study=STUDY, tags={"body": body, "schedule": name.split(" / ")[1], "k": K[body]},
        **scale)
# one configuration per entry (its seeds at the chosen lr), whatever tags its reused runs carry
res = pd.concat([r.frame.drop(columns=[c for c in ("body", "schedule", "config_id") if c in r.frame])
                 .assign(entry=n, body=ENTRIES[n][0], schedule=n.split(" / ")[1]) for n, r in entry_results.items()], ignore_index=True)
acc = res[(res.metric == "accuracy") & res.eval_set.isin(test_sets)]
held_mean = an.held_out_mean(acc, held_out, by=["entry", "body", "schedule"])
lr_table = pd.concat([r.lr_table.assign(entry=n) for n, r in entry_results.items()], ignore_index=True)
display(lr_table)
table = an.ci_table(pd.concat([acc, held_mean], ignore_index=True), rows="entry")
table.insert(0, "lr (dev)", pd.Series({n: r.chosen_lr for n, r in entry_results.items()}))
table.insert(1, "seeds", acc.groupby("entry").seed.nunique())
table

# %% [markdown]
# **Did every entry reach its plateau?** Dev accuracy along the run, mean over seeds; a curve still
# rising at the end would favour the faster learner. The table gives the median best dev step.

# %%
records = [r for r in tft.results.load_records(store) if r["run_id"] in set(res.run_id)]
hist = an.histories(records)
run_meta = res.drop_duplicates("run_id").set_index("run_id")
for col in ("entry", "body", "schedule"):
    hist[col] = hist["run_id"].map(run_meta[col])
fig, axes = plt.subplots(2, 2, figsize=(12, 7))
for row, body in zip(axes, ("adapter", "full")):
    an.plot_learning_curves(hist[hist.body == body], hue="schedule", smooth=5, axes=row)
    row[0].set_title(f"{body}: training loss")
    row[1].set_title(f"{body}: dev accuracy")
plt.tight_layout()
plt.show()
entry_of = run_meta["entry"]
an.best_steps(run_meta.reset_index(), records, "entry")

# %% [markdown]
# What actually trained, read back from the runs' histories (first seed): the same maps as above,
# now with FUN's own order.

# %%
first = S["seeds"][0]
per_body = {b: [n for n, e in ENTRIES.items() if e[0] == b] for b in ("adapter", "full")}
units_of = {"adapter": units_adapter, "full": units_full}
ncol = max(len(v) for v in per_body.values())
fig, axes = plt.subplots(2, ncol, figsize=(3.1 * ncol, 5.6), squeeze=False)
for row, body in enumerate(("adapter", "full")):
    for ax, name in zip(axes[row], per_body[body]):
        h = hist[(hist.entry == name) & (hist.seed == first)].sort_values("step")
        mat = su.trainability_from_history(h, units_of[body]) if "trainable_units" in h and h.trainable_units.notna().any() \
            else np.ones((len(units_of[body]), len(h)), dtype=bool)
        an.plot_trainability(mat, units_of[body], ax=ax, title=name, k=K[body] if ENTRIES[name][1] != "standard" else None)
    for ax in axes[row][len(per_body[body]):]:
        ax.set_visible(False)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 5. tr(F) during training, and FUN's choices
#
# Below, tr(F) summed over the *trainable* units and divided by their number (the paper's
# normalisation), averaged over seeds with a 95% band. Under standard training every unit trains from
# step 0; under GU the curve starts with the top unit alone. The question from the paper: does GU's
# curve rise above the standard one, hill-shaped?

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
for ax, body in zip(axes, ("adapter", "full")):
    h = hist[hist.body == body]
    if "trF_trainable" in h and h.trF_trainable.notna().any():
        an.plot_fisher_curves(h, hue="schedule", ax=ax, logy=(body == "full"),
                              title=f"{body}: tr(F) per trainable unit")
plt.tight_layout()
plt.show()


def hill(body):
    """Peak of the mean GU curve, and whether it rises above standard's highest value."""
    h = an.fisher_curves(hist[(hist.body == body) & hist.schedule.isin(["gu", "standard"])])
    m = h.groupby(["schedule", "step"])["trF_trainable"].mean()
    gu, st = m["gu"], m["standard"]
    peak = int(gu.idxmax()) - 1
    return {"peak_step": peak, "interior": 0 < peak < gu.index.max() - 1, "above_standard": bool(gu.max() > st.max()),
            "gu_max": float(gu.max()), "std_max": float(st.max()), "gu_end": float(gu.iloc[-1]), "std_end": float(st.iloc[-1])}


hills = {b: hill(b) for b in ("adapter", "full") if {"gu", "standard"} <= set(res[res.body == b].schedule)}
pd.DataFrame(hills).T

# %% [markdown]
# Per unit: each unit's own tr(F) over training under GU (first seed). A unit's value jumps when it
# joins: that is when its gradients start to move it.

# %%
h = hist[(hist.entry == "adapter / gu") & (hist.seed == first)]
cols = [f"trF:{u}" for u in units_adapter if f"trF:{u}" in h]
if cols:
    hh = h[h[cols[0]].notna()]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for c, color in zip(cols, sns.color_palette("viridis", len(cols))):
        ax.plot(hh.step - 1, hh[c], marker=".", color=color, label=c[4:])
    for s in range(k_adapter, (L - 1) * k_adapter + 1, k_adapter):
        ax.axvline(s, color="grey", lw=0.5, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("tr(F) of the unit")
    ax.set_title("GU, task adapters: tr(F) per unit (dotted: unfreezing events)")
    ax.legend(fontsize=8, ncol=2)
    plt.show()

# %% [markdown]
# FUN's chosen order against the top-down diagonal: one line per seed. A line on the dashed diagonal
# means FUN chose exactly what GU does. On full fine-tuning, compare the two scores: where do the
# embeddings (the bottom unit) join when tr(F) is summed over their parameters, and where when it is
# divided by their number?

# %%
fun_entries = [n for n, e in ENTRIES.items() if e[1] == "fun"]
fig, axes = plt.subplots(1, max(1, len(fun_entries)), figsize=(5.5 * max(1, len(fun_entries)), 4), squeeze=False)
agreement, embeddings = {}, {}
for ax, name in zip(axes[0], fun_entries):
    units = units_of[ENTRIES[name][0]]
    orders = an.unfreeze_orders([r for r in records if entry_of[r["run_id"]] == name], "fun")
    if orders.empty:
        ax.set_visible(False)
        continue
    an.plot_unfreeze_orders(orders, units, ax=ax, title=f"{name}: FUN's order")
    # at each event: did FUN pick the highest unit still frozen (what GU would pick from that state)?
    picks = []
    for _, sub in orders.groupby("run_id"):
        frozen = set(range(len(units)))
        for r in sub.sort_values("event").itertuples():
            if r.event > 0:
                picks.append(r.unit_index == max(frozen))
            frozen.discard(r.unit_index)
    n_u = len(units)  # a random pick is the highest frozen unit with chance 1/(units still frozen)
    chance = float(np.mean([1 / f for f in range(n_u - 1, 0, -1)]))
    agreement[name] = {"events": len(picks), "highest_frozen_picked": float(np.mean(picks)) if picks else np.nan,
                       "by_chance": chance,
                       "exactly_top_down_runs": int(sum((g.unit_index.to_numpy() == g.top_down_index.to_numpy()).all()
                                                        for _, g in orders.groupby("run_id"))),
                       "runs": orders.run_id.nunique()}
    if "embeddings" in units:
        emb = orders[orders.unit == "embeddings"]
        embeddings[name] = {"runs": orders.run_id.nunique(), "runs where the embeddings joined": emb.run_id.nunique(),
                            "event at which they joined (median)": float(emb.event.median()) if len(emb) else np.nan,
                            "top-down (GU) would be event": n_u - 1}
plt.tight_layout()
plt.show()
display(pd.DataFrame(agreement).T)
pd.DataFrame(embeddings).T

# %% [markdown]
# ## 6. Accuracy: in distribution and on held-out domains
#
# Test accuracy at each run's best dev step, mean over seeds with 95% confidence intervals. The
# held-out domains are the test of *generalisation*, the claim the schedules are about.

# %%
fig, axes = plt.subplots(1, 2, figsize=(15, 4.2))
for ax, body in zip(axes, ("adapter", "full")):
    sub = acc[acc.body == body]
    an.plot_comparison(sub, x="eval_set", hue="schedule", order=test_sets, ax=ax,
                       title=f"{body}, best dev step (n={sub.seed.nunique()} seeds)",
                       baseline=tft.data.majority_baseline(data, in_dist[0]))
plt.tight_layout()
key_figure = plt.gcf()  # saved with the measured summary (the full-mode reference shows it)
plt.show()

# %% [markdown]
# ### The paper's claims, paired by seed
#
# A seed fixes the head's initialisation and the data order, so the schedules are compared **paired
# by seed** on the mean over the held-out domains: the table gives the paired difference with its 95%
# interval, the minimal detectable effect (MDE: the smallest true difference these seeds would find
# with 80% power) and the verdict. "Greater" claims need the Holm-adjusted p-value below 0.05 in the
# claimed direction (Holm over all rows of the table); "at least" claims need the whole interval
# above −1 point; the opposite is "contradicted"; anything else is "inconclusive", with the MDE.
# Below them, two descriptive rows per body [D]: FUN's order (reproduced when it picks the highest
# still-frozen unit at least halfway between chance and always, contradicted when no more often
# than chance) and the hill of tr(F) (reproduced when GU's mean curve peaks inside the run and above
# standard's maximum).

# %%
HELD = ("held-out (mean)",)
FUN_PAPER = "Liu et al. 2024 (FUN)"
CLAIMS = [
    an.Claim(FUN_PAPER, "FUN beats standard training of task adapters", "adapter / fun", "adapter / standard",
             "greater", "+2.0 points on average (mBERT adapters, XNLI/XQuAD/MLQA/XCOPA)", HELD, "held-out"),
    an.Claim(FUN_PAPER, "GU is at least as good as standard adapter training", "adapter / gu", "adapter / standard",
             "at least", "GU >= standard (both models, all tasks)", HELD, "held-out"),
    an.Claim(FUN_PAPER, "bottom-up unfreezing transfers worse than top-down", "adapter / gu-rev", "adapter / gu",
             "less", "bottom-up hurts transfer badly", HELD, "held-out"),
    an.Claim(FUN_PAPER + " [D: full fine-tuning]", "GU is at least as good as standard (full fine-tuning)",
             "full / gu", "full / standard", "at least", "adapters only in the paper", HELD, "held-out"),
] + [an.Claim(FUN_PAPER + " [D: full fine-tuning]", f"FUN, {score} score, beats standard (full fine-tuning)",
              f"full / fun ({score})", "full / standard", "greater", "adapters only in the paper", HELD, "held-out")
     for score in fun_scores]
claims = an.claims_table(held_mean, CLAIMS, by="entry")
described = []
for name, a in agreement.items():
    rate, crit = a["highest_frozen_picked"], (1 + a["by_chance"]) / 2
    described.append({"paper": FUN_PAPER, "claim": "FUN's order is close to top-down", "eval": "unfreezing order",
                      "compared": name, "ours (points)": f"highest frozen unit at {rate:.0%} of {a['events']} events "
                                                         f"(chance {a['by_chance']:.0%}, criterion {crit:.0%})",
                      "verdict": "reproduced" if rate >= crit else ("contradicted" if rate <= a["by_chance"] else
                                                                     "inconclusive (between chance and the criterion)"),
                      "verdict basis": "descriptive [D]"})
for body, hh_ in hills.items():
    described.append({"paper": FUN_PAPER, "claim": "tr(F) under GU is hill-shaped and above standard",
                      "eval": "tr(F) curves", "compared": f"{body} / gu − {body} / standard",
                      "ours (points)": f"GU peak at step {hh_['peak_step']}, max {hh_['gu_max']:.3g} vs standard {hh_['std_max']:.3g}",
                      "verdict": "reproduced" if hh_["interior"] and hh_["above_standard"] else
                      "inconclusive (descriptive criterion not met)", "verdict basis": "descriptive [D]"})
claims = pd.concat([claims, pd.DataFrame(described)], ignore_index=True)
claims


# %% [markdown]
# ## Exercises
#
# **Implement it: tr(F) of one unit.** Complete `trace_fisher(grads)`. `grads` is a list with one
# entry per Fisher batch; each entry is a list of tensors, the gradient of that batch's *mean* loss
# with respect to each parameter tensor of one unit (any shapes). Return a float, the unit's tr(F)
# as section 1 estimates it: for each batch, square every gradient entry and sum over all the unit's
# tensors; then average these sums over the batches (so the value does not grow with the number of
# batches). The package (`tft.fisher.fisher_trace`) also divides each square by the batch size, a
# constant that changes no ranking between units; leave it out here. The check feeds your function
# random gradients for a unit of two tensors over several batches.
#
# **Reasoning.** Answer with a letter; the check says whether it is right (the answers are not in this
# notebook) and explains once it is.
#
# 1. A run with linear warm-up over its first `W` steps uses GU with an interval `k` shorter than `W`,
#    so the first unfreeze comes inside the warm-up. Why does the protocol (section 2) rule this out?
#    (a) AdamW cannot update a unit that joins during the warm-up, because its bias correction has
#    not started yet; (b) the Fisher information is not defined while the learning rate is still
#    rising, so FUN has nothing to rank; (c) the top unit spends its time alone at a fraction of the
#    peak learning rate, so its head start is worth only a few peak-rate steps, and GU becomes close to
#    standard training with the lower units trained for less.
# 2. On full fine-tuning FUN scores every frozen unit by tr(F) summed over the unit's parameters (the
#    paper) or per parameter ([D]). Which statement is right? (a) at a given event the two scores rank
#    the blocks alike, since the blocks all have the same size, but they rank the embeddings
#    differently: under the sum the embeddings, more than half of the model's parameters, can win by
#    size alone, while per parameter they compete on sensitivity, with most of their rows (words
#    absent from the Fisher batches) contributing nothing; (b) the two scores always choose the same
#    order, because dividing each unit's score by its parameter count is a monotone rescaling;
#    (c) the per-parameter score moves the embeddings up, because every word-embedding row is shared
#    by all the examples of a batch.
# 3. Section 1 writes the Fisher as an expectation of *per-example* squared gradients; the estimate
#    (the paper's) squares the gradient of each batch's *mean* loss. How do the two relate?
#    (a) they are equal: the square of a mean of gradients is the mean of their squares;
#    (b) they differ: squaring a mean of `B` per-example gradients mixes in products between
#    examples, and with labels sampled from the model (whose per-example gradients average to zero)
#    it is in expectation about `1/B` of the per-example value, so it can rank the units of one model
#    but is not the Fisher itself; (c) the batch-mean version is the larger one, because the products
#    between examples are always positive.

# %%
# Implement it: complete the function, then run this cell.
def trace_fisher(grads):
    """tr(F) of one unit from per-batch gradients (a list of lists of tensors): a float."""
    ### BEGIN SOLUTION
    per_batch = [sum(float((g.double() ** 2).sum()) for g in batch) for batch in grads]
    return sum(per_batch) / len(per_batch)
    ### END SOLUTION


ex.implement("trace-fisher", trace_fisher)

answer_1 = None  # "a", "b" or "c"
answer_2 = None
answer_3 = None
### BEGIN SOLUTION
answer_1, answer_2, answer_3 = "c", "a", "b"
### END SOLUTION
ex.ask("03.warm-up", answer_1)
ex.ask("03.fun-score", answer_2)
ex.ask("03.batch-mean", answer_3)

# %% [markdown]
# ## Measured summary
#
# Built from this run's numbers.

# %%
sentences = [f"Protocol: {total_steps} optimiser steps, {warmup_steps} warm-up steps, k = {k_adapter} (adapters) and "
             f"{k_full} (full fine-tuning)" + ("" if all(protocol_check.loc[i, "first unfreeze after warm-up"] and
                                                          protocol_check.loc[i, "k of at least 50"] and
                                                          protocol_check.loc[i, "last unit trains (share of run)"] >= 0.5
                                                          for i in protocol_check.index[1:])
                                               else " (too short for the protocol's schedule rules: ci-sized)")
             + f"; learning rate chosen on dev per entry, test at the best dev step, {len(S['seeds'])} seed(s)."]
agg = an.aggregate(held_mean, by=("entry", "body", "schedule"), metric="accuracy")
ind = an.aggregate(acc[acc.eval_set == in_dist[0]], by=("entry", "body", "schedule"))
for body in ("adapter", "full"):
    a = agg[agg.body == body].sort_values("mean", ascending=False)
    if a.empty:
        continue
    ranking = ", ".join(f"{r.schedule} (lr {entry_results[r.entry].chosen_lr:g}) {an.format_ci(r.mean, r.ci95)}"
                        for r in a.itertuples())
    sentences.append(f"{body.capitalize()}, mean accuracy over the held-out domains: {ranking}.")
    i_ = ind[ind.body == body]
    sentences.append("In distribution: " + ", ".join(f"{r.schedule} {an.format_ci(r.mean, r.ci95)}" for r in i_.itertuples()) + ".")
for _, r in claims.iterrows():
    sentences.append(f"{r['claim']} ({r['compared']}): {r['ours (points)']}; {r['verdict']}.")
for name, e in embeddings.items():
    sentences.append(f"{name}: the embeddings joined in {e['runs where the embeddings joined']} of {e['runs']} runs, at event "
                     f"{e['event at which they joined (median)']:g} (median; top-down would be event {e['top-down (GU) would be event']}).")
nb.save_summary(STUDY, " ".join(sentences), claims if len(claims) else None, store=store, mode=mode, seeds=S["seeds"],
                figures={"key": key_figure})
print(" ".join(sentences))

# %% [markdown]
# ### Discussion
#
# * **What the numbers say.** The summary and the claims table above are computed from this run:
#   five seeds in full mode, paired by seed, each entry at its own learning rate chosen on dev, test
#   sets read at the best dev step. A null result comes with its minimal detectable effect: an
#   "inconclusive (could detect ≥ 3 points)" says these seeds cannot see a 2-point effect like the
#   paper's, not that there is none.
# * **Why the protocol matters for schedules.** A schedule trains some units for less of the run. If
#   the run is short, the first interval sits inside the warm-up and the learning rate was tuned for
#   standard training, a schedule loses for reasons that have nothing to do with its order (section
#   2). Under the protocol every unit trains at least half the run, the top unit's head start is
#   spent at the full learning rate, and each schedule gets the learning rate dev prefers for it.
# * **Why effects may still be small here.** The paper's gains are for *cross-lingual* zero-shot
#   transfer of adapters trained for thousands of steps on large English datasets, with language
#   adapters swapped at test time. Our shift is between English review domains, which MiniLM
#   already bridges fairly well (notebook 01), and our runs are 750 steps.
# * **tr(F) is a sum over a unit's parameters.** The task adapters of all blocks have the same size,
#   so their values compare directly, and the two scores would choose the same order. The blocks of
#   the full model do too, but the embeddings hold more than half of MiniLM's parameters, so in full
#   fine-tuning FUN with the paper's sum can prefer them for their size alone (the earlier run picked
#   them second in every seed). The per-parameter score [D] removes the size; the table in section 5
#   shows where the embeddings join under each.
# * **tr(F) is a measurement, not a goal.** A unit's tr(F) grows when it starts to train because the
#   model becomes more sensitive to it; FUN exploits that ranking. Whether a larger tr(F) causes
#   better transfer is the paper's hypothesis, which correlations over a few runs cannot settle.
# * **Cost.** FUN adds one tr(F) pass per event (`fisher_batches` forward+backward passes, for every
#   unit at once); the tracker adds `track_batches` passes every `track_every` steps. The curves
#   here use a denser, cheaper-per-point tracker than the package default (10 batches every 100
#   steps, the paper's time resolution at under 10% overhead). With sampled labels, 5 batches rank
#   the units like 40 do but their level is noisier: read single points loosely, the averages
#   over seeds and steps less so (`benchmarks/README.md`). The learning-rate choice trains every
#   entry at three rates on the first seed before the other four seeds run.
# * In `mode="ci"` (what CI runs) every run is cut short (the next cell prints this run's scale from
#   its settings): the pipeline is exercised, the numbers are not evidence. Quote `mode="full"`.

# %%
print(nb.describe_scale(mode, S))
