"""Pre-split benchmark files (``data_format='recbole_split'``): train, validation and test rows as published.

UniSRec publishes its datasets in RecBole's pre-split layout, one folder per dataset:

- ``NAME.train.inter``, ``NAME.valid.inter``, ``NAME.test.inter``: header ``user_id:token  item_id_list:token_seq
  item_id:token``, one row per target: the history before it (item tokens, oldest first, cut to the most recent
  50) and the target;
- ``NAME.text`` (``item_id:token  text:token_seq``: ASIN and text) joined to the item tokens through
  ``NAME.item2index`` (ASIN <TAB> item token, no header); optional ``NAME.user2index`` (not needed).

The rows are kept exactly: nothing is filtered, re-split or re-derived. The files are checked against each
other per user (every row continues the one before it) and disagreements are reported, never repaired. This
module only reads and checks; ``hybrid.data`` turns :class:`PublishedSplit` into tensors.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .config import DataConfig
from .errors import DataError, DataWarning
from .readers import _load_table, _read_delimited, _refuse_repeats, _require, _strip_types

SPLIT_NAMES = ("train", "valid", "test")
INTER_COLUMNS = ("user_id", "item_id_list", "item_id")


@dataclass
class Row:
    """One published row: the history (item tokens, oldest first, as in the file) and the target."""

    history: tuple[str, ...]
    target: str


@dataclass
class PublishedRows:
    """One split's rows in the flat layout ``hybrid.data.build_rows`` reads: row r's full history is
    ``items[starts[r]:positions[r]]`` and its target ``items[positions[r]]``."""

    users: np.ndarray  # [R] int64 user index
    items: np.ndarray  # [F] int64 item index 1..N, each row's history followed by its target
    starts: np.ndarray  # [R] int64
    positions: np.ndarray  # [R] int64


@dataclass
class PublishedSplit:
    """The three splits as published, the catalogue (item i + 1 at index i) and what was found."""

    rows: dict[str, PublishedRows]
    item_ids: list[str]
    user_ids: list[str]
    item_texts: list[str]
    item_titles: list[str]
    stats: dict
    files: list[Path] = field(default_factory=list)  # every file read


# ------------------------------------------------------------------------------------------------ files
def benchmark_files(folder: str) -> dict[str, Path]:
    """Paths of NAME.{train,valid,test}.inter (required) and NAME.{text,item2index} (optional) in ``folder``,
    where NAME is the stem of the folder's single ``*.train.inter`` file."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(
            f"data_format='recbole_split' reads a folder of benchmark files, but {folder!r} is not a folder. "
            "Point --dataset at the folder holding NAME.train.inter, NAME.valid.inter and NAME.test.inter."
        )
    candidates = sorted(root.glob("*.train.inter"))
    if len(candidates) != 1:
        found = [p.name for p in candidates] or "none"
        raise DataError(
            f"{folder!r} must hold exactly one NAME.train.inter file (found: {found}). Keep one benchmark "
            "per folder, or point --dataset at the right folder."
        )
    name = candidates[0].name.removesuffix(".train.inter")
    paths = {split: root / f"{name}.{split}.inter" for split in SPLIT_NAMES}
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        raise DataError(f"{folder!r} lacks {missing}: pre-split benchmarks need the train, valid and test files.")
    extra = {kind: root / f"{name}.{kind}" for kind in ("text", "item2index")}
    return paths | {kind: path for kind, path in extra.items() if path.is_file()}


def read_rows(path: Path) -> list[tuple[str, Row]]:
    """The (user token, row) pairs of one ``.inter`` file, in file order."""
    frame = _strip_types(_read_delimited(path, "\t"), path)
    missing = [column for column in INTER_COLUMNS if column not in frame.columns]
    if missing:
        raise DataError(
            f"{str(path)!r} lacks the column(s) {missing} (found {list(frame.columns)}); a pre-split file's "
            "header is 'user_id:token<TAB>item_id_list:token_seq<TAB>item_id:token'."
        )
    users, targets = (frame[column].str.strip().tolist() for column in ("user_id", "item_id"))  # '7 ' is item '7'
    unnamed = [line for line, user in enumerate(users, start=2) if not user]
    if unnamed:
        raise DataError(f"{str(path)!r} has rows without a user_id (lines {unnamed[:5]}): every row names its user.")
    spaced = [line for line, target in enumerate(targets, start=2) if len(target.split()) != 1]
    if spaced:
        raise DataError(
            f"{str(path)!r} has rows whose item_id is not one token (lines {spaced[:5]}): the target is a single "
            "item; its history goes in item_id_list."
        )
    histories = [tuple(cell.split()) for cell in frame["item_id_list"].tolist()]
    commas = [line for line, history in enumerate(histories, start=2) if any("," in token for token in history)]
    if commas:
        raise DataError(
            f"{str(path)!r} has item_id_list cells with commas (lines {commas[:5]}): a token_seq separates its "
            "item ids by spaces. Replace the commas with spaces."
        )
    empty = [line for line, history in enumerate(histories, start=2) if not history]
    if empty:
        raise DataError(
            f"{str(path)!r} has rows with an empty item_id_list (lines {empty[:5]}): every published row needs "
            "a history. Remove those rows from the file."
        )
    return [(user, Row(history, target)) for user, history, target in zip(users, histories, targets)]


def token_order(tokens: set[str]) -> list[str]:
    """Tokens in a deterministic order: by integer value when all are integers, else as strings."""
    try:
        return sorted(tokens, key=lambda token: (int(token), token))
    except ValueError:
        return sorted(tokens)


# ------------------------------------------------------------------------------------------------ users
def group_by_user(rows: dict[str, list[tuple[str, Row]]]) -> dict[str, dict[str, list[Row]]]:
    """{user: {split: rows in file order}}, after checking every user has one valid and one test row."""
    grouped: dict[str, dict[str, list[Row]]] = defaultdict(lambda: {name: [] for name in SPLIT_NAMES})
    for split, pairs in rows.items():
        for user, row in pairs:
            grouped[user][split].append(row)

    def having(condition) -> list[str]:
        return [u for u, splits in grouped.items() if condition(splits["train"], splits["valid"], splits["test"])]

    problems = {
        "are in the test file but not in the valid file": having(lambda train, valid, test: test and not valid),
        "are in the valid file but not in the test file": having(lambda train, valid, test: valid and not test),
        "have train rows but neither a valid nor a test row": having(lambda train, valid, test: not (valid or test)),
        "have more than one valid row": having(lambda train, valid, test: len(valid) > 1),
        "have more than one test row": having(lambda train, valid, test: len(test) > 1),
    }
    for what, users in problems.items():
        if users:
            raise DataError(
                f"{len(users)} users {what} (e.g. {token_order(set(users))[:5]}): pre-split files hold one "
                "valid and one test row per user. Use the files as published, or data_format='recbole' on "
                "unsplit interactions."
            )
    return dict(grouped)


def continues(before: Row, after: Row, cut: int) -> bool:
    """Whether ``after``'s history is ``before``'s history + target: on their overlapping suffix, since the
    files cut histories to their most recent ``cut`` items."""
    expected = (*before.history, before.target)
    overlap = min(len(expected), len(after.history))
    lengths_agree = len(expected) == len(after.history) or overlap >= cut
    return lengths_agree and after.history[-overlap:] == expected[-overlap:]


def train_chain(rows: list[Row], cut: int) -> tuple[list[Row], str | None]:
    """A user's train rows in time order: the shortest history first, then each row followed by the one whose
    history is its history + target (cut to ``cut`` items). Rows that do not chain keep file order, last."""
    if not rows:
        return [], None
    waiting: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        waiting[row.history].append(index)
    first = min(range(len(rows)), key=lambda index: len(rows[index].history))
    order = [first]
    waiting[rows[first].history].remove(first)
    while len(order) < len(rows):
        last = rows[order[-1]]
        following = waiting.get((*last.history, last.target)[-cut:])
        if not following:
            rest = sorted(set(range(len(rows))) - set(order))
            problem = f"no train row continues the one with target {last.target} ({len(rest)} rows left unchained)"
            return [rows[index] for index in order + rest], problem
        order.append(following.pop(0))
    return [rows[index] for index in order], None


def check_user(splits: dict[str, list[Row]], cut: int) -> tuple[list[Row], str | None]:
    """The user's train rows in time order and the first disagreement between the user's three files."""
    train, problem = train_chain(splits["train"], cut)
    valid, test = splits["valid"][0], splits["test"][0]
    if not train and len(valid.history) > 1:  # its history's later items were training targets
        problem = f"no train rows, though the valid history holds {len(valid.history)} items"
    if problem is None and train and not continues(train[-1], valid, cut):
        problem = "the valid history is not the last train row's history + target"
    if problem is None and not continues(valid, test, cut):
        problem = "the test history does not end with the valid history + valid target"
    return train, problem


def sequence_length(train: list[Row], valid: Row) -> int:
    """Items in the user's whole sequence: the oldest row's history, one target per row after it."""
    oldest = train[0] if train else valid
    return len(oldest.history) + len(train) + 2


def check_users(grouped: dict[str, dict[str, list[Row]]], cut: int) -> tuple[dict[str, list[Row]], dict]:
    """Every user's train rows in time order, and the counts of what the check found; a counted warning
    names up to 5 users whose files disagree (the rows are kept as published all the same)."""
    ordered, problems, lengths, cut_items = {}, {}, [], 0
    for user, splits in grouped.items():
        ordered[user], problem = check_user(splits, cut)
        if problem:
            problems[user] = problem
        length = sequence_length(ordered[user], splits["valid"][0])
        lengths.append(length)
        cut_items += max(0, length - len(splits["test"][0].history) - 1)  # older than the test history
    if problems:
        named = "; ".join(f"user {u}: {problems[u]}" for u in token_order(set(problems))[:5])
        warnings.warn(
            f"{len(problems)} of {len(grouped)} users' train/valid/test rows disagree ({named}). The rows are "
            "kept as published; check the files if this is more than a few users.",
            DataWarning,
            stacklevel=3,
        )
    found = {
        "interactions": int(sum(lengths)),
        "users_disagreeing": len(problems),
        "items_older_than_test_history": cut_items,
    }
    return ordered, found


# ------------------------------------------------------------------------------------------------ texts
def _read_headerless(path: Path, names: list[str]) -> pd.DataFrame:
    import datasets

    features = datasets.Features({name: datasets.Value("string") for name in names})
    options = dict(header=None, column_names=names, features=features, quoting=3, keep_default_na=False)
    frame = _load_table(path, "csv", delimiter="\t", encoding="utf-8-sig", **options)
    return frame.apply(lambda column: column.str.strip())


def item2index_tokens(path: Path) -> dict[str, str]:
    """NAME.item2index as {ASIN: item token}, each ASIN and each token listed once."""
    index = _read_headerless(path, ["asin", "token"])
    if (one_field := index["token"] == "").any():
        line = int(np.flatnonzero(one_field.to_numpy())[0]) + 1
        raise DataError(
            f"line {line} of {str(path)!r} has one field ({index['asin'][line - 1]!r}): item2index lines are "
            "'ASIN<TAB>item index' (tab-separated). Use the file as published."
        )
    for column, what in (("asin", "ASIN"), ("token", "item index")):
        _refuse_repeats(
            index[column], path, what, "; item2index maps each ASIN to one item index. Use the file as published."
        )
    numbers = index["token"].str.fullmatch(r"\d+")
    if numbers.any() and not numbers.all():  # e.g. a header line 'asin<TAB>index' above integer indices
        raise DataError(
            f"{str(path)!r} mixes integer item indices with {index['token'][~numbers].tolist()[:3]}; item2index has "
            "no header line: remove it."
        )
    return dict(zip(index["asin"], index["token"]))


def token_texts(paths: dict[str, Path], asin_to_token: dict[str, str] | None) -> tuple[dict[str, str], dict, list[str]]:
    """{item token: text}: NAME.text's texts by ASIN, joined through NAME.item2index (``asin_to_token``);
    without item2index the text file's ids are taken to be the tokens themselves. Also the counts and the text
    file's ids."""
    if "text" not in paths:
        return {}, {"texts_without_item": 0}, []
    frame = _strip_types(_read_delimited(paths["text"], "\t"), paths["text"])
    ids = _require(frame, "item_id", paths["text"], None).str.strip()
    _refuse_repeats(ids, paths["text"], "item(s)", "; one text per item. Use the file as published.")
    ids = ids.tolist()
    texts = dict(zip(ids, (text.strip() for text in _require(frame, "text", paths["text"], None))))
    if asin_to_token is None:
        return texts, {"texts_without_item": 0}, ids
    joined = {asin_to_token[asin]: text for asin, text in texts.items() if asin in asin_to_token}
    return joined, {"texts_without_item": len(texts) - len(joined)}, ids


def check_texts_reach_items(paths: dict[str, Path], text_ids: list[str], asin_to_token: dict[str, str] | None) -> None:
    """NAME.text ids that item2index does not list give their texts to no item: none joining is an error (the
    text file of another dataset, or one keyed otherwise), some a counted warning naming a few."""
    if asin_to_token is None:
        return
    unjoined = [asin for asin in text_ids if asin not in asin_to_token]
    if text_ids and len(unjoined) == len(text_ids):
        raise DataError(
            f"none of the {len(text_ids)} ids of {str(paths['text'])!r} (e.g. {text_ids[0]!r}) is an ASIN of "
            f"{str(paths['item2index'])!r}, so no item gets a text: the two files must come from the same benchmark, "
            "the text file keyed by the ASINs item2index lists."
        )
    if unjoined:
        warnings.warn(
            f"{len(unjoined)} of the {len(text_ids)} texts of {str(paths['text'])!r} name ids that "
            f"{str(paths['item2index'])!r} does not list (e.g. {unjoined[:3]}), so they reach no item; check that "
            "both files come from the same benchmark.",
            DataWarning,
            stacklevel=3,
        )


def check_text_join(
    paths: dict[str, Path], texts: dict[str, str], tokens: set[str], asin_to_token, text_ids: list[str]
) -> None:
    """Texts that cannot reach the items are an error (no item2index beside ASIN-keyed texts); items of the rows
    that item2index lacks (indices numbered from another base) are counted in a warning: they get no text."""
    if texts and asin_to_token is None and tokens.isdisjoint(texts):
        raise DataError(
            f"{str(paths['text'])!r} names items by ids (e.g. {next(iter(texts))!r}) that are not the item tokens "
            f"of the .inter files (e.g. {min(tokens)!r}), and the folder has no NAME.item2index to join them: put "
            "the benchmark's item2index file beside it."
        )
    check_texts_reach_items(paths, text_ids, asin_to_token)
    unlisted = token_order(tokens - set((asin_to_token or {}).values())) if asin_to_token else []
    if unlisted:
        warnings.warn(
            f"{len(unlisted)} items of the .inter files are not in {str(paths['item2index'])!r} (e.g. "
            f"{unlisted[:3]}) and get no text. Check that item2index numbers the items as the .inter files do.",
            DataWarning,
            stacklevel=3,
        )


def first_sentence(text: str) -> str:
    """A short human name: the text up to its first '. ' (UniSRec texts are title. category. brand)."""
    return text.split(". ", 1)[0].strip()


# ----------------------------------------------------------------------------------------------- tensors
def flat_rows(pairs: list[tuple[int, Row]], codes: dict[str, int]) -> PublishedRows:
    """(user index, row) pairs in the flat layout, item tokens replaced by their indices 1..N."""
    items, starts, positions = [], [], []
    for _, row in pairs:
        starts.append(len(items))
        items.extend(codes[token] for token in row.history)
        positions.append(len(items))
        items.append(codes[row.target])
    users = [user for user, _ in pairs]
    return PublishedRows(*(np.asarray(values, dtype=np.int64) for values in (users, items, starts, positions)))


def read_benchmark_files(config: DataConfig) -> PublishedSplit:
    """Read, check and index a folder of pre-split benchmark files; the rows stay exactly as published."""
    paths = benchmark_files(config.dataset)
    rows = {split: read_rows(paths[split]) for split in SPLIT_NAMES}
    grouped = group_by_user(rows)
    cut = max((len(row.history) for pairs in rows.values() for _, row in pairs), default=1)  # the files' cut
    ordered, found = check_users(grouped, cut)
    asin_to_token = item2index_tokens(paths["item2index"]) if "item2index" in paths else None
    texts, text_found, text_ids = token_texts(paths, asin_to_token)
    tokens = {token for pairs in rows.values() for _, row in pairs for token in (*row.history, row.target)}
    check_text_join(paths, texts, tokens, asin_to_token, text_ids)
    item_ids = token_order(tokens | set((asin_to_token or {}).values()))  # the whole catalogue
    codes = {token: index + 1 for index, token in enumerate(item_ids)}  # 0 is padding
    user_ids = token_order(set(grouped))
    published = {
        "train": flat_rows([(u, row) for u, user in enumerate(user_ids) for row in ordered[user]], codes),
        **{
            split: flat_rows([(u, grouped[user][split][0]) for u, user in enumerate(user_ids)], codes)
            for split in ("valid", "test")
        },
    }
    if not len(published["train"].users):
        raise DataError(f"{str(paths['train'])!r} has no rows: there is nothing to train on.")
    item_texts = [texts.get(token, "") for token in item_ids]
    stats = {
        "users": len(user_ids),
        "items": len(item_ids),
        "interactions": found["interactions"],
        **{f"{split}_rows": len(published[split].users) for split in SPLIT_NAMES},
        "items_with_text": sum(bool(text) for text in item_texts),
        "items_without_text": sum(not text for text in item_texts),
        "users_not_evaluated": 0,
        "history_cut": cut,
        **{key: value for key, value in found.items() if key != "interactions"},
        **text_found,
    }
    titles = [first_sentence(text) or text for text in item_texts]
    return PublishedSplit(published, item_ids, user_ids, item_texts, titles, stats, list(paths.values()))
