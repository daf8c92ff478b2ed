"""GradDrop: stochastic, sparse gradient masking for fine-tuning (docs/methods.md §5).

O'Neill & Dutta (IJCNN 2023, "Gradient Sparsification For Masked Fine-Tuning of Transformers")
place GradDrop between "train the head only" and "train everything": where gradual unfreezing
decides *deterministically and densely* which layers learn, GradDrop drops gradient entries
*stochastically and sparsely* at every step, a kind of gradient noise. Only the paper's abstract
was readable; everything below that the abstract does not say is our reading ([D] in docs/methods.md)
and notebooks/04_graddrop.ipynb says so.

Each optimiser step, after backward and before gradient clipping (one mask per optimiser step,
whatever the gradient accumulation)::

    element : every gradient entry of the body is kept with probability 1 - p (a fresh mask each step)
    epoch   : like element, but the mask is drawn once per epoch and held for the epoch
    layer   : every unit (the embeddings, each block; with adapters each block's task adapter)
              is dropped whole with probability p

The head (classifier and pooler) is never masked. With task adapters only the adapter parameters
train, so only they are masked; under a schedule (``"gu"`` ...) only the units already unfrozen
have gradients, so GU + GradDrop is the "sparse gradual unfreezing" of the abstract.

``mode`` says what a dropped entry means to AdamW (docs/methods.md §0):

* ``"grad"`` (default): its gradient is zero. AdamW still decays its moments, moves it by the
  momentum it has, and applies weight decay: gradient *noise*, not a freeze.
* ``"skip"``: it does not move at all this step. Layer variant: the dropped tensors get
  ``.grad = None`` and AdamW skips them. Element variants: the entries' weights and AdamW moments
  are saved before ``optimizer.step()`` and put back after it (the tensor's shared step count still
  advances). Costs two extra copies of the trainable weights and moments per step.

Masks come from a dedicated generator seeded from the run seed, so the same seed gives the same
masks and the model's dropout RNG is untouched. Bernoulli draws use 16 random bits per entry
(``p`` is rounded to a multiple of 1/65,536) drawn 64 bits at a time, about 5x cheaper on CPU than
``torch.rand``. In ``"grad"`` mode the element variant draws masks only for the rows of embedding
matrices the batch used: the other rows have a zero gradient, so masking them changes nothing and
would cost half of MiniLM's parameters per step. The history records, per step, ``graddrop_p`` and
``graddrop_kept`` (the fraction of the masked gradient entries kept) and, for the layer variant,
``graddrop_dropped`` (the units dropped).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..distributed import SINGLE
from ..fisher import FisherError, find_units
from .base import (
    STAGE,
    UNIT_KINDS,
    Method,
    MethodConfig,
    MethodError,
    choice,
    option,
    probability,
    register,
)

__all__ = ["GradDrop", "GradDropConfig", "VARIANTS", "MODES", "COMPENSATIONS", "draw_keep", "preview_masks", "expected_kept"]

VARIANTS = {
    "element": "a fresh Bernoulli(1-p) mask over every gradient entry of the body, each optimiser step",
    "epoch": "one element mask per epoch, held for the whole epoch (a random sparse sub-network per epoch)",
    "layer": "each unit (embeddings, block, or task adapter) dropped whole with probability p, each step",
}
MODES = {
    "grad": "dropped entries get a zero gradient (AdamW moments, momentum and weight decay still act)",
    "skip": "dropped entries do not move at all in that step (weights and AdamW moments put back)",
}
P_SCHEDULES = ("constant", "linear")
#: compensation of AdamW's step shrinkage. Under AdamW a dropped entry adds zero to both moment
#: estimates, so with a steady gradient a masked tensor's expected step shrinks by sqrt(1 - p) (x0.84 at
#: p=0.3, x0.71 at 0.5, x0.55 at 0.7: measured in tests/test_graddrop.py on a constant-gradient toy problem;
#: mode="skip" shrinks slightly more), and ``rescale`` cannot undo it, because Adam is invariant to a constant
#: gradient scale. Without compensation a p sweep is largely a learning-rate cut.
COMPENSATIONS = {
    "none": "no compensation: the masked tensors' AdamW steps shrink by about sqrt(1-p) (the paper's rule)",
    "sqrt": "multiply the masked tensors' AdamW step by 1/sqrt(1-p), i.e. lr x 1/sqrt(1-p) for them [D]",
    "linear": "multiply it by 1/(1-p): over-compensates a steady gradient by 1/sqrt(1-p) (an ablation) [D]",
}
_BITS = 16
_LEVELS = 1 << _BITS


def _seed(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") & ((1 << 63) - 1)


def _pick(name: str, value: Any, options) -> str:
    return choice(f"GradDrop {name}", value, options)


def _check_p(name: str, value: Any) -> float:
    return probability(f"GradDrop {name}", value, " It is the probability of dropping a gradient entry: p=1 would "
                       "drop everything, p=0 is plain fine-tuning.")


def draw_keep(numel: int, p: float, generator: torch.Generator, device: torch.device | str = "cpu") -> torch.Tensor:
    """A flat boolean keep-mask of ``numel`` entries, each True with probability ``1 - p``.

    16 random bits per entry, drawn as 64-bit words (four entries per draw of the generator); ``p``
    is rounded to a multiple of 1/65,536. The same generator state gives the same mask.
    """
    if numel == 0:
        return torch.ones(0, dtype=torch.bool, device=device)
    words = torch.empty((numel + 3) // 4, dtype=torch.int64, device=device)
    words.random_(-(1 << 63), None, generator=generator)
    bits = words.view(torch.int16)[:numel]
    return bits >= (-(1 << 15) + round(p * _LEVELS))


def expected_kept(p: float, p_end: float | None = None, p_schedule: str = "constant") -> float:
    """Expected fraction of gradient entries kept per step, averaged over training (every variant)."""
    p = round(p * _LEVELS) / _LEVELS
    if p_schedule == "linear":
        pe = round((p_end or 0.0) * _LEVELS) / _LEVELS
        return 1.0 - (p + pe) / 2
    return 1.0 - p


def preview_masks(variant: str = "element", p: float = 0.3, steps: int = 6, shape: tuple[int, int] = (24, 24),
                  units: int = 7, steps_per_epoch: int = 3, seed: int = 0) -> torch.Tensor:
    """Masks as :class:`GradDrop` would draw them, for pictures: ``(steps, *shape)`` keep-masks for the
    element and epoch variants (a new mask every ``steps_per_epoch`` steps for ``"epoch"``), or a
    ``(units, steps)`` keep-matrix for the layer variant (unit 0 = embeddings, at the bottom)."""
    variant = _pick("variant", variant, VARIANTS)
    p = _check_p("p", p)
    g = torch.Generator().manual_seed(int(seed))
    if variant == "layer":
        return torch.rand(int(steps), int(units), generator=g).T >= p
    n = int(shape[0]) * int(shape[1])
    out, held = [], None
    for t in range(int(steps)):
        if variant == "element" or held is None or t % int(steps_per_epoch) == 0:
            held = draw_keep(n, p, g).view(*shape)
        out.append(held)
    return torch.stack(out)


@dataclass(frozen=True)
class GradDropConfig(MethodConfig):
    """Settings of :class:`GradDrop` (registry id ``"graddrop"``)."""

    p: float = option(0.3, "probability of dropping a gradient entry (or a whole unit, for 'layer'), in [0, 1) "
                      "[D: the paper's value is not public]; notebook 04 sweeps 0.1-0.7")
    variant: str = option("element", "how entries are dropped: " + "; ".join(f"{k}: {v}" for k, v in VARIANTS.items()),
                          choices=VARIANTS)
    mode: str = option("grad", "what a dropped entry means to AdamW: " + "; ".join(f"{k}: {v}" for k, v in MODES.items()),
                       choices=MODES)
    rescale: bool = option(False, "multiply kept entries by 1/(1-p), so the expected gradient is unchanged")
    p_schedule: str = option("constant", "'constant', or 'linear': p moves linearly to p_end over the run",
                             choices=P_SCHEDULES)
    p_end: float = option(0.0, "the last step's p under p_schedule='linear'")
    epoch_steps: int | None = option(None, "variant 'epoch' only: hold each mask this many optimiser steps instead "
                                     "of one epoch (where the training loop has no epochs, e.g. a Trainer on an "
                                     "iterable dataset)")
    units: str = option("auto", "the units of the layer variant: " + "; ".join(f"{k}: {v}" for k, v in UNIT_KINDS.items()),
                        choices=UNIT_KINDS)
    adapter_name: str = option("task", "the task adapter whose per-block parts are the units")
    seed: int | None = option(None, "seeds the mask generator (None: the run seed)")
    compensate: str = option("none", "compensate AdamW's step shrinkage: " + "; ".join(
        f"{k}: {v}" for k, v in COMPENSATIONS.items()), choices=COMPENSATIONS)

    def validate(self) -> None:
        self._set("p", _check_p("p", self.p))
        self._set("p_end", _check_p("p_end", self.p_end))
        if self.epoch_steps is not None and self.variant != "epoch":
            raise MethodError(f"epoch_steps only applies to variant='epoch' (this is {self.variant!r}): drop it.")
        if self.epoch_steps is not None and self.epoch_steps < 1:
            raise MethodError(f"epoch_steps must be >= 1, got {self.epoch_steps}.")


@register("graddrop")
class GradDrop(Method):
    """Stochastic gradient masking (docs/methods.md §5); options: :class:`GradDropConfig`.

    Runs after adapters and schedules (stage ``"mask"``): it masks whatever is trainable at each step.
    The history records ``graddrop_p`` and ``graddrop_kept`` per step (and ``graddrop_dropped`` for the
    layer variant); ``use_rows = False`` draws embedding masks for every row (a benchmark switch).

    Raises:
        MethodError: bad values (with the fix), combinations that mask nothing.
    """

    name = "graddrop"
    Config = GradDropConfig
    stage = STAGE["mask"]
    traits = frozenset({"masks-gradients"})
    excludes = {
        "head-only": "{other!r} trains the head only and GradDrop never masks the head, so {me!r} would do nothing: "
                     "drop one of them (or use the schedule 'lpft' with GradDrop).",
        "masks-gradients": "{other!r} already masks gradients (a sparse fine-tuning phase); GradDrop on top would mix "
                           "two masks: pick one.",
    }
    unique = True
    unique_message = "Two GradDrop plug-ins in one run: use one (pick its variant with variant=...)."

    def __init__(self, *args: Any, **config: Any) -> None:
        super().__init__(*args, **config)
        self.unit_names: list[str] = []
        self.unit_of: dict[int, int] = {}          # id(param) -> unit index
        self.params: list[nn.Parameter] = []       # every maskable parameter, fixed order
        self._gens: dict[str, torch.Generator] = {}
        self._held: dict[int, torch.Tensor] = {}   # epoch variant: param index -> keep mask
        self._held_key: int | None = None
        self._held_kept: dict[int, torch.Tensor] = {}
        self._rows: dict[int, list[torch.Tensor]] = {}
        self._row_params: dict[int, int] = {}      # id(embedding weight) -> param index
        self._hooks: list[Any] = []
        self._saved: list[tuple] = []               # skip mode: what to put back after the step
        self._before: list[tuple] = []              # compensation: the masked tensors before the step
        self._factor = 1.0
        self._checked = False
        self.use_rows = True  # draw embedding masks for the rows a batch used only (grad mode); off: every row
        self._held_p = self.p
        self.model = None

    # the settings most code reads (views of self.config) ------------------------------------
    @property
    def p(self) -> float:
        return self.config.p

    @property
    def variant(self) -> str:
        return self.config.variant

    @property
    def mode(self) -> str:
        return self.config.mode

    @property
    def rescale(self) -> bool:
        return self.config.rescale

    def describe(self) -> dict[str, Any]:
        c = self.config
        out: dict[str, Any] = {"name": self.name, "p": c.p, "variant": c.variant, "mode": c.mode, "rescale": c.rescale,
                               "p_schedule": c.p_schedule}
        if c.p_schedule == "linear":
            out["p_end"] = c.p_end
        if c.epoch_steps is not None:
            out["epoch_steps"] = c.epoch_steps
        if c.units != "auto":
            out["units"] = c.units
        if c.adapter_name != "task":
            out["adapter_name"] = c.adapter_name
        if c.seed is not None:
            out["seed"] = c.seed
        if c.compensate != "none":  # only when set, so runs without it keep their fingerprints
            out["compensate"] = c.compensate
        return out

    # set-up ----------------------------------------------------------------------------------
    def prepare(self, model: nn.Module, blocks) -> None:
        try:
            units = find_units(model, blocks, self.config.units, self.config.adapter_name, True)
        except FisherError as e:
            raise MethodError(str(e)) from None
        head = {id(p) for p in blocks.parameters("head")}
        self.unit_names, self.params, self.unit_of = [], [], {}
        seen: set[int] = set()
        for name, ps in list(units.items()) + [("other", [p for p in model.parameters()])]:
            members = [p for p in ps if id(p) not in head and id(p) not in seen]
            if not members:
                continue
            idx = len(self.unit_names)
            self.unit_names.append(name)
            for p in members:
                seen.add(id(p))
                self.unit_of[id(p)] = idx
                self.params.append(p)
        scheduled = any("schedules-units" in o.traits for o in self.peers)  # units join later
        if not any(p.requires_grad for p in self.params) and not scheduled:
            raise MethodError("GradDrop found no trainable parameter outside the head: nothing to mask. Train the body "
                              "(full fine-tuning), task adapters, or add a schedule that unfreezes units.")
        self.model = model
        self._install_row_hooks(model)

    def _install_row_hooks(self, model: nn.Module) -> None:
        """Record which rows of each embedding matrix a step uses (grad mode, element variant)."""
        for h in self._hooks:
            h.remove()
        self._hooks, self._row_params = [], {}
        if self.mode != "grad" or self.variant == "layer" or not self.use_rows:
            return
        owners: dict[int, int] = {}
        for mod in model.modules():
            for p in mod.parameters(recurse=False):
                owners[id(p)] = owners.get(id(p), 0) + 1
        index = {id(p): i for i, p in enumerate(self.params)}
        for mod in model.modules():
            w = getattr(mod, "weight", None)
            if isinstance(mod, nn.Embedding) and w is not None and id(w) in index and owners.get(id(w)) == 1 \
                    and not getattr(mod, "sparse", False):
                self._row_params[id(w)] = index[id(w)]
                self._hooks.append(mod.register_forward_pre_hook(self._row_hook(id(w))))

    def _row_hook(self, key: int):
        def hook(module, args):
            if args and torch.is_tensor(args[0]) and torch.is_grad_enabled():
                self._rows.setdefault(key, []).append(args[0].detach().reshape(-1))
        return hook

    def _generator(self, device: torch.device, state) -> torch.Generator:
        seed = self.config.seed if self.config.seed is not None else state.config.seed
        key = str(device)
        if key not in self._gens:
            self._gens[key] = torch.Generator(device=device).manual_seed(_seed(int(seed), "graddrop", key))
        return self._gens[key]

    # schedule of p ---------------------------------------------------------------------------
    def p_at(self, step: int, total: int) -> float:
        if self.config.p_schedule == "constant" or total <= 1:
            return self.p
        frac = min(1.0, max(0.0, step / (total - 1)))
        return self.p + (self.config.p_end - self.p) * frac

    def _epoch_key(self, state) -> int:
        es = self.config.epoch_steps
        return state.step // es if es else state.epoch

    def _check_run(self, state) -> None:
        self._checked = True
        if self.variant != "epoch" or self.config.epoch_steps:
            return
        spe, total = int(state.steps_per_epoch or 0), int(state.total_steps or 0)
        if spe <= 0:
            raise MethodError(
                "GradDrop variant 'epoch' holds one mask per epoch, but this training loop reports no epoch length "
                "(max_steps only, e.g. an iterable dataset). Pass epoch_steps=N to hold each mask N optimiser steps.")
        if total and total <= spe:
            raise MethodError(
                f"GradDrop variant 'epoch' holds one mask per epoch, but this run is {total} optimiser steps and one "
                f"epoch is {spe}, so the mask would never change (a fixed random sub-network). Train for more than one "
                f"epoch (num_epochs >= 2, or max_steps > {spe}), or pass epoch_steps=N to redraw the mask every N steps.")

    # hooks -----------------------------------------------------------------------------------
    def on_step_start(self, state) -> None:
        if not self._checked:
            self._check_run(state)
        self._rows = {}

    def _keep_for(self, i: int, p_: nn.Parameter, p_t: float, state, rows: torch.Tensor | None) -> torch.Tensor:
        gen = self._generator(p_.device, state)
        if self.variant == "epoch":
            if i not in self._held:
                self._held[i] = draw_keep(p_.numel(), p_t, gen, p_.device).view_as(p_)
                self._held_kept[i] = torch.count_nonzero(self._held[i])
            return self._held[i] if rows is None else self._held[i].index_select(0, rows)
        if rows is None:
            return draw_keep(p_.numel(), p_t, gen, p_.device).view_as(p_)
        return draw_keep(rows.numel() * p_[0].numel(), p_t, gen, p_.device).view(rows.numel(), *p_.shape[1:])

    def after_backward(self, state) -> None:
        total = int(state.total_steps or 0)
        p_t = self.p_at(state.step, total)
        live = [(i, p) for i, p in enumerate(self.params) if p.grad is not None]
        state.log(graddrop_p=p_t)
        if not live:
            state.log(graddrop_kept=float("nan"))
            return
        scale = 1.0 / (1.0 - p_t) if self.rescale and p_t > 0 else 1.0
        if self.variant == "layer":
            self._drop_layers(live, p_t, scale, state)
            return
        if self.variant == "epoch":
            key = self._epoch_key(state)
            if key != self._held_key:
                self._held, self._held_kept, self._held_key, self._held_p = {}, {}, key, p_t
            p_t = self._held_p
            scale = 1.0 / (1.0 - p_t) if self.rescale and p_t > 0 else 1.0
            state.log(graddrop_p=p_t)
        kept: list[torch.Tensor] = []
        count = 0
        self._saved = []
        opt_state = getattr(state.optimizer, "state", {}) if state.optimizer is not None else {}
        for i, p_ in live:
            g = p_.grad
            rows = None
            if id(p_) in self._row_params and id(p_) in self._rows:
                rows = torch.unique(torch.cat(self._rows[id(p_)])).to(g.device)
            dist = getattr(state, "dist", SINGLE)
            if dist.active and id(p_) in self._row_params:  # the rows any rank used: one mask on every rank
                used = torch.zeros(p_.shape[0], dtype=torch.int32, device=g.device)
                if rows is not None:
                    used[rows] = 1
                rows = torch.nonzero(dist.max_(used)).reshape(-1)
            keep = self._keep_for(i, p_, p_t, state, rows)
            if rows is None:
                if scale != 1.0:
                    g.mul_(scale)
                g.masked_fill_(~keep, 0)
                count += keep.numel()
            else:
                sub = g.index_select(0, rows)
                if scale != 1.0:
                    sub.mul_(scale)
                g.index_copy_(0, rows, sub.masked_fill_(~keep, 0))
                count += keep.numel()
            if self.variant == "epoch":  # the held sub-network, whatever rows this batch touched
                kept.append(self._held_kept[i])
                count += p_.numel() - keep.numel()
            else:
                kept.append(torch.count_nonzero(keep))
            if self.mode == "skip":
                st = opt_state.get(p_, {})
                saved = [(p_.data, p_.detach().clone())]
                for k in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                    t = st.get(k)
                    saved.append((k, t.clone() if torch.is_tensor(t) and t.shape == p_.shape else None))
                self._saved.append((p_, keep, saved))
        n_kept = float(torch.stack([k.to(kept[0].device) for k in kept]).sum()) if kept else 0.0
        state.log(graddrop_kept=n_kept / max(1, count))
        self._remember_for_compensation(live, p_t)

    def _remember_for_compensation(self, live, p_t: float) -> None:
        """Keep the masked tensors as they are before the optimiser step, and the factor their step gets."""
        c = self.config.compensate
        if c == "none" or p_t <= 0:
            self._before = []
            return
        self._factor = 1.0 / ((1.0 - p_t) ** 0.5 if c == "sqrt" else (1.0 - p_t))
        self._before = [(p_, p_.detach().clone()) for _, p_ in live if p_.grad is not None]

    def _drop_layers(self, live, p_t: float, scale: float, state) -> None:
        units = sorted({self.unit_of[id(p)] for _, p in live})
        gen = self._generator(torch.device("cpu"), state)
        drop_u = torch.rand(len(units), generator=gen) < p_t
        dropped = {u for u, d in zip(units, drop_u.tolist()) if d}
        n_all = n_kept = 0
        for _, p_ in live:
            n = p_.numel()
            n_all += n
            if self.unit_of[id(p_)] in dropped:
                if self.mode == "skip":
                    p_.grad = None
                else:
                    p_.grad.zero_()
            else:
                n_kept += n
                if scale != 1.0:
                    p_.grad.mul_(scale)
        state.log(graddrop_kept=n_kept / max(1, n_all),
                  graddrop_dropped=",".join(self.unit_names[u] for u in sorted(dropped)))
        self._remember_for_compensation(live, p_t)

    def after_step(self, state) -> None:
        opt_state = getattr(state.optimizer, "state", {}) if state.optimizer is not None else {}
        with torch.no_grad():
            for p_, keep, saved in self._saved:
                (data, old), *moments = saved
                data.copy_(torch.where(keep, data, old))
                st = opt_state.get(p_, {})
                for k, old_m in moments:
                    t = st.get(k)
                    if torch.is_tensor(t) and t.shape == p_.shape:
                        t.copy_(torch.where(keep, t, old_m if old_m is not None else torch.zeros_like(t)))
            for p_, before in self._before:  # compensation: the step (after - before) times the factor
                p_.data.copy_(before.add_(p_.data - before, alpha=self._factor))
        self._saved = []
        self._before = []

    def finish(self, state) -> dict:
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self._held = {}
        return {"variant": self.variant, "mode": self.mode, "p": self.p, "units": self.unit_names,
                "masked_parameters": int(sum(p.numel() for p in self.params if p.requires_grad))}

    # checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"gens": {k: g.get_state() for k, g in self._gens.items()},
                "held_key": self._held_key, "held_p": self._held_p,
                "held": {int(i): m.cpu() for i, m in self._held.items()}}

    def load_state_dict(self, state: dict) -> None:
        for key, st in state.get("gens", {}).items():
            g = torch.Generator(device=key)
            g.set_state(st)
            self._gens[key] = g
        self._held_key, self._held_p = state.get("held_key"), float(state.get("held_p", self.p))
        self._held = {int(i): m.to(self.params[int(i)].device) for i, m in state.get("held", {}).items()}
        self._held_kept = {i: torch.count_nonzero(m) for i, m in self._held.items()}
        self._checked = False
