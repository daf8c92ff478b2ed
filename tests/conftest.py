"""Shared fixtures: a small labelled CSV task written here, a tiny backbone, the shared real data."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("TUTORFINETUNE_PROGRESS", "off")

if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n N: N test processes share the cores, one thread each
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"  # also for notebook kernels
    import torch

    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"

POS = [
    "The soup was hot, fresh and full of flavour.",
    "I would happily watch this film again tomorrow.",
    "Battery life easily lasts two full days of heavy use.",
    "A warm, funny novel with characters I came to love.",
    "Staff remembered our names and the coffee was superb.",
    "Not bad at all, in fact it is the best purchase I made this year.",
    "The ending surprised me in the best possible way.",
    "Setup took five minutes and it has worked flawlessly since.",
    "Every dish arrived quickly and tasted homemade.",
    "Gorgeous photography and a score that stays with you.",
]
NEG = [
    "The soup was cold and tasted like dishwater.",
    "I walked out of the cinema after forty minutes.",
    "The charger stopped working after a week.",
    "Flat characters and a plot that goes nowhere.",
    "We waited an hour and the waiter never apologised.",
    "Not worth the money, it broke the first time I dropped it.",
    "The ending made no sense and ruined the whole story.",
    "The screen flickers constantly and support never answered.",
    "Greasy, overpriced and served lukewarm.",
    "Two hours of my life I will never get back.",
]


def toy_frame(n_train: int = 80, n_dev: int = 20, n_test: int = 20) -> pd.DataFrame:
    rows = []
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        for i in range(n):
            label = i % 2
            src = POS if label else NEG
            rows.append({"text": f"{src[(i // 2) % len(src)]} ({split} {i})", "label": label, "split": split})
    return pd.DataFrame(rows)


@pytest.fixture
def toy_csv(tmp_path: Path) -> Path:
    path = tmp_path / "toy.csv"
    toy_frame().to_csv(path, index=False)
    return path


@pytest.fixture
def toy_task(toy_csv):
    from tutorfinetune import load_task

    return load_task(toy_csv)


@pytest.fixture
def tiny():
    from tutorfinetune import load_backbone

    def make(seed: int = 0, num_labels: int = 2):
        return load_backbone("tiny", num_labels=num_labels, seed=seed)

    return make


@pytest.fixture
def fast_config():
    from tutorfinetune import TrainConfig

    return TrainConfig(lr=1e-3, max_steps=12, batch_size=8, max_length=32, warmup=0.0, seed=0)


def realdata(*parts: str) -> Path:
    path = REALDATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present (../shared/realdata is beside the repo only)")
    return path
