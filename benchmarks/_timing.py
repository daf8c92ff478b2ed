"""Shared by the benchmark scripts: train every contender once per repeat, interleaved, and keep the
training seconds (evaluation excluded), so that slow drifts of a shared machine hit all contenders alike."""

from __future__ import annotations

import statistics
from typing import Callable


def interleaved(contenders: dict[str, Callable[[], list]], backbone: str, task, config, repeats: int,
                num_labels: int = 2) -> tuple[dict[str, float], dict[str, list[float]], str]:
    """Returns (median seconds per contender, all seconds, device). ``contenders`` maps a name to a
    function building a fresh list of methods (plug-ins keep state, so one list per run)."""
    import tutorfinetune as tft

    times: dict[str, list[float]] = {c: [] for c in contenders}
    device = "?"
    width = max(len(c) for c in contenders)
    for r in range(repeats):
        for name, meths in contenders.items():
            bb = tft.load_backbone(backbone, num_labels=num_labels, seed=0)
            res = tft.train(bb, task, config, meths(), store=None, verbose=False)
            device = res.device
            times[name].append(res.timings["train_seconds"])
            print(f"repeat {r + 1}/{repeats} {name:<{width}} {res.timings['train_seconds']:.1f}s", flush=True)
    return {c: statistics.median(v) for c, v in times.items()}, times, device
