# %% [markdown]
# # 06 · Sparse fine-tuning: lottery tickets and composable difference vectors
#
# {{colab}}
#
# **Learning goals.** After this notebook you can
#
# 1. describe a fine-tune as a *difference vector* φ = θ − θ0 and store, apply, revert and compose
#    it (`tft.diffs.SparseDiff`);
# 2. run lottery-ticket sparse fine-tuning (LT-SFT): train densely, keep the K entries that moved
#    most, reset, retrain only those (`tft.recipes.get("lt-sft")`), and judge it against two random
#    masks of the same size, dense fine-tuning and a task adapter, with 95% confidence intervals over seeds;
# 3. build a *domain* SFT by masked-language modelling on unlabelled text and compose it with a task
#    SFT for zero-shot transfer to a held-out domain, and see whether sparse differences interfere
#    less than dense ones when added.
#
# The method is Ansell et al., "Composable Sparse Fine-Tuning for Cross-Lingual Transfer" (ACL 2022,
# arXiv:2110.07560); its rules and defaults are in the [methods reference §7](../docs/methods.md#7-lt-sft-and-composable-sparse-fine-tuning). Where we deviate, it says [D].
#
# The comparisons follow the project's fair protocol (`tft.studies.protocol`): the head reads the
# encoder the way the checkpoint was pretrained (mean pooling for all-MiniLM-L6-v2); every run
# evaluates its dev set about ten times (twice in ci mode) and reports the test sets at its **best dev
# step**, as the paper's scripts keep the best checkpoint; every learning rate is **chosen on dev**
# (on the first seed) from a small grid, never on a test set; full mode runs **5 seeds**.

# %%
# {{install}}

# %% [markdown]
# ## Parameters

# %% tags=["parameters"]
mode: str = "ci"                       # "ci": minutes on 2 CPU cores; "full": results worth teaching from
backbone: str = "minilm"
seeds: list[int] = [0, 1, 2, 3, 4]     # the protocol's 5 seeds in full mode; ci mode uses the first
task: str = "reviews"
store: str = "runs"
ks: list[float] = [0.001, 0.005, 0.02]  # K: fractions of the maskable entries (or counts > 1)
paper_k: bool = True                   # also the paper's K: its share of the block parameters (section 1)
random_ks: list[float] = [0.02]        # the two random-mask baselines (uniform, per tensor) at these K
compose_k: float = 0.02                # K of the task SFT that is composed with domain SFTs
domain_k: float = 0.02                 # K of each domain SFT
n_train: int = 400                     # training reviews (the low-data regime where sparsity might help)
dense_epochs: float = 3.0              # phase 1 (dense), as the paper: 3 epochs (75 steps of 400 reviews)
sparse_epochs: float = 10.0            # phase 2 (sparse), as the paper: 10 epochs (250 steps)
sparse_grid: str = "light"             # the protocol's lr grid of the sparse phases ("light" or "full")
mlm_steps: int = 100                   # MLM steps per phase of each domain SFT
mlm_lr: float = 1e-4
warm_steps: int = 50                   # MLM head warm-up (MiniLM ships no MLM head) [D]
adapter_reduction_factor: float = 16   # the task adapter compared side by side
executor: str = "serial"               # "ray": the adapter's runs in parallel (pip install 'tutorfinetune[scale]')
workers: int = 0                       # runs at once on Ray (0: the default for this machine)

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from IPython.display import Markdown, display

import tutorfinetune as tft
from tutorfinetune import analysis as an
from tutorfinetune import diffs
from tutorfinetune import exercises as ex
from tutorfinetune import notebook as nb
from tutorfinetune.engine.record import resolved_config
from tutorfinetune.methods.sparse_update import SparseUpdate
from tutorfinetune.recipes import lt_sft as sft

info = nb.setup(mode, seeds)
P = nb.typed_parameters(globals())  # papermill passes text: every parameter gets its annotated type
if not ks or any(k <= 0 for k in ks + random_ks + [compose_k, domain_k]):
    raise tft.ConfigError("ks, random_ks, compose_k and domain_k must be > 0 (fractions or counts).")
data = tft.load_task(task)
S = nb.mode_settings(
    mode,
    # ci: the same code path, smaller numbers: 2 dense + 7 sparse steps of 64 reviews (about the paper's 3 : 10)
    ci=dict(seeds=info["seeds"][:1], ks=[compose_k], random_ks=[compose_k], dense_epochs=0.5, sparse_epochs=1.75,
            mlm_steps=4, warm_steps=2, max_eval_examples=16, n_train=64, max_length=64),
    full=dict(seeds=info["seeds"], ks=sorted(set(ks) | {compose_k}), random_ks=sorted(set(random_ks)),
              dense_epochs=dense_epochs, sparse_epochs=sparse_epochs, mlm_steps=mlm_steps, warm_steps=warm_steps,
              max_eval_examples=None, n_train=n_train, max_length=128),
)
protocol = tft.studies.Protocol.for_mode(mode, seeds=tuple(S["seeds"]), lr_seeds=tuple(S["seeds"][:1]))
held_out = data.eval_set_names("domains")[: 1 if mode == "ci" else None]  # ci: one held-out domain
targets = data.meta["target_domains"][: len(held_out)]                      # ... and its name, for its domain SFT
eval_sets = data.eval_set_names("dev") + data.eval_set_names("in-distribution") + held_out
base = tft.TrainConfig(batch_size=16, max_length=S["max_length"], num_epochs=S["sparse_epochs"], max_train_examples=S["n_train"],
                       max_eval_examples=S["max_eval_examples"], eval_sets=eval_sets)
# both LT-SFT phases as the paper's scripts (HF Trainer defaults, docs/methods.md §7): no warm-up, no weight decay
sparse_cfg = base.replace(warmup=0.0, weight_decay=0.0)
dense_cfg = sparse_cfg.replace(num_epochs=S["dense_epochs"])
n_phase = len(data.subsample_train(S["n_train"]).train)
sparse_cfg, dense_cfg = protocol.configure(sparse_cfg, n_phase), protocol.configure(dense_cfg, n_phase)
STUDY = "06_sparse_finetuning"
sns.set_theme(style="whitegrid", context="notebook")
print(f"protocol: {protocol}\n{S['n_train']} training reviews; {dense_cfg.total_steps(n_phase)} dense + "
      f"{sparse_cfg.total_steps(n_phase)} sparse steps ({S['dense_epochs']:g} + {S['sparse_epochs']:g} epochs); "
      f"seeds {S['seeds']}; lr grids: dense phase {protocol.grid('full')}, sparse phases {protocol.grid(sparse_grid)}")

# %% [markdown]
# ## 1. A fine-tune is a difference vector
#
# Fine-tuning moves the pretrained weights θ0 to θ. Write the result as θ = θ0 + φ. For full
# fine-tuning φ is dense: every entry moves a little. A **sparse fine-tuning** (SFT) keeps
# $\|\varphi\|_0 = K$, with K a small share of the entries, and stores φ as
# (index, value) pairs: 8 bytes per entry here (int32 index + fp32 value), plus the head.
#
# LT-SFT decides *which* K entries by a lottery ticket:
#
# 1. **dense phase**: fine-tune every maskable entry (LayerNorm frozen, head trained densely);
# 2. **select**: δ = |θ₁ − θ0| pooled over all tensors; keep the K largest;
# 3. **reset** every parameter, the head included, to its value before phase 1;
# 4. **sparse phase**: a fresh optimiser; after each backward, gradients outside the mask are zeroed.
#
# Step 4 hides a pitfall: AdamW's *decoupled weight decay* shrinks every entry, gradient or not. The
# paper's scripts use no weight decay (and so do our LT-SFT runs); the plug-in (`"sparse-update"`)
# also puts the unmasked entries back after each step whenever some decay is set, so they stay
# exactly at θ0 (tested). What may change in MiniLM:

# %%
probe = tft.load_backbone(backbone, num_labels=data.num_labels, readout=protocol.readout)  # the head the runs train
names = diffs.maskable_names(probe.model, probe.blocks)
units = probe.blocks.unit_of(probe.model)
params = dict(probe.model.named_parameters())
groups = []
for n, p in probe.model.named_parameters():
    kind = "maskable" if n in names else ("head (dense)" if units[n] == "head" else "LayerNorm (frozen)")
    groups.append({"unit": units[n], "kind": kind, "entries": p.numel()})
groups = pd.DataFrame(groups).pivot_table(index="unit", columns="kind", values="entries", aggfunc="sum", fill_value=0, sort=False)
n_maskable = int(groups["maskable"].sum())
groups


# %% [markdown]
# **The paper's K as a share of the model.** The paper's task SFTs (mBERT for POS, parsing and NER;
# XLM-R base for NLI) use K = 14,155,776, and both models have twelve 768-wide transformer blocks
# with a 3,072-wide feed-forward layer. Counted per block (four attention projections and two
# feed-forward matrices with their biases, two LayerNorms), that K is the share of the *block*
# parameters computed below; we give MiniLM the same share of *its* block parameters, counted from
# the loaded model (the formula is checked against the count). K is pooled over all maskable
# entries, embeddings included, as in the paper. Smaller K values stay in the sweep.

# %%
def block_params(hidden, ffn, layers):
    """Entries of ``layers`` BERT-style transformer blocks: Q, K, V and output projections, two feed-forward
    matrices (all with biases) and two LayerNorms (weight and bias)."""
    return layers * (4 * hidden * hidden + 2 * hidden * ffn + 9 * hidden + ffn)


PAPER_K, PAPER_BLOCKS = 14_155_776, block_params(768, 3072, 12)  # docs/methods.md §7: the task SFTs' K; mBERT / XLM-R base
n_block = int(groups.loc[[u for u in groups.index if u.startswith("block")]].to_numpy().sum())  # from the model
mc = probe.model.config
assert n_block == block_params(mc.hidden_size, mc.intermediate_size, mc.num_hidden_layers), "the block count disagrees"
paper_density = PAPER_K / PAPER_BLOCKS
k_paper = int(round(paper_density * n_block))


def count(k):
    """K as a number of entries (a fraction of the maskable entries, or a count)."""
    return diffs.resolve_k(k, n_maskable)


KS = sorted({count(k) for k in S["ks"]} | ({k_paper} if paper_k else set()))  # every K as a count of entries
RANDOM_KS, KC = sorted({count(k) for k in S["random_ks"]}), count(compose_k)
print(f"The paper: K = {PAPER_K:,} of {PAPER_BLOCKS:,} block parameters = {paper_density:.1%}. MiniLM: "
      f"{n_block:,} block parameters, so K = {k_paper:,} ({k_paper / n_maskable:.1%} of its {n_maskable:,} maskable "
      f"entries; the embeddings hold {groups.loc['embeddings', 'maskable'] / n_maskable:.0%} of those).")
pd.DataFrame({"K (entries)": [f"{k:,}" for k in KS], "share of maskable entries": [f"{k / n_maskable:.2%}" for k in KS],
              "share of block parameters": [f"{k / n_block:.2%}" for k in KS]})

# %% [markdown]
# ## 2. Domain SFTs by masked-language modelling
#
# The paper composes a *language* SFT (MLM on target-language text) with a task SFT trained in the
# source language. MiniLM is English-only, so our shift is the **domain**: one SFT on the unlabelled
# text of the four source domains (`source`) and one per held-out domain, each by LT-SFT with MLM.
# MiniLM ships no MLM head; we warm a fresh one (untied, frozen decoder) on the text, train it
# densely in both phases and throw it away [D]. The SFTs are cached in the store folder and loaded
# on a rerun with the same settings.

# %%
texts = {"source": [t for d in data.meta["source_domains"] for t in data.texts(domain=d, lang="en")]}
texts.update({d: data.texts(domain=d, lang="en") for d in targets})
key = f"{backbone}-k{domain_k}-m{S['mlm_steps']}-w{S['warm_steps']}-lr{mlm_lr}"
dom, dom_dense, mlm_logs = sft.cached_domain_sfts(
    backbone, texts, f"{store}/sft/domains-{key}", num_labels=data.num_labels, k=domain_k, steps=S["mlm_steps"],
    warm_steps=S["warm_steps"], lr=mlm_lr, batch_size=16, max_length=64, seed=0)
fig, axes = plt.subplots(1, len(texts), figsize=(3.2 * len(texts), 3), sharey=True)
for ax, (name, log) in zip(np.atleast_1d(axes), mlm_logs.items()):
    for phase in ("dense", "sparse"):
        if log.get(phase):
            ax.plot(pd.Series(log[phase]).rolling(max(1, len(log[phase]) // 15)).mean(), label=phase)
    ax.set_title(f"{name} ({len(texts[name])} sentences)")
    ax.set_xlabel("MLM step")
np.atleast_1d(axes)[0].set_ylabel("MLM loss (smoothed)")
np.atleast_1d(axes)[0].legend()
plt.tight_layout()
plt.show()
ov = pd.DataFrame([{"pair": f"source / {d}", "entries each": dom[d].changed,
                    "shared": int(dom["source"].overlap(dom[d]).iloc[-1]["shared"])} for d in targets])
ov["shared share"] = (ov["shared"] / ov["entries each"]).round(3)
ov

# %% [markdown]
# How to read it: the dense phase's loss falls further than the sparse phase's (it can move every
# entry), and the sparse phase starts from the same warmed head. The overlap table says how many
# entries two domain SFTs share: when they are added to the same task SFT, only the shared entries
# add up.
#
# ## 3. LT-SFT across K, two random masks, dense fine-tuning and a task adapter
#
# Per seed, following the paper's recipe, the task SFT is trained **with the source-domain SFT
# applied** (θ0 + φ_source is the starting point). The phases keep the paper's ratio, **3 dense : 10
# sparse epochs** over the training reviews (full mode: 75 + 250 steps; ci mode: 2 + 7 steps), and
# each phase reports its best dev step; the mask is selected from the dense phase's best-dev weights.
# The dense phase is shared across K and masks (selection only changes K). Entries:
#
# * **dense** (`lt-sft-dense`): the dense phase itself, i.e. full fine-tuning with LayerNorm frozen,
#   3 epochs: the dense baseline;
# * **LT-SFT** (`lt-sft`) at every K, the paper's K included;
# * two **random masks** of the same K, each retrained exactly like LT-SFT's sparse phase:
#   `random-sft` draws K entries uniformly over all maskable entries (the usual baseline);
#   `random-sft-per-tensor` takes as many entries *per tensor* as the lottery ticket, at random
#   positions inside each tensor. The first mixes two effects: how K is spread over tensors and which
#   entries inside them; the second keeps the spread and tests only the choice of entries;
# * a **task adapter** (`adapter`, reduction factor `adapter_reduction_factor`) from θ0 with the sparse
#   phase's budget, through `tft.studies.run_entry`.
#
# **Learning rates, chosen on dev (seed `seeds[0]`), never on test.** `lt_sft` takes one config per
# phase, so each phase has its own rate. The dense phase (the dense baseline) is chosen from the
# protocol's "full" grid; its chosen rate is then the first phase of every LT-SFT and per-tensor
# mask. Each sparse entry (each K and mask) then chooses its sparse-phase rate from the `sparse_grid`
# grid ("light" by default: like adapters, the sparse phase trains few entries). The paper uses one
# rate for both phases (5e-5 or 2e-5, untuned) [D]. The dense phase starts from θ0 + φ_source, which
# `run_entry` cannot apply (no plug-in applies a diff), so its candidates are runs of
# `sft.dense_phase` and the choice is `tft.studies.choose_lr`, the rule `run_entry` uses; the adapter
# goes through `run_entry` (its own "light" grid). ci mode has one candidate per grid, so it chooses
# nothing. The MLM phases of the domain SFTs keep `mlm_lr` (no dev set for MLM here) [D].
#
# Every run lands in the store, and a rerun with the same store **reuses** what is finished there: an
# LT-SFT phase is found by its study, seed, settings (lr included) and tags (`tft.results.find_finished`;
# its mask is only known after the dense phase, so its fingerprint is not), the adapter and the dense
# diff on the dense source by their fingerprints. The diffs the later sections use are saved next to
# the domain SFTs, each with the id of the run it came from.

# %%
src_id = dom["source"].meta["id"]                # the source SFT every task SFT starts from (a tag of its runs)
cache = Path(store) / "sft" / f"{STUDY}-{key}"  # the task diffs used below, saved beside the domain SFTs
cache.mkdir(parents=True, exist_ok=True)
s0 = S["seeds"][0]                               # the protocol's lr seed: learning rates are chosen on its dev scores
DENSE = {"phase": "dense", "selection": "lottery"}
METHOD = {"lottery": "lt-sft", "random": "random-sft", "random-per-tensor": "random-sft-per-tensor"}
ENTRIES = [("lottery", k) for k in KS] + [(sel, k) for k in RANDOM_KS for sel in ("random-per-tensor", "random")]


def label(sel, k):
    return f"{METHOD[sel]} K={k:,}"


def found(config, **tags):
    """A finished LT-SFT phase of this study with these settings (seed and lr included) and tags, or None."""
    return tft.results.find_finished(store, study=STUDY, seed=config.seed, tags={"start_from": src_id, **tags},
                                     config=resolved_config(backbone, config).to_dict())


def saved(path, run_id):
    """The diff saved at ``path`` by the finished run ``run_id``, or None."""
    d = diffs.SparseDiff.load(path) if run_id and path.is_file() else None
    return d if d is not None and d.meta.get("run_id") == run_id else None


def fresh(seed):
    return tft.load_backbone(backbone, num_labels=data.num_labels, seed=seed, label_names=data.label_names)


phases = {}  # (seed, lr) -> a dense phase trained in this session (the state to reset to and |θ1 − θ0|)


def dense_at(seed, lr, need_phase=False):
    """The run id of the dense phase of one seed at one lr, from θ0 + φ_source: found in the store or trained;
    with need_phase, the phase itself must be in memory (the sparse phases need it): trained again if only found."""
    if (seed, lr) in phases:
        return phases[(seed, lr)].result.run_id
    rid = found(dense_cfg.replace(seed=seed, lr=lr), **DENSE)
    if rid is None or need_phase:
        phases[(seed, lr)] = sft.dense_phase(fresh(seed), data, dense_cfg.replace(seed=seed, lr=lr),
                                             start_from=dom["source"], label="lt-sft-dense", store=store, study=STUDY,
                                             tags={"start_from": src_id, **DENSE})
        rid = phases[(seed, lr)].result.run_id
    return rid


def sparse_at(seed, sel, k, lr, dense_lr, keep=False):
    """(run id, diff if ``keep``) of one sparse phase: found in the store, or trained on the mask of the dense
    phase at ``dense_lr`` (the uniform random mask needs none)."""
    extra = {} if sel == "random" else {"dense_lr": dense_lr}  # which dense phase chose the mask
    c = sparse_cfg.replace(seed=seed, lr=lr)
    f = cache / f"seed{seed}-{sel}-k{k}-lr{lr:g}-dense{dense_lr:g}.sft"
    rid = found(c, phase="sparse", selection=sel, k=k, **extra)
    d = saved(f, rid) if keep else None
    if rid is None or (keep and d is None):
        dense = None
        if sel != "random":
            dense_at(seed, dense_lr, need_phase=True)
            dense = phases[(seed, dense_lr)]
        out = sft.lt_sft(fresh(seed), data, c, k=k, selection=sel, dense=dense, start_from=dom["source"],
                         store=store, study=STUDY, tags=extra)
        rid, d = out.result.run_id, out.diff
        if keep:
            d.save(f)
    return rid, d


def runs_of(ids):
    everything = tft.results.load(store)
    return everything[everything.run_id.isin(list(ids))]


# (1) the dense phase's learning rate, on dev of the lr seed, from the "full" grid
dense_ids = {lr: dense_at(s0, lr) for lr in protocol.grid("full")}
dense_lr, table = tft.studies.choose_lr(runs_of(dense_ids.values()))
lr_tables = [table.assign(entry="dense phase (the dense baseline)")]
for p in [p for p in phases if p != (s0, dense_lr)]:
    del phases[p]
# (2) each sparse entry's learning rate, on dev of the lr seed, on masks of the chosen dense phase
trials = {(sel, k, lr): sparse_at(s0, sel, k, lr, dense_lr, keep=sel == "lottery")
          for sel, k in ENTRIES for lr in protocol.grid(sparse_grid)}
sparse_lr = {}
for sel, k in ENTRIES:
    sparse_lr[(sel, k)], table = tft.studies.choose_lr(runs_of(trials[(sel, k, lr)][0] for lr in protocol.grid(sparse_grid)))
    lr_tables.append(table.assign(entry=label(sel, k) + " (sparse phase)"))
seed0 = {k: trials[("lottery", k, sparse_lr[("lottery", k)])][1] for k in KS}  # seed 0's task SFTs at every K
# |θ1 − θ0| of the lr seed's dense phase (the explorer and the mask allocations of section 4)
deltas_file = cache / f"seed{s0}-dense{dense_lr:g}-deltas.pt"
rid0 = dense_at(s0, dense_lr)
kept = torch.load(deltas_file, weights_only=True) if deltas_file.is_file() else {}
if (s0, dense_lr) in phases or kept.get("run_id") != rid0:
    dense_at(s0, dense_lr, need_phase=True)
    kept = {"run_id": phases[(s0, dense_lr)].result.run_id, "deltas": phases[(s0, dense_lr)].deltas}
    torch.save(kept, deltas_file)
deltas0 = kept["deltas"]

# (3) every seed at the chosen rates (the lr seed's runs are the trials above)
run_ids, task_sfts, dense_sfts = [], {}, {}
for seed in S["seeds"]:
    run_ids.append(dense_at(seed, dense_lr))
    for sel, k in ENTRIES:
        keep = sel == "lottery" and k == KC
        rid, d = trials[(sel, k, sparse_lr[(sel, k)])] if seed == s0 else sparse_at(seed, sel, k, sparse_lr[(sel, k)],
                                                                                    dense_lr, keep)
        run_ids.append(rid)
        if keep:
            task_sfts[seed] = d
    # the dense counterpart of the composition: a dense task diff trained on top of the dense source diff
    tag, c = "dense on dense source", dense_cfg.replace(seed=seed, lr=dense_lr)
    n_run = len(data.subsample_train(c.max_train_examples, seed=seed).train)  # what a run's fingerprint counts
    rid = tft.results.find_finished(store, tft.engine.fingerprint(backbone, data.name, n_run, c, [SparseUpdate(label=tag)]),
                                    study=STUDY)
    f = cache / f"seed{seed}-dense-on-dense-lr{dense_lr:g}.sft"
    dense_sfts[seed] = saved(f, rid)
    if dense_sfts[seed] is None:
        dense_sfts[seed] = sft.dense_phase(fresh(seed), data, c, start_from=dom_dense["source"], label=tag,
                                           store=store, study=STUDY).diff
        dense_sfts[seed].save(f)
    for p in [p for p in phases if p[0] == seed]:  # a seed's dense phase is not needed after its sparse phases
        del phases[p]
# the task adapter: its own lr on dev ("light" grid), every seed, reused by fingerprint
adapter = tft.studies.run_entry(backbone, data, base, [("adapter", {"reduction_factor": adapter_reduction_factor})],
                                family="light", protocol=protocol, store=store, study=STUDY, tags={"entry": "adapter"},
                                executor=executor, workers=workers or None)
run_ids += list(adapter.frame.run_id.unique())
adapter_params = int(tft.results.history(store, run_ids[-1])["trainable"].iloc[0])
lr_tables.append(adapter.lr_table.assign(entry="adapter"))
lr_table = pd.concat(lr_tables, ignore_index=True)
display(lr_table[[c for c in ("entry", "lr", "dev accuracy", "seeds", "chosen") if c in lr_table.columns]])

res = tft.results.load(store)
res = res[res.run_id.isin(run_ids)].copy()
res["setting"] = np.where(res.method.isin(list(METHOD.values())),
                          res.method + " K=" + res["k"].map(lambda v: f"{v:,.0f}" if pd.notna(v) else ""), res.method)
held = an.held_out_mean(res, held_out, by=["setting", "method", "k_fraction"])
both = pd.concat([res[res.eval_set == "in-distribution"], held], ignore_index=True)
lr_of = {label(sel, k): (f"{sparse_lr[(sel, k)]:g}" if sel == "random" else f"{dense_lr:g} → {sparse_lr[(sel, k)]:g}")
         for sel, k in ENTRIES}
lr_of.update({"lt-sft-dense": f"{dense_lr:g}", "adapter": f"{adapter.chosen_lr:g}"})
main_table = an.ci_table(both, rows="setting")
main_table.insert(0, "lr (dev)", pd.Series(lr_of))
main_table

# %%
sweep_rows = both[both.method == "lt-sft"]
fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
for ax, ev in zip(axes, ["in-distribution", "held-out (mean)"]):
    sub = sweep_rows[sweep_rows.eval_set == ev]
    base_rows = {name: both[(both.method == m) & (both.eval_set == ev)].assign(method="lt-sft")  # drawn in lt-sft's colour
                 for name, m in (("dense (LN frozen)", "lt-sft-dense"), (f"adapter ({adapter_params:,} params)", "adapter"))}
    an.plot_vs_param(sub, x="k_fraction", hue="method", ax=ax, baselines=base_rows, xlabel="K (fraction of maskable entries)",
                     title=f"{ev} (n={res.seed.nunique()} seeds)")
    for m, fmt, name in (("random-sft", "s", "random mask (uniform)"), ("random-sft-per-tensor", "D", "random mask (per tensor)")):
        rnd = an.aggregate(both[(both.method == m) & (both.eval_set == ev)], by=("k_fraction",))
        ax.errorbar(rnd.k_fraction, rnd["mean"], yerr=rnd.ci95.fillna(0), fmt=fmt, color="grey", capsize=3, label=name)
    if paper_k:
        ax.axvline(k_paper / n_maskable, color="k", lw=0.8, ls="-.", label="the paper's share of block params")
    ax.set_xscale("log")
    ax.legend(fontsize=7, loc="lower right")
plt.tight_layout()
key_figure = plt.gcf()  # saved with the measured summary (the full-mode reference shows it)
plt.show()

# %% [markdown]
# How to read it: each point is the mean over seeds with its 95% interval; the dashed band is the
# dense phase (full fine-tuning with LayerNorm frozen) and the dotted one the task adapter; the
# dash-dotted line marks the paper's K. The paper's first claim is that a small share of the
# entries comes close to dense quality; the second, that *which* entries matters (grey: random masks
# of the same K, squares uniform, diamonds per tensor).
#
# ### Paired differences
#
# Seeds pair runs (same head initialisation, same training subsample), so the paired difference is
# the sharper test. The verdicts are in the claims table of section 7.

# %%
pairs = [(label("lottery", k), label(sel, k)) for k in RANDOM_KS if k in KS for sel in ("random", "random-per-tensor")]
pairs += [(label("lottery", k), "lt-sft-dense") for k in KS]
closest = min(KS, key=lambda k: abs(k - adapter_params))
pairs += [(label("lottery", closest), "adapter")]
tables = []
for ev in ["in-distribution", "held-out (mean)"]:
    t = an.paired_table(both[both.eval_set == ev], pairs, by="setting")
    t.insert(0, "eval set", ev)
    tables.append(t)
paired = pd.concat(tables, ignore_index=True)
paired[["eval set", "a", "b", "a − b (points)", "n"]]

# %% [markdown]
# ## 4. Where do the chosen entries live?
#
# The selection is global: a tensor gets as many entries as it has among the K largest moves. MiniLM's
# word-embedding matrix holds about half of all maskable entries, but only the rows of tokens that occur
# in the training reviews get a gradient at all. First the trained task SFTs of seed `seeds[0]` at every K:

# %%
where = pd.concat([d.by_unit().assign(K=f"{d.meta['k']:,}") for d in seed0.values()], ignore_index=True)
order = list(dict.fromkeys(where.unit))
share = where.pivot(index="K", columns="unit", values="share_of_diff")[order].fillna(0)
share = share.loc[sorted(share.index, key=lambda s: int(s.replace(",", "")))]
fig, axes = plt.subplots(1, 2, figsize=(13, 3.8))
share.plot.barh(stacked=True, ax=axes[0], colormap="viridis", legend=False)
axes[0].set_xlabel("share of the K entries")
axes[0].set_title("where the task SFT's entries live (seed %d)" % s0)
dens = where.pivot(index="unit", columns="K", values="density").loc[order]
dens.plot(ax=axes[1], marker="o", logy=True)
axes[1].set_ylabel("entries changed / entries in the unit")
axes[1].set_title("density per unit")
axes[1].tick_params(axis="x", rotation=45)
axes[0].legend(ncol=4, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2))
plt.tight_layout()
plt.show()
emb_share = {k: float(seed0[k].by_unit().set_index("unit").share_of_diff.get("embeddings", 0.0)) for k in seed0}
print("share of K in the embeddings:", {f"{k:,}": f"{v:.1%}" for k, v in emb_share.items()})

# %% [markdown]
# ### The three masks side by side
#
# The masks of seed `seeds[0]` as its runs used them (recomputed by the same functions, seeds and
# dense phase): where each puts its K, and, inside the word-embedding matrix, how many of its entries
# lie in rows of tokens that occur in that seed's training reviews (the only rows with a gradient).

# %%
train_texts = data.subsample_train(S["n_train"], seed=s0).train["text"].tolist()
seen_ids = {i for ids in probe.tokenizer(train_texts, truncation=True, max_length=base.max_length)["input_ids"] for i in ids}
word = next(n for n in names if n.endswith("word_embeddings.weight"))
seen_rows = torch.zeros(params[word].shape[0], dtype=torch.bool)
seen_rows[sorted(seen_ids)] = True
emb_names = [n for n in names if units[n] == "embeddings"]
alloc = []
for k in RANDOM_KS:
    lottery = diffs.select_mask(deltas0, k)
    masks = {label("lottery", k): lottery, label("random-per-tensor", k): diffs.random_mask_like(lottery, seed=s0),
             label("random", k): diffs.random_mask({n: params[n].shape for n in names}, k, seed=s0)}
    for name, m in masks.items():
        n_emb, n_word = sum(int(m[n].sum()) for n in emb_names), int(m[word].sum())
        alloc.append({"mask": name, "K": k, "in the embeddings": n_emb / k, "in the blocks": 1 - n_emb / k,
                      "word-embedding entries in rows of training tokens": int(m[word][seen_rows].sum()) / max(1, n_word)})
alloc = pd.DataFrame(alloc).set_index("mask")
print(f"{int(seen_rows.sum()):,} of {len(seen_rows):,} vocabulary rows ({seen_rows.float().mean():.1%}) occur in the "
      f"{len(train_texts)} training reviews; the embeddings hold {groups.loc['embeddings', 'maskable'] / n_maskable:.1%} "
      "of the maskable entries.")
alloc.drop(columns="K").round(3)


# %%
def where_sentence(k):
    a = alloc[alloc.K == k]
    lt, pt, un = (a.loc[label(s, k)] for s in ("lottery", "random-per-tensor", "random"))
    return (f"At K={k:,} the uniform random mask puts {un['in the embeddings']:.0%} of its entries into the embeddings "
            f"and {un['in the blocks']:.0%} into the transformer blocks; the lottery ticket puts {lt['in the embeddings']:.0%} "
            f"into the embeddings and {lt['in the blocks']:.0%} into the blocks, and the per-tensor random mask the same "
            f"({pt['in the embeddings']:.0%} / {pt['in the blocks']:.0%}) by construction. Of the word-embedding entries, "
            f"{lt['word-embedding entries in rows of training tokens']:.0%} of the lottery ticket's lie in rows of tokens that "
            f"occur in the training reviews, against {pt['word-embedding entries in rows of training tokens']:.0%} of the "
            f"per-tensor mask's and {un['word-embedding entries in rows of training tokens']:.0%} of the uniform mask's.")


display(Markdown(" ".join(where_sentence(k) for k in RANDOM_KS)))

# %% [markdown]
# ### Explore: K → mask coverage and stored size
#
# Selection is cheap once the dense phase is done, so we can re-select any K from this run's dense
# phase (seed 0) and see which blocks the mask covers and what the SFT would weigh on disk
# (static figure: `compose_k`; the list includes the paper's K).

# %%
head_bytes = seed0[KC].head_size * 4


def show_k(K):
    mask = diffs.select_mask(deltas0, K)
    per = pd.Series({u: 0 for u in order})
    for n, m in mask.items():
        per[units[n]] += int(m.sum())
    fig, ax = plt.subplots(figsize=(9, 2.8))
    (per / per.sum()).plot.bar(ax=ax, color="tab:blue")
    count = int(per.sum())
    ax.set_title(f"K = {count:,} ({count / n_maskable:.2%}): {(8 * count + head_bytes) / 2**20:.2f} MiB stored "
                 f"(full model {4 * sum(p.numel() for p in probe.model.parameters()) / 2**20:.0f} MiB)")
    ax.set_ylabel("share of K")


nb.explore(show_k, {"K": sorted({0.0005, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, compose_k, round(k_paper / n_maskable, 4)})},
           static={"K": compose_k})

# %% [markdown]
# ## 5. Composing a task SFT with a domain SFT
#
# Zero-shot transfer to a held-out domain d, three ways, on `shift:d`:
#
# * **task only**: θ0 + φ_task;
# * **+ source**: θ0 + φ_source + φ_task (what the task SFT was trained with);
# * **+ target**: θ0 + φ_d + φ_task (the swap: the paper's zero-shot composition).
#
# The same with **dense** differences (the dense MLM phase of each domain, and a dense task diff
# trained on top of the dense source diff). Sparse differences overlap little, so adding them should
# interfere less; dense ones overlap everywhere.

# %%
comp = []
for seed in S["seeds"]:
    comp.append(sft.zero_shot_transfer(backbone, data, sparse_cfg.replace(seed=seed),
                                      {"sparse": task_sfts[seed], "dense": dense_sfts[seed]},
                                      {"sparse": dom, "dense": dom_dense}, targets, store=store, study=STUDY))
comp = pd.concat(comp, ignore_index=True)
comp["setting"] = comp.kind + ": " + comp.combo
held_c = an.held_out_mean(comp, held_out, by=["setting", "kind", "combo"])
table_c = an.ci_table(pd.concat([comp, held_c], ignore_index=True), rows="setting")
fig, ax = plt.subplots(figsize=(10, 4))
an.plot_comparison(pd.concat([comp, held_c], ignore_index=True), x="eval_set", hue="setting", ax=ax,
                   title="zero-shot composition on held-out domains")
plt.tight_layout()
plt.show()
ovl = task_sfts[s0].overlap(dom[targets[0]]).iloc[-1]
print(f"task SFT (K={task_sfts[s0].changed:,}) and the {targets[0]} SFT share {int(ovl['shared']):,} entries.")
table_c

# %%
comp_pairs = []
for kind in ("sparse", "dense"):
    comp_pairs += [(f"{kind}: + target", f"{kind}: task only"), (f"{kind}: + target", f"{kind}: + source")]
paired_c = an.paired_table(held_c, comp_pairs, by="setting")
# interference: the gain of the swap (+ target minus + source), sparse vs dense, paired by seed
gain = held_c.pivot_table(index="seed", columns="setting", values="value")
gain_rows = pd.DataFrame({"seed": gain.index, "metric": "accuracy", "eval_set": "held-out (mean)",
                          "sparse swap gain": gain["sparse: + target"] - gain["sparse: + source"],
                          "dense swap gain": gain["dense: + target"] - gain["dense: + source"]}).melt(
    id_vars=["seed", "metric", "eval_set"], var_name="setting", value_name="value")
paired_c = pd.concat([paired_c, an.paired_table(gain_rows, [("sparse swap gain", "dense swap gain")], by="setting")],
                     ignore_index=True)
paired_c[["a", "b", "a − b (points)", "n"]]

# %% [markdown]
# ## 6. Storage
#
# What each way of fine-tuning leaves on disk for one task (fp32; the SFT as int32 index + fp32
# value per entry, plus the classification head; the adapter with its head, as `save_adapter`
# writes it would be a few KB more):

# %%
total = sum(p.numel() for p in probe.model.parameters())
sft_file = seed0[KC].save(f"{store}/sft/task-{backbone}-k{KC}-seed{s0}.sft")
assert diffs.SparseDiff.load(sft_file).changed == seed0[KC].changed  # a saved SFT reads back
storage = pd.DataFrame([
    *[{"what": f"task SFT, K={d.changed:,}", "bytes": d.stored_bytes()} for d in seed0.values()],
    {"what": f"task SFT, K={seed0[KC].changed:,}, on disk (safetensors)", "bytes": sft_file.stat().st_size},
    {"what": f"task adapter, {adapter_params:,} trainable (incl. head)", "bytes": 4 * adapter_params},
    {"what": "full fine-tuned model", "bytes": 4 * total},
])
storage["MiB"] = (storage.bytes / 2**20).round(3)
storage["vs full model"] = (storage.bytes / (4 * total)).round(4)
storage

# %% [markdown]
# ## 7. The paper's claims next to ours
#
# The paper's evaluation is cross-lingual (UD POS and parsing, MasakhaNER, AmericasNLI, mBERT and
# XLM-R) and compares with MAD-X adapters; ours is English review sentiment across domains with a
# 22M-parameter MiniLM and a few hundred training reviews. Each claim is a paired difference over
# seeds (`an.claims_table`): "reproduced" when it is significant in the paper's direction (Holm-adjusted
# over the table's tests), "contradicted" when significant the other way, otherwise "inconclusive" with
# the smallest difference these seeds could detect at 80% power (MDE). "Reaches dense quality" is a
# non-inferiority claim: reproduced when the whole 95% interval lies above −1 point.

# %%
PAPER = "Ansell et al. 2022 (LT-SFT)"
HO, ID = ("held-out (mean)",), ("in-distribution",)
CLAIMS = []
for k in [k for k in RANDOM_KS if k in KS]:
    CLAIMS += [an.Claim(PAPER, f"the lottery-ticket mask beats a uniform random mask of the same K (K={k:,})",
                        label("lottery", k), label("random", k), "greater", "LT-SFT > random", HO, "held-out"),
               an.Claim(PAPER, f"the lottery-ticket mask beats a random mask with its entries per tensor (K={k:,})",
                        label("lottery", k), label("random-per-tensor", k), "greater", "", HO, "held-out")]
CLAIMS += [an.Claim(PAPER, f"K={k:,} ({k / n_block:.1%} of the block parameters) reaches dense quality",
                    label("lottery", k), "lt-sft-dense", "at least", "", ID, "in-distribution") for k in KS]
CLAIMS += [
    an.Claim(PAPER, "composing with the target SFT beats keeping the source SFT (zero-shot)", "sparse: + target",
             "sparse: + source", "greater", "gains on every target language", HO, "held-out"),
    an.Claim(PAPER, "sparse differences compose with less interference than dense ones (swap gain)",
             "sparse swap gain", "dense swap gain", "greater", "", HO, "held-out"),
    an.Claim(PAPER, f"LT-SFT beats MAD-X adapters (ours: one task adapter, {adapter_params:,} params, not MAD-X)",
             label("lottery", closest), "adapter", "greater", "large margins on UD, MasakhaNER, AmericasNLI", HO, "held-out"),
]
claim_frame = pd.concat([both, held_c, gain_rows], ignore_index=True)
claims = an.claims_table(claim_frame, CLAIMS, by="setting")
claims


# %% [markdown]
# ## Exercises
#
# **Implement it.** Complete `top_k_mask(deltas, k)`, LT-SFT's selection step (section 1, step 2).
# It receives `deltas`, a dict from parameter name to a tensor of |θ1 − θ0| (non-negative floats, any
# shape), and `k`, the number of entries to keep (an int). It returns a dict with the same names, each a
# boolean tensor of its delta's shape, `True` at the K largest entries **pooled over all tensors
# together** (one threshold for the whole model, not K per tensor), so exactly K entries are `True`
# in all. The check runs it on three small tensors with random values at three values of K and compares
# it with the package's `tft.diffs.select_mask`.
#
# **Reasoning.** Answer with a letter; the check says whether it is right (the answers are not in this
# notebook) and explains once it is.
#
# 1. The uniform random mask (`random-sft`) draws its K entries uniformly over all maskable entries.
#    Why does "the lottery ticket beats it" say little about *which* entries matter?
#    (a) the uniform mask is drawn with another seed than the training subsample, so its runs are not
#    paired with LT-SFT's; (b) about half of its K (the embeddings' share of the maskable entries) lands
#    in the word-embedding matrix, mostly in rows of tokens that never occur in the training reviews and
#    so never get a gradient: a good part of its budget cannot move, and the comparison mixes *where*
#    K goes with *which* entries; (c) a uniform
#    mask tends to pick the entries with the smallest |θ1 − θ0|, which are the least useful ones.
# 2. Section 5 expects sparse differences to interfere less than dense ones when a task SFT and a
#    domain SFT are added. Why? (a) sparse differences have a smaller norm, so each barely changes the
#    model; (b) the sparse phase uses weight decay, which keeps the two differences orthogonal;
#    (c) two sparse differences share few entries, so on most entries only one of them acts and keeps
#    the value it was trained to have, while dense differences add up on every entry.
# 3. In the sparse phase the gradients outside the mask are zeroed after each backward. With AdamW
#    and a weight decay of 0.01, what would happen to an entry outside the mask without the package's
#    put-back step? (a) it would shrink a little every step, because decoupled weight decay acts on
#    every entry, gradient or not, so the difference would no longer be sparse; (b) it would stay
#    exactly at θ0, since a zero gradient means a zero update; (c) it would keep moving with the Adam
#    momentum it gathered in the dense phase.
#
# **From your run.** Two numbers to read off your own tables (checked against this run's data):
#
# 4. Which share of the `compose_k` task SFT's entries (seed `seeds[0]`) lies in the embeddings?
#    (a fraction, two decimals)
# 5. Did the lottery-ticket mask beat the *uniform* random mask at `compose_k` on the held-out domains
#    (verdict "reproduced")? (`True`/`False`) Compare it with the verdict against the per-tensor mask,
#    and use question 1 to say why they can differ.

# %%
# Implement it: complete the function, then run this cell.
def top_k_mask(deltas, k):
    """dict name -> |θ1 − θ0| tensor, and an int k -> dict name -> bool tensor: the k largest entries overall."""
    ### BEGIN SOLUTION
    names = list(deltas)
    flat = torch.cat([deltas[n].reshape(-1) for n in names])
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    chosen[torch.topk(flat, k).indices] = True
    parts = torch.split(chosen, [deltas[n].numel() for n in names])
    return {n: part.view(deltas[n].shape) for n, part in zip(names, parts)}
    ### END SOLUTION


ex.implement("top-k-mask", top_k_mask)

answer_1 = None  # "a", "b" or "c"
answer_2 = None
answer_3 = None
### BEGIN SOLUTION
answer_1, answer_2, answer_3 = "b", "c", "a"
### END SOLUTION
ex.ask("06.uniform-mask", answer_1)
ex.ask("06.interference", answer_2)
ex.ask("06.weight-decay", answer_3)

# %%
# From your run: read the answers off your tables.
answer_4 = None  # a fraction, two decimals
answer_5 = None  # True or False


def verdict_of(a, b):
    r = claims[claims.compared == f"{a} − {b}"] if len(claims) else claims
    return r.iloc[0] if len(r) else None


nb.check("Question 4", answer_4, round(emb_share[KC], 2), tol=0.011,
         hint="Read it off the line 'share of K in the embeddings' under the figure of section 4, at K = compose_k.")
r = verdict_of(label("lottery", KC), label("random", KC))
if r is not None:
    nb.check("Question 5", answer_5, bool(r["verdict"] == "reproduced"),
             hint="The verdict column of the claims table of section 7, the row against the uniform random mask.")

# %% [markdown]
# ## Measured summary
#
# Built from this run's numbers.

# %%
agg = an.aggregate(both, by=("setting", "eval_set"))


def acc(setting, ev):
    r = agg[(agg.setting == setting) & (agg.eval_set == ev)]
    return an.format_ci(r["mean"].iloc[0], r["ci95"].iloc[0]) + "%" if len(r) else "n/a"


sentences = [f"{S['n_train']} training reviews, {len(S['seeds'])} seed(s), {dense_cfg.total_steps(n_phase)} dense + "
             f"{sparse_cfg.total_steps(n_phase)} sparse steps, best dev step; learning rates chosen on dev: dense phase "
             f"{dense_lr:g}, adapter {adapter.chosen_lr:g}, sparse phases "
             + ", ".join(f"{label(sel, k)} {sparse_lr[(sel, k)]:g}" for sel, k in ENTRIES) + ". "
             f"Dense phase (LayerNorm frozen): {acc('lt-sft-dense', 'in-distribution')} in distribution, "
             f"{acc('lt-sft-dense', 'held-out (mean)')} on held-out domains."]
sentences.append("LT-SFT in distribution / held-out: " + "; ".join(
    f"K={k:,} ({k / n_block:.1%} of block params) {acc(label('lottery', k), 'in-distribution')} / "
    f"{acc(label('lottery', k), 'held-out (mean)')}" for k in KS) + ".")
sentences.append(f"Task adapter ({adapter_params:,} trainable): {acc('adapter', 'in-distribution')} / {acc('adapter', 'held-out (mean)')}.")
for _, c in claims.iterrows():
    sentences.append(f"{c['claim']} ({c['eval']}): {c['ours (points)']} points ({c['verdict']}).")
sentences += [where_sentence(k) for k in RANDOM_KS]
sentences.append(f"An SFT with K={seed0[KC].changed:,} takes {sft_file.stat().st_size / 2**20:.2f} MiB on disk, "
                 f"{sft_file.stat().st_size / (4 * total):.1%} of the full model.")
nb.save_summary(STUDY, " ".join(sentences), claims, store=store, mode=mode, seeds=S["seeds"],
                figures={"key": key_figure})

# %% [markdown]
# ### Discussion
#
# * **What the numbers say.** Every sentence above is computed from this run; the paired intervals,
#   not single means, decide a verdict, and an "inconclusive" verdict says how large a difference
#   these seeds could have detected. It is not evidence of no difference.
# * **Dense vs sparse, and which entries.** Sparsity is often described as a regulariser that may
#   help with little data, and the lottery mask is expected to beat a random one because it keeps
#   the entries the task moves. What this run shows is computed here:

# %%
near = {k: verdict_of(label("lottery", k), "lt-sft-dense") for k in KS}
near = {k: r for k, r in near.items() if r is not None}
ok = [k for k, r in near.items() if r["verdict"] == "reproduced"]
below = [k for k, r in near.items() if r["verdict"] == "contradicted"]
unsure = [k for k in near if k not in ok + below]
parts = ["In distribution, LT-SFT minus the dense phase: " + "; ".join(
    f"K={k:,} ({k / n_block:.1%} of block params) {r['ours (points)']} points ({r['verdict']})" for k, r in near.items()) + "."]
if ok:
    parts.append("LT-SFT is within a point of dense fine-tuning (non-inferior) at K = " + ", ".join(f"{k:,}" for k in ok) + ".")
if below:
    parts.append("It is more than a point below dense fine-tuning at K = " + ", ".join(f"{k:,}" for k in below) + ".")
if unsure:
    parts.append("These seeds cannot tell whether it is within a point of dense fine-tuning at K = "
                 + ", ".join(f"{k:,}" for k in unsure) + ".")
if not ok:
    parts.append("So this run does not show sparse fine-tuning matching dense fine-tuning at any K tried.")
for k in [k for k in RANDOM_KS if k in KS]:
    for sel, what in (("random", "the uniform random mask"), ("random-per-tensor", "the per-tensor random mask")):
        r = verdict_of(label("lottery", k), label(sel, k))
        if r is not None:
            parts.append(f"Against {what} at K={k:,} (held-out): {r['ours (points)']} points ({r['verdict']}).")
parts += [where_sentence(k) for k in RANDOM_KS]
display(Markdown(" ".join(parts)))

# %% [markdown]
# * **Our setting vs the paper's.** The paper trains for thousands of steps on large corpora with
#   K = 7.7M–14M entries of mBERT/XLM-R (the task SFTs' K is the share of the block parameters
#   computed in section 1, which our largest K copies) and composes *language* SFTs learned from
#   Wikipedia. We train a 22M-parameter English model for 3 + 10 epochs on a few hundred reviews
#   and compose *domain* SFTs learned from each domain's bundled unlabelled text (hundreds of sentences,
#   not a Wikipedia): the domain SFTs can carry far less
#   than a language SFT, so a small composition gain (or none) is the expected outcome here, not a
#   contradiction of the paper.
# * **Deviations** [D]: MiniLM's MLM head is warmed and discarded, and the MLM phases keep a fixed
#   learning rate; selection takes exactly K entries (`topk`) instead of `δ ≥ τ`; the two phases
#   choose their learning rates on dev separately (the paper uses one untuned rate for both); the
#   task adapter is trained from θ0 (not stacked on a domain adapter as in MAD-X; notebook 02 does
#   that) with the default warm-up and weight decay; the unmasked entries are put back after each
#   step when weight decay is set (ours is 0 for the LT-SFT phases, as the paper's).
# * In `mode="ci"` (what CI runs) every run is cut short (the next cell prints this run's scale from
#   its settings): the pipeline is exercised, the numbers are not evidence. Quote `mode="full"`.

# %%
print(nb.describe_scale(mode, S))
