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
import difflib
import io
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

    #: the kinds of :meth:`eval_set_names`
    EVAL_KINDS = ("all", "dev", "test", "in-distribution", "domains", "languages", "held-out")

    def eval_set_names(self, kind: str = "all") -> list[str]:
        """Names of the eval sets of one kind, in the task's order, read from their specs:

        * ``"dev"``: dev splits (model selection); ``"test"``: every test split;
        * ``"in-distribution"``: test splits that are not a shift (names without ``shift:``);
        * ``"domains"``: held-out domains (``shift:`` sets in the training language that fix a domain);
        * ``"languages"``: translations (``shift:`` sets in another language than the training rows');
        * ``"held-out"``: domains and languages; ``"all"``: every eval set.
        """
        if kind not in self.EVAL_KINDS:
            raise TaskError(f"Unknown eval-set kind {kind!r}; use one of {list(self.EVAL_KINDS)}.")
        langs = self.train["lang"].dropna().unique().tolist() if "lang" in self.frame.columns else []
        train_lang = langs[0] if len(langs) == 1 else None

        def kind_of(name: str, spec: dict) -> str:
            if spec.get("split") == "dev":
                return "dev"
            if spec.get("split") != "test" or not name.startswith("shift:"):
                return "in-distribution" if spec.get("split") == "test" else "other"
            lang = spec.get("lang")
            if lang is not None and train_lang is not None and lang != train_lang:
                return "languages"
            return "domains"

        out = []
        for name, spec in self.eval_set_specs.items():
            k = kind_of(name, spec)
            if (kind == "all" or k == kind or (kind == "test" and spec.get("split") == "test")
                    or (kind == "held-out" and k in ("domains", "languages"))):
                out.append(name)
        return out

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
        """Counts per split, domain and language, with the share of each label; when the loader dropped
        rows (empty text, a label mapped to None), a ``dropped`` column counts them per group."""
        keys = ["split", "domain", "lang"]
        df = self.frame.assign(label_name=self.frame["label"].map(dict(enumerate(self.label_names))))
        out = df.groupby(keys).agg(n=("text", "size")).reset_index()
        for i, nm in enumerate(self.label_names):
            share = df.assign(_is=df["label"] == i).groupby(keys)["_is"].mean()
            out[f"share_{nm}"] = out.set_index(keys).index.map(share).round(3)
        drops = self.meta.get("dropped_rows")
        if drops:
            lost = pd.DataFrame(drops).groupby(keys)["n"].sum().rename("dropped").reset_index()
            out = out.merge(lost, on=keys, how="outer")
            out["n"] = out["n"].fillna(0).astype(int)
            out["dropped"] = out["dropped"].fillna(0).astype(int)
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
    eval_fraction: float = 0.1,
    split_seed: int = 0,
) -> Task:
    """Load a task by bundled name, file, folder, ``{split: file}`` mapping or Hugging Face id.

    Args:
        name_or_path: ``"reviews"``; a ``.csv``/``.tsv``/``.jsonl`` file; a folder of split files;
            a mapping ``{"train": path, "test": path}``; or ``"hf:<id>"``.
        text_column, text_pair_column, label_column: columns to read (renamed to ``text``,
            ``text_pair``, ``label``).
        label_names: the label set, in index order. Default: the sorted distinct labels (strings,
            stripped of surrounding spaces), or ``0..K-1`` for integer labels (integer labels that are
            not ``0..K-1``, such as one-based ``1, 2``, are refused: pass ``label_names``).
        label_map: raw label -> label name or index; a raw label mapped to ``None`` drops its rows
            (e.g. ``{"neutral": None}`` to make a 3-way task binary).
        column_names: names for a file without a header row.
        split: split of a single file without a ``split`` column (default ``"train"``).
        domain, lang: tags for rows that have no ``domain``/``lang`` column.
        allow_single_class: accept a split that holds one label only.
        hf_config: configuration name for a hub dataset.
        eval_fraction: when the data has no ``dev`` and no ``test`` rows, this fraction of the rows
            is held out as ``dev`` and the same again as ``test`` (stratified by label, seeded by
            ``split_seed``; the task says so when it loads). ``0`` keeps every row for training (the
            task then has no eval sets).
        split_seed: seed of that held-out split.

    Rows with an empty or missing text are dropped; the count is printed and kept in
    ``task.meta["dropped_rows"]`` (and :meth:`Task.summary`). A split that ends up empty is an error.

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
        eval_fraction=_fraction(eval_fraction),
        split_seed=split_seed,
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
    if text.startswith("hf:"):
        return _from_hub(text.removeprefix("hf:"), hf_config=hf_config, **kw)
    if "/" in text and not path.suffix and not text.startswith((".", "/", "~")):
        top = Path(text.split("/")[0]).expanduser()
        if top.is_dir():  # "data/mytask" where ./data exists: a local path, not a hub id
            raise TaskError(_no_such_path(path) + f" (For a Hugging Face dataset id, write 'hf:{text}'.)")
        return _from_hub(text, hf_config=hf_config, missing_path=path, **kw)
    if path.suffix or text.startswith((".", "/", "~")) or os.sep in text:
        raise TaskError(_no_such_path(path))
    raise TaskError(
        f"Unknown task {text!r}: it is not a bundled task ({', '.join(bundled_tasks()) or 'none found'}), "
        "not an existing file or folder, and not a Hugging Face id (write 'hf:<id>'). "
        "Check the spelling or the path."
    )


def _no_such_path(path: Path) -> str:
    """``"No such file or folder: ..."``, with what its nearest existing parent holds."""
    msg = f"No such file or folder: {path} (looked in {Path.cwd()})." if not path.is_absolute() else \
        f"No such file or folder: {path}."
    parent = path.parent
    while not parent.is_dir() and parent != parent.parent:
        parent = parent.parent
    if parent.is_dir():
        try:
            names = sorted(p.name + ("/" if p.is_dir() else "") for p in parent.iterdir() if not p.name.startswith("."))
        except OSError:
            names = []
        close = difflib.get_close_matches(path.name, [n.rstrip("/") for n in names], n=1)
        if close:
            msg += f" Did you mean {str(parent / close[0])!r}?"
        elif names:
            msg += f" {parent} holds: {', '.join(names[:12])}{' ...' if len(names) > 12 else ''}."
    return msg + " Check the path (it is relative to the current folder)."


def _fraction(value: Any) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise TaskError(f"eval_fraction must be a number in [0, 0.5), got {value!r}.") from None
    if not 0 <= f < 0.5:
        raise TaskError(f"eval_fraction must be in [0, 0.5) (the share held out as dev, and again as test), got {value!r}.")
    return f


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
    """One file as a frame of raw columns (text kept as text).

    CSV/TSV/TXT need a header row (or ``column_names``) and never get an implicit index column: a
    row with more or fewer fields than the header is an error that names its line. JSONL holds one
    JSON record per line (a broken line is named); JSON holds a list of records (or columns).
    """
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".csv", ".tsv", ".txt"):
        raise TaskError(f"Unsupported file type {path.suffix!r} for {path}; use .csv, .tsv, .jsonl or .json.")
    try:
        if path.stat().st_size == 0:
            raise TaskError(f"{path} is empty: it holds no rows. Point load_task at a file with data.")
        if suffix in (".jsonl", ".json"):
            return _read_json(path, path.read_text(encoding="utf-8-sig"))
        sep = "\t" if suffix == ".tsv" else ","
        _check_fields(path, sep, column_names)
        header = None if column_names else 0
        return pd.read_csv(path, sep=sep, header=header, names=column_names, index_col=False,
                           quoting=csv.QUOTE_MINIMAL, keep_default_na=False, na_values=[""], dtype=str)
    except pd.errors.EmptyDataError:
        raise TaskError(f"{path} is empty: it holds no rows. Point load_task at a file with data.") from None
    except UnicodeDecodeError as e:
        raise TaskError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}). Save it with UTF-8 encoding.") from None
    except (pd.errors.ParserError, ValueError) as e:
        if isinstance(e, TaskError):
            raise
        raise TaskError(f"Could not parse {path} ({e}). Check the delimiter, quoting and encoding (UTF-8).") from None


def _check_fields(path: Path, sep: str, column_names: Sequence[str] | None) -> None:
    """Every non-blank row of a delimited file has as many fields as the header (or ``column_names``)."""
    header = list(column_names) if column_names else None
    bad: list[tuple[int, int, str]] = []
    limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=sep)
            start = 1
            try:
                for row in reader:
                    line, start = start, reader.line_num + 1
                    if not row:
                        continue
                    if header is None:
                        header = row
                    elif len(row) != len(header):
                        bad.append((line, len(row), sep.join(row)))
            except csv.Error as e:
                raise TaskError(f"{path}, line {reader.line_num}: {e}. Check the quoting of that line.") from None
    finally:
        csv.field_size_limit(limit)
    if not bad:
        return
    line, n, text = bad[0]
    more = f" (also line{'s' if len(bad) > 2 else ''} {', '.join(str(b[0]) for b in bad[1:6])}" + \
        (f" and {len(bad) - 6} more" if len(bad) > 6 else "") + ")" if len(bad) > 1 else ""
    shown = text if len(text) <= 80 else text[:77] + "..."
    delim = "a tab" if sep == "\t" else repr(sep)
    if n > len(header):
        fix = (f"A text that contains the delimiter {delim} must be quoted (\"like, this\"); or save the file "
               "as .tsv (tab-separated).")
    else:
        fix = "A field is missing (or a quote is not closed); fill it or delete the line."
    raise TaskError(
        f"{path.name}, line {line} has {n} field{'s' if n != 1 else ''} but the header has {len(header)} "
        f"({', '.join(map(str, header))}): {shown!r}{more}. {fix} Nothing was loaded."
    )


def _read_json(path: Path, text: str) -> pd.DataFrame:
    if not text.strip():
        raise TaskError(f"{path} is empty: it holds no rows. Point load_task at a file with data.")
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            if not (e.msg == "Extra data" and text.lstrip().startswith("{")):  # else: JSON lines in a .json
                raise TaskError(
                    f"{path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}. A .json file holds a "
                    'list of records [{"text": ..., "label": ...}, ...]; for one record per line, use .jsonl.'
                ) from None
        except RecursionError:
            raise TaskError(f"{path} is nested too deeply to be a table of records.") from None
        else:
            return _json_document(path, doc, text)
    lines = []
    for i, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as e:
            why = f"{e.msg}, column {e.colno}" if isinstance(e, json.JSONDecodeError) else "nested too deeply"
            shown = line.strip() if len(line.strip()) <= 80 else line.strip()[:77] + "..."
            raise TaskError(f"{path}, line {i} is not valid JSON ({why}): {shown!r}. JSONL holds one JSON record "
                            "per line; fix or delete that line.") from None
        if not isinstance(rec, dict):
            raise TaskError(f"{path}, line {i} holds a JSON {type(rec).__name__}, not a record "
                            '{"text": ..., "label": ...}. JSONL holds one record per line.')
        lines.append(line)
    if not lines:
        raise TaskError(f"{path} is empty: it holds no rows. Point load_task at a file with data.")
    return pd.read_json(io.StringIO("\n".join(lines)), lines=True)


def _json_document(path: Path, doc: Any, text: str) -> pd.DataFrame:
    """A parsed ``.json`` file: a list of records, ``{"data": [records]}``, or columns ``{"text": [...], ...}``."""
    if isinstance(doc, dict) and len(doc) == 1 and isinstance(next(iter(doc.values())), list) \
            and all(isinstance(r, dict) for r in next(iter(doc.values()))):
        doc = next(iter(doc.values()))
        text = json.dumps(doc)
    if isinstance(doc, list):
        if not doc:
            raise TaskError(f"{path} is empty: it holds no rows. Point load_task at a file with data.")
        wrong = [i for i, r in enumerate(doc) if not isinstance(r, dict)]
        if wrong:
            raise TaskError(f"{path}: item {wrong[0]} of the list is a {type(doc[wrong[0]]).__name__}, not a record "
                            '{"text": ..., "label": ...}; a .json file holds a list of records.')
        return pd.read_json(io.StringIO(text))
    if isinstance(doc, dict) and doc and all(isinstance(v, (list, dict)) for v in doc.values()):
        return pd.read_json(io.StringIO(text))
    raise TaskError(f"{path} holds a JSON {type(doc).__name__}, not a table: a .json file holds a list of records "
                    '[{"text": ..., "label": ...}, ...] (or use .jsonl, one record per line).')


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
    eval_fraction: float = 0.1,
    split_seed: int = 0,
) -> Task:
    frames = []
    for split, path in files.items():
        if not path.is_file():
            raise TaskError(f"No such file for split {split!r}: {path}." if not path.is_dir() else
                            f"{path} (split {split!r}) is a folder; name a file.")
        df = _read_table(path, column_names)
        if df.empty:
            raise TaskError(f"{path} is empty: it holds no rows. Point load_task at a file with data.")
        df.columns = [str(c) for c in df.columns]
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
    splits = list(dict.fromkeys(frame["split"]))
    empty = frame["text"].isna() | (frame["text"].astype(str).str.strip() == "")
    drops = _drop_counts(frame[empty], "empty or missing text")
    frame = frame[~empty]
    frame["text"] = frame["text"].astype(str)
    if "text_pair" in frame:
        frame["text_pair"] = frame["text_pair"].fillna("").astype(str)
    before = frame
    frame, names = _encode_labels(frame, label_names, label_map)
    drops += _drop_counts(before.loc[before.index.difference(frame.index)], "label mapped to None")
    meta: dict[str, Any] = {"files": {k: str(v) for k, v in files.items()}}
    if drops:
        meta["dropped_rows"] = drops
        by_reason: dict[str, dict[str, int]] = {}
        for d in drops:
            by_reason.setdefault(d["reason"], {}).setdefault(d["split"], 0)
            by_reason[d["reason"]][d["split"]] += d["n"]
        print(f"{name}: dropped " + "; ".join(
            f"{sum(v.values())} row{'s' if sum(v.values()) != 1 else ''} with {reason} ("
            + ", ".join(f"{s}: {k}" for s, k in v.items()) + ")" for reason, v in by_reason.items()) + ".")
    if frame.empty:
        raise TaskError(f"Task {name!r} has no usable rows after dropping empty texts and unmapped labels.")
    for s in splits:
        if not (frame["split"] == s).any():
            lost = sum(d["n"] for d in drops if d["split"] == s)
            raise TaskError(
                f"Split {s!r} of task {name!r} is empty: all its {lost} rows were dropped (empty text in column "
                f"{text_column!r}, or a label mapped to None). Check text_column= and the file, or leave that split out."
            )
    if eval_fraction and not ({"dev", "test"} & set(frame["split"])) and (frame["split"] == "train").any():
        _check_classes(frame, names, allow_single_class)
        frame, carved = _carve_eval_split(frame, names, eval_fraction, split_seed, name, allow_single_class)
        meta["carved_eval_split"] = carved
    _check_classes(frame, names, allow_single_class)
    specs = {s: {"split": s} for s in ("dev", "test") if (frame["split"] == s).any()}
    return Task(name=name, frame=frame.reset_index(drop=True), label_names=names, eval_set_specs=specs, meta=meta)


def _drop_counts(rows: pd.DataFrame, reason: str) -> list[dict[str, Any]]:
    if rows.empty:
        return []
    counts = rows.groupby(["split", "domain", "lang"], sort=False).size()
    return [{"split": str(s), "domain": str(d), "lang": str(lg), "reason": reason, "n": int(n)}
            for (s, d, lg), n in counts.items()]


def _carve_eval_split(frame: pd.DataFrame, names: list[str], fraction: float, seed: int, name: str,
                      allow_single_class: bool) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Hold out ``fraction`` of the rows as dev and as much again as test, per label (seeded)."""
    import numpy as np

    rng = np.random.default_rng(int(seed))
    split = frame["split"].copy()
    for _, idx in frame.groupby("label", sort=True).groups.items():
        idx = list(idx)
        k = int(round(fraction * len(idx)))
        if k == 0 and len(idx) >= 3:
            k = 1
        order = rng.permutation(len(idx))
        split.loc[[idx[i] for i in order[:k]]] = "dev"
        split.loc[[idx[i] for i in order[k:2 * k]]] = "test"
    frame = frame.assign(split=split)
    counts = {s: int((split == s).sum()) for s in ("train", "dev", "test")}
    classes = {s: frame.loc[split == s, "label"].nunique() for s in ("train", "dev", "test")}
    need = 1 if allow_single_class else min(2, len(names))
    if any(n == 0 for n in counts.values()) or any(c < need for c in classes.values()):
        per_label = frame["label"].map(dict(enumerate(names))).value_counts().to_dict()
        raise TaskError(
            f"Task {name!r} has no dev or test rows, and too few rows per label ({per_label}) to hold out a "
            f"stratified dev and test split ({fraction:.0%} each). Give a 'split' column (train/dev/test) or a "
            "{split: path} dict such as {'train': 'train.csv', 'test': 'test.csv'}, or pass eval_fraction=0 to "
            "keep every row for training (the task then has no eval sets)."
        )
    print(f"{name}: no dev or test rows, so {counts['dev']} rows were held out as dev and {counts['test']} as test "
          f"({fraction:.0%} each, stratified by label, split_seed={int(seed)}); {counts['train']} remain for "
          "training. Give a 'split' column or a {split: path} dict to choose them yourself.")
    return frame, {"fraction": fraction, "seed": int(seed), **counts}


def _label_key(value: Any) -> str:
    """How a raw label is compared with label_map keys and label_names: text, stripped; 1.0 reads as 1."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _encode_labels(
    frame: pd.DataFrame, label_names: Sequence[str] | None, label_map: Mapping[Any, Any] | None
) -> tuple[pd.DataFrame, list[str]]:
    raw = frame["raw_label"].map(_strip)
    missing = raw.isna() | raw.map(lambda v: isinstance(v, str) and v == "")
    if missing.any():
        ids = frame.loc[missing, "id"].head(3).tolist()
        raise TaskError(f"{int(missing.sum())} rows have no label (ids {ids}); fill them or drop them.")
    if label_map is not None:
        lookup = {_label_key(k): _strip(v) for k, v in label_map.items()}
        unknown = sorted({_label_key(v) for v in raw} - set(lookup))
        if unknown:
            raise TaskError(f"label_map has no entry for labels {unknown[:10]}; add them (map to None to drop those rows).")
        raw = raw.map(lambda v: lookup[_label_key(v)])
        frame = frame[raw.notna()].copy()
        raw = raw[raw.notna()]
    if raw.map(lambda v: isinstance(v, bool)).all() and len(raw):
        raw = raw.astype(int)
    as_num = pd.to_numeric(raw, errors="coerce")
    all_numbers = bool(as_num.notna().all()) and bool(raw.map(lambda v: not isinstance(v, bool)).all())
    numeric = all_numbers and bool((as_num == as_num.round()).all())
    names = None if label_names is None else [str(n) for n in label_names]
    if all_numbers and not numeric and not (names and {str(v) for v in raw} <= set(names)):
        fractional = sorted({float(v) for v in as_num if v != round(v)})
        raise TaskError(
            f"Labels {fractional[:5]} are numbers with a fractional part: a class label must be a whole number "
            "0..K-1 or a name. If they are classes, pass label_map={value: name, ...} and label_names=[...]; "
            "a score to regress on needs a regression head, which tutorfinetune does not have."
        )
    if names is None:
        if numeric:
            distinct = sorted(set(as_num.astype(int).tolist()))
            if len(distinct) >= 2 and distinct != list(range(len(distinct))):
                as_names = [str(v) for v in distinct]
                order = ", ".join(f"{v} -> {i}" for i, v in enumerate(distinct[:6])) + (", ..." if len(distinct) > 6 else "")
                raise TaskError(
                    f"Integer labels {distinct[:10]} are not the class indices 0..{len(distinct) - 1}: read as indices "
                    "they would add classes that never occur (and macro-F1 could never reach 1). Pass "
                    f"label_names={as_names[:10]!r} to use these values as the classes ({order}), or "
                    "label_map={value: name, ...} with label_names=[names in index order]."
                )
            names = [str(i) for i in range(int(as_num.max()) + 1)] if len(as_num) else []
        else:
            values = sorted({str(v) for v in raw})
            variants: dict[str, list[str]] = {}
            for v in values:
                variants.setdefault(v.casefold(), []).append(v)
            clash = [g for g in variants.values() if len(g) > 1]
            if clash:
                merge = ", ".join(f"{v!r}: {g[-1]!r}" for g in clash for v in g[:-1])
                raise TaskError(
                    f"Labels {clash[:5]} differ only in case, so they would become separate classes. Make them "
                    f"consistent in the file, or merge them with label_map={{{merge}, ...}} (every label needs an "
                    "entry), or pass label_names=[...] if they really are different classes."
                )
            names = values
    if numeric and not {str(v) for v in raw} <= set(names):
        ids = as_num.astype(int)
        bad = sorted(set(ids[(ids < 0) | (ids >= len(names))].tolist()))
        if bad:
            hint = ""
            if ids.min() >= 1 and ids.max() == len(names):
                hint = (" They look one-based: pass label_map={"
                        + ", ".join(f"{i + 1}: {n!r}" for i, n in enumerate(names[:6])) + "}.")
            raise TaskError(
                f"Labels {bad[:10]} are outside the label set {names} (indices 0..{len(names) - 1}); "
                f"fix the data or pass label_names=/label_map=.{hint}"
            )
        frame["label"] = ids.values
    else:
        index = {n: i for i, n in enumerate(names)}
        bad = sorted({str(v) for v in raw} - set(index))
        if bad:
            folded = {n.casefold(): n for n in names}
            near = [f"{b!r} (the label set has {folded[b.casefold()]!r})" for b in bad if b.casefold() in folded]
            raise TaskError(
                f"Labels {bad[:10]} are outside the label set {names}; fix the data, or pass "
                "label_names=[...] that include them, or label_map={raw: name} to rename or drop them."
                + (f" Case differs for {', '.join(near[:5])}." if near else "")
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
def _from_hub(dataset_id: str, *, hf_config: str | None, missing_path: Path | None = None, **kw) -> Task:
    # A name like "data/mytask" that is no local file: say that first, then what the hub said.
    first = (_no_such_path(missing_path).removesuffix(" Check the path (it is relative to the current folder).")
             + f" Read as a Hugging Face dataset id (write 'hf:{dataset_id}' to mean that): ") if missing_path else ""
    try:
        import datasets  # noqa: F401
    except ImportError:
        raise TaskError(
            first + f"{dataset_id!r} looks like a Hugging Face dataset id, but `datasets` is not installed: "
            "pip install 'tutorfinetune[hub]'. Offline, use the bundled task 'reviews' or a local file."
        ) from None
    from datasets import load_dataset

    try:
        ds = load_dataset(dataset_id, hf_config)
    except Exception as e:  # network and hub errors come in many types
        raise TaskError(
            first + f"Could not load Hugging Face dataset {dataset_id!r} ({type(e).__name__}: {e}). It needs the hub "
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
