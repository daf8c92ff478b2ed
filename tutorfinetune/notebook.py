"""Helpers every notebook uses: the set-up banner, widgets with a static fallback, exercise checks,
and the measured summary that the study command collects.

Kept here so that no notebook carries logic of its own (DESIGN.md, "Notebooks").
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import typing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from . import reference
from .config import ConfigError, as_list, coerce
from .env import resolve_device, versions
from .progress import progress_mode
from .results import _atomic_write_json

__all__ = ["banner", "setup", "front_end_attached", "explore", "check", "save_summary", "load_summaries",
           "summary_markdown", "mode_settings", "machine_description", "describe_scale"]


def front_end_attached() -> bool:
    """True in an interactive Jupyter/Colab session (not under papermill or a terminal)."""
    return progress_mode() == "widget"


def banner() -> None:
    """Print the versions that matter (tutorfinetune, Python, torch, transformers, adapters) and the device,
    with the fix when no GPU is found: the last line of every notebook's install cell."""
    import torch

    v = versions()
    dev = resolve_device("auto")
    colab = "google.colab" in sys.modules
    print(f"tutorfinetune {v['tutorfinetune']} | python {v['python']} | torch {v['torch']} | "
          f"transformers {v['transformers']} | adapters {v['adapters']}")
    if dev.type == "cuda":
        print(f"GPU found: {torch.cuda.get_device_name(0)}. Training uses bf16 autocast where supported.")
    else:
        hint = ("In Colab: Runtime > Change runtime type > GPU." if colab
                else "No GPU found: everything runs on the CPU (ci mode is sized for 2 cores).")
        print(f"Device: {dev} ({platform.processor() or platform.machine()}, {os.cpu_count()} cores). {hint}")


def setup(mode: str = "ci", seeds: Any = (0,), quiet: bool = False) -> dict[str, Any]:
    """Validate the common notebook parameters (papermill passes text) and print them with the device.

    Returns ``{"mode", "seeds", "device", "versions", "colab"}``.
    """
    if mode not in ("ci", "full"):
        raise ConfigError(f"mode must be 'ci' or 'full', got {mode!r}.")
    seeds = as_list(seeds, int, "seeds")
    if not seeds:
        raise ConfigError("seeds must name at least one seed, e.g. [0, 1, 2].")
    dev = resolve_device("auto")
    info = {"mode": mode, "seeds": seeds, "device": str(dev), "versions": versions(),
            "colab": "google.colab" in sys.modules}
    if not quiet:
        v = info["versions"]
        print(f"mode={mode!r}, seeds={seeds}, device={dev} (tutorfinetune {v['tutorfinetune']}, torch {v['torch']})")
    return info


def mode_settings(mode: str, ci: dict[str, Any], full: dict[str, Any]) -> dict[str, Any]:
    """Pick the settings of the current mode: the same code path, smaller numbers in ``ci``."""
    if mode not in ("ci", "full"):
        raise ConfigError(f"mode must be 'ci' or 'full', got {mode!r}.")
    return dict(ci if mode == "ci" else full)


def describe_scale(mode: str, settings: dict[str, Any]) -> str:
    """One sentence on this run's scale, from the mode's settings (:func:`mode_settings`): what a notebook's
    "what ci mode does" bullet would otherwise type in, and let go stale. Values None mean "all" / "from the
    epochs"; long lists and other objects are summarised."""
    parts = []
    for k, v in settings.items():
        name = k.replace("_", " ")
        if v is None:
            parts.append(f"{name}: all / default")
        elif isinstance(v, (bool, int, float, str)):
            parts.append(f"{name}: {v:g}" if isinstance(v, float) else f"{name}: {v}")
        elif isinstance(v, (list, tuple)) and all(isinstance(x, (int, float, str)) for x in v):
            parts.append(f"{name}: {list(v)}" if len(v) <= 6 else f"{name}: {len(v)} values")
        elif isinstance(v, dict):
            parts.append(f"{name}: {', '.join(map(str, v))}")
        elif isinstance(v, (list, tuple)):
            parts.append(f"{name}: {len(v)} items")
    what = ("a quick check that the pipeline works; its numbers are not evidence" if mode == "ci"
            else "the full study")
    return f"This run (mode={mode!r}, {what}): " + "; ".join(parts) + "."


def explore(draw: Callable[..., Any], controls: dict[str, Sequence[Any]], static: dict[str, Any] | None = None):
    """An ipywidgets control over ``draw(**values)`` with a static figure that is always drawn.

    Args:
        draw: draws one figure (matplotlib) for the given control values.
        controls: control name -> the values it offers (a dropdown or slider).
        static: values for the static figure (default: each control's first value).

    The static figure is what an executed notebook (papermill, a PDF) keeps; the widget appears
    only when a front end is attached.
    """
    import matplotlib.pyplot as plt

    values = {k: (static or {}).get(k, list(v)[0]) for k, v in controls.items()}
    draw(**values)
    plt.show()
    if not front_end_attached():
        print("(static figure: open the notebook in Jupyter or Colab for the interactive version)")
        return None
    try:
        import ipywidgets as w
    except ImportError:
        print("(ipywidgets is not installed: pip install ipywidgets for the interactive version)")
        return None
    from IPython.display import display

    widgets = {k: w.Dropdown(options=list(v), value=values[k], description=k) for k, v in controls.items()}
    display(w.interactive(draw, **widgets))
    return None


def check(name: str, answer: Any, expected: Any, tol: float = 0.0, hint: str = "") -> bool | None:
    """Check an exercise answer against a value computed in the notebook.

    Prints "not answered yet" for ``None`` (so a notebook runs end to end unanswered), "correct", or
    a hint. Numbers match within ``tol`` (absolute); other values must be equal.
    """
    if answer is None:
        print(f"{name}: not answered yet. {hint}".rstrip())
        return None
    ok: bool
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        try:
            ok = math.isclose(float(answer), float(expected), rel_tol=0, abs_tol=tol)
        except (TypeError, ValueError):
            ok = False
    else:
        ok = answer == expected
    print(f"{name}: {'correct' if ok else 'not quite'}." + ("" if ok else f" {hint}"))
    return ok


def machine_description() -> str:
    """The machine in a few words (device and cores), as summaries record it."""
    dev = resolve_device("auto")
    if dev.type == "cuda":
        import torch

        return f"GPU {torch.cuda.get_device_name(0)}"
    return f"CPU, {os.cpu_count()} cores"


def save_summary(study: str, text: str, table: pd.DataFrame | None = None, *, store: str | os.PathLike = "runs",
                 mode: str = "", seeds: Sequence[int] | None = None, extra: dict | None = None,
                 figures: dict[str, Any] | None = None, show_reference: bool = True) -> Path:
    """Record what a notebook measured: a sentence built from its numbers, an optional table, and optional key
    figures (name -> matplotlib figure, saved as small PNGs in ``<store>/summaries/<study>/``).

    Written atomically to ``<store>/summaries/<study>.json``; ``tutorfinetune study`` collects them. Outside
    full mode, the package's reference (the full-mode study, :mod:`tutorfinetune.reference`) is shown beside
    it, with its key figures and a sentence on why the numbers differ.
    """
    from IPython.display import Markdown, display

    path = Path(store) / "summaries" / f"{study}.json"
    saved = []
    for name, fig in (figures or {}).items():
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(name))[:60] or "figure"
        target = path.parent / study / f"{safe}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp.png")
        fig.savefig(tmp, dpi=72, bbox_inches="tight")  # small: the references ship with the package
        os.replace(tmp, target)
        saved.append(f"{study}/{target.name}")
    payload = {"study": study, "mode": mode, "text": text, "figures": saved,
               "table": json.loads(table.to_json(orient="split")) if table is not None else None,
               "created": datetime.now(timezone.utc).isoformat(),
               "seeds": [int(x) for x in seeds] if seeds is not None else None,
               "machine": machine_description(), **(extra or {})}
    _atomic_write_json(path, payload)
    display(Markdown(f"**Measured summary ({study}, mode={mode})**\n\n{text}"))
    if table is not None:
        display(table)
    ref = reference.reference_summary(study) if show_reference and mode != "full" else None
    if ref is not None:
        when = str(ref.get("created", ""))[:10]
        display(Markdown(f"**Reference: the full-mode study ({ref.get('machine') or 'machine not recorded'}, {when})**"
                         f"\n\n{ref['text']}\n\n*{reference.differences(payload, ref)}*"))
        ref_table = reference.reference_table(ref)
        if ref_table is not None:
            display(ref_table)
        from IPython.display import Image

        for fig_path in reference.reference_figures(ref):
            display(Image(filename=str(fig_path)))
    elif show_reference and mode != "full":
        display(Markdown(f"*No full-mode reference for {study} ships with this version of the package; run "
                         "the notebook with `mode=\"full\"` for numbers worth quoting.*"))
    return path


def load_summaries(store: str | os.PathLike = "runs") -> list[dict]:
    folder = Path(store) / "summaries"
    out = []
    for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            out.append(json.loads(f.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return out


def summary_markdown(store: str | os.PathLike = "runs") -> str:
    """All notebook summaries of a store as one Markdown document."""
    parts = ["# tutorfinetune study summary", ""]
    for s in load_summaries(store):
        parts += [f"## {s['study']} (mode={s.get('mode', '')})", "", s["text"], ""]
        df = reference.reference_table(s)  # the summary's table, as a DataFrame (None without one)
        if df is not None:
            parts += [df.to_markdown() if _has_tabulate() else df.to_string(), ""]
    return "\n".join(parts)


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def typed_parameters(namespace: dict[str, Any]) -> dict[str, Any]:
    """Turn papermill's parameters into typed values, from the parameters cell's own names and types.

    The parameters cell annotates each parameter (``seeds: list[int] = [0, 1, 2]``, ``lr: float = 1e-4``,
    ``k: int | None = None``); papermill injects its overrides after it, often as text (``"[0, 1]"``,
    ``"3e-4"``). ``typed_parameters(globals())`` coerces every annotated name to its annotation with
    :func:`tutorfinetune.config.coerce` (a ConfigError names the parameter and the expected type), writes
    the typed values back into ``namespace`` and returns them as a dict, in the cell's order."""
    hints = namespace.get("__annotations__") or {}
    if not hints:
        raise ConfigError("No annotated parameters found: write the parameters cell as `name: type = value` "
                          "lines (e.g. `seeds: list[int] = [0, 1, 2]`), then call typed_parameters(globals()).")
    out = {}
    for name, typ in hints.items():
        if name not in namespace:
            continue
        value = coerce(name, namespace[name], typ)
        if typing.get_origin(typ) is list and value is not None:
            value = list(value)  # coerce gives tuples for sequences; the cell said list
        out[name] = namespace[name] = value
    return out


def coerce_param(name: str, value: Any, typ: Any) -> Any:
    """Coerce one notebook parameter (papermill passes text) or raise a ConfigError naming it."""
    return coerce(name, value, typ)
