"""Readers: every supported source becomes one internal form, :class:`RawInteractions`.

Files are read with the ``datasets`` library (csv/json/parquet builders); ids are kept as strings, times
and ratings as floats. Errors name the file, the problem and the setting that fixes it.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import itertools
import lzma
import os
import re
import string
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .config import NO_TIME, DataConfig
from .errors import DataError, DataWarning
from .formats import BUILTIN_DATASETS, default_delimiter


@dataclass
class RawInteractions:
    """Interactions in file order plus the item texts, before any filtering."""

    users: np.ndarray  # [M] str
    items: np.ndarray  # [M] str
    times: np.ndarray  # [M] float64
    ratings: np.ndarray | None  # [M] float64
    item_texts: dict[str, str] = field(default_factory=dict)
    item_titles: dict[str, str] = field(default_factory=dict)  # short names for people; default: the text
    files: list[Path] = field(default_factory=list)  # every file read, for the cache fingerprint


def recbole_dataset_dir(name: str) -> Path:
    """Folder of a dataset embedded in the installed ``recbole`` package (its code is never imported)."""
    import importlib.util

    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"dataset {name!r} is read from the recbole package, which is not installed. "
            "Install it with: pip install --no-deps recbole==1.2.1"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "dataset_example" / name
    if not folder.is_dir():
        raise DataError(f"the installed recbole package has no {folder}; reinstall recbole==1.2.1.")
    return folder


def _load_table(path: Path, kind: str, **options) -> pd.DataFrame:
    """Read one csv/json/parquet file through ``datasets`` into a DataFrame."""
    import datasets

    _check_readable(path)
    datasets.disable_progress_bars()
    verbosity = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # its "Failed to read file" line: said below
    try:
        with warnings.catch_warnings():  # pandas drops a longer first row's extra fields with only a warning
            warnings.filterwarnings("error", "Length of header", pd.errors.ParserWarning)
            table = datasets.load_dataset(kind, data_files=str(path), split="train", **options)
    except Exception as error:  # noqa: BLE001 - the reader's own message is kept, with the file named
        raise DataError(f"could not read {str(path)!r} as {kind}: {_reason(error)}") from error
    finally:
        datasets.logging.set_verbosity(verbosity)
    frame = table.to_pandas()
    frame.attrs["read_as"] = kind  # the id checks need it: a JSON file need not end in .json
    return frame


def _check_readable(path: Path) -> None:
    """A path that names no readable file is refused with what it is instead."""
    if not path.exists():
        raise DataError(f"data file {str(path)!r} does not exist; check the --dataset / --item_file path.")
    if path.is_dir():
        raise DataError(
            f"{str(path)!r} is a folder, not a file: point --dataset / --item_file at the file (folders are read by "
            "--data_format recbole, rechorus and recbole_split)."
        )
    if not os.access(path, os.R_OK):
        raise DataError(f"{str(path)!r} cannot be read (permission denied); make it readable or copy it.")


def _reason(error: BaseException) -> str:
    """The innermost cause of a ``datasets`` failure (its own wrapper says only that generation failed)."""
    while (error.__cause__ or error.__context__) is not None:
        error = error.__cause__ or error.__context__
    if isinstance(error, pd.errors.ParserWarning):  # raised as an error by _read_delimited
        return (
            "its first row has more fields than the header has names (a delimiter at the end of every row, or a "
            "header missing a name, or a field holding the delimiter unquoted), so every column would shift. Make "
            "each row's fields match the header (quote a field that holds the delimiter)."
        )
    text = str(error).strip() or "the file holds no records"
    hint = " Save the file as UTF-8." if isinstance(error, UnicodeDecodeError) else ""
    return f"{type(error).__name__}: {text}.{hint}"


def _header(path: Path, delimiter: str, quoted: bool) -> list[str]:
    """The header row's column names (unquoted the RFC 4180 way for quoted formats)."""
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:  # a spreadsheet's BOM dropped
        if not quoted:
            return handle.readline().rstrip("\r\n").split(delimiter)
        return next(csv.reader(handle, delimiter=delimiter), [])


def _read_delimited(path: Path, delimiter: str, quoted: bool = False) -> pd.DataFrame:
    """A delimited text file with a header row, every column read as strings. ``quoted``: the standard CSV
    dialect (RFC 4180: a field holding the delimiter, a quote or a newline is quoted, quotes doubled), as pandas,
    spreadsheets and Python's csv module write it. RecBole atomic and ReChorus files are tab-separated without
    quoting, so a quote character there is text ('"Weird Al" Yankovic')."""
    _check_readable(path)
    if path.stat().st_size == 0:
        raise DataError(f"{str(path)!r} is empty; it needs a header row naming the columns, then one row per line.")
    with open(path, "rb") as handle:
        if handle.read(2) == b"\x1f\x8b":
            raise DataError(f"{str(path)!r} is gzip-compressed: decompress it first (gunzip -k {path}).")
    if quoted and len(delimiter) != 1:
        raise DataError(
            f"--delimiter {delimiter!r} has more than one character, which quoted csv files cannot have: turn it into "
            f"a tab (e.g. sed 's/{delimiter}/\\t/g' FILE > FILE.tsv) and read that with --delimiter tab."
        )
    header = _header(path, delimiter, quoted)
    if "" in (names := [name.strip() for name in header]) and len(header) > 1:
        raise DataError(
            f"column {names.index('') + 1} of {str(path)!r}'s header has no name (a delimiter at the end of every "
            "row, or an index column written by pandas' to_csv without index=False): name it, or remove it from "
            "every row."
        )
    if len(header) == 1:
        for other in ("\t", ",", ";", "|"):
            if other != delimiter and other in header[0]:
                raise DataError(
                    f"{str(path)!r} has a single column {header[0]!r}: it looks delimited by {other!r}, "
                    f"not {delimiter!r}. Set --delimiter accordingly (a tab: --delimiter tab; it also reads an item "
                    "file with the same suffix: give a tab-separated item file the suffix .tsv)."
                )
    duplicates = repeated(names)
    if duplicates:
        raise DataError(f"{str(path)!r} repeats the header column(s) {duplicates}; give every column a unique name.")
    with open(path, encoding="utf-8", errors="replace") as handle:  # stops at the first data row, never reads on
        if len(list(itertools.islice((line for line in handle if line.strip()), 2))) < 2:
            raise DataError(f"{str(path)!r} has a header row ({header}) but no rows of data.")
    import datasets

    features = datasets.Features({name: datasets.Value("string") for name in header})
    quoting = csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE
    frame = _load_table(
        path,
        "csv",
        delimiter=delimiter,
        features=features,
        quoting=quoting,
        keep_default_na=False,
        encoding="utf-8-sig",
        index_col=False,  # a longer first row is an error (see _reason), never an index column
    )
    if quoted:
        _warn_spanning_fields(frame, path)
    return frame.rename(columns=str.strip)  # ' item_id' (a space after each comma) is item_id


def _warn_spanning_fields(frame: pd.DataFrame, path: Path) -> None:
    """Quoted fields that span lines are legal CSV, but also what one stray quote makes of the lines after it."""
    spans = np.column_stack([frame[column].str.contains("\n", regex=False).to_numpy() for column in frame.columns])
    rows = np.flatnonzero(spans.any(axis=1))
    if len(rows):
        warnings.warn(
            f"{len(rows)} rows of {str(path)!r} hold a quoted field that spans lines (the first: data row "
            f"{int(rows[0]) + 1}). If a quote character there is text, not quoting, the lines after it were read into "
            'that field: double such quotes ("") or quote the whole field.',
            DataWarning,
            stacklevel=3,
        )


def _require(frame: pd.DataFrame, column: str, path: Path, setting: str | None) -> pd.Series:
    """``frame[column]``, or an error naming the setting that picks the column (None: the format fixes the name,
    and the file must use it)."""
    if column not in frame.columns:
        fix = f"Set --{setting} to the right one." if setting else f"The format names it {column!r}: rename it."
        if setting == "time_column":
            fix += " If the file has no timestamps but its rows are in time order, set --time_column none."
        raise DataError(
            f"column {column!r} not found in {str(path)!r}; available columns: {list(frame.columns)}. {fix}"
        )
    return frame[column]


def _seconds(times: pd.Series) -> pd.Series:
    """UTC date-times as Unix seconds."""
    return (times - pd.Timestamp(0, tz="UTC")).dt.total_seconds()


def _numeric(
    values: pd.Series,
    column: str,
    path: Path,
    fix: str = "Convert it to numbers (e.g. Unix seconds) or ISO 8601 date-times (2024-05-01T12:00:00Z).",
    dates: bool = False,
) -> np.ndarray:
    """A column as float numbers; with ``dates``, a column of ISO 8601 date-time texts as Unix seconds."""
    if pd.api.types.is_datetime64_any_dtype(values):  # a Parquet/JSON date-time: Unix seconds, whatever its unit
        converted = _seconds(pd.to_datetime(values, utc=True))
    else:
        converted = pd.to_numeric(values, errors="coerce")
        if dates and converted.isna().all():  # text date-times, as pandas writes them (bad cells named below)
            parsed = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
            converted = _seconds(parsed) if parsed.notna().any() else converted
    bad = converted.isna() | np.isinf(converted)  # no number, no value (JSON null, an empty cell), or infinite
    if bad.any():
        example = values[bad].iloc[0]
        example = "nothing" if pd.isna(example) else repr(example)
        raise DataError(
            f"column {column!r} of {str(path)!r} must be numeric, but holds {example} "
            f"(data row {int(np.flatnonzero(bad.to_numpy())[0]) + 1}, counting from 1 after any header). {fix}"
        )
    return converted.to_numpy(dtype=np.float64)


def _ids(values: pd.Series, column: str, path: Path) -> np.ndarray:
    """Ids as trimmed strings. A missing or empty id is refused by row; a float column of whole numbers (a
    Parquet or JSON id column with a gap in it) reads '7', not '7.0'."""
    first = values.iloc[0] if len(values) else None
    if isinstance(first, (list, tuple, dict, np.ndarray)):  # a JSON/Parquet list or record is no id
        raise DataError(
            f"column {column!r} of {str(path)!r} holds {type(first).__name__} values (e.g. {first!r}), not single "
            "ids: give each interaction its own row with one id."
        )
    missing = values.isna().to_numpy()
    if not missing.any():
        if pd.api.types.is_float_dtype(values) and (values % 1 == 0).all():
            values = values.astype(np.int64)
        strings = values.astype(str).str.strip()
        missing = (strings == "").to_numpy()
    if missing.any():
        raise DataError(
            f"column {column!r} of {str(path)!r} has no id in data row {int(np.flatnonzero(missing)[0]) + 1} "
            f"({int(missing.sum())} such rows); every row needs one. Fill or remove those rows."
        )
    _warn_missing_markers(strings, column, path)
    return strings.to_numpy()


COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def _refuse_mixed_json_ids(frame: pd.DataFrame, columns: list[str], path: Path) -> None:
    """A JSON id column read as numbers that also holds strings went through pandas (the reader's fallback for
    mixed types), which reads "007" as 7 and so merges two ids: refused, naming the first such line. One pass
    over the file for all of ``columns``, whatever the file's name ends in."""
    numeric = [name for name in columns if pd.api.types.is_numeric_dtype(frame[name])]
    if frame.attrs.get("read_as") != "json" or not numeric:
        return
    quoted = re.compile(r'"(' + "|".join(re.escape(name) for name in numeric) + r')"\s*:\s*"')
    opener = COMPRESSED.get(path.suffix.lower(), open)  # the JSON reader decompresses these itself
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        for line, text in enumerate(handle, start=1):
            if found := quoted.search(text):
                raise DataError(
                    f"column {found.group(1)!r} of {str(path)!r} holds numbers and strings (a string on line "
                    f'{line}), and the JSON reader turns a string such as "007" into the number 7, merging ids: '
                    "write every id of the column as a string."
                )


MISSING_MARKERS = ("NULL", "null", "None", "nan", "NaN", "NA", "N/A", "<NA>")  # how exports write "no value"


def _warn_missing_markers(ids: pd.Series, column: str, path: Path) -> None:
    """Ids read as given, but an export's word for "no value" turns every row without an id into one user or
    item: said, with the count."""
    marked = ids.isin(MISSING_MARKERS).to_numpy()
    if marked.any():
        words = sorted(set(ids[marked]))
        warnings.warn(
            f"{int(marked.sum())} rows of column {column!r} of {str(path)!r} hold {words}, which exports write for a "
            f"missing value (the first: data row {int(np.flatnonzero(marked)[0]) + 1}); all rows with one such word "
            f"become one user or item called so (e.g. {words[0]!r}). Remove those rows if they have no id.",
            DataWarning,
            stacklevel=4,
        )


COLUMN_SETTINGS = ("user_column", "item_column", "time_column", "rating_column")  # what picks each column


def _interactions(
    frame: pd.DataFrame,
    path: Path,
    config: DataConfig,
    user: str,
    item: str,
    time: str,
    rating: str | None,
    settings: tuple[str | None, ...] = COLUMN_SETTINGS,  # None where the format fixes the column's name
) -> RawInteractions:
    users = _ids(_require(frame, user, path, settings[0]), user, path)
    items = _ids(_require(frame, item, path, settings[1]), item, path)
    _refuse_mixed_json_ids(frame, [user, item], path)
    if time == NO_TIME and NO_TIME not in frame.columns:  # the rows' order is the time order
        times = np.arange(len(frame), dtype=np.float64)
    else:
        times = _numeric(_require(frame, time, path, settings[2]), time, path, dates=True)
    ratings = None
    if config.min_rating is not None:
        if rating is None:
            raise DataError("min_rating is set but no rating column is known; set --rating_column.")
        fix = "Give every row a numeric rating, or remove the rows without one."
        ratings = _numeric(_require(frame, rating, path, settings[3]), rating, path, fix)
    return RawInteractions(users, items, times, ratings, files=[path])


def _item_table(frame: pd.DataFrame, id_column: str, path: Path, setting: str | None) -> pd.DataFrame:
    """An item file with its ids as the interactions' ids are read (trimmed strings), each item listed once."""
    ids = _ids(_require(frame, id_column, path, setting), id_column, path)
    _refuse_mixed_json_ids(frame, [id_column], path)
    _refuse_repeats(
        pd.Series(ids), path, "item(s)", f" (column {id_column!r}); one text per item: keep one row for each."
    )
    return frame.assign(**{id_column: ids})


def _refuse_repeats(values: pd.Series, path: Path, what: str, fix: str) -> None:
    """A file that lists one id twice (which row would hold?) is refused, naming the ids and ``fix``."""
    twice = values[values.duplicated()].unique().tolist()
    if twice:
        raise DataError(f"{str(path)!r} lists the {what} {twice[:5]} more than once{fix}")


def repeated(names: list[str]) -> list[str]:
    """The names that ``names`` holds more than once, sorted."""
    return sorted({name for name in names if names.count(name) > 1})


def _strip_types(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """RecBole atomic headers are typed (``item_id:token``); keep the names only, each once."""
    names = [column.split(":", 1)[0].strip() for column in frame.columns]  # 'item_id :token' is item_id
    if twice := repeated(names):
        raise DataError(
            f"{str(path)!r} names the column(s) {twice} twice with different types (e.g. timestamp:float and "
            "timestamp:token); keep one of each."
        )
    return frame.set_axis(names, axis=1)


def _template_texts(frame: pd.DataFrame, id_column: str, template: str) -> dict[str, str]:
    """Fill `template` ('{title} ({year})') from each row; empty cells become ''."""
    fields = _template_fields(template)
    missing = sorted(fields - set(frame.columns))
    if missing:
        raise DataError(
            f"item_text_template names columns {missing} that the item file lacks; available: "
            f"{list(frame.columns)}. Fix --item_text_template."
        )
    values = _text_cells(frame, sorted(fields))
    ids = frame[id_column].astype(str).tolist()
    return {i: template.format(**row).strip() for i, row in zip(ids, values.to_dict("records"))}


def _template_fields(template: str) -> set[str]:
    """The column names a template fills: each field a plain {column} (the values are text)."""
    try:
        parsed = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)]
    except ValueError as error:
        raise DataError(
            f"item_text_template {template!r} is not a valid template ({error}); "
            "write fields as {column} and a literal brace as {{ or }}."
        ) from None
    for name, spec, conversion in parsed:
        if name is not None and (not name or name.isdigit()):
            raise DataError(
                f"item_text_template {template!r} has a field without a column name: write {{title}}, not {{}}."
            )
        if spec or conversion:
            raise DataError(
                f"item_text_template {template!r} formats a field ({{{name}:{spec}}}): every field is text, so write "
                f"the column alone ({{{name}}})."
            )
    return {name for name, _, _ in parsed if name}


def _text_cells(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The cells of ``columns`` as trimmed text: a missing cell (JSON null) or a blank one is '' (no text)."""
    return frame[columns].fillna("").astype(str).apply(lambda column: column.str.strip())


def _item_texts(frame: pd.DataFrame, id_column: str, config: DataConfig) -> dict[str, str]:
    if config.item_text_template:
        return _template_texts(frame, id_column, config.item_text_template)
    return _join_texts(frame, id_column, _split_columns(config.item_text_columns))


def _join_texts(frame: pd.DataFrame, id_column: str, text_columns: list[str] | None) -> dict[str, str]:
    columns = text_columns or [column for column in frame.columns if column != id_column]
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise DataError(
            f"item text columns {missing} not in the item file; available: {list(frame.columns)}. "
            "Fix --item_text_columns."
        )
    ids = frame[id_column].astype(str).tolist()
    parts = _text_cells(frame, columns).to_numpy()

    if len(columns) == 1:
        return dict(zip(ids, parts[:, 0].tolist()))
    return {i: "; ".join(f"{c}: {v}" for c, v in zip(columns, row) if v) for i, row in zip(ids, parts)}


def movielens_text(title: str, year: str, genres: str) -> str:
    """'Toy Story (1995), Animation, Children's, Comedy'."""
    text = f"{title} ({year})" if year else title
    return ", ".join([text, *genres.split()]) if genres else text


def read_recbole(config: DataConfig) -> RawInteractions:
    """RecBole atomic files: ``NAME.inter`` (+ optional ``NAME.item``) in a folder, tab-separated."""
    if config.dataset in BUILTIN_DATASETS:
        folder = recbole_dataset_dir(config.dataset)
    else:
        folder = Path(config.dataset)
    if folder.is_file():
        inter_path, folder = folder, folder.parent
    else:
        candidates = sorted(folder.glob("*.inter")) if folder.is_dir() else []
        if len(candidates) != 1:
            found = [p.name for p in candidates] or "none"
            raise DataError(
                f"{str(folder)!r} must hold exactly one .inter file (found: {found}); point --dataset at a RecBole "
                "atomic folder with one dataset, or at the .inter file itself."
            )
        inter_path = candidates[0]
    delimiter = config.delimiter or "\t"  # RecBole's field_separator: a tab unless the files say otherwise
    frame = _strip_types(_read_delimited(inter_path, delimiter), inter_path)
    raw = _interactions(
        frame,
        inter_path,
        config,
        config.user_column,
        config.item_column,
        config.time_column,
        config.rating_column or "rating",
    )
    item_path = Path(config.item_file) if config.item_file else inter_path.with_suffix(".item")
    if config.item_file or item_path.exists():  # a named file must exist; the folder's own is optional
        items = _item_table(
            _strip_types(_read_delimited(item_path, delimiter), item_path), config.item_column, item_path, "item_column"
        )
        movielens = {"movie_title", "release_year", "class"} <= set(items.columns)
        if movielens and not (config.item_text_columns or config.item_text_template):
            raw.item_texts = {
                str(i): movielens_text(t, y, g)
                for i, t, y, g in zip(
                    items[config.item_column], items["movie_title"], items["release_year"], items["class"]
                )
            }
        else:
            raw.item_texts = _item_texts(items, config.item_column, config)
        raw.item_titles = _titles(items, config.item_column)
        raw.files.append(item_path)
        _check_item_ids(raw, item_path, config.item_column)
    return raw


def _titles(frame: pd.DataFrame, id_column: str) -> dict[str, str]:
    """Item titles for recommendations shown to people, from a title column where the item file has one."""
    if {"movie_title", "release_year"} <= set(frame.columns):  # MovieLens: 'Toy Story (1995)'
        years = frame["release_year"].fillna("").astype(str)
        titles = [f"{t} ({y})" if y else t for t, y in zip(frame["movie_title"].fillna("").astype(str), years)]
        return dict(zip(frame[id_column].astype(str), titles))
    for column in ("title", "movie_title", "name"):
        if column in frame.columns:
            return dict(zip(frame[id_column].astype(str), frame[column].fillna("").astype(str)))
    return {}


def _split_columns(columns: str | None) -> list[str] | None:
    return [c.strip() for c in columns.split(",") if c.strip()] if columns else None


def read_amazon2023(config: DataConfig) -> RawInteractions:
    """Amazon Reviews 2023 JSONL: reviews (user_id, parent_asin, rating, timestamp in ms) + optional meta."""
    path = Path(config.dataset)
    frame = _load_table(path, "json")
    raw = _interactions(frame, path, config, "user_id", "parent_asin", "timestamp", "rating", (None,) * 4)
    if config.item_file:
        meta_path = Path(config.item_file)
        meta = _item_table(_load_table(meta_path, "json"), "parent_asin", meta_path, "item_file")
        if config.item_text_template:
            raw.item_texts = _template_texts(meta, "parent_asin", config.item_text_template)
        else:
            raw.item_texts = {str(row["parent_asin"]): amazon_text(row) for row in meta.to_dict("records")}
        raw.item_titles = _titles(meta, "parent_asin")
        raw.files.append(meta_path)
        _check_item_ids(raw, meta_path, "parent_asin")
    return raw


def amazon_text(row: dict) -> str:
    """Title, categories, features and description of an Amazon 2023 meta record, in that order."""

    def as_list(value) -> list[str]:
        if value is None or (isinstance(value, float) and np.isnan(value)):  # JSON null; a Parquet gap
            return []
        if isinstance(value, str):
            return [value] if value else []
        if isinstance(value, float) and value.is_integer():  # a title 1984 in a column arrow read as floats
            return [str(int(value))]
        if not isinstance(value, (list, tuple, np.ndarray)):  # a number where text was expected
            return [str(value)]
        return [str(v) for v in value if v]

    parts = as_list(row.get("title"))[:1] or [""]
    if categories := as_list(row.get("categories")):
        parts.append("Categories: " + " > ".join(categories))
    if features := as_list(row.get("features")):
        parts.append("Features: " + " ".join(features))
    if description := as_list(row.get("description")):
        parts.append("Description: " + " ".join(description))
    return ". ".join(part for part in parts if part)


def read_rechorus(config: DataConfig) -> RawInteractions:
    """ReChorus folder: train/dev/test.csv (tab-separated user_id, item_id, time; neg_items ignored, since
    evaluation here ranks the full catalogue) and an optional item_meta.csv (or --item_file, in its layout).
    Re-split by our protocol."""
    folder = Path(config.dataset)
    delimiter = config.delimiter or "\t"
    parts = [folder / f"{name}.csv" for name in ("train", "dev", "test") if (folder / f"{name}.csv").exists()]
    if not parts:
        raise DataError(f"no train.csv/dev.csv/test.csv in {str(folder)!r}; point --dataset at a ReChorus folder.")
    settings = (None, None, "time_column", "rating_column")  # ReChorus names its id columns
    raws = [
        _interactions(frame, p, config, "user_id", "item_id", rechorus_time(frame, config), config.rating_column,
                      settings)
        for p in parts
        for frame in [_read_delimited(p, delimiter)]
    ]  # fmt: skip
    raw = _concat(raws)
    meta_path = Path(config.item_file) if config.item_file else folder / "item_meta.csv"
    if config.item_file or meta_path.exists():  # a named file must exist; the folder's own is optional
        meta = _item_table(_read_delimited(meta_path, delimiter), "item_id", meta_path, None)
        raw.item_texts, raw.item_titles = _item_texts(meta, "item_id", config), _titles(meta, "item_id")
        raw.files.append(meta_path)
        _check_item_ids(raw, meta_path, "item_id")
    return raw


def rechorus_time(frame: pd.DataFrame, config: DataConfig) -> str:
    """ReChorus calls its time column 'time': the default --time_column ('timestamp') means it, unless the file
    has a 'timestamp' column."""
    if config.time_column == "timestamp" and "timestamp" not in frame.columns:
        return "time"
    if config.time_column == NO_TIME:  # row order is time only within one file, and these are three
        raise DataError(
            "--time_column none cannot order ReChorus files: their rows are split across train/dev/test.csv, "
            "each needing its time column ('time'). Leave --time_column unset."
        )
    return config.time_column


def _read_plain(path: Path, kind: str, delimiter: str | None) -> pd.DataFrame:
    """A csv/tsv (standard quoting), JSON-lines or Parquet table."""
    if kind == "parquet" or path.suffix.lower() == ".parquet":
        return _load_table(path, "parquet")
    if kind == "json" or path.suffix.lower() in (".json", ".jsonl"):
        return _load_table(path, "json")
    return _read_delimited(path, delimiter or default_delimiter(str(path)), quoted=True)


def read_table(config: DataConfig) -> RawInteractions:
    """Plain CSV/TSV, JSON lines or Parquet with a column mapping (user/item/time/rating columns set in the
    config); the item file, if any, in any of these formats, its id in item_id_column (default item_column)."""
    path = Path(config.dataset)
    frame = _read_plain(path, config.data_format, config.delimiter)
    if "parent_asin" in frame.columns and config.item_column not in frame.columns:
        raise DataError(f"{str(path)!r} looks like Amazon Reviews 2023 (parent_asin): set --data_format amazon2023.")
    raw = _interactions(
        frame, path, config, config.user_column, config.item_column, config.time_column, config.rating_column
    )
    if config.item_file:
        item_path = Path(config.item_file)
        id_column = config.item_id_column or config.item_column
        # --delimiter reaches an item file of the interactions' kind, or of no kind of its own; a .csv or .tsv
        # beside another kind of file keeps its suffix's delimiter
        own = item_path.suffix.lower() in (".csv", ".tsv") and item_path.suffix.lower() != path.suffix.lower()
        delimiter = None if own else config.delimiter
        items = _item_table(_read_plain(item_path, "", delimiter), id_column, item_path, "item_id_column")
        raw.item_texts = _item_texts(items, id_column, config)
        raw.item_titles = _titles(items, id_column)
        raw.files.append(item_path)
        _check_item_ids(raw, item_path, id_column)
    return raw


def _check_item_ids(raw: RawInteractions, item_path: Path, id_column: str) -> None:
    """An item file whose ids match no interaction gives no text at all: refused, with an id of each side. One
    that misses some items leaves those without text: a warning with the count."""
    used = set(raw.items.tolist())
    if raw.item_texts and used.isdisjoint(raw.item_texts):
        raise DataError(
            f"none of the {len(raw.item_texts)} ids in {str(item_path)!r} (column {id_column!r}, e.g. "
            f"{next(iter(raw.item_texts))!r}) is an item of the interactions (e.g. {next(iter(used))!r}). Name the "
            "item file's id column (--item_id_column for csv/json/parquet, --item_column for recbole), and quote "
            "any field that holds the delimiter (a row with an extra field shifts its columns)."
        )
    missing = sorted(used.difference(raw.item_texts))
    if missing:
        warnings.warn(
            f"{len(missing)} of the {len(used)} items of the interactions have no row in {str(item_path)!r} (e.g. "
            f"{missing[0]!r}): their text is empty. Add their rows if a text encoder should see them.",
            DataWarning,
            stacklevel=2,
        )


def _concat(parts: list[RawInteractions]) -> RawInteractions:
    return RawInteractions(
        users=np.concatenate([p.users for p in parts]),
        items=np.concatenate([p.items for p in parts]),
        times=np.concatenate([p.times for p in parts]),
        ratings=None if parts[0].ratings is None else np.concatenate([p.ratings for p in parts]),
        files=[f for p in parts for f in p.files],
    )


READERS = {
    "recbole": read_recbole,
    "amazon2023": read_amazon2023,
    "rechorus": read_rechorus,
    "csv": read_table,
    "json": read_table,
    "parquet": read_table,
}


def read_interactions(config: DataConfig) -> RawInteractions:
    """Dispatch on ``config.data_format`` (built-in names always use the recbole reader)."""
    if config.data_format == "recbole_split":  # already split: hybrid.benchmark_files reads these
        raise DataError(
            f"{config.dataset!r} holds pre-split benchmark files, not raw interactions: load it with "
            "hybrid.data.load_dataset (or build_dataset), which keeps the published split."
        )
    if config.dataset in BUILTIN_DATASETS:
        return read_recbole(config)
    if not os.path.exists(config.dataset):
        raise DataError(
            f"dataset {config.dataset!r} is neither a built-in dataset {BUILTIN_DATASETS} nor an existing path. "
            "Check the path (relative paths start at the current directory) or use a built-in name."
        )
    return READERS[config.data_format](config)
