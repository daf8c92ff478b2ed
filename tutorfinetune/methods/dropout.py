"""Dropout plug-ins: guided dropout (docs/methods.md §6) and its baselines, standard and Gaussian dropout.

``"guided-dropout"`` gives every dropout site of the encoder its own probability from the Fisher
score of the sublayer that feeds it (:mod:`tutorfinetune.fisher.sublayer`): with ``mapping="rank"``
(the authors' code, default) the D sites are ranked by score, ascending, and site r gets
``p_upper * (1 - r / (D - 1))``: the flattest sublayer gets ``p_upper``, the sharpest 0. With
``mapping="magnitude"`` (our reading of the algorithm sheet, [D]) scores are min-max normalised to
s in [0, 1] and p = ``p_upper * (1 - s)``. The classifier head keeps its dropout.

The map is applied once in ``prepare()``; training is otherwise unchanged, so there is no cost per
step beyond ordinary dropout (the paper's claim; ``benchmarks/bench_guided_dropout.py``).

**The SDPA pitfall** (checked in transformers 4.57.6): BERT's SDPA self-attention reads the float
``dropout_prob``, not ``dropout.p``; setting ``.p`` alone leaves attention-probability dropout
unchanged. :meth:`DropoutSite.set_p <tutorfinetune.fisher.sublayer.DropoutSite.set_p>` sets both.

``"standard-dropout"`` leaves the checkpoint's dropout as it is (or sets one ``p`` everywhere).
``"gaussian-dropout"`` replaces every dropout with multiplicative noise N(1, α), α = p / (1 - p)
(the paper's baseline, p = 0.1). SDPA computes attention dropout inside its fused kernel, so for
those modules the plug-in switches the module to the model's eager attention code (same maths),
where the attention-probability dropout is a module it can replace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..backbones import Backbone, model_id
from ..distributed import current
from ..fisher.sublayer import (
    SOURCES,
    GuidanceError,
    SublayerScores,
    dropout_sites,
    sublayer_scores,
)
from .base import STAGE, Method, MethodConfig, MethodError, option, probability, register

__all__ = ["GuidedDropout", "GuidedDropoutConfig", "StandardDropout", "StandardDropoutConfig", "GaussianDropout",
           "GaussianDropoutConfig", "GaussianNoise", "dropout_map", "MAPPINGS"]

MAPPINGS = ("rank", "magnitude")


def dropout_map(scores: dict[str, float], p_upper: float = 0.1, mapping: str = "rank") -> dict[str, float]:
    """Site -> dropout probability from Fisher scores (low score: ``p_upper``, high score: 0)."""
    if mapping not in MAPPINGS:
        raise MethodError(f"Unknown mapping {mapping!r}; use one of {list(MAPPINGS)}.")
    if not scores:
        raise MethodError("No Fisher scores to map.")
    names = list(scores)
    vals = np.array([scores[n] for n in names], dtype=float)
    if mapping == "rank":
        order = sorted(range(len(names)), key=lambda i: (vals[i], names[i]))  # ascending; ties by name
        d = len(names)
        return {names[i]: p_upper * (1 - r / (d - 1)) if d > 1 else p_upper for r, i in enumerate(order)}
    lo, hi = float(vals.min()), float(vals.max())
    s = (vals - lo) / (hi - lo) if hi > lo else np.zeros_like(vals)
    return {n: float(p_upper * (1 - si)) for n, si in zip(names, s)}


def _check_p(name: str, p: Any) -> float:
    return probability(name, p, " It is a dropout probability.")


#: what the three dropout plug-ins declare: each decides the model's dropout, so one per run
_DROPOUT = {"traits": frozenset({"sets-dropout"}),
            "excludes": {"sets-dropout": "{me!r} and {other!r} both decide the dropout of the model: use one."}}


@dataclass(frozen=True)
class GuidedDropoutConfig(MethodConfig):
    """Settings of :class:`GuidedDropout` (registry id ``"guided-dropout"``)."""

    scores: SublayerScores | dict | str | Path | None = option(
        None, "Fisher score per dropout site: a SublayerScores, a dict site -> score, or the path of a cached score "
        "file; None computes (and caches) them with source, n and seed, which needs the model's tokenizer")
    source: str = option("contrastive", "the loss the scores come from: 'contrastive' (MiniLM default), "
                         "'mlm-warm', 'mlm' or 'task'", choices=SOURCES, what="Fisher source")
    p_upper: float = option(0.1, "the largest probability (the lowest-Fisher site's), in [0, 1); the paper: 0.1")
    mapping: str = option("rank", "score -> probability: 'rank' (the authors' code) or 'magnitude' (min-max)",
                          choices=MAPPINGS)
    n: int = option(256, "examples of the Fisher estimate when it is computed here")
    seed: int = option(0, "seed of the Fisher estimate when it is computed here")

    def validate(self) -> None:
        self._set("p_upper", _check_p("p_upper", self.p_upper))
        if not isinstance(self.scores, (SublayerScores, dict, str, Path, type(None))):
            raise MethodError(f"scores must be SublayerScores, a dict or a file path, got {type(self.scores).__name__}.")


@register("guided-dropout")
class GuidedDropout(Method):
    """Per-site dropout probabilities from Fisher scores of a pretraining-style loss (options:
    :class:`GuidedDropoutConfig`). The applied map is in ``self.map`` and in the run's artifacts."""

    name = "guided-dropout"
    Config = GuidedDropoutConfig
    stage = STAGE["build"]
    traits = _DROPOUT["traits"]
    excludes = _DROPOUT["excludes"]

    def __init__(self, *args: Any, **config: Any) -> None:
        super().__init__(*args, **config)
        scores, source = self.config.scores, self.config.source
        self._scores_obj: SublayerScores | None = None
        if isinstance(scores, SublayerScores):
            self._scores_obj = scores
        elif isinstance(scores, dict):
            self._scores_obj = SublayerScores({str(k): float(v) for k, v in scores.items()}, {"source": source})
        elif scores is not None:
            try:
                self._scores_obj = SublayerScores.read(scores)
            except GuidanceError as e:
                raise MethodError(str(e)) from None
        self.map: dict[str, float] = {}

    @property
    def source(self) -> str:
        """The scores' own source when they were given, else the configured one."""
        if self._scores_obj is not None:
            return self._scores_obj.meta.get("source", self.config.source)
        return self.config.source

    def describe(self) -> dict[str, Any]:
        c = self.config
        out: dict[str, Any] = {"name": self.name, "source": self.source, "p_upper": c.p_upper, "mapping": c.mapping}
        if self._scores_obj is not None:
            out["scores"] = {k: float(v) for k, v in self._scores_obj.scores.items()}
        else:
            out.update(n=c.n, seed=c.seed)
        return out

    def _scores_for(self, model, blocks) -> SublayerScores:
        if self._scores_obj is not None:
            return self._scores_obj
        from transformers import AutoTokenizer

        src = getattr(model.config, "_name_or_path", "") or ""
        try:
            tok = AutoTokenizer.from_pretrained(src) if src else None
        except (OSError, ValueError):
            tok = None
        if tok is None:
            raise MethodError("Cannot find this model's tokenizer to compute Fisher scores. Compute them first: "
                              "scores = tft.sublayer_fisher.sublayer_scores(backbone, source=...), then "
                              "('guided-dropout', {'scores': scores}).")
        bb = Backbone(model=model, tokenizer=tok, blocks=blocks, name=Path(src).name or src, source=src)
        return sublayer_scores(bb, self.config.source, n=self.config.n, seed=self.config.seed)

    def prepare(self, model: nn.Module, blocks) -> None:
        try:
            sites = dropout_sites(model, blocks)
            sc = self._scores_for(model, blocks)
            sc.check(model_id(model, blocks), type(model).__name__)
        except GuidanceError as e:
            raise MethodError(str(e)) from None
        names = [s.name for s in sites]
        missing = [n for n in names if n not in sc.scores]
        extra = [n for n in sc.scores if n not in names]
        if missing or extra:
            raise MethodError(f"The Fisher scores do not match this model's dropout sites (missing {missing[:4]}, "
                              f"unknown {extra[:4]}): they were computed for another architecture. Recompute them.")
        self.map = dropout_map({n: sc.scores[n] for n in names}, self.config.p_upper, self.config.mapping)
        self.map = current().broadcast_object(self.map)  # several processes: rank 0's map on every rank
        for s in sites:
            s.set_p(self.map[s.name])

    def finish(self, state) -> dict:
        return {"map": dict(self.map), "source": self.source, "mapping": self.config.mapping}


@dataclass(frozen=True)
class StandardDropoutConfig(MethodConfig):
    """Settings of :class:`StandardDropout` (registry id ``"standard-dropout"``)."""

    p: float | None = option(None, "one dropout probability for every site (head excluded), in [0, 1); None keeps "
                             "the checkpoint's own")

    def validate(self) -> None:
        if self.p is not None:
            self._set("p", _check_p("p", self.p))


@register("standard-dropout")
class StandardDropout(Method):
    """The baseline: the checkpoint's dropout unchanged, or one probability ``p`` at every site (head excluded)."""

    name = "standard-dropout"
    Config = StandardDropoutConfig
    traits = _DROPOUT["traits"]
    excludes = _DROPOUT["excludes"]

    def __init__(self, *args: Any, **config: Any) -> None:
        super().__init__(*args, **config)
        self.map: dict[str, float] = {}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **({"p": self.config.p} if self.config.p is not None else {})}

    def prepare(self, model: nn.Module, blocks) -> None:
        try:
            sites = dropout_sites(model, blocks)
        except GuidanceError as e:
            raise MethodError(str(e)) from None
        for s in sites:
            if self.config.p is not None:
                s.set_p(self.config.p)
            self.map[s.name] = s.get_p()

    def finish(self, state) -> dict:
        return {"map": dict(self.map)}


class GaussianNoise(nn.Module):
    """Multiplicative Gaussian noise N(1, alpha) in training (Srivastava et al.'s Gaussian dropout)."""

    def __init__(self, alpha: float) -> None:
        super().__init__()
        self.alpha = float(alpha)
        self.p = self.alpha / (1 + self.alpha)  # the Bernoulli p with the same variance, for reports

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.alpha <= 0:
            return x
        return x * (1 + math.sqrt(self.alpha) * torch.randn_like(x))

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}"


def _eager_attention(mod: nn.Module) -> bool:
    """Switch an SDPA self-attention module to its eager parent class (same maths, dropout as a module)."""
    cls = type(mod)
    if "Sdpa" in cls.__name__ and hasattr(mod, "dropout_prob"):
        parent = cls.__mro__[1]
        if parent.__name__ == cls.__name__.replace("Sdpa", "") and isinstance(getattr(mod, "dropout", None), nn.Module):
            mod.__class__ = parent
            return True
    return False


@dataclass(frozen=True)
class GaussianDropoutConfig(MethodConfig):
    """Settings of :class:`GaussianDropout` (registry id ``"gaussian-dropout"``)."""

    p: float = option(0.1, "the Bernoulli dropout probability whose variance the noise matches: alpha = p / (1 - p); "
                      "in [0, 1) (the paper's baseline: 0.1)")

    def validate(self) -> None:
        self._set("p", _check_p("p", self.p))


@register("gaussian-dropout")
class GaussianDropout(Method):
    """Replace every dropout (head included) by multiplicative Gaussian noise N(1, p/(1-p))."""

    name = "gaussian-dropout"
    Config = GaussianDropoutConfig
    traits = _DROPOUT["traits"]
    excludes = _DROPOUT["excludes"]

    def __init__(self, *args: Any, **config: Any) -> None:
        super().__init__(*args, **config)
        self.replaced = 0
        self.eager = 0

    def prepare(self, model: nn.Module, blocks) -> None:
        alpha = self.config.p / (1 - self.config.p)
        for mod in list(model.modules()):
            if _eager_attention(mod):
                self.eager += 1
            for name, child in list(mod.named_children()):
                if isinstance(child, nn.Dropout):
                    setattr(mod, name, GaussianNoise(alpha))
                    self.replaced += 1
        if not self.replaced:
            raise MethodError(f"No dropout modules found in {type(model).__name__}: nothing to replace.")

    def finish(self, state) -> dict:
        return {"replaced": self.replaced, "sdpa_modules_made_eager": self.eager,
                "alpha": self.config.p / (1 - self.config.p)}
