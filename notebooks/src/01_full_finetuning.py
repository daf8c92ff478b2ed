# %% [markdown]
# # 01 · Full fine-tuning: the baseline every method is compared with
#
# {{colab}}
#
# **Learning goals.** After this notebook you can
#
# 1. fine-tune every parameter of a pretrained encoder on a classification task with one call;
# 2. read learning curves (training loss, dev accuracy) and spot under- and over-training;
# 3. explain why results are reported as a **mean with a 95% confidence interval over seeds**;
# 4. measure how accuracy changes **under distribution shift** (held-out domains, other languages),
#    with the learning rate, and with the amount of training data.
#
# Recap from 00: the `reviews` task has four source domains for training, three held-out domains
# (`shift:<domain>`) and translations of the in-distribution test (`shift:de/es/fr`); the default
# backbone, all-MiniLM-L6-v2, is English-only.

# %%
# {{install}}

# %% [markdown]
# ## Parameters

# %% tags=["parameters"]
mode: str = "ci"                          # "ci": minutes on 2 CPU cores; "full": results worth teaching from
backbone: str = "minilm"                  # embedded all-MiniLM-L6-v2 (offline), "tiny", or a Hugging Face id
seeds: list[int] = [0, 1, 2, 3, 4]        # ci mode uses the first two
task: str = "reviews"
store: str = "runs"                       # results store
lr: float = 1e-4                          # learning rate of the baseline
lrs: list[float] = [2e-5, 5e-5, 1e-4, 2e-4]  # learning-rate sweep
train_sizes: list[int] = [64, 256]        # low-data regime (training examples); "all" is the baseline
num_epochs: float = 3
batch_size: int = 16

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

import tutorfinetune as tft
from tutorfinetune import analysis as an
from tutorfinetune import exercises as ex
from tutorfinetune import notebook as nb

info = nb.setup(mode, seeds)
P = nb.typed_parameters(globals())  # papermill passes text: every parameter gets its annotated type
data = tft.load_task(task)
S = nb.mode_settings(
    mode,
    ci=dict(seeds=info["seeds"][:2], lrs=sorted({lr, max(lrs)}), sizes=train_sizes[:1], max_train_examples=256,
            max_eval_examples=16, max_steps=8, low_data_steps=8, lr_seeds=info["seeds"][:1], batch_size=8,
            max_length=64, eval_sets=data.eval_set_names("dev") + data.eval_set_names("in-distribution")
            + data.eval_set_names("domains")[:1] + data.eval_set_names("languages")[:1]),
    full=dict(seeds=info["seeds"], lrs=lrs, sizes=train_sizes, max_train_examples=None, max_eval_examples=None,
              max_steps=None, low_data_steps=100, lr_seeds=info["seeds"][:3], batch_size=batch_size, max_length=128,
              eval_sets=()),  # every eval set of the task
)
base = tft.TrainConfig(lr=lr, num_epochs=num_epochs, batch_size=S["batch_size"], max_length=S["max_length"], warmup=0.1,
                       weight_decay=0.01, max_steps=S["max_steps"], eval_sets=S["eval_sets"],
                       max_train_examples=S["max_train_examples"], max_eval_examples=S["max_eval_examples"])
# the fair protocol (tft.studies.Protocol): the checkpoint's own readout, dev evaluated about ten times
# (twice in ci mode) and the test sets reported at the best dev step
protocol = tft.studies.Protocol.for_mode(mode, seeds=tuple(S["seeds"]))
base = protocol.configure(base, len(data.subsample_train(S["max_train_examples"]).train))
STUDY = "01_full_finetuning"
sns.set_theme(style="whitegrid", context="notebook")
print(base)

# %% [markdown]
# ## 1. What full fine-tuning does
#
# A pretrained encoder $f_\theta$ maps a review $x$ to a vector; a new head $W$ maps that vector to
# label scores. Full fine-tuning trains **all** of $\theta$ and $W$ to minimise the cross-entropy
#
# $$\mathcal{L}(\theta, W) = -\frac{1}{|B|}\sum_{(x, y) \in B} \log \operatorname{softmax}\big(W f_\theta(x)\big)_y$$
#
# with AdamW (decoupled weight decay) and a learning rate that warms up linearly for the first 10%
# of the steps and then decays linearly to zero. Batches group reviews of similar length, so little
# compute is spent on padding. It is the strongest simple baseline, and the one every later method
# must be compared with: adapters, unfreezing schedules and sparse fine-tuning all train *less* than
# this, and have to earn their place by matching it in-distribution or beating it under shift.
#
# Two choices of this project's protocol (`tft.studies.Protocol`, used by every comparison):
#
# * **The head reads the encoder the way the checkpoint was pretrained.** all-MiniLM-L6-v2 was
#   trained as a sentence encoder with the *mean* of its token states, so the head reads that mean
#   (`readout="auto"`); BERT's `[CLS]` pooler is a layer this checkpoint never trained.
# * **Model selection on dev.** Each run evaluates the dev split about ten times and reports the test
#   sets at its best dev step, as the papers' scripts do (`load_best_model_at_end`); the final step's
#   metrics stay in the run record. A test set never decides anything.
#
# ## 2. The baseline over seeds
#
# One call trains one model; `tft.studies.sweep` repeats it over seeds (each seed changes the head's
# initialisation, the data order and dropout) and records every run in the store. A run that is
# already in the store with the same settings is reused, not retrained.

# %%
baseline = tft.studies.sweep(backbone, data, base, seeds=S["seeds"], store=store, study=STUDY,
                          tags={"experiment": "baseline"})
table = an.ci_table(baseline)
table

# %%
majority = tft.data.majority_baseline(data, "in-distribution")
order = [s for s in data.eval_set_specs if s != "dev" and s in set(baseline.eval_set)]  # ci: the sets it evaluated
ax = an.plot_comparison(baseline, x="eval_set", hue="method", order=order, baseline=majority,
                        title=f"Full fine-tuning of {backbone}: in-distribution vs shifted (n={len(S['seeds'])} seeds)")
key_figure = plt.gcf()  # saved with the measured summary (the full-mode reference shows it)
plt.show()

# %% [markdown]
# **How to read the bars.** Each bar is the mean accuracy over seeds; the whisker is the 95%
# confidence interval of that mean (Student's *t*, n−1 degrees of freedom). Two bars whose intervals
# do not overlap differ by more than seed-to-seed noise. The dashed line is the majority class: a
# model that learned nothing scores about that.
#
# ## 3. Learning curves
#
# Training loss (smoothed) and dev accuracy during training, one line per seed.

# %%
records = [r for r in tft.results.load_records(store) if r["run_id"] in set(baseline.run_id)]
hist = an.histories(records)
an.plot_learning_curves(hist, hue="method")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Sensitivity to the learning rate
#
# The same recipe at several learning rates (fewer seeds to keep it affordable). Small models such
# as MiniLM usually want a larger learning rate than BERT-base's classic 2e-5.

# %%
lr_runs = tft.studies.sweep(backbone, data, base, seeds=S["lr_seeds"], grid={"lr": S["lrs"]}, store=store,
                         study=STUDY, tags={"experiment": "lr"})
lr_agg = an.aggregate(lr_runs.assign(group=lr_runs.eval_set.where(lr_runs.eval_set.isin(
    ["dev", "in-distribution"]), "held-out domains"))[lambda d: ~d.eval_set.isin(data.eval_set_names("languages"))],
    by=("lr", "group"))
fig, ax = plt.subplots(figsize=(7, 3.5))
for g, sub in lr_agg.groupby("group"):
    ax.errorbar(sub["lr"], sub["mean"], yerr=sub["ci95"].fillna(0), marker="o", capsize=3, label=g)
ax.set_xscale("log")
ax.set_xlabel("learning rate")
ax.set_ylabel("accuracy (mean, 95% CI)")
ax.legend()
plt.show()
lr_agg.round(4)

# %% [markdown]
# ### Explore: learning curves per learning rate
#
# Choose a learning rate to see its training loss and dev accuracy (static figure: the baseline
# learning rate).

# %%
lr_hist = an.histories([r for r in tft.results.load_records(store) if r["run_id"] in set(lr_runs.run_id)])
lr_hist["lr_setting"] = lr_hist["run_id"].map(lr_runs.drop_duplicates("run_id").set_index("run_id")["lr"])


def curves_for(learning_rate):
    an.plot_learning_curves(lr_hist[lr_hist.lr_setting == learning_rate], hue="lr_setting")
    plt.suptitle(f"lr = {learning_rate:g}")
    plt.tight_layout()


nb.explore(curves_for, {"learning_rate": sorted(lr_hist.lr_setting.unique())}, static={"learning_rate": lr})

# %% [markdown]
# ## 5. The low-data regime
#
# How much labelled data does full fine-tuning need? Each size trains for the same number of
# optimiser steps (so small sets are seen for many epochs); "all" is the baseline above.

# %%
low_cfg = base.replace(max_steps=S["low_data_steps"], max_train_examples=None)
low = tft.studies.sweep(backbone, data, low_cfg, seeds=S["seeds"], grid={"max_train_examples": S["sizes"]},
                      store=store, study=STUDY, tags={"experiment": "low-data"})
both = tft.results.load(store)
both = both[both.run_id.isin(set(low.run_id) | set(baseline.run_id))].copy()
both["train_size"] = both["max_train_examples"].fillna(len(data.train) if S["max_train_examples"] is None
                                                        else S["max_train_examples"]).astype(int).astype(str)
domain_sets = [s for s in data.eval_set_names("in-distribution") + data.eval_set_names("domains") if s in set(both.eval_set)]
ax = an.plot_comparison(both[both.eval_set.isin(domain_sets)], x="eval_set", hue="train_size", order=domain_sets,
                        baseline=majority, title="Accuracy by number of training examples")
plt.show()
an.ci_table(both[both.eval_set.isin(domain_sets)], rows="train_size")


# %% [markdown]
# ## Exercises
#
# **Implement it.** Complete `mean_ci(values)`. It receives the accuracies of one setting over seeds,
# a list of n ≥ 2 floats (fractions, such as `0.853`), and returns a pair of floats `(mean, half_width)`:
# the mean, and the half-width of its 95% confidence interval under Student's *t* with n−1 degrees
# of freedom, the whisker of the bars above (`mean ± half_width`). You may use
# `scipy.stats.t.ppf`. The check runs your function on 2, 3, 5 and 12 values and compares it with
# the package's own intervals.
#
# **Reasoning.** Answer with a letter; the check says whether it is right (the answers are not in this
# notebook) and explains once it is.
#
# 1. In the bar chart, the 95% intervals of in-distribution and of one held-out domain overlap a
#    little. What does that overlap show? (a) that the two accuracies are equal up to seed noise;
#    (b) that the shift costs less than one point; (c) not much: two overlapping intervals are
#    compatible with a difference that the interval of the per-seed differences (the same runs
#    scored on both sets) puts clearly away from zero.
# 2. ci mode runs two seeds. Even if the seeds varied exactly as much as in full mode's five, why
#    would its interval be several times wider? (a) with n−1 = 1 degree of freedom the *t* critical
#    value is far larger than with four, and the standard error divides by √2 instead of √5;
#    (b) the interval also holds the sampling error of ci mode's small evaluation sets; (c) the
#    interval is 1.96 standard deviations wide, and two numbers always have a large standard deviation.
# 3. The learning rate (section 4) and the step each run reports are chosen on dev. What would go
#    wrong if they were chosen on the in-distribution test set instead? (a) nothing: the test set is
#    just another sample of the same distribution; (b) the reported test accuracy would be biased
#    upwards, since the best of several noisy test scores is picked partly for its noise; (c) the
#    chosen learning rate would always be the smallest of the grid.
#
# **From your run.** 4. Read it off your baseline table (section 2): how many accuracy points are
# lost, on average over the held-out *domains*, relative to in-distribution? (the in-distribution
# mean minus the average of the held-out domains' means, in points, e.g. `4.2`; the cell after the
# exercise cell checks it)

# %%
# Implement it: complete the function, then run this cell.
def mean_ci(values):
    """(mean, half-width of the 95% Student-t interval) of `values`, a list of n >= 2 floats."""
    ### BEGIN SOLUTION
    from scipy import stats

    x = np.asarray(values, dtype=float)
    n = len(x)
    return float(x.mean()), float(stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n))
    ### END SOLUTION


ex.implement("mean-ci", mean_ci)

answer_1 = None  # "a", "b" or "c"
answer_2 = None
answer_3 = None
### BEGIN SOLUTION
answer_1, answer_2, answer_3 = "c", "a", "b"
### END SOLUTION
ex.ask("01.overlap", answer_1)
ex.ask("01.two-seeds", answer_2)
ex.ask("01.select-on-dev", answer_3)

# %%
# From your run: read the gap off your baseline table (section 2), then run this cell.
answer_4 = None  # points, e.g. 4.2

agg = an.aggregate(baseline, by=("eval_set",))
m = agg.set_index("eval_set")["mean"]
held = [s for s in data.eval_set_names("domains") if s in m.index]
gap = 100 * (m["in-distribution"] - m[held].mean()) if held else 0.0
nb.check("Exercise 4", answer_4, round(gap, 1), tol=0.2,
         hint="Use the means of the baseline table in section 2 (the number before ±), in points.")

# %% [markdown]
# ## Measured summary
#
# Built from this run's numbers (rerun with other parameters and it changes with them).

# %%
ba = an.aggregate(baseline, by=("eval_set",))
ind = an.cell(ba, eval_set="in-distribution")
sentences = [f"Full fine-tuning of `{backbone}` ({len(S['seeds'])} seeds, mode={mode}) reached "
             f"{an.format_ci(ind['mean'], ind['ci95'])}% in-distribution accuracy."]
for s in held:
    sentences.append(an.compare_sentence(ind, an.cell(ba, eval_set=s), "in-distribution", s, unit="Accuracy"))
langs = [s for s in data.eval_set_names("languages") if s in m.index]
if langs:
    lang_txt = ", ".join(f"{s[6:]} {100 * m[s]:.1f}%" for s in langs)
    maj = 100 * tft.data.majority_baseline(data, langs[0])
    near = all(abs(100 * m[s] - maj) < 10 for s in langs)
    sentences.append(f"On the translations: {lang_txt} (majority class {maj:.1f}%)" +
                     ("; the English-only backbone is close to guessing there, as expected." if near else
                      "; this backbone transfers to some degree."))
chosen_lr, _ = tft.studies.choose_lr(lr_runs)  # on dev: the test sets never choose
at = an.cell(lr_agg, lr=chosen_lr, group="in-distribution")
sentences.append(f"The learning rate dev prefers is {chosen_lr:g} (in-distribution test at it: "
                 f"{an.format_ci(at['mean'], at['ci95'])}%).")
low_agg = an.aggregate(both[both.eval_set == "in-distribution"], by=("train_size",))
sentences.append("In-distribution accuracy by training-set size: " + ", ".join(
    f"{r.train_size} examples {an.format_ci(r.mean, r.ci95)}%" for r in low_agg.itertuples()) + ".")
nb.save_summary(STUDY, " ".join(sentences), table, store=store, mode=mode, seeds=S["seeds"],
                figures={"key": key_figure})

# %% [markdown]
# ### Discussion: what the numbers do and do not show
#
# * The gap between in-distribution and held-out-domain accuracy is the **cost of domain shift** for
#   this recipe; the summary above says whether it is larger than seed noise on this run. Later
#   notebooks ask whether training *less* (adapters, unfreezing schedules, sparse updates) shrinks it.
# * The translations show the limit of an English-only backbone, not of fine-tuning: its tokenizer
#   and pretraining never saw those languages. Use a multilingual backbone for cross-lingual study.
# * A confidence interval from 2 seeds (ci mode) is wide, and ci mode also trains on 256 examples
#   for 30 steps and scores each evaluation set on at most 120 reviews (`max_eval_examples`); the full
#   mode's 5 seeds on everything are the ones to quote. Intervals describe seed noise only: the test
#   sets are small (a few hundred reviews), so differences of one or two points are within the sampling error of the test set too.
