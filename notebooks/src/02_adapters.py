# %% [markdown]
# # 02 · Adapters: task adapters, domain adapters, and the MAD-X swap
#
# {{colab}}
#
# **Learning goals.** After this notebook you can
#
# 1. explain what a bottleneck adapter is, where it sits in a transformer block, and how few
#    parameters it trains;
# 2. train a task adapter with AdapterHub's `adapters` library through the same `tft.train` loop, and
#    compare it with full fine-tuning in-distribution and under domain shift, with few and with all
#    labelled examples, over seeds with 95% confidence intervals;
# 3. trade accuracy against trainable parameters with the reduction factor;
# 4. run MAD-X: adapters trained with masked language modelling on unlabelled text of each domain,
#    a task adapter stacked on the source adapter, and the zero-shot *swap* to the target domain's
#    adapter at test time; and say whether the swap helps.
#
# Recap from 01: full fine-tuning is the baseline; `reviews` has four source domains, held-out
# domains (`shift:<domain>`) and translations. The default backbone is English-only, so MAD-X's
# original setting, *languages*, needs a multilingual backbone (section 5).

# %%
# {{install}}

# %% [markdown]
# ## Parameters

# %% tags=["parameters"]
mode: str = "ci"                           # "ci": minutes on 2 CPU cores; "full": results worth teaching from
backbone: str = "minilm"
seeds: list[int] = [0, 1, 2, 3, 4]         # the protocol's 5 seeds in full mode; ci mode uses the first two
task: str = "reviews"
store: str = "runs"
reduction_factors: list[float] = [64, 16, 4]  # the bottleneck is hidden size / r
low_data: int = 128                        # examples in the low-data regime
mlm_steps: int = 1000                      # masked-LM steps per domain adapter (full mode; the loss curve shows the plateau)
num_epochs: float = 3
executor: str = "serial"                   # "ray": the runs of each entry in parallel (pip install 'tutorfinetune[scale]')
workers: int = 0                           # runs at once on Ray (0: the default for this machine)

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch
from IPython.display import display

import tutorfinetune as tft
from tutorfinetune import analysis as an
from tutorfinetune import exercises as ex
from tutorfinetune import notebook as nb
from tutorfinetune.backbones import adapter_summary

info = nb.setup(mode, seeds)
P = nb.typed_parameters(globals())  # papermill passes text: every parameter gets its annotated type
data = tft.load_task(task)
S = nb.mode_settings(
    mode,
    ci=dict(seeds=info["seeds"][:1], regimes={"low-data": low_data}, max_steps=8, rfs=reduction_factors[:2],
            rf_seeds=info["seeds"][:1], warm_steps=4, mlm_steps=min(mlm_steps, 6),
            max_eval_examples=16, batch_size=8, max_length=64, domains=data.eval_set_names("domains")[:1],
            targets=data.meta["target_domains"][:1]),
    full=dict(seeds=info["seeds"], regimes={"low-data": low_data, "all data": None}, max_steps=None,
              rfs=reduction_factors, rf_seeds=info["seeds"], warm_steps=300, mlm_steps=mlm_steps,
              max_eval_examples=None, batch_size=16, max_length=128, domains=data.eval_set_names("domains"),
              targets=data.meta["target_domains"]),
)
base = tft.TrainConfig(num_epochs=num_epochs, batch_size=S["batch_size"], max_length=S["max_length"], max_steps=S["max_steps"],
                       max_eval_examples=S["max_eval_examples"],
                       eval_sets=data.eval_set_names("dev") + data.eval_set_names("in-distribution") + S["domains"])
# the fair protocol: the checkpoint's readout, test metrics at the best dev step, lr chosen on dev per entry
protocol = tft.studies.Protocol.for_mode(mode, seeds=tuple(S["seeds"]), lr_seeds=tuple(S["seeds"][:1]))
STUDY = "02_adapters"
RUN = dict(store=store, study=STUDY, executor=executor, workers=workers)
sns.set_theme(style="whitegrid", context="notebook")

# %% [markdown]
# ## 1. What an adapter is
#
# A bottleneck adapter (Houlsby et al. 2019; the "Pfeiffer" / MAD-X variant used here) is a small
# module inserted after the feed-forward sublayer of every transformer block:
#
# $$h \leftarrow h + W_\text{up}\,\operatorname{ReLU}(W_\text{down}\, h), \qquad
# W_\text{down} \in \mathbb{R}^{(d/r) \times d},\; W_\text{up} \in \mathbb{R}^{d \times (d/r)}$$
#
# with reduction factor $r$. The pretrained weights stay frozen; only the adapters and the head train.
# Because of the residual connection, an adapter whose up-projection is near zero leaves the
# pretrained network unchanged, so training starts from the pretrained function.

# %%
bb = tft.load_backbone(backbone, num_labels=data.num_labels)
hidden = bb.model.config.hidden_size
an.plot_bottleneck(hidden, 16)
plt.show()
probe = tft.methods.get("adapter", reduction_factor=16)
probe.prepare(bb.model, bb.blocks)
params = bb.parameter_summary()
display(adapter_summary(bb.model))
share = params.set_index("unit").loc["all", "trainable"] / params.set_index("unit").loc["all", "total"]
print(f"With a task adapter (r=16) {share:.2%} of {backbone}'s parameters train (adapter + head).")

# %% [markdown]
# ## 2. Task adapter vs full fine-tuning
#
# The same loop, the same data, the same seeds; only the method (and its learning rate) changes.
# `methods=["adapter"]` adds AdapterHub's `SeqBnConfig(reduction_factor=16)` and freezes the rest;
# the printed summary shows what trains. Two regimes: few labelled examples and all of them.
#
# **The protocol** (`tft.studies.Protocol`, the same in every notebook) decides nothing in favour of
# either method:
#
# * the head reads the encoder the way the checkpoint was pretrained (mean of the token states for
#   all-MiniLM-L6-v2, notebook 00): a frozen body is judged through the readout it learned;
# * each run evaluates dev about ten times and reports the test sets at its **best dev step**, as the
#   papers' scripts keep their best checkpoint;
# * each method's **learning rate is chosen on dev** (`tft.studies.run_entry`): full fine-tuning from
#   {3e-5, 1e-4, 3e-4}, the adapter from {3e-4, 1e-3, 3e-3}, on the first seed; then every seed runs at
#   the chosen rate. Test sets never decide anything. (ci mode tries only each grid's middle value.)

# %%
rows, chosen = [], {}
for regime, n in S["regimes"].items():
    for method, family in (("full", "full"), ("adapter", "light")):
        r = tft.studies.run_entry(backbone, data, base.replace(max_train_examples=n), [method], family=family,
                                  protocol=protocol, tags={"experiment": "vs-full", "regime": regime}, **RUN)
        chosen[(regime, method)] = r.chosen_lr
        rows.append(r.frame.assign(regime=regime))
vs = pd.concat(rows, ignore_index=True)
vs_table = an.ci_table(vs.assign(setting=vs.method + " / " + vs.regime), rows="setting")
vs_table.insert(0, "lr (dev)", [f"{chosen[(s.split(' / ')[1], s.split(' / ')[0])]:g}" for s in vs_table.index])
vs_table

# %%
order = [s for s in base.eval_sets if s != "dev"]
fig, axes = plt.subplots(1, len(S["regimes"]), figsize=(6 * len(S["regimes"]), 4), squeeze=False)
for ax, regime in zip(axes[0], S["regimes"]):
    an.plot_comparison(vs[vs.regime == regime], x="eval_set", hue="method", order=order, ax=ax,
                       title=f"{regime} (n={len(S['seeds'])} seeds)",
                       baseline=tft.data.majority_baseline(data, "in-distribution"))
plt.tight_layout()
key_figure = plt.gcf()  # saved with the measured summary (the full-mode reference shows it)
plt.show()

# %% [markdown]
# ## 3. The reduction factor: accuracy against trainable parameters
#
# A smaller reduction factor means a wider bottleneck: more parameters, more capacity. To keep the
# sweep affordable every width trains at the learning rate chosen on dev for r=16 [D: the protocol would
# choose one per entry].

# %%
n_small = S["regimes"]["low-data"]
adapter_lr = chosen[("low-data", "adapter")]  # the r=16 adapter's rate, chosen on dev above
rf_runs = tft.studies.sweep(backbone, data, protocol.configure(base.replace(lr=adapter_lr, max_train_examples=n_small),
                                                              n_small),
                          seeds=S["rf_seeds"], grid={"reduction_factor": S["rfs"]},
                          methods_factory=lambda s: [("adapter", {"reduction_factor": s["reduction_factor"]})],
                          tags={"experiment": "rf"}, **RUN)
print(f"All reduction factors train at the r=16 adapter's learning rate chosen on dev ({adapter_lr:g}).")


def adapter_params(rf):
    b = max(1, int(hidden // rf))
    return bb.blocks.num_blocks * (2 * hidden * b + hidden + b)


rf_agg = an.aggregate(rf_runs[rf_runs.eval_set == "in-distribution"], by=("reduction_factor",))
rf_agg["adapter_parameters"] = rf_agg.reduction_factor.map(adapter_params)
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.errorbar(rf_agg.adapter_parameters, rf_agg["mean"], yerr=rf_agg.ci95.fillna(0), marker="o", capsize=3)
for r in rf_agg.itertuples():
    ax.annotate(f"r={r.reduction_factor:g}", (r.adapter_parameters, r.mean), textcoords="offset points", xytext=(5, 5))
ax.set_xscale("log")
ax.set_xlabel("adapter parameters (all blocks)")
ax.set_ylabel("in-distribution accuracy")
ax.set_title(f"{n_small} training examples")
plt.show()
rf_agg.round(4)


# %% [markdown]
# ### Explore: the reduction factor
#
# Pick a reduction factor: the diagram shows the bottleneck to scale, with its parameter count and,
# when the store has runs for it, the measured accuracy. (Static figure: r=16.)

# %%
def show_rf(reduction_factor):
    fig, ax = plt.subplots(figsize=(6, 4))
    row = rf_agg[rf_agg.reduction_factor == reduction_factor]
    acc = f"; in-distribution accuracy {an.format_ci(row['mean'].iloc[0], row['ci95'].iloc[0])}%" if len(row) else ""
    an.plot_bottleneck(hidden, reduction_factor, ax=ax,
                       title=f"r={reduction_factor:g}: {adapter_params(reduction_factor):,} adapter parameters{acc}")


nb.explore(show_rf, {"reduction_factor": sorted(set(S["rfs"]) | {2.0, 8.0, 16.0, 32.0})}, static={"reduction_factor": 16.0})

# %% [markdown]
# ## 4. MAD-X with domains: domain adapters and the swap
#
# MAD-X (Pfeiffer et al. 2020) trains a *language* adapter per language with masked language
# modelling (MLM) on unlabelled text, trains the task adapter stacked on the source language's
# adapter, and at test time swaps in the target language's adapter. With an English backbone we do
# the same with **domains**: a `source` adapter on the source domains' unlabelled reviews, one
# adapter per held-out domain, and the swap at evaluation.
#
# Our choices, marked [D] in the [methods reference §2](../docs/methods.md#2-bottleneck-adapters-and-mad-x): MiniLM ships no MLM head. BERT's MLM decoder is tied to the
# word embeddings, so we warm up only the small transform and output bias with the body frozen
# ("mlm-warm"), then train each domain adapter with that head frozen. Domain adapters use reduction
# factor 2 like MAD-X's language adapters, but without invertible embedding adapters, and are trained
# for as many steps as their loss takes to flatten (the curve below shows it; a sentence under it says
# how much the loss still moved at the end) on a few hundred sentences, not on Wikipedia.
#
# The task adapter stacked on `source` runs under the protocol: low-data regime, the learning rate
# chosen on dev for the plain task adapter above, test sets at the best dev step.

# %%
madx_cfg = base.replace(lr=adapter_lr, max_train_examples=n_small)
madx = tft.recipes.madx.domain_transfer(data, protocol.configure(madx_cfg, n_small), seeds=S["seeds"],
                                        backbone=backbone, warm_steps=S["warm_steps"], mlm_steps=S["mlm_steps"],
                                        target_domains=S["targets"], store=store, study=STUDY)
targets = S["targets"]
acc = madx[madx.metric == "accuracy"].copy()
acc["adapter at test"] = acc.eval_set.map(lambda s: "source adapter" if s.endswith("|source-adapter") else
                                          ("target adapter (swap)" if s.split("|")[0][6:] in targets else "source adapter"))
acc["eval_set"] = acc.eval_set.str.replace("|source-adapter", "", regex=False)
shifted = acc[acc.eval_set.isin(data.eval_set_names("domains"))]
an.plot_comparison(shifted, x="eval_set", hue="adapter at test", title="Held-out domains: keep the source adapter or swap?")
plt.show()
an.ci_table(shifted, rows="adapter at test")

# %%
import json
from pathlib import Path

log = json.loads((Path(madx.cache.iloc[0]) / "mlm_log.json").read_text()) if "cache" in madx else {}
plateau = {}
if log:
    fig, ax = plt.subplots(figsize=(7, 3))
    for k, v in log.items():
        if isinstance(v, list):
            ax.plot(pd.Series(v).rolling(10, min_periods=1).mean(), label=k)
            fifth = max(1, len(v) // 5)  # how much the loss still fell over the last fifth of its steps
            if len(v) >= 10:
                plateau[k] = 1 - float(pd.Series(v[-fifth:]).mean()) / float(pd.Series(v[-2 * fifth:-fifth]).mean())
    ax.set_xlabel("step")
    ax.set_ylabel("MLM loss (moving avg)")
    ax.set_title("Warming the MLM head, then training each domain adapter")
    ax.legend(fontsize=8)
    plt.show()
    print("MLM loss change over the last fifth of training vs the fifth before (a plateau is near 0%): "
          + ", ".join(f"{k} {-100 * x:+.1f}%" for k, x in plateau.items()))

# %% [markdown]
# ## 5. The real thing: cross-lingual MAD-X with a multilingual backbone
#
# MAD-X was made for languages. The same recipe runs with `by="lang"`: an English `source` adapter,
# one adapter per language trained on the bundled German, Spanish and French text, the task adapter
# trained on English, and the target language's adapter swapped in for `shift:de/es/fr`. It needs a
# multilingual backbone, downloaded from the Hugging Face hub (Colab and most machines can reach it; the
# machine that ran CI for this course cannot, so the cell below skips unless you set `backbone`):
#
# ```python
# # papermill notebooks/02_adapters.ipynb out.ipynb -p backbone bert-base-multilingual-cased -p mode full
# madx_lang = tft.recipes.madx.domain_transfer(data, base.replace(lr=adapter_lr), seeds=[0, 1, 2, 3, 4],
#                                      backbone="bert-base-multilingual-cased",  # or "xlm-roberta-base"
#                                      by="lang", store=store, study=STUDY)
# ```
#
# mBERT and XLM-R ship their MLM heads, which are loaded instead of warmed. With `minilm` the
# translated sets stay near the majority class whatever adapter is swapped in (notebook 01).

# %%
if backbone != "minilm" and backbone != "tiny":
    madx_lang = tft.recipes.madx.domain_transfer(data, protocol.configure(madx_cfg.replace(eval_sets=[]), n_small),
                                                 seeds=S["seeds"],
                                         backbone=backbone, by="lang", warm_steps=S["warm_steps"],
                                         mlm_steps=S["mlm_steps"], store=store, study=STUDY)
    display(an.ci_table(madx_lang))
else:
    print("Cross-lingual MAD-X skipped: set backbone to a multilingual model (needs hub access).")


# %% [markdown]
# ## Exercises
#
# **Implement it.** Complete `adapter_forward(h, w_down, b_down, w_up, b_up)`, the bottleneck adapter
# of section 1 with its residual connection. It receives torch tensors: the hidden states `h` of shape
# (batch, tokens, d); the down-projection's weight `w_down` of shape (m, d) and bias `b_down` of
# shape (m,); the up-projection's weight `w_up` of shape (d, m) and bias `b_up` of shape (d,), with
# m = d / reduction factor. The weights are stored as `nn.Linear` stores them (output × input). It
# returns a tensor shaped like `h`: $h + W_\text{up}\,\operatorname{ReLU}(W_\text{down} h + b_\text{down}) + b_\text{up}$,
# applied to every token. The check compares it with two `nn.Linear` layers on random inputs.
#
# **Reasoning.** Answer with a letter; the check says whether it is right (the answers are not in this
# notebook) and explains once it is.
#
# 1. Suppose the adapter had no residual connection, $h \leftarrow W_\text{up}\,\operatorname{ReLU}(W_\text{down} h
#    + b_\text{down}) + b_\text{up}$, with the same small initialisation. What would the model compute at
#    the start of training? (a) almost exactly the pretrained function, as with the residual;
#    (b) each block would pass on only the adapter's output, which starts near zero and carries at most
#    m directions of $h$: the pretrained features would be lost, and the frozen blocks above would get
#    inputs they never saw; (c) the pretrained function, but training would be slower.
# 2. The measured summary judges Houlsby et al.'s claim as "adapter ≥ full fine-tuning − 1 point" on
#    the paired difference adapter − full over seeds. Suppose a row reads −0.6 ± 0.8 points. Its
#    verdict is (a) reproduced, since the mean difference is above −1 point; (b) contradicted, since
#    the adapter is below full fine-tuning on average; (c) inconclusive, with the smallest difference
#    these seeds could have detected.
# 3. In the MAD-X swap on a held-out domain (section 4), what does the method use from that domain,
#    and what changes at test time? (a) only unlabelled text of the domain, to train its adapter with
#    masked language modelling; at test time that adapter replaces the source adapter under the
#    unchanged task adapter; (b) a few labelled reviews of the domain, to retrain the task adapter on
#    top of the domain's adapter; (c) nothing from the domain: the source adapter is removed and the
#    task adapter reads the frozen body directly.

# %%
# Implement it: complete the function, then run this cell.
def adapter_forward(h, w_down, b_down, w_up, b_up):
    """The bottleneck adapter with its residual: a tensor shaped like `h` (batch, tokens, d)."""
    ### BEGIN SOLUTION
    return h + torch.relu(h @ w_down.T + b_down) @ w_up.T + b_up
    ### END SOLUTION


ex.implement("adapter-forward", adapter_forward)

answer_1 = None  # "a", "b" or "c"
answer_2 = None
answer_3 = None
### BEGIN SOLUTION
answer_1, answer_2, answer_3 = "b", "c", "a"
### END SOLUTION
ex.ask("02.residual", answer_1)
ex.ask("02.non-inferiority", answer_2)
ex.ask("02.swap", answer_3)

# %% [markdown]
# ## Measured summary
#
# Built from this run's numbers.

# %%
# Houlsby et al.'s claim: a task adapter comes close to full fine-tuning. Read as non-inferiority with a
# one-point margin ("at least"), judged on the paired difference over seeds (same seed = same head
# initialisation and subsample), with the minimal detectable effect when the interval decides nothing.
held_sets = S["domains"]
paired_rows, sentences = [], []
for regime in S["regimes"]:
    v = vs[vs.regime == regime]
    for label, rows_ in (("in-distribution", v[v.eval_set == "in-distribution"]),
                         ("held-out (mean)", an.held_out_mean(v, held_sets, by=["method"]))):
        d = an.paired_difference(rows_, "adapter", "full")
        paired_rows.append({"regime": regime, "eval set": label, "seeds": int(d["n"]),
                            "lr full / adapter (dev)": f"{chosen[(regime, 'full')]:g} / {chosen[(regime, 'adapter')]:g}",
                            "adapter − full (points)": an.format_ci(d["mean"], d["ci95"]),
                            "MDE (points)": round(100 * d["mde"], 1) if pd.notna(d["mde"]) else None,
                            "verdict (adapter ≥ full − 1 point)": an.claim_verdict(d, "at least")})
paired_vs = pd.DataFrame(paired_rows)
display(paired_vs)
for r in paired_rows:
    sentences.append(f"{r['regime'].capitalize()}, {r['eval set']} ({r['seeds']} seed{'s' if r['seeds'] != 1 else ''}, lr chosen on dev "
                     f"{r['lr full / adapter (dev)']}): adapter minus full fine-tuning {r['adapter − full (points)']} "
                     f"points; the claim that the adapter comes within a point of full fine-tuning is "
                     f"{r['verdict (adapter ≥ full − 1 point)']}.")
for regime in S["regimes"]:
    a = an.aggregate(vs[vs.regime == regime], by=("method", "eval_set"))
    for d in targets:
        fa, aa = an.cell(a, method="full", eval_set=f"shift:{d}"), an.cell(a, method="adapter", eval_set=f"shift:{d}")
        winner = "adapter" if aa["mean"] > fa["mean"] else "full fine-tuning"
        sentences.append(f"On shift:{d} {winner} is ahead (adapter {an.format_ci(aa['mean'], aa['ci95'])}%, "
                         f"full fine-tuning {an.format_ci(fa['mean'], fa['ci95'])}%).")
best_rf = rf_agg.sort_values("mean").iloc[-1]
sentences.append(f"Reduction factors {', '.join(f'{r:g}' for r in S['rfs'])}: best in-distribution accuracy at "
                 f"r={best_rf.reduction_factor:g} ({an.format_ci(best_rf['mean'], best_rf['ci95'])}%, "
                 f"{int(best_rf.adapter_parameters):,} adapter parameters).")
swap_agg = an.aggregate(shifted, by=("eval_set", "adapter at test"))
for d in targets:
    s_ = an.cell(swap_agg, eval_set=f"shift:{d}", **{"adapter at test": "target adapter (swap)"})
    k_ = an.cell(swap_agg, eval_set=f"shift:{d}", **{"adapter at test": "source adapter"})
    sentences.append(f"MAD-X swap on shift:{d}: " + an.compare_sentence(s_, k_, "the target-domain adapter",
                                                                        "the source adapter", unit="accuracy",
                                                                        prep="with"))
nb.save_summary(STUDY, " ".join(sentences), vs_table,
                store=store, mode=mode, seeds=S["seeds"],
                figures={"key": key_figure})

# %% [markdown]
# ### Discussion
#
# * The adapter trains the share of parameters printed in section 1 (about 1% at r=16), and the table
#   above says whether that costs accuracy on this data, in which regime, and whether the paired
#   difference can be told from seed noise ("inconclusive" gives the smallest effect these seeds could
#   have detected). A frozen body is often called a regulariser on small data; whether it helped here
#   is in the low-data row, not in that slogan. Whatever this run found, it is the answer for *this*
#   backbone and data, not a law.
# * Before this protocol the study reported the adapter 6–10 points below full fine-tuning. That run
#   read the encoder through BERT's `[CLS]` pooler (which all-MiniLM-L6-v2 was never trained with),
#   stopped every run at a short fixed budget and reported its last step, and used one learning rate
#   per family: all three penalise a method that moves the body little. Compare that verdict with
#   the table above.
# * The swap can only help if the target domain's adapter changes the representation in a way the
#   task adapter can use. Our domain adapters see a few hundred sentences for a few hundred steps with
#   a warmed (weak) MLM head; MAD-X's language adapters saw Wikipedia. A swap that does not help here
#   says more about that budget than about MAD-X.
# * Reading the numbers: test sets hold a few hundred reviews, so a one-point difference is within
#   their sampling error even when seed CIs are tight.
# * In `mode="ci"` (what CI runs) every run is cut to a few steps, one seed and a few dozen
#   reviews per evaluation set (the next cell prints this run's numbers): the numbers show that the
#   pipeline works, not which method wins. Quote `mode="full"`.

# %%
print(nb.describe_scale(mode, S))
