# %% [markdown]
# # 00 · Start here: the data, the backbone, and how the study is organised
#
# {{colab}}
#
# **Learning goals.** After this notebook you can
#
# 1. check that your environment works (versions, device, GPU or not);
# 2. describe the bundled `reviews` task: its domains, languages, splits, label balance, and the
#    *distribution shifts* it is built to show;
# 3. name the parts of a backbone that every method in this course talks about: embeddings,
#    transformer blocks (bottom to top) and the classification head, with their parameter counts;
# 4. find your way around the study: which notebook teaches what, where results are stored.

# %%
# {{install}}

# %% [markdown]
# ## Parameters
#
# The cell below is tagged `parameters`: papermill (and the `tutorfinetune study` command) replaces it
# to re-run the notebook with other settings. `mode="ci"` is the quick path used by the test suite;
# `mode="full"` is what the study command runs. Each parameter says its type (`seeds: list[int]`);
# `nb.typed_parameters(globals())` turns what papermill passes (often text) into that type.

# %% tags=["parameters"]
mode: str = "ci"           # "ci" (quick) or "full"
backbone: str = "minilm"   # "minilm" (embedded, offline), "tiny" (random, for tests), or a Hugging Face id
seeds: list[int] = [0]     # this notebook trains nothing; the seed picks the examples shown
task: str = "reviews"      # the bundled task, or a path to your own CSV/TSV/JSONL file
store: str = "runs"        # results store folder

# %%
import matplotlib.pyplot as plt
import seaborn as sns
from IPython.display import display

import tutorfinetune as tft
from tutorfinetune import exercises as ex
from tutorfinetune import notebook as nb

info = nb.setup(mode, seeds)
P = nb.typed_parameters(globals())  # papermill passes text: every parameter gets its annotated type
sns.set_theme(style="whitegrid", context="notebook")

# %% [markdown]
# ## 1. The data
#
# `load_task` returns a `Task`: a table of texts with a label and tags (`split`, `domain`, `lang`), the
# label names, and **named evaluation sets**. The bundled `reviews` task is English review sentiment
# (negative / positive) written for this project. Four *source* domains provide the training data;
# three *held-out* domains (hotels, games, health) never appear in training; the in-domain test is
# also translated into German, Spanish and French. See `data/README.md` for the data card.

# %%
data = tft.load_task(task)
print(data)
summary = data.summary()
summary

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
counts = data.frame.groupby(["domain", "split"]).size().unstack(fill_value=0)
counts.plot.bar(stacked=True, ax=axes[0], colormap="viridis")
axes[0].set_title("Labelled examples per domain and split (all languages)")
axes[0].set_ylabel("examples")
share = data.frame.assign(positive=data.frame.label == data.num_labels - 1).groupby("split")["positive"].mean()
share.plot.bar(ax=axes[1], color="tab:green")
axes[1].axhline(0.5, ls="--", color="grey")
axes[1].set_ylim(0, 1)
axes[1].set_title(f"Share of '{data.label_names[-1]}' per split")
plt.tight_layout()
plt.show()

# %% [markdown]
# ### The evaluation sets and the shifts they measure
#
# | eval set | what it is | the shift |
# |---|---|---|
# | `dev` | English, source domains | none (used for learning curves and choices) |
# | `in-distribution` | English test, source domains | none |
# | `shift:<domain>` | English test of a domain never trained on | **domain shift**: new vocabulary, new ways to praise or complain |
# | `shift:de/es/fr` | the in-distribution test, translated | **language shift** |
#
# A model-free way to *see* the shift: how many of the words in each evaluation set never occur in
# the training texts? We count running words (tokens: the out-of-vocabulary rate), not distinct word
# types: the share of unseen *types* grows with the size of the set (a bigger set has more rare
# words), so it would compare evaluation sets of different sizes unfairly (the `n` of each set is
# in the table). The table shows both.

# %%
shift = tft.data.vocabulary_shift(data)
display(shift.round(3))
ax = sns.barplot(data=shift, x="eval_set", y="unseen_tokens", color="tab:blue")
ax.set_ylabel("share of words unseen in training")
ax.set_title("Vocabulary shift per evaluation set")
plt.xticks(rotation=20, ha="right")
plt.show()

# %% [markdown]
# **Reading the figure.** The in-distribution test shares most of its vocabulary with training; the
# held-out domains bring many words the training data never shows (and with them, domain-specific
# ways of expressing sentiment); the translations share almost none. The embedded backbone,
# all-MiniLM-L6-v2, was trained on English only: its tokenizer splits German, Spanish and French into
# fragments it never learned to read, so **language shift is not something it can bridge** (notebook
# 01 measures it: after fine-tuning on English reviews, its accuracy on the translated test sets stays
# near the majority-class rate).
# Domain shift is the shift this course can teach offline; the cross-lingual notebooks use a
# multilingual backbone (XLM-R, mBERT) when a hub is reachable.
#
# A few examples per domain:

# %%
examples = (data.frame[data.frame.lang == "en"]
            .groupby(["domain", "label"]).sample(1, random_state=info["seeds"][0])
            [["domain", "split", "label", "text"]])
examples["label"] = examples["label"].map(dict(enumerate(data.label_names)))
with __import__("pandas").option_context("display.max_colwidth", 160):
    display(examples)

# %% [markdown]
# ### Explore: examples and lengths per domain
#
# Pick a domain: the figure shows how long its reviews are (in words) against all the training data,
# and prints a few examples. Without a live front end (papermill, a PDF) the static figure for the
# first domain is what you see.

# %%
domains = sorted(data.frame[data.frame.lang == "en"].domain.unique())
train_words = data.train.text.str.split().str.len()


def show_domain(domain):
    rows = data.frame[(data.frame.domain == domain) & (data.frame.lang == "en")]
    fig, ax = plt.subplots(figsize=(7, 3))
    sns.histplot(train_words, stat="density", bins=30, color="grey", alpha=0.4, label="all training", ax=ax)
    sns.histplot(rows.text.str.split().str.len(), stat="density", bins=30, color="tab:orange",
                 alpha=0.6, label=domain, ax=ax)
    ax.set_xlabel("words per review")
    ax.legend()
    ax.set_title(f"{domain}: {len(rows)} labelled English reviews")
    for t in rows.sample(3, random_state=0).text:
        print("-", t)


nb.explore(show_domain, {"domain": domains})

# %% [markdown]
# ## 2. The backbone
#
# `load_backbone` returns the model, its tokenizer and a **BlockMap**: where the embeddings, the
# transformer blocks (bottom to top) and the classification head live. Every method in the later
# notebooks (unfreezing, GradDrop's layer variant, Fisher information per layer, guided dropout)
# addresses layers through the BlockMap, never by walking module names.
#
# The head reads the encoder the way the checkpoint was pretrained (`readout="auto"`, the default):
# all-MiniLM-L6-v2 is a sentence encoder trained with the *mean* of its token states, so its head is
# a parameter-free masked mean followed by the classifier; a plain BERT checkpoint keeps BERT's
# `[CLS]` pooler layer. `load_backbone(..., readout="pooler")` chooses the pooler anyway.

# %%
bb = tft.load_backbone(backbone, num_labels=data.num_labels, label_names=data.label_names)
print(bb)
print(f"readout: {bb.info['readout']!r} -> head modules {[type(m).__name__ for m in bb.blocks.head]}")
params = bb.print_summary()

# %%
units = params[params.unit != "all"]
fig, ax = plt.subplots(figsize=(8, 3))
sns.barplot(data=units, x="unit", y="total", color="tab:purple", ax=ax)
ax.set_yscale("log")
ax.set_ylabel("parameters (log scale)")
ax.set_title(f"{backbone}: parameters per unit")
plt.show()
emb_share = units.set_index("unit").loc["embeddings", "total"] / params.set_index("unit").loc["all", "total"]
print(f"The embeddings hold {emb_share:.0%} of all parameters: mostly the vocabulary matrix.")


# %% [markdown]
# A transformer block of BERT has four sublayers: self-attention (query, key, value), the attention
# output projection with its LayerNorm, the feed-forward "intermediate" layer, and the feed-forward
# output with its LayerNorm. For a block of width $d$ and feed-forward width $4d$ that is about
# $4d^2 + 2\cdot 4d^2 = 12 d^2$ weights; MiniLM has $d = 384$, so about 1.8M per block.

# %% [markdown]
# ## 3. How the study is organised
#
# | notebook | topic |
# |---|---|
# | 00 | this one: data, backbone, organisation |
# | 01 | full fine-tuning: the baseline, learning curves, the fair protocol, low data, seeds and CIs |
# | 02, 02b | bottleneck adapters and MAD-X; LoRA through PEFT |
# | 03–07 | scheduled unfreezing and Fisher information, GradDrop, guided dropout, LT-SFT, STILTs |
# | 08 | every method side by side under one protocol: the leaderboard and the papers' claims |
#
# Two references go with the notebooks: the [methods reference](../docs/methods.md) (each method's
# algorithm, the papers' settings, and every deviation of ours marked [D]) and the
# [glossary](../docs/glossary.md) (pooler, LayerNorm, SimCSE, nucleus sampling, Spearman, bootstrap,
# cross-fitting, fingerprint and the other terms the notebooks use).
#
# Every notebook calls the same training loop, `tft.train(backbone, task, config, methods=[...])`,
# and every run appends one record to the results store (`runs/` by default). Tables and figures are
# drawn from that store with `tft.results.load(...)` and `tft.analysis`, so a rerun with other
# parameters redraws everything from its own numbers.
#
# ## Exercises
#
# **Implement it.** Complete `count_parameters(module)`: the number of parameters of any PyTorch module,
# trainable or frozen (the `total` column of the parameter summary above). The check runs your function
# on a linear layer, a partly frozen stack and a small BERT, and compares it with PyTorch's own count.
#
# **Reasoning.** Answer with a letter; the check says whether it is right (the answers are not in this
# notebook) and explains once it is.
#
# 1. all-MiniLM-L6-v2 was trained to produce sentence embeddings. From which hidden states?
#    (a) the `[CLS]` token's, through BERT's pooler layer; (b) the mean of all token states;
#    (c) the maximum over token states, feature by feature.
# 2. Why does the study report the held-out domains separately instead of pooling them with the
#    in-distribution test set? (a) a gap between the two is the cost of the shift, and pooling would
#    average it away; (b) pooling would make the test set too large to evaluate on a CPU; (c) the
#    held-out domains use other labels.
# 3. The translated sets (`shift:de/es/fr`) hold the in-distribution reviews in other languages. What
#    should an English-only backbone score on them? (a) exactly 0%; (b) about its in-distribution
#    accuracy, since the meaning is the same; (c) near the majority-class rate, since it has no useful
#    representation of those languages' words.

# %%
# Implement it: complete the function, then run this cell.
def count_parameters(module):
    """All parameters of `module` (trainable or not): an int."""
    ### BEGIN SOLUTION
    return sum(p.numel() for p in module.parameters())
    ### END SOLUTION


ex.implement("parameter-count", count_parameters)

answer_1 = None  # "a", "b" or "c"
answer_2 = None
answer_3 = None
### BEGIN SOLUTION
answer_1, answer_2, answer_3 = "b", "a", "c"
### END SOLUTION
ex.ask("00.readout", answer_1)
ex.ask("00.held-out", answer_2)
ex.ask("00.translations", answer_3)

# %% [markdown]
# ## Measured summary

# %%
train_n = len(data.train)
ind = shift.set_index("eval_set")
domain_sets = [s for s in data.eval_set_names("domains") if s in ind.index]
lang_sets = [s for s in data.eval_set_names("languages") if s in ind.index]
parts = [f"The `{task}` task has {train_n} training examples"
         f" ({data.train.label.mean():.0%} {data.label_names[-1]}) and {len(ind)} evaluation sets."]
if "in-distribution" in ind.index:
    parts.append(f"Words unseen in training: {ind.loc['in-distribution', 'unseen_tokens']:.0%} in-distribution")
    if domain_sets:
        parts[-1] += ", " + ", ".join(f"{ind.loc[s, 'unseen_tokens']:.0%} on {s}" for s in domain_sets)
    if lang_sets:
        parts[-1] += ", " + ", ".join(f"{ind.loc[s, 'unseen_tokens']:.0%} on {s}" for s in lang_sets)
    parts[-1] += "."
parts.append(f"Backbone `{backbone}`: {bb.blocks.num_blocks} blocks, "
             f"{params.set_index('unit').loc['all', 'total'] / 1e6:.1f}M parameters, "
             f"{emb_share:.0%} of them in the embeddings.")
nb.save_summary("00_start_here", " ".join(parts), shift.round(3), store=store, mode=mode)
