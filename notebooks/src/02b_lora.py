# %% [markdown]
# # 02b · LoRA: low-rank updates, beside bottleneck adapters and full fine-tuning
#
# {{colab}}
#
# **Learning goals.** After this notebook you can
#
# 1. write down the LoRA update $W_0 + \frac{\alpha}{r} BA$, say why $B$ starts at zero, and check
#    that a model with fresh LoRA matrices computes exactly what the pretrained model computes;
# 2. say where the matrices sit (the attention query and value projections of every block, or every
#    linear layer) and count their parameters per rank *from the model*;
# 3. compare LoRA, bottleneck adapters and full fine-tuning fairly: the same trainable-parameter
#    budget for LoRA and the adapter, each learning rate chosen on dev, test metrics at the best dev
#    step, seeds with 95% intervals, paired differences and a verdict on the papers' claims, in
#    distribution and on held-out domains;
# 4. save a LoRA in Hugging Face PEFT's own format, load it back, and merge it into the base weights
#    so that inference costs nothing extra;
# 5. place LoRA in the family of parameter-efficient methods: what each trains and what it stores,
#    with sizes and step times measured here.
#
# Recap. Notebook 01: full fine-tuning, the baseline. Notebook 02: bottleneck adapters (a small
# down/up projection after each feed-forward sublayer, the pretrained weights frozen). The comparison
# here follows the project's fair protocol (`tft.studies.protocol`): the head reads the encoder the
# way the checkpoint was pretrained (mean pooling for all-MiniLM-L6-v2), the test sets are scored at
# the best dev step, each method's learning rate is chosen on dev, never on test.

# %%
# {{install}}

# %% [markdown]
# ## Parameters

# %% tags=["parameters"]
mode: str = "ci"                     # "ci": minutes on 2 CPU cores; "full": results worth teaching from
backbone: str = "minilm"
seeds: list[int] = [0, 1, 2, 3, 4]   # the protocol's 5 seeds in full mode; ci mode uses the first
task: str = "reviews"
store: str = "runs"
lora_r: int = 8                      # the LoRA rank of the comparison (Hu et al.: 8 is typical)
lora_alpha: float = 8.0              # scale alpha / r; the paper sets alpha to the first r it tries, untuned
num_epochs: float = 8.0              # full mode: 8 passes over the 1,198 reviews (600 steps), past the dev plateau
ranks: list[int] = [1, 2, 4, 8, 16, 32, 64]  # ranks of the parameter table and the widget
rank_sweep: list[int] = [1, 4, 8, 32]        # ranks trained and measured (full mode, 3 seeds)
timing_steps: int = 30               # optimiser steps of each timing run of the family map (full mode)
executor: str = "serial"             # "ray": the runs of each entry in parallel (pip install 'tutorfinetune[scale]')
workers: int = 0                     # runs at once on Ray (0: the default for this machine)

# %%
import copy
import re
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch
from IPython.display import display
from matplotlib.patches import Rectangle
from safetensors.torch import save_file
from torch import nn

import tutorfinetune as tft
from tutorfinetune import analysis as an
from tutorfinetune import diffs
from tutorfinetune import exercises as ex
from tutorfinetune import notebook as nb
from tutorfinetune.backbones import block_map
from tutorfinetune.methods.lora import has_lora, lora_parameters, resolve_targets
from tutorfinetune.studies import leaderboard as lb

P = nb.typed_parameters(globals())  # papermill passes text: every parameter gets its annotated type
info = nb.setup(mode, seeds)
data = tft.load_task(task)
S = nb.mode_settings(
    mode,
    ci=dict(seeds=info["seeds"][:1], max_steps=12, max_train_examples=256, max_eval_examples=16, timing_steps=3,
            rank_sweep=[], rank_seeds=info["seeds"][:1], batch_size=8, max_length=64,
            domains=data.eval_set_names("domains")[:1]),
    full=dict(seeds=info["seeds"], max_steps=None, max_train_examples=None, max_eval_examples=None,
              timing_steps=timing_steps, rank_sweep=rank_sweep, rank_seeds=info["seeds"][:3], batch_size=16,
              max_length=128, domains=data.eval_set_names("domains")),
)
protocol = tft.studies.Protocol.for_mode(mode, seeds=tuple(S["seeds"]), lr_seeds=tuple(S["seeds"][:1]))
in_dist, domains = data.eval_set_names("in-distribution"), S["domains"]
test_sets = in_dist + domains
base = tft.TrainConfig(num_epochs=num_epochs, batch_size=S["batch_size"], max_length=S["max_length"], max_steps=S["max_steps"],
                       max_train_examples=S["max_train_examples"], max_eval_examples=S["max_eval_examples"],
                       eval_sets=data.eval_set_names("dev") + test_sets)
STUDY = "02b_lora"
scale = dict(executor=executor, workers=workers or None)  # how the runs are executed; results do not depend on it
sns.set_theme(style="whitegrid", context="notebook")
print(f"protocol: {protocol}\nbudget: {base.total_steps(len(data.subsample_train(base.max_train_examples).train))} "
      f"optimiser steps per run; eval sets {base.eval_sets}")

# %% [markdown]
# ## 1. The idea: learn a low-rank change of each weight matrix
#
# A linear layer of the pretrained model computes $h = W_0 x$ with $W_0 \in \mathbb{R}^{d \times k}$.
# Full fine-tuning learns a new $W$, i.e. a change $\Delta W = W - W_0$ with $d \cdot k$ free numbers.
# Hu et al. (2022) hypothesised, after work showing that fine-tuning has a low *intrinsic dimension*,
# that this change has a low rank too, and learn it as a product of two thin matrices:
#
# $$h = W_0 x + \frac{\alpha}{r}\, B A x, \qquad A \in \mathbb{R}^{r \times k},\; B \in \mathbb{R}^{d \times r},\; r \ll \min(d, k)$$
#
# * $W_0$ stays frozen; only $A$ and $B$ (and the classification head) train: $r(d + k)$ numbers per
#   adapted matrix instead of $dk$.
# * $A$ starts random, **$B$ starts at zero**, so $BA = 0$ and the model starts *exactly* at the
#   pretrained function (the bottleneck adapter of notebook 02 only starts *near* it).
# * $\alpha / r$ scales the update; the paper fixes $\alpha$ to the first rank it tries and does not
#   tune it, so that changing $r$ does not change the step size much.
# * After training, $W_0 + \frac{\alpha}{r} BA$ is one $d \times k$ matrix again: merge it and
#   inference costs exactly what the pretrained model costs (section 6).
#
# The package's `"lora"` plug-in injects Hugging Face PEFT's LoRA layers into the backbone. Check the
# start: the logits of a few reviews before and after `prepare` (the classification head is the same
# object, so any difference would come from the LoRA branch).

# %%
pristine = tft.load_backbone(backbone, num_labels=data.num_labels, readout="auto")


def fresh():
    """A copy of the pretrained backbone (same head), without loading it again."""
    model = copy.deepcopy(pristine.model)
    return tft.Backbone(pristine.name, model, pristine.tokenizer, block_map(model), info=dict(pristine.info))


reviews = data.eval_set("dev")["text"].tolist()[:8]
batch = pristine.tokenizer(reviews, return_tensors="pt", padding=True, truncation=True, max_length=128)


@torch.no_grad()
def logits(model):
    was = model.training
    model.eval()
    out = model(**batch).logits
    model.train(was)
    return out


start = fresh()
before = logits(start.model)
lora = tft.methods.get("lora", r=lora_r, alpha=lora_alpha)
lora.prepare(start.model, start.blocks)
after = logits(start.model)
q = start.model.get_submodule(next(n for n in lora_parameters(start.model) if ".lora_A." in n).split(".lora_A.")[0])
A0, B0 = q.lora_A["task"].weight, q.lora_B["task"].weight
start_diff = float((after - before).abs().max())
print(f"{q.__class__.__module__}.{q.__class__.__name__} wraps the frozen {tuple(q.base_layer.weight.shape)} weight;"
      f"\nA: {tuple(A0.shape)}, |A| = {A0.norm():.3f} (random);  B: {tuple(B0.shape)}, |B| = {B0.norm():.3f} (zeros);"
      f"  scale alpha/r = {q.scaling['task']:g}")
print(f"max |logits after prepare - logits before| = {start_diff:.3g}; identical: {torch.equal(after, before)}")

# %% [markdown]
# ## 2. Where the matrices sit
#
# The paper adapts the attention **query and value** projections of every block (`target_modules="qv"`,
# the plug-in's default); `"all-linear"` adapts every linear layer of the blocks (query, key, value,
# attention output, and the feed-forward sublayer's two layers). The bottleneck adapter of notebook 02
# sits elsewhere: after the feed-forward sublayer (in BERT's `output` module). Each map below is read from a prepared model:
# trainable numbers per block and place (the head is left out). The adapter also shows the difference
# at the start: its up-projection is small but not zero, so it starts *near* the pretrained function.

# %%
lin = fresh()
tft.methods.get("lora", r=lora_r, alpha=lora_alpha, target_modules="all-linear").prepare(lin.model, lin.blocks)
rf_probe = fresh()  # the adapter at the matched budget is chosen in section 3; reduction factor 16 shows where
tft.methods.get("adapter", reduction_factor=16).prepare(rf_probe.model, rf_probe.blocks)
PLACE = re.compile(r"layer\.(\d+)\.(.+?)\.(?:lora_[AB]|adapters)\.")


def placement(model):
    """Trainable numbers per (block, place) outside the head, from the model's own parameter names."""
    rows = [{"block": int(m.group(1)), "place": m.group(2), "n": p.numel()} for n, p in model.named_parameters()
            if p.requires_grad and (m := PLACE.search(n))]
    return pd.DataFrame(rows).pivot_table(index="place", columns="block", values="n", aggfunc="sum", fill_value=0)


maps = {f"LoRA r={lora_r}, q and v": placement(start.model), f"LoRA r={lora_r}, all linear": placement(lin.model),
        "bottleneck adapter, reduction factor 16": placement(rf_probe.model)}
fig, axes = plt.subplots(1, 3, figsize=(17, 3.6))
for ax, (title, m) in zip(axes, maps.items()):
    sns.heatmap(m, annot=True, fmt=",d", cmap="Blues", cbar=False, ax=ax, annot_kws={"fontsize": 7})
    ax.set(title=title, xlabel="block", ylabel="")
plt.tight_layout()
key_figure = plt.gcf()  # saved with the measured summary (the full-mode reference shows it)
plt.show()
print("PEFT target_modules for 'qv':", resolve_targets(pristine.model, pristine.blocks, "qv"),
      "| for 'all-linear':", resolve_targets(pristine.model, pristine.blocks, "all-linear"))
adapter_start_diff = float((logits(rf_probe.model) - before).abs().max())
print(f"max |logit change| at the start: LoRA {start_diff:.3g}, LoRA all-linear "
      f"{float((logits(lin.model) - before).abs().max()):.3g}, bottleneck adapter {adapter_start_diff:.3g}")

# %% [markdown]
# ## 3. Parameters per rank, and a matched budget for the comparison
#
# Each adapted $d \times k$ matrix adds $r(d + k)$ numbers. The table sums that over the linear layers
# PEFT adapts in this model (their shapes are read from the model), for each rank, and as a share of
# the backbone's parameters. A bottleneck adapter with bottleneck $b = d / \text{reduction factor}$
# adds $2db + b + d$ per block.
#
# To compare LoRA with adapters **at the same budget**, we keep LoRA's rank (`lora_r`) and pick the
# adapter bottleneck whose count is closest; the plug-ins then confirm both counts on real models.

# %%
linears = {n: m for n, m in pristine.model.named_modules() if isinstance(m, nn.Linear)}
total = sum(p.numel() for p in pristine.model.parameters())
head = sum(p.numel() for p in pristine.blocks.parameters("head"))
hidden, n_blocks = pristine.model.config.hidden_size, pristine.blocks.num_blocks


def lora_count(r, targets="qv"):
    suffixes = resolve_targets(pristine.model, pristine.blocks, targets)
    return sum(r * (m.in_features + m.out_features) for n, m in linears.items()
               if any(n == s or n.endswith("." + s) for s in suffixes))


def adapter_count(bottleneck):
    return n_blocks * (2 * hidden * bottleneck + bottleneck + hidden)


per_rank = pd.DataFrame([{"rank": r, "LoRA q,v": lora_count(r), "q,v % of backbone": 100 * lora_count(r) / total,
                          "LoRA all-linear": lora_count(r, "all-linear"),
                          "all-linear % of backbone": 100 * lora_count(r, "all-linear") / total} for r in ranks])
display(per_rank.round(3))
bottlenecks = [b for b in range(1, hidden // 2 + 1) if hidden % b == 0]
target = lora_count(lora_r)
b_match = min(bottlenecks, key=lambda b: abs(adapter_count(b) - target))
rf = hidden / b_match
candidates = pd.DataFrame([{"bottleneck": b, "reduction factor": hidden / b, "adapter parameters": adapter_count(b),
                            "vs LoRA r=%d (%%)" % lora_r: 100 * (adapter_count(b) / target - 1)} for b in bottlenecks])
display(candidates[(candidates.bottleneck >= b_match / 4) & (candidates.bottleneck <= 4 * b_match)].round(1))

adapter_bb = fresh()
tft.methods.get("adapter", reduction_factor=rf).prepare(adapter_bb.model, adapter_bb.blocks)
trained = {f"LoRA r={lora_r} (q, v)": start, f"adapter rf={rf:g}": adapter_bb}
check_counts = pd.DataFrame([{"method": k, "trainable (plug-in, head included)": int(b.parameter_summary().set_index(
    "unit").loc["all", "trainable"]), "formula + head": (lora_count(lora_r) if k.startswith("LoRA") else
                                                          adapter_count(b_match)) + head} for k, b in trained.items()])
check_counts["share of backbone %"] = 100 * check_counts.iloc[:, 1] / total
display(check_counts.round(3))
assert (check_counts.iloc[:, 1] == check_counts.iloc[:, 2]).all(), "formula and plug-in disagree"
match_pct = 100 * (adapter_count(b_match) / target - 1)
print(f"Matched budget: LoRA r={lora_r} on q, v trains {target:,} numbers, the adapter with reduction factor "
      f"{rf:g} (bottleneck {b_match}) {adapter_count(b_match):,} ({match_pct:+.1f}%); both train the same "
      f"{head:,}-parameter head. Full fine-tuning trains all {total:,}.")

# %%
fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(per_rank["rank"], per_rank["LoRA q,v"], marker="o", label="LoRA, q and v")
ax.plot(per_rank["rank"], per_rank["LoRA all-linear"], marker="s", label="LoRA, all linear layers")
for b, ls in ((b_match, "--"), (hidden // 16, ":")):
    ax.axhline(adapter_count(b), color="grey", ls=ls, lw=1, label=f"bottleneck adapter, rf={hidden / b:g}")
ax.axhline(total, color="black", lw=1, label="full fine-tuning (every weight)")
ax.set(xscale="log", yscale="log", xlabel="rank r", ylabel="trainable numbers (head excluded)",
       title=f"{backbone}: trainable numbers per rank")
ax.set_xticks(ranks, [str(r) for r in ranks])
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 4. LoRA vs bottleneck adapters vs full fine-tuning, under the protocol
#
# Three entries, each through `tft.studies.run_entry`: its learning rate is chosen on dev from its
# family's grid (LoRA and adapters: the "light" grid; full fine-tuning: the "full" grid) on the first
# seed, then every seed runs at that rate; every run evaluates dev about ten times (twice in ci mode)
# and reports the test sets at its best dev step. LoRA and the adapter train the same number of
# parameters (section 3); all three get the same budget. Runs already in the store are reused.

# %%
ENTRIES = {  # entry -> (plug-ins, learning-rate family)
    f"LoRA r={lora_r} (q, v)": ([("lora", {"r": lora_r, "alpha": lora_alpha})], "light"),
    f"adapter rf={rf:g}": ([("adapter", {"reduction_factor": rf})], "light"),
    "full fine-tuning": (["full"], "full"),
}
LORA, ADAPTER, FULL = ENTRIES
entry_results = {name: tft.studies.run_entry(backbone, data, base, meths, family=family, protocol=protocol,
                                             store=store, study=STUDY, tags={"experiment": "matched", "entry": name},
                                             **scale)
                 for name, (meths, family) in ENTRIES.items()}
# one configuration per entry (its seeds at the chosen lr), whatever tags its reused runs carry
runs = pd.concat([r.frame.assign(entry=n) for n, r in entry_results.items()], ignore_index=True).drop(
    columns="config_id")
acc = runs[(runs.metric == "accuracy") & runs.eval_set.isin(test_sets)]
held = an.held_out_mean(acc, domains, by=["entry"])
lr_table = pd.concat([r.lr_table.assign(entry=n) for n, r in entry_results.items()], ignore_index=True)
display(lr_table)
cost = lb.costs(store, runs.run_id.unique(), head).groupby("entry")[["trainable", "ms_per_step"]].median()
table = an.ci_table(pd.concat([acc, held], ignore_index=True), rows="entry")
table = table.join(cost.rename(columns={"ms_per_step": "ms/step (this machine)"}).round(0))
table.insert(0, "lr", pd.Series({n: r.chosen_lr for n, r in entry_results.items()}))
table

# %%
majority = tft.data.majority_baseline(data, in_dist[0])
an.plot_comparison(acc, x="eval_set", hue="entry", order=test_sets, baseline=majority,
                   title=f"Matched budgets, best dev step (n={len(S['seeds'])} seeds)")
plt.show()

# %% [markdown]
# **Did every entry reach its plateau?** The protocol asks for budgets at which each entry's dev
# curve has flattened; a curve still rising at the end means the comparison favours the faster learner.

# %%
records = [r for r in tft.results.load_records(store) if r["run_id"] in set(runs.run_id)]
hist = an.histories(records)
hist["entry"] = hist["run_id"].map(runs.drop_duplicates("run_id").set_index("run_id")["entry"])
an.plot_learning_curves(hist, hue="entry", smooth=5)
plt.tight_layout()
plt.show()
an.best_steps(runs, records, "entry")

# %% [markdown]
# ### The papers' claims, paired by seed
#
# Seeds fix the head's initialisation and the data order, so the entries are compared **paired by
# seed**. Hu et al. claim that LoRA matches full fine-tuning (RoBERTa-base on GLUE: 87.2 vs 86.4 on
# average) and does at least as well as adapters of the same size; Houlsby et al. that adapters come
# within 0.4 points of full fine-tuning. "Matches" is an *at least* claim: reproduced when the whole
# 95% interval of the paired difference lies above −1 point, contradicted when it lies below −1
# point, otherwise inconclusive, with the smallest difference these seeds could detect (80% power).

# %%
CLAIMS = []
for ev, label in (((in_dist[0],), "in-distribution"), (("held-out (mean)",), "held-out domains (mean)")):
    CLAIMS += [
        an.Claim("Hu et al. 2022 (LoRA)", "LoRA matches full fine-tuning", LORA, FULL, "at least",
                 "GLUE avg 87.2 vs 86.4 (RoBERTa-base)", ev, label),
        an.Claim("Hu et al. 2022 (LoRA)", "LoRA is at least as good as adapters of the same size", LORA, ADAPTER,
                 "at least", "above adapters at 0.3M parameters (GLUE)", ev, label),
        an.Claim("Houlsby et al. 2019 (adapters)", "adapters come close to full fine-tuning", ADAPTER, FULL,
                 "at least", "within 0.4 points (GLUE, BERT-large)", ev, label),
    ]
claims = an.claims_table(pd.concat([acc, held], ignore_index=True), CLAIMS, by="entry")
claims

# %% [markdown]
# ## 5. The rank: explore it
#
# Pick a rank and where LoRA goes. Left: one adapted query matrix to scale, the frozen $W_0$ and the
# two thin matrices $B$ (zeros at the start) and $A$. Right: trainable numbers against rank, the
# matched adapter and full fine-tuning for reference, and the measured accuracy where this run trained
# that rank (full mode trains the ranks of `rank_sweep`, at LoRA's chosen learning rate, on 3 seeds).
# (Static figure: the comparison's rank, q and v.)

# %%
lora_lr = entry_results[LORA].chosen_lr
rank_proto = tft.studies.Protocol.for_mode(mode, seeds=tuple(S["rank_seeds"]), lr_seeds=tuple(S["rank_seeds"][:1]))
rank_runs = pd.concat([tft.studies.run_entry(backbone, data, base, [("lora", {"r": r, "alpha": lora_alpha})],
                                             lrs=[lora_lr], protocol=rank_proto, store=store, study=STUDY,
                                             tags={"experiment": "rank"}, **scale).frame.assign(rank=r)
                       for r in sorted(set(S["rank_sweep"]) | {lora_r})], ignore_index=True).drop(columns="config_id")
rank_acc = rank_runs[rank_runs.metric == "accuracy"]
rank_both = pd.concat([rank_acc[rank_acc.eval_set == in_dist[0]],
                       an.held_out_mean(rank_acc, domains, by=["rank"])], ignore_index=True)
rank_agg = an.aggregate(rank_both, by=("rank", "eval_set"))
if rank_agg["rank"].nunique() > 1:
    an.plot_vs_param(rank_both, x="rank", xlabel="LoRA rank r (q, v)", title=f"Accuracy by rank (lr {lora_lr:g})")
    plt.xscale("log")
    plt.show()
rank_agg.round(4)


# %%
def show_rank(rank, targets):
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1.3, 1]})
    d, k = q.base_layer.out_features, q.base_layer.in_features
    ax0.add_patch(Rectangle((0, 0), k, d, facecolor="lightgrey", edgecolor="black"))
    ax0.text(k / 2, d / 2, f"$W_0$\n{d} x {k}\nfrozen\n{d * k:,} numbers", ha="center", va="center")
    x = k + 60
    ax0.add_patch(Rectangle((x, 0), rank, d, facecolor="tab:orange", edgecolor="black"))
    ax0.text(x + rank / 2, -30, f"B: {d} x {rank}\n(zeros)", ha="center", va="top", fontsize=8)
    ax0.add_patch(Rectangle((x + rank + 30, d - rank), k, rank, facecolor="tab:blue", edgecolor="black"))
    ax0.text(x + rank + 30 + k / 2, d - rank - 30, f"A: {rank} x {k} (random)", ha="center", va="top", fontsize=8)
    ax0.text(x + rank + 30 + k / 2, d / 3, f"(alpha/r) BA adds\n{rank * (d + k):,} numbers\nto this matrix",
             ha="center", va="center")
    ax0.set(xlim=(-20, 2 * k + rank + 120), ylim=(-110, d + 20), aspect="equal", title="one adapted query matrix")
    ax0.axis("off")
    col = "LoRA q,v" if targets == "qv" else "LoRA all-linear"
    ax1.plot(per_rank["rank"], per_rank[col], marker="o", color="tab:blue", label=f"LoRA ({targets})")
    ax1.scatter([rank], [lora_count(rank, targets)], s=120, color="tab:red", zorder=3)
    ax1.axhline(adapter_count(b_match), color="grey", ls="--", lw=1, label=f"adapter rf={rf:g}")
    ax1.axhline(total, color="black", lw=1, label="full fine-tuning")
    ax1.set(xscale="log", yscale="log", xlabel="rank", ylabel="trainable numbers (head excluded)")
    ax1.set_xticks(ranks, [str(r) for r in ranks])
    measured = rank_agg[(rank_agg["rank"] == rank) & (rank_agg.eval_set == in_dist[0])] if targets == "qv" else []
    acc_txt = (f"\nmeasured in-distribution accuracy {an.format_ci(measured['mean'].iloc[0], measured['ci95'].iloc[0])}%"
               if len(measured) else "\n(not trained in this run)")
    ax1.set_title(f"r={rank}, {targets}: {lora_count(rank, targets):,} numbers "
                  f"({100 * lora_count(rank, targets) / total:.2f}% of the backbone){acc_txt}", fontsize=9)
    ax1.legend(fontsize=7, loc="lower right")
    plt.tight_layout()


nb.explore(show_rank, {"rank": ranks, "targets": ["qv", "all-linear"]}, static={"rank": lora_r, "targets": "qv"})

# %% [markdown]
# ## 6. Save, load and merge
#
# A LoRA is saved in PEFT's own format (`adapter_config.json` and `adapter_model.safetensors`, the head
# stored as PEFT's `modules_to_save`), so `peft.PeftModel.from_pretrained` reads it outside this
# package. `tft.methods.merge_lora` writes $W_0 + \frac{\alpha}{r}BA$ into each base weight and removes
# the LoRA layers: a plain model again, same outputs up to float rounding, no extra work per token.
#
# The LoRA used here is one of the short timing runs of section 7 (so that $B \neq 0$ and the check
# is not trivial); we train it first.

# %%
timing_cfg = tft.TrainConfig(lr=1e-3, max_steps=S["timing_steps"], batch_size=16, max_length=128, warmup=0.0,
                             max_train_examples=256, eval_sets=["dev"], max_eval_examples=16, readout="auto")
workdir = Path(tempfile.mkdtemp(prefix="tft_02b_"))


def folder_mib(path):
    path = Path(path)
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files) / 2 ** 20


def timed(methods):
    """Train a copy of the backbone for a few steps; return it and ms per optimiser step (train time only)."""
    bb = fresh()
    res = tft.train(bb, data, timing_cfg, methods=methods, store=None, verbose=False)
    return bb, 1000 * res.timings["train_seconds"] / max(1, res.timings["steps"]), int(res.history["trainable"].max())


lora_bb, lora_ms, lora_trainable = timed([("lora", {"r": lora_r, "alpha": lora_alpha})])
q_name = next(n for n in lora_parameters(lora_bb.model) if ".lora_A." in n).split(".lora_A.")[0]
q_t = lora_bb.model.get_submodule(q_name)
print(f"after {S['timing_steps']} steps: |B| of {q_name} = {q_t.lora_B['task'].weight.norm():.2e} (no longer zero)")
unmerged = logits(lora_bb.model)
lora_dir = tft.methods.save_lora(lora_bb, workdir / "lora")
print("saved:", sorted(p.name for p in lora_dir.iterdir()), f"{folder_mib(lora_dir):.3f} MiB")
reloaded = fresh()
tft.methods.load_lora(reloaded, lora_dir)
reload_diff = float((logits(reloaded.model) - unmerged).abs().max())
merged_model = tft.methods.merge_lora(copy.deepcopy(lora_bb.model))
merge_diff = float((logits(merged_model) - unmerged).abs().max())


def forward_ms(model, reps=7):
    """Median milliseconds of one forward pass over the reviews (after a warm-up pass)."""
    logits(model)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        logits(model)
        times.append(1000 * (time.perf_counter() - t0))
    return float(pd.Series(times).median())


latency = {"unmerged LoRA": forward_ms(lora_bb.model), "merged": forward_ms(merged_model),
           "pretrained (no LoRA)": forward_ms(pristine.model)}
pd.DataFrame([{"check": "max |logit difference|, reloaded from PEFT format vs trained", "value": reload_diff},
              {"check": "max |logit difference|, merged vs unmerged", "value": merge_diff},
              {"check": "the merged model still holds LoRA layers", "value": has_lora(merged_model)},
              *[{"check": f"ms per forward pass over {len(reviews)} reviews, {k} (median)", "value": round(v, 1)}
                for k, v in latency.items()]])

# %% [markdown]
# ## 7. The parameter-efficient family: what trains, what is stored
#
# Every method below starts from the same pretrained backbone; they differ in *what* trains and so in
# what you must keep per task. For the methods this package implements, the sizes are measured here on
# disk (each method's own save format; full fine-tuning: `save_pretrained`), and the step times come
# from short timing runs through the same training loop, one after another on this machine (batch 16,
# the same batches for every method; noisy, compare ratios). The sparse fine-tune trains K randomly
# chosen entries of the blocks' weights, K = LoRA's budget, as LT-SFT's second phase does. Prefix
# tuning runs through the `adapter` plug-in with AdapterHub's `prefix_tuning` config (30 prefix
# vectors per layer, produced during training by a small MLP that also trains); it is stored as its
# trained tensors in one safetensors file. BitFit has no plug-in here.

# %%
probe_bb, probe_ms, probe_trainable = timed(["linear-probe"])
adapter_t, adapter_ms, adapter_trainable = timed([("adapter", {"reduction_factor": rf})])
lin_bb, lin_ms, lin_trainable = timed([("lora", {"r": lora_r, "alpha": lora_alpha, "target_modules": "all-linear"})])
full_bb, full_ms, full_trainable = timed(["full"])
prefix_bb, prefix_ms, prefix_trainable = timed([("adapter", {"config": "prefix_tuning"})])
sparse_bb = fresh()
maskable = diffs.maskable_names(sparse_bb.model, sparse_bb.blocks)
params, units = dict(sparse_bb.model.named_parameters()), sparse_bb.blocks.unit_of(sparse_bb.model)
mask = diffs.random_mask({n: params[n].shape for n in maskable if units[n].startswith("block")}, target, seed=0)
mask.update({n: torch.zeros(params[n].shape, dtype=torch.bool) for n in maskable if n not in mask})
reference = {n: params[n].detach().clone() for n in maskable}
sparse_res = tft.train(sparse_bb, data, timing_cfg, methods=[("sparse-update", {"mask": mask})], store=None,
                       verbose=False)
sparse_ms = 1000 * sparse_res.timings["train_seconds"] / max(1, sparse_res.timings["steps"])
sparse_diff = diffs.SparseDiff.from_models(sparse_bb.model, reference, sparse_bb.blocks)

full_bb.model.save_pretrained(workdir / "full", safe_serialization=True)
for name, bb_ in (("head", probe_bb), ("prefix", prefix_bb)):  # the trained tensors (shared ones once)
    save_file({n: p.detach().contiguous() for n, p in bb_.model.named_parameters() if p.requires_grad},
              str(workdir / f"{name}.safetensors"))
tft.methods.save_adapter(adapter_t.model, "task", workdir / "adapter")
tft.methods.save_lora(lin_bb, workdir / "lora_all")
sparse_diff.save(workdir / "sparse.sft")
NI = "not implemented here"
family = pd.DataFrame([
    {"method": "full fine-tuning", "trains": "every weight", "stores per task": "a whole copy of the model",
     "trainable": full_trainable, "stored MiB": folder_mib(workdir / "full"), "ms/step": full_ms},
    {"method": "BitFit (bias terms)", "trains": "the bias vectors (+ head)", "stores per task": "biases + head",
     "trainable": NI, "stored MiB": NI, "ms/step": NI},
    {"method": "linear probe", "trains": "the head only", "stores per task": "the head",
     "trainable": probe_trainable, "stored MiB": folder_mib(workdir / "head.safetensors"), "ms/step": probe_ms},
    {"method": f"bottleneck adapter (rf {rf:g})", "trains": "a down/up projection after each FFN (+ head)",
     "stores per task": "adapters + head (AdapterHub format)", "trainable": adapter_trainable,
     "stored MiB": folder_mib(workdir / "adapter"), "ms/step": adapter_ms},
    {"method": f"LoRA r={lora_r} (q, v)", "trains": "B, A beside each query/value matrix (+ head)",
     "stores per task": "B, A + head (PEFT format); or merge into a full copy", "trainable": lora_trainable,
     "stored MiB": folder_mib(lora_dir), "ms/step": lora_ms},
    {"method": f"LoRA r={lora_r} (all linear)", "trains": "B, A beside every linear layer of the blocks (+ head)",
     "stores per task": "B, A + head (PEFT format)", "trainable": lin_trainable,
     "stored MiB": folder_mib(workdir / "lora_all"), "ms/step": lin_ms},
    {"method": f"sparse fine-tuning (K = {target:,})", "trains": "K chosen entries of the pretrained weights (+ head)",
     "stores per task": "K (index, value) pairs + head", "trainable": target + head,
     "stored MiB": folder_mib(workdir / "sparse.sft"), "ms/step": sparse_ms},
    {"method": "prefix tuning (AdapterHub)", "trains": "virtual key/value vectors in every attention layer, "
     "through an MLP (+ head)", "stores per task": "the trained tensors (MLP + head); or only the prefixes",
     "trainable": prefix_trainable, "stored MiB": folder_mib(workdir / "prefix.safetensors"), "ms/step": prefix_ms},
])
measured_rows = family["ms/step"] != NI
for col in ("stored MiB", "ms/step"):
    family.loc[measured_rows, col] = family.loc[measured_rows, col].astype(float).round(3 if col == "stored MiB" else 0)
family.loc[measured_rows, "% of backbone"] = (100 * family.loc[measured_rows, "trainable"].astype(float) / total).round(3)
family

# %%
meas = family[measured_rows].copy()
fig, axes = plt.subplots(1, 2, figsize=(13, 3.8), sharey=True)
for ax, col, xlabel in ((axes[0], "stored MiB", "MiB stored per task (log)"), (axes[1], "ms/step", "ms per step")):
    ax.barh(meas["method"], meas[col].astype(float), color=sns.color_palette("deep", len(meas)))
    ax.set(xlabel=xlabel)
axes[0].set_xscale("log")
plt.tight_layout()
plt.show()


# %% [markdown]
# ## Exercises
#
# **Implement it.** Complete `lora_update(w0, a, b, alpha, r)`: the weight that merging writes into an
# adapted layer (section 6). It receives torch tensors `w0` of shape (d, k), the frozen pretrained weight;
# `a` of shape (r, k) and `b` of shape (d, r), the trained LoRA factors $A$ and $B$; and the numbers
# `alpha` (a float) and `r` (an int). It returns the merged $d \times k$ weight
# $W_0 + \frac{\alpha}{r} BA$ (one line of torch). The check builds small PEFT LoRA layers with random
# factors, for two choices of $(r, \alpha)$, and compares your result with PEFT's own `merge_and_unload`.
#
# **Reasoning.** Answer with a letter; the check says whether it is right (the answers are not in this
# notebook) and explains once it is.
#
# 1. Would the LoRA matrices learn anything if $A$ *and* $B$ both started at zero? (Think about the
#    gradient of each factor when the other one is zero.) (a) yes, like any other initialisation, only
#    more slowly at first; (b) only $B$ would learn, just as with the usual initialisation; (c) no:
#    neither factor ever gets a non-zero gradient, so only the head trains.
# 2. Hu et al. fix $\alpha$ when they change the rank, so the update is scaled by $\alpha / r$. What does
#    that buy? (a) it is what makes $BA = 0$ at the start; (b) with Adam, the change a step makes to
#    the layer's output depends much less on $r$, so a learning rate chosen at one rank can be reused at
#    the others (as this notebook's rank sweep does); (c) it makes the merged weight the same for every rank.
# 3. What do you give up when you serve a merged LoRA instead of keeping $A$ and $B$ beside the
#    frozen $W_0$? (a) cheap task switching: each adapted layer is one full $d \times k$ matrix again, so
#    every task needs its own copy of those weights instead of small $A$, $B$ files on one shared
#    backbone; (b) nothing: merged and unmerged are the same in every respect; (c) some accuracy,
#    since merging replaces $BA$ by a lower-rank approximation.
#
# **From your run** (the cell after the exercise cell checks these):
#
# 4. Nothing to answer: once `lora_update` passes its check, the cell applies it to the query projection
#    of the LoRA trained in section 6 and compares the result with what PEFT merges into that weight.
# 5. You serve 100 review-like tasks from one backbone. Read the "stored MiB" column of your family
#    table (section 7): how many times less disk do one copy of the backbone plus 100 LoRAs (q, v) need
#    than 100 fully fine-tuned copies? (a whole number)

# %%
# Implement it: complete the function, then run this cell.
def lora_update(w0, a, b, alpha, r):
    """The merged d x k weight W0 + (alpha / r) B A (w0: d x k, a: r x k, b: d x r, torch tensors)."""
    ### BEGIN SOLUTION
    return w0 + (alpha / r) * (b @ a)
    ### END SOLUTION


ex.implement("lora-update", lora_update)

answer_1 = None  # "a", "b" or "c"
answer_2 = None
answer_3 = None
### BEGIN SOLUTION
answer_1, answer_2, answer_3 = "c", "b", "a"
### END SOLUTION
ex.ask("02b.zero-init", answer_1)
ex.ask("02b.alpha-over-r", answer_2)
ex.ask("02b.merge", answer_3)

# %%
# From your run: your lora_update on the LoRA trained in section 6, and the storage question (answer_5).
answer_5 = None  # a whole number

W0_t = q_t.base_layer.weight.detach()
A_t, B_t = q_t.lora_A["task"].weight.detach(), q_t.lora_B["task"].weight.detach()
merged_t = W0_t + q_t.get_delta_weight("task").detach()  # what PEFT's merge writes into this weight
try:
    mine = lora_update(W0_t, A_t, B_t, lora_alpha, lora_r)
except NotImplementedError:
    mine = None
nb.check(f"Exercise 4 ({q_name})", None if mine is None else float((mine - merged_t).abs().max()), 0.0, tol=1e-5,
         hint="Complete lora_update in the exercise cell first; its check says what differs.")
mib = family.set_index("method")["stored MiB"]
full_mib, lora_mib = float(mib["full fine-tuning"]), float(mib[f"LoRA r={lora_r} (q, v)"])
nb.check("Exercise 5", answer_5, round(100 * full_mib / (full_mib + 100 * lora_mib)), tol=1,
         hint="Use the 'stored MiB' column of the family table in section 7.")

# %% [markdown]
# ## Measured summary
#
# Built from this run's numbers.

# %%
agg = an.aggregate(pd.concat([acc, held], ignore_index=True), by=("entry", "eval_set"))
sentences = [f"Mode {mode}, {len(S['seeds'])} seed(s), {base.total_steps(len(data.subsample_train(base.max_train_examples).train))} "
             f"steps per run, test sets at the best dev step. A fresh LoRA left the logits unchanged (max difference "
             f"{start_diff:.2g}). Matched budget: LoRA r={lora_r} on q, v trains {target:,} numbers, the adapter with "
             f"reduction factor {rf:g} trains {adapter_count(b_match):,} ({match_pct:+.1f}%), full fine-tuning "
             f"{total:,}."]
for name in ENTRIES:
    i, h = an.cell(agg, entry=name, eval_set=in_dist[0]), an.cell(agg, entry=name, eval_set="held-out (mean)")
    how = "chosen on dev" if len(entry_results[name].lr_table) > 1 else "the grid's only candidate in ci mode"
    sentences.append(f"{name} (lr {entry_results[name].chosen_lr:g}, {how}): {an.format_ci(i['mean'], i['ci95'])}% "
                     f"in distribution, {an.format_ci(h['mean'], h['ci95'])}% on the held-out domains (mean).")
for _, c in claims.iterrows():
    sentences.append(f"{c['paper']}, \"{c['claim']}\" ({c['eval']}): {c['compared']} = {c['ours (points)']} points, "
                     f"{c['verdict']}.")
if rank_agg["rank"].nunique() > 1:
    ra = rank_agg[rank_agg.eval_set == in_dist[0]]
    sentences.append("In-distribution accuracy by rank (q, v): " + ", ".join(
        f"r={r.rank} {an.format_ci(r.mean, r.ci95)}%" for r in ra.itertuples()) + ".")
sentences.append(f"Merged vs unmerged logits differ by at most {merge_diff:.2g} (reloaded from PEFT format: "
                 f"{reload_diff:.2g}); a forward pass over {len(reviews)} reviews took {latency['unmerged LoRA']:.0f} ms "
                 f"unmerged, {latency['merged']:.0f} ms merged, {latency['pretrained (no LoRA)']:.0f} ms without LoRA "
                 "(medians on this machine, noisy when it is shared).")
sentences.append(f"Stored per task: LoRA (q, v) {lora_mib:.2f} MiB, the adapter {float(mib[f'bottleneck adapter (rf {rf:g})']):.2f} MiB, full "
                 f"fine-tuning {full_mib:.1f} MiB; step time LoRA {lora_ms:.0f} ms, adapter {adapter_ms:.0f} ms, full "
                 f"fine-tuning {full_ms:.0f} ms, linear probe {probe_ms:.0f} ms ({S['timing_steps']}-step timing runs).")
nb.save_summary(STUDY, " ".join(sentences), table, store=store, mode=mode, seeds=S["seeds"],
                figures={"key": key_figure})

# %% [markdown]
# ### Discussion
#
# * **Budgets matched in count, not in place.** LoRA changes the attention's query and value maps; the
#   bottleneck adapter adds a small network after the feed-forward sublayer. Equal counts make the
#   comparison fair in size; they do not make the two methods equally expressive. The all-linear
#   variant, at the same rank, trains about four and a half times as much.
# * **What the verdicts can say.** The claims table judges each claim from the paired differences over
#   this run's seeds. "Inconclusive (could detect ≥ x points)" means the seeds cannot tell the methods
#   apart at that size: a difference smaller than x may exist. The papers used RoBERTa, BERT-large or
#   GPT-3 on GLUE with thousands of steps; ours is MiniLM on English review domains.
# * **LoRA saves storage and optimiser memory, less so compute.** The backward pass still runs through
#   every frozen block to reach the LoRA matrices of the lower blocks, so a LoRA step costs a good part
#   of a full step (the family map shows how much on this machine); the linear probe, whose gradient
#   stops at the head, is the only really cheap step. Storage is where LoRA and adapters win by orders
#   of magnitude, and a merged LoRA serves at exactly the pretrained model's cost.
# * **The learning rate is part of the method.** Light methods want about ten times the learning rate
#   of full fine-tuning; the protocol chose each entry's rate on dev (table in section 4). With $\alpha$
#   fixed, the rank sweep reuses LoRA's chosen rate for every rank, as Hu et al. do.
# * In `mode="ci"` (what CI runs) every run is 12 steps on 256 reviews with one seed, the learning rate
#   is not chosen (one candidate per grid), evaluation sets are capped at 48 reviews and the timing runs
#   take 3 steps: the numbers show that the pipeline works, not which method wins. Quote `mode="full"`.
