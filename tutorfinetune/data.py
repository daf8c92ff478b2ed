"""Tasks: labelled texts with tags, and the loaders that build them (DESIGN.md, "Tasks").

`load_task(name_or_path, ...)` returns a :class:`Task` whatever the source:

* a bundled task (``"reviews"``; see ``data/README.md``), shipped inside the wheel as
  ``tutorfinetune/_data`` and read from the repository's ``data/`` in an editable install;
* a user file (CSV, TSV, JSONL), a ``{split: path}`` mapping, or a folder holding
  ``train``/``dev``/``valid``/``validation``/``test`` files, with column and label mapping;
* a Hugging Face dataset id (``"hf:glue/sst2"`` or any id that is not a file), when ``datasets`` is
  installed and the hub is reachable.

Every loader validates what it reads and fails with a :class:`TaskError` that says what to fix.
Taught in notebooks/00_start_here.ipynb.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

__all__ = [
    "Task",
    "TaskError",
    "load_task",
    "load_text",
    "bundled_tasks",
    "data_dir",
    "vocabulary_shift",
    "majority_baseline",
    "multiple_choice_task",
]

SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "dev": "dev",
    "valid": "dev",
    "validation": "dev",
    "val": "dev",
    "test": "test",
    "eval": "test",
}
FILE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".txt")


class TaskError(ValueError):
    """Bad task input; the message says what to fix."""


# --------------------------------------------------------------------------------------------
# Where bundled data lives
# --------------------------------------------------------------------------------------------
def data_dir() -> Path:
    """The folder of bundled tasks: ``tutorfinetune/_data`` in a wheel, ``<repo>/data`` in a checkout."""
    packaged = resources.files("tutorfinetune") / "_data"
    if packaged.is_dir():
        return Path(str(packaged))
    repo = Path(__file__).resolve().parents[1] / "data"
    if repo.is_dir():
        return repo
    raise TaskError(
        "The bundled data folder was not found (looked for tutorfinetune/_data and ./data). "
        "Reinstall tutorfinetune (pip install --force-reinstall tutorfinetune) or run from a full "
        "checkout of the repository."
    )


def bundled_tasks() -> list[str]:
    """Names of the bundled tasks (folders of ``data/`` that hold a ``task.json``)."""
    try:
        root = data_dir()
    except TaskError:
        return []
    return sorted(p.parent.name for p in root.glob("*/task.json"))


# --------------------------------------------------------------------------------------------
# Task
# --------------------------------------------------------------------------------------------
@dataclass
class Task:
    """Labelled texts with tags and named evaluation sets.

    Attributes:
        name: a short name (``"reviews"``, a file stem, a hub id).
        frame: DataFrame with at least ``text``, ``label`` (int in ``range(len(label_names))``),
            ``split`` (``train``/``dev``/``test``), ``domain``, ``lang``; optionally ``text_pair``
            (sentence-pair tasks) and ``id``. A *multiple-choice* task (:func:`multiple_choice_task`)
            also has ``choices``: a list of candidate strings per row, the same number in every row;
            ``text`` is the context and ``label`` the index of the right choice.
        label_names: label index -> name (for a multiple-choice task: ``"choice 0"``, ...).
        eval_set_specs: eval-set name -> dict of column filters (``{"split": "test", "lang": "de"}``;
            a list value means "any of"). ``eval_sets`` materialises them.
        unlabelled: optional DataFrame of unlabelled text (``text``, ``domain``, ``lang``) for
            language-model adaptation.
        meta: free-form metadata (source domains, languages, provenance).
    """

    name: str
    frame: pd.DataFrame
    label_names: list[str]
    eval_set_specs: dict[str, dict[str, Any]] = field(default_factory=dict)
    unlabelled: pd.DataFrame | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    # --- views -------------------------------------------------------------------------------
    def _select(self, spec: Mapping[str, Any]) -> pd.DataFrame:
        mask = pd.Series(True, index=self.frame.index)
        for col, want in spec.items():
            values = want if isinstance(want, (list, tuple, set)) else [want]
            mask &= self.frame[col].isin(list(values))
        return self.frame[mask]

    @property
    def train(self) -> pd.DataFrame:
        return self.frame[self.frame["split"] == "train"]

    @property
    def eval_sets(self) -> dict[str, pd.DataFrame]:
        """Eval-set name -> rows (in-distribution first, then each shift)."""
        return {name: self._select(spec) for name, spec in self.eval_set_specs.items()}

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def multiple_choice(self) -> bool:
        """True when every row holds a list of ``choices`` and the label picks one of them."""
        return "choices" in self.frame.columns

    def eval_set(self, name: str) -> pd.DataFrame:
        if name not in self.eval_set_specs:
            raise TaskError(
                f"Task {self.name!r} has no eval set {name!r}; it has {list(self.eval_set_specs)}."
            )
        return self._select(self.eval_set_specs[name])

    def subsample_train(self, n: int | None, seed: int = 0) -> "Task":
        """A copy whose train split keeps ``n`` examples, stratified by label (all when ``n`` is None)."""
        if n is None or n >= len(self.train):
            return self
        if n < self.num_labels:
            raise TaskError(f"Cannot keep {n} training examples: need at least one per label ({self.num_labels}).")
        kept = stratified_sample(self.train, n, seed)
        frame = pd.concat([kept, self.frame[self.frame["split"] != "train"]]).sort_index()
        return Task(
            name=self.name,
            frame=frame,
            label_names=list(self.label_names),
            eval_set_specs=dict(self.eval_set_specs),
            unlabelled=self.unlabelled,
            meta={**self.meta, "train_subsample": {"n": int(n), "seed": int(seed)}},
        )

    def with_eval_sets(self, extra: Mapping[str, "Task | pd.DataFrame"]) -> "Task":
        """A copy with more named eval sets (e.g. a real dataset: ``{"real:sst2": sst2_task.eval_set("dev")}``).

        The added rows must use the same label names; they join the frame with ``split="extra:<name>"``
        so they never leak into training.
        """
        frames, specs = [self.frame], dict(self.eval_set_specs)
        for name, src in extra.items():
            if isinstance(src, Task):
                if src.label_names != self.label_names:
                    raise TaskError(f"Eval set {name!r} has labels {src.label_names}, task has {self.label_names}.")
                src = src.frame[src.frame["split"] != "train"]
            if src.empty:
                raise TaskError(f"Eval set {name!r} is empty.")
            part = src.copy()
            part["split"] = f"extra:{name}"
            for col, default in (("domain", name), ("lang", "en")):
                if col not in part:
                    part[col] = default
            frames.append(part)
            specs[name] = {"split": f"extra:{name}"}
        return Task(name=self.name, frame=pd.concat(frames, ignore_index=True), label_names=list(self.label_names),
                    eval_set_specs=specs, unlabelled=self.unlabelled, meta=dict(self.meta))

    def texts(self, domain: str | None = None, lang: str | None = None) -> list[str]:
        """Unlabelled texts, optionally for one domain or language (for LM adaptation)."""
        if self.unlabelled is None or self.unlabelled.empty:
            raise TaskError(f"Task {self.name!r} has no unlabelled text; pass your own with load_text(path).")
        df = self.unlabelled
        if domain is not None:
            df = df[df["domain"] == domain]
        if lang is not None:
            df = df[df["lang"] == lang]
        if df.empty:
            raise TaskError(
                f"No unlabelled text for domain={domain!r}, lang={lang!r}; domains: "
                f"{sorted(self.unlabelled['domain'].unique())}, languages: {sorted(self.unlabelled['lang'].unique())}."
            )
        return df["text"].tolist()

    def summary(self) -> pd.DataFrame:
        """Counts per split, domain and language, with the share of each label."""
        df = self.frame.assign(label_name=self.frame["label"].map(dict(enumerate(self.label_names))))
        out = df.groupby(["split", "domain", "lang"]).agg(n=("text", "size")).reset_index()
        for i, nm in enumerate(self.label_names):
            share = df.assign(_is=df["label"] == i).groupby(["split", "domain", "lang"])["_is"].mean()
            out[f"share_{nm}"] = out.set_index(["split", "domain", "lang"]).index.map(share).round(3)
        return out

    def __repr__(self) -> str:
        counts = self.frame["split"].value_counts().to_dict()
        return (
            f"Task({self.name!r}, labels={self.label_names}, splits={counts}, "
            f"eval_sets={list(self.eval_set_specs)})"
        )


# --------------------------------------------------------------------------------------------
# Public loader
# --------------------------------------------------------------------------------------------
def load_task(
    name_or_path: str | os.PathLike | Mapping[str, str | os.PathLike],
    *,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
    label_names: Sequence[str] | None = None,
    label_map: Mapping[Any, Any] | None = None,
    column_names: Sequence[str] | None = None,
    split: str | None = None,
    domain: str = "default",
    lang: str = "en",
    allow_single_class: bool = False,
    hf_config: str | None = None,
) -> Task:
    """Load a task by bundled name, file, folder, ``{split: file}`` mapping or Hugging Face id.

    Args:
        name_or_path: ``"reviews"``; a ``.csv``/``.tsv``/``.jsonl`` file; a folder of split files;
            a mapping ``{"train": path, "test": path}``; or ``"hf:<id>"``.
        text_column, text_pair_column, label_column: columns to read (renamed to ``text``,
            ``text_pair``, ``label``).
        label_names: the label set, in index order. Default: the sorted distinct labels (strings),
            or ``0..max`` for integer labels.
        label_map: raw label -> label name or index; a raw label mapped to ``None`` drops its rows
            (e.g. ``{"neutral": None}`` to make a 3-way task binary).
        column_names: names for a file without a header row.
        split: split of a single file without a ``split`` column (default ``"train"``).
        domain, lang: tags for rows that have no ``domain``/``lang`` column.
        allow_single_class: accept a split that holds one label only.
        hf_config: configuration name for a hub dataset.

    Raises:
        TaskError: with a message that names the fix.
    """
    kw = dict(
        text_column=text_column,
        text_pair_column=text_pair_column,
        label_column=label_column,
        label_names=label_names,
        label_map=label_map,
        column_names=column_names,
        domain=domain,
        lang=lang,
        allow_single_class=allow_single_class,
    )
    if isinstance(name_or_path, Mapping):
        files = {_split_name(k): Path(v) for k, v in name_or_path.items()}
        return _from_files(files, name=_common_name(files.values()), **kw)
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TaskError(
            f"load_task expects a task name, a path or a {{split: path}} dict, got {type(name_or_path).__name__}."
        )
    text = str(name_or_path)
    if text in bundled_tasks():
        return _bundled(text)
    path = Path(text).expanduser()
    if path.is_dir():
        files = _split_files(path)
        return _from_files(files, name=path.name, **kw)
    if path.is_file():
        return _from_files({_split_name(split or "train"): path}, name=path.stem, **kw)
    if text.startswith("hf:") or ("/" in text and not path.suffix and not text.startswith((".", "/", "~"))):
        return _from_hub(text.removeprefix("hf:"), hf_config=hf_config, **kw)
    raise TaskError(
        f"Unknown task {text!r}: it is not a bundled task ({', '.join(bundled_tasks()) or 'none found'}), "
        "not an existing file or folder, and not a Hugging Face id (write 'hf:<id>'). "
        "Check the spelling or the path."
    )


def load_text(path: str | os.PathLike, text_column: str = "text") -> list[str]:
    """Unlabelled texts from a ``.txt`` file (one per line) or a CSV/TSV/JSONL file's text column."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"No such file: {path}.")
    if path.suffix == ".txt":
        texts = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    else:
        df = _read_table(path, None)
        if text_column not in df.columns:
            raise TaskError(f"{path} has no column {text_column!r}; columns are {list(df.columns)}. Pass text_column=....")
        texts = [t for t in df[text_column].astype(str).str.strip() if t]
    if not texts:
        raise TaskError(f"{path} holds no text.")
    return texts


# --------------------------------------------------------------------------------------------
# Bundled tasks
# --------------------------------------------------------------------------------------------
def _bundled(name: str) -> Task:
    root = data_dir() / name
    meta = json.loads((root / "task.json").read_text(encoding="utf-8"))
    label_names = list(meta["label_names"])
    frame = pd.read_json(root / meta["labelled"], lines=True, dtype={"id": str})
    frame["label"] = frame["label"].map({n: i for i, n in enumerate(label_names)})
    if frame["label"].isna().any():
        raise TaskError(f"Bundled task {name!r} is damaged: labels outside {label_names}. Reinstall the package.")
    frame["label"] = frame["label"].astype(int)
    unl = None
    if meta.get("unlabelled"):
        unl = pd.read_json(root / meta["unlabelled"], lines=True, dtype={"id": str})
    specs: dict[str, dict[str, Any]] = {"dev": {"split": "dev", "lang": "en"}}
    specs["in-distribution"] = {"split": "test", "lang": "en", "domain": list(meta["source_domains"])}
    for d in meta["target_domains"]:
        specs[f"shift:{d}"] = {"split": "test", "lang": "en", "domain": d}
    for lg in meta.get("languages", []):
        specs[f"shift:{lg}"] = {"split": "test", "lang": lg}
    return Task(name=name, frame=frame.reset_index(drop=True), label_names=label_names,
                eval_set_specs=specs, unlabelled=unl, meta=meta)


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------
def _split_name(name: str) -> str:
    key = str(name).lower()
    if key not in SPLIT_ALIASES:
        raise TaskError(f"Unknown split {name!r}; use one of train, dev (valid/validation), test.")
    return SPLIT_ALIASES[key]


def _common_name(paths: Iterable[Path]) -> str:
    paths = list(paths)
    return paths[0].parent.name if paths else "task"


def _split_files(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in FILE_SUFFIXES and p.stem.lower() in SPLIT_ALIASES:
            files.setdefault(SPLIT_ALIASES[p.stem.lower()], p)
    if not files:
        raise TaskError(
            f"Folder {folder} holds no split files: name them train/dev/test (or valid, validation) "
            f"with one of {', '.join(FILE_SUFFIXES)}, or pass a {{split: path}} dict."
        )
    return files


def _read_table(path: Path, column_names: Sequence[str] | None) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".json"):
            try:
                df = pd.read_json(path, lines=True)
            except ValueError:
                df = pd.read_json(path)
        elif suffix in (".csv", ".tsv", ".txt"):
            sep = "\t" if suffix == ".tsv" else ","
            header = None if column_names else 0
            df = pd.read_csv(path, sep=sep, header=header, names=column_names, quoting=csv.QUOTE_MINIMAL,
                             keep_default_na=False, na_values=[""], dtype=str)
        else:
            raise TaskError(f"Unsupported file type {path.suffix!r} for {path}; use .csv, .tsv or .jsonl.")
    except pd.errors.EmptyDataError:
        raise TaskError(f"{path} is empty: it holds no rows. Point load_task at a file with data.") from None
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as e:
        if isinstance(e, TaskError):
            raise
        raise TaskError(f"Could not parse {path} ({e}). Check the delimiter, quoting and encoding (UTF-8).") from None
    return df


def _from_files(
    files: Mapping[str, Path],
    *,
    name: str,
    text_column: str,
    text_pair_column: str | None,
    label_column: str,
    label_names: Sequence[str] | None,
    label_map: Mapping[Any, Any] | None,
    column_names: Sequence[str] | None,
    domain: str,
    lang: str,
    allow_single_class: bool,
) -> Task:
    frames = []
    for split, path in files.items():
        if not path.is_file():
            raise TaskError(f"No such file for split {split!r}: {path}.")
        df = _read_table(path, column_names)
        if df.empty:
            raise TaskError(f"{path} is empty: it holds no rows. Point load_task at a file with data.")
        wanted = {"text_column": text_column, "label_column": label_column}
        if text_pair_column:
            wanted["text_pair_column"] = text_pair_column
        for arg, col in wanted.items():
            if col not in df.columns:
                raise TaskError(
                    f"{path.name} has no column {col!r} (asked for by {arg}); its columns are "
                    f"{list(map(str, df.columns))}. Pass {arg}=<one of those>"
                    + (" or column_names=[...] for a file without a header." if column_names is None else ".")
                )
        out = pd.DataFrame({"text": df[text_column]})
        if text_pair_column:
            out["text_pair"] = df[text_pair_column]
        out["raw_label"] = df[label_column]
        out["split"] = df["split"].map(_split_name) if "split" in df.columns and len(files) == 1 else split
        out["domain"] = df["domain"].astype(str) if "domain" in df.columns else domain
        out["lang"] = df["lang"].astype(str) if "lang" in df.columns else lang
        out["id"] = df["id"].astype(str) if "id" in df.columns else [f"{split}-{i}" for i in range(len(df))]
        out["source_file"] = str(path)
        frames.append(out)
    frame = pd.concat(frames, ignore_index=True)
    frame = frame[frame["text"].notna() & (frame["text"].astype(str).str.strip() != "")]
    frame["text"] = frame["text"].astype(str)
    if "text_pair" in frame:
        frame["text_pair"] = frame["text_pair"].fillna("").astype(str)
    frame, names = _encode_labels(frame, label_names, label_map)
    if frame.empty:
        raise TaskError(f"Task {name!r} has no usable rows after dropping empty texts and unmapped labels.")
    _check_classes(frame, names, allow_single_class)
    specs = {s: {"split": s} for s in ("dev", "test") if (frame["split"] == s).any()}
    return Task(name=name, frame=frame.reset_index(drop=True), label_names=names, eval_set_specs=specs,
                meta={"files": {k: str(v) for k, v in files.items()}})


def _encode_labels(
    frame: pd.DataFrame, label_names: Sequence[str] | None, label_map: Mapping[Any, Any] | None
) -> tuple[pd.DataFrame, list[str]]:
    raw = frame["raw_label"]
    if label_map is not None:
        lookup = {str(k): v for k, v in label_map.items()}
        unknown = sorted({str(v) for v in raw.dropna()} - set(lookup))
        if unknown:
            raise TaskError(f"label_map has no entry for labels {unknown[:10]}; add them (map to None to drop those rows).")
        raw = raw.map(lambda v: lookup[str(v)])
        frame = frame[raw.notna()].copy()
        raw = raw[raw.notna()]
    if raw.isna().any():
        raise TaskError(f"{int(raw.isna().sum())} rows have no label; fill them or drop them.")
    as_num = pd.to_numeric(raw, errors="coerce")
    numeric = bool(as_num.notna().all()) and bool((as_num == as_num.round()).all())
    if label_names is None:
        if numeric:
            label_names = [str(i) for i in range(int(as_num.max()) + 1)] if len(as_num) else []
        else:
            label_names = sorted({str(v) for v in raw})
    names = [str(n) for n in label_names]
    if numeric and not set(map(str, raw)) <= set(names):
        ids = as_num.astype(int)
        bad = sorted(set(ids[(ids < 0) | (ids >= len(names))].tolist()))
        if bad:
            raise TaskError(
                f"Labels {bad[:10]} are outside the label set {names} (indices 0..{len(names) - 1}); "
                "fix the data or pass label_names=/label_map=."
            )
        frame["label"] = ids.values
    else:
        index = {n: i for i, n in enumerate(names)}
        bad = sorted({str(v) for v in raw} - set(index))
        if bad:
            raise TaskError(
                f"Labels {bad[:10]} are outside the label set {names}; fix the data, or pass "
                "label_names=[...] that include them, or label_map={raw: name} to rename or drop them."
            )
        frame["label"] = [index[str(v)] for v in raw]
    return frame.drop(columns=["raw_label"]), names


def _check_classes(frame: pd.DataFrame, names: list[str], allow_single_class: bool) -> None:
    if len(names) < 2:
        raise TaskError(f"A classification task needs at least two labels; found {names}.")
    if allow_single_class:
        return
    for split, grp in frame.groupby("split"):
        present = sorted(grp["label"].unique())
        if len(present) < 2:
            raise TaskError(
                f"Split {split!r} holds a single class ({names[present[0]]!r}, {len(grp)} rows). Check the "
                "label column and the file, or pass allow_single_class=True if this is intended."
            )


# --------------------------------------------------------------------------------------------
# Hugging Face hub (optional; needs `pip install tutorfinetune[hub]` and a network)
# --------------------------------------------------------------------------------------------
def _from_hub(dataset_id: str, *, hf_config: str | None, **kw) -> Task:
    try:
        import datasets  # noqa: F401
    except ImportError:
        raise TaskError(
            f"{dataset_id!r} looks like a Hugging Face dataset id, but `datasets` is not installed: "
            "pip install 'tutorfinetune[hub]'. Offline, use the bundled task 'reviews' or a local file."
        ) from None
    from datasets import load_dataset

    try:
        ds = load_dataset(dataset_id, hf_config)
    except Exception as e:  # network and hub errors come in many types
        raise TaskError(
            f"Could not load Hugging Face dataset {dataset_id!r} ({type(e).__name__}: {e}). It needs the hub "
            "(network). Offline, use the bundled task 'reviews' or a local CSV/TSV/JSONL file."
        ) from None
    frames = []
    for split_name, part in ds.items():
        try:
            split = _split_name(split_name)
        except TaskError:
            continue
        df = part.to_pandas()
        if kw["label_column"] in df.columns and kw["label_names"] is None:
            feat = part.features.get(kw["label_column"])
            if getattr(feat, "names", None):
                kw["label_names"] = list(feat.names)
        df["split"] = split
        frames.append(df)
    if not frames:
        raise TaskError(f"Dataset {dataset_id!r} has no train/validation/test split.")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "all.jsonl"
        pd.concat(frames).to_json(path, orient="records", lines=True, force_ascii=False)
        task = _from_files({"train": path}, name=dataset_id, **kw)
    task.meta["hub_id"] = dataset_id
    return task


# --------------------------------------------------------------------------------------------
# Describing shift
# --------------------------------------------------------------------------------------------
def _words(texts: Iterable[str]) -> list[list[str]]:
    import re

    return [re.findall(r"[a-zà-ÿß']+", t.lower()) for t in texts]


def stratified_sample(frame: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` rows of ``frame`` (all when it has no more), each label in proportion, seeded; index order."""
    if n >= len(frame):
        return frame
    frac = n / len(frame)
    parts = [grp.sample(n=min(max(1, int(round(len(grp) * frac))), len(grp)), random_state=seed)
             for _, grp in frame.groupby("label", sort=True)]
    kept = pd.concat(parts)
    if len(kept) > n:
        kept = kept.sample(n=n, random_state=seed)
    return kept.sort_index()


def multiple_choice_task(frame: pd.DataFrame, name: str, *, eval_sets: Mapping[str, Mapping[str, Any]] | None = None,
                         meta: Mapping[str, Any] | None = None, domain: str = "default", lang: str = "en") -> Task:
    """A multiple-choice :class:`Task` from a frame with ``text`` (the context), ``choices`` (a list of
    strings per row, the same number in every row), ``label`` (the right choice's index) and ``split``.

    Eval sets default to one per non-train split (``"dev"``, ``"test"``). Raises :class:`TaskError`
    naming the rows at fault for missing columns, ragged or empty choices, and labels outside
    ``range(n_choices)``.
    """
    if not isinstance(frame, pd.DataFrame):
        raise TaskError(f"multiple_choice_task needs a DataFrame, got {type(frame).__name__}.")
    missing = [c for c in ("text", "choices", "label", "split") if c not in frame.columns]
    if missing:
        raise TaskError(f"A multiple-choice frame needs columns text, choices, label, split; {missing} missing "
                        f"(columns: {list(frame.columns)}).")
    if frame.empty:
        raise TaskError(f"Multiple-choice task {name!r} has no rows.")
    df = frame.reset_index(drop=True).copy()
    bad = [i for i, c in enumerate(df["choices"]) if not isinstance(c, (list, tuple)) or len(c) < 2
           or not all(isinstance(x, str) and x.strip() for x in c)]
    if bad:
        raise TaskError(f"Rows {bad[:5]} of {name!r}: choices must be a list of at least two non-empty strings.")
    sizes = df["choices"].map(len)
    if sizes.nunique() != 1:
        raise TaskError(f"Every row of {name!r} needs the same number of choices; found {sorted(sizes.unique())}. "
                        "Pad or drop rows so that they agree.")
    n = int(sizes.iloc[0])
    labels = pd.to_numeric(df["label"], errors="coerce")
    out_of_range = df.index[labels.isna() | (labels != labels.round()) | (labels < 0) | (labels >= n)].tolist()
    if out_of_range:
        raise TaskError(f"Labels of rows {out_of_range[:5]} of {name!r} are not choice indices 0..{n - 1} "
                        f"(e.g. {df['label'].iloc[out_of_range[0]]!r}): a multiple-choice label is the position of "
                        "the right choice.")
    df["label"] = labels.astype(int)
    df["choices"] = [list(c) for c in df["choices"]]
    df["split"] = df["split"].map(_split_name)
    for col, default in (("domain", domain), ("lang", lang)):
        if col not in df.columns:
            df[col] = default
    if not (df["split"] == "train").any():
        raise TaskError(f"Multiple-choice task {name!r} has no training rows (split == 'train').")
    specs = dict(eval_sets) if eval_sets else {s: {"split": s} for s in ("dev", "test") if (df["split"] == s).any()}
    return Task(name=name, frame=df, label_names=[f"choice {i}" for i in range(n)], eval_set_specs=specs,
                meta={"kind": "multiple-choice", "n_choices": n, **dict(meta or {})})


def vocabulary_shift(task: Task) -> pd.DataFrame:
    """Per eval set: the share of its word types (and tokens) never seen in the training texts.

    A cheap, model-free picture of distribution shift: held-out domains use words the training data
    never shows, other languages share almost none. Columns: eval_set, n, unseen_types, unseen_tokens,
    mean_words, positive_share (share of the last label).
    """
    seen = {w for ws in _words(task.train["text"]) for w in ws}
    rows = []
    for name, df in task.eval_sets.items():
        ws = _words(df["text"])
        types = {w for x in ws for w in x}
        tokens = [w for x in ws for w in x]
        rows.append({
            "eval_set": name, "n": len(df),
            "unseen_types": len(types - seen) / max(1, len(types)),
            "unseen_tokens": sum(w not in seen for w in tokens) / max(1, len(tokens)),
            "mean_words": sum(len(x) for x in ws) / max(1, len(ws)),
            "positive_share": float((df["label"] == task.num_labels - 1).mean()),
        })
    return pd.DataFrame(rows)


def majority_baseline(task: Task, eval_set: str) -> float:
    """Accuracy of always predicting the training split's most frequent label on ``eval_set``."""
    top = task.train["label"].value_counts().idxmax()
    return float((task.eval_set(eval_set)["label"] == top).mean())
