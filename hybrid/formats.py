"""Which reader a dataset needs, told from its name (and, where a name is ambiguous, its first record).

Kept apart from the readers so that the data config can resolve ``data_format='auto'`` when it is built
(the resolved name is what a run saves) without importing the readers.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

BUILTIN_DATASETS = ("ml-100k",)


class PathError(ValueError):
    """A dataset path that no --data_format can read as it is (missing, or compressed)."""


SUFFIXES = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".jsonl": "json", ".json": "json"}


def infer_data_format(dataset: str) -> str:
    """The data_format of ``dataset``: a built-in name -> 'recbole'; a file by its extension (NAME.inter ->
    'recbole'; a JSON-lines file of Amazon Reviews 2023, with 'parent_asin', -> 'amazon2023'); a folder by the
    files it holds (pre-split NAME.train.inter -> 'recbole_split', NAME.inter -> 'recbole', ReChorus
    train/dev/test.csv -> 'rechorus').
    Raises ValueError naming what it found when it cannot tell."""
    if dataset in BUILTIN_DATASETS:
        return "recbole"
    path = Path(dataset)
    if path.is_file():
        if path.name.endswith((".train.inter", ".valid.inter", ".test.inter")):
            raise ValueError(f"{dataset!r} is one file of a pre-split benchmark: give its folder as --dataset")
        if path.suffix == ".inter":  # a RecBole atomic file, its .item beside it
            return "recbole"
        if path.suffix.lower() == ".gz":
            raise PathError(f"{dataset!r} is gzip-compressed: decompress it first (gunzip -k {dataset})")
        kind = SUFFIXES.get(path.suffix.lower())
        if kind is None:
            raise ValueError(f"cannot tell the format of {dataset!r} from its extension {path.suffix!r}")
        return "amazon2023" if kind == "json" and "parent_asin" in _first_record(path) else kind
    if path.is_dir():
        if any(path.glob("*.train.inter")):
            return "recbole_split"
        if any(path.glob("*.inter")):
            return "recbole"
        if (path / "train.csv").is_file():
            return "rechorus"
        raise ValueError(f"the folder {dataset!r} holds no .inter files (RecBole) nor train.csv (ReChorus)")
    close = difflib.get_close_matches(dataset, BUILTIN_DATASETS, n=1, cutoff=0.85)  # not ml-1m, ml-20m
    hint = f" Did you mean the built-in {close[0]!r}?" if close else ""
    raise PathError(
        f"{dataset!r} is neither a built-in dataset {BUILTIN_DATASETS} nor an existing file or folder: check the "
        f"path (relative paths start at the current directory, here {Path.cwd()}).{hint}"
    )


def _first_record(path: Path) -> dict:
    """The first JSON object of a JSON-lines file ({} when the first line is not one)."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        line = handle.readline()
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return {}
    return record if isinstance(record, dict) else {}


def default_delimiter(dataset: str) -> str:
    """A delimited file's delimiter by its extension: tab for .tsv, comma otherwise."""
    return "\t" if Path(dataset).suffix.lower() == ".tsv" else ","
