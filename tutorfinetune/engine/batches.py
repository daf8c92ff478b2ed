"""Training and evaluation data: tokenise once, batch by length, pad per batch (the engine's data path)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..data import stratified_sample

__all__ = ["Encoded", "encode", "cap_rows", "make_batches", "collate"]


@dataclass
class Encoded:
    """Token ids of a frame's rows (lists of ints), their labels and lengths.

    For a multiple-choice task (``n_choices > 0``) each row holds ``n_choices`` token lists, one per
    (context, choice) pair, and ``lengths`` is the longest of them."""

    features: dict[str, list]
    labels: np.ndarray
    lengths: np.ndarray
    n_choices: int = 0

    def __len__(self) -> int:
        return len(self.labels)


def encode(tokenizer, frame: pd.DataFrame, max_length: int) -> Encoded:
    """Tokenise ``frame.text`` (and ``frame.text_pair``) without padding, truncated to ``max_length``.

    A frame with a ``choices`` column (a multiple-choice task) is encoded as (text, choice) pairs,
    each pair separately (the longer of the two truncated first), as multiple-choice heads expect."""
    texts = frame["text"].tolist()
    if "choices" in frame.columns:
        choices = frame["choices"].tolist()
        n = len(choices[0]) if choices else 0
        flat_a = [t for t in texts for _ in range(n)]
        flat_b = [c for cs in choices for c in cs]
        enc = tokenizer(flat_a, flat_b, truncation=True, max_length=max_length, padding=False)
        keys = [k for k in ("input_ids", "token_type_ids") if k in enc]
        features = {k: [enc[k][i * n:(i + 1) * n] for i in range(len(texts))] for k in keys}
        lengths = np.array([max((len(x) for x in row), default=0) for row in features["input_ids"]], dtype=np.int64)
        return Encoded(features, frame["label"].to_numpy(dtype=np.int64), lengths, n_choices=n)
    pairs = frame["text_pair"].tolist() if "text_pair" in frame.columns else None
    enc = tokenizer(texts, pairs, truncation=True, max_length=max_length, padding=False)
    keys = [k for k in ("input_ids", "token_type_ids") if k in enc]
    features = {k: enc[k] for k in keys}
    lengths = np.array([len(x) for x in enc["input_ids"]], dtype=np.int64)
    return Encoded(features, frame["label"].to_numpy(dtype=np.int64), lengths)


def cap_rows(frame: pd.DataFrame, n: int | None) -> pd.DataFrame:
    """At most ``n`` rows of ``frame``, stratified by label, with a fixed seed (the same rows for every
    run, so capped eval sets stay comparable across seeds and methods); all rows when ``n`` is None."""
    return frame if n is None else stratified_sample(frame, n, seed=0)


def make_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int, group_by_length: bool) -> list[np.ndarray]:
    """Index batches for one epoch: a seeded shuffle; with grouping, sort within mega-batches of
    50 batches by length so each batch holds similar lengths, then shuffle the batch order."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    if group_by_length:
        mega = batch_size * 50
        chunks = [order[i:i + mega] for i in range(0, len(order), mega)]
        order = np.concatenate([c[np.argsort(-lengths[c], kind="stable")] for c in chunks])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if group_by_length:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def collate(enc: Encoded, idx: np.ndarray, pad_id: int, device: torch.device, pad_to: int | None = None) -> dict:
    """Pad the rows ``idx`` to the longest of them (or to ``pad_to``) and move them to ``device``.

    Shapes: ``[batch, width]``, or ``[batch, n_choices, width]`` for a multiple-choice task."""
    width = int(pad_to or enc.lengths[idx].max())
    shape = (len(idx), enc.n_choices, width) if enc.n_choices else (len(idx), width)
    out = {}
    mask = np.zeros(shape, dtype=np.int64)
    for key, seqs in enc.features.items():
        fill = pad_id if key == "input_ids" else 0
        arr = np.full(shape, fill, dtype=np.int64)
        for r, i in enumerate(idx):
            rows = seqs[i] if enc.n_choices else [seqs[i]]
            for c, seq in enumerate(rows):
                s = seq[:width]
                if enc.n_choices:
                    arr[r, c, :len(s)] = s
                    if key == "input_ids":
                        mask[r, c, :len(s)] = 1
                else:
                    arr[r, :len(s)] = s
                    if key == "input_ids":
                        mask[r, :len(s)] = 1
        out[key] = torch.from_numpy(arr)
    out["attention_mask"] = torch.from_numpy(mask)
    out["labels"] = torch.from_numpy(enc.labels[idx])
    return {k: v.to(device, non_blocking=True) for k, v in out.items()}
