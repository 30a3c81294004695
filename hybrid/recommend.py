"""Recommendations for new histories given as raw item ids or titles.

The item catalogue maps raw ids to the model's item indexes 1..N; a history holding an id the model never
saw is refused with the ids and the fix, never silently dropped or mapped to padding.

Shape legend: B histories, L history length, N items, D hidden size.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .errors import DataError
from .ranking import chunked_top_k, item_chunk_size


class UnknownItemError(DataError):
    """A request names an item id the model has no vector for."""


@dataclass
class Recommendation:
    """Top-k items of one history, best first."""

    item_ids: list[str]
    scores: list[float]
    titles: list[str]


# Said wherever a model and its catalogue disagree in size (items added to the catalogue alone, most often).
OUT_OF_STEP = (
    ": add items with model.add_items (it gives the model their vectors), not model.catalogue.add; load the "
    "model again to undo"
)


class ItemCatalogue:
    """Raw item ids, texts and titles of items 1..N, in the model's index order."""

    def __init__(
        self,
        item_ids: Sequence[str],
        item_texts: Sequence[str] | None = None,
        item_titles: Sequence[str] | None = None,
    ):
        """Items 1..N by their raw ids, with their texts (default: empty) and titles (default: the texts)."""
        for name, values in (("item_ids", item_ids), ("item_texts", item_texts), ("item_titles", item_titles)):
            if isinstance(values, (str, bytes)):  # a string is a sequence of characters, not of items
                raise TypeError(f"{name} must be a list, one entry per item, got the string {values[:40]!r}")
        self.item_ids = [str(i) for i in item_ids]
        self.item_texts = list(item_texts) if item_texts is not None else [""] * len(self.item_ids)
        self.item_titles = list(item_titles) if item_titles else list(self.item_texts)
        if not len(self.item_texts) == len(self.item_titles) == len(self.item_ids):
            raise ValueError(f"{len(self.item_texts)} texts, {len(self.item_titles)} titles, {len(self)} items")
        self.index = {item: i + 1 for i, item in enumerate(self.item_ids)}  # 0 is padding
        if len(self.index) != len(self.item_ids):
            raise ValueError("item ids must be unique")

    @classmethod
    def from_dataset(cls, dataset) -> ItemCatalogue:
        """The catalogue of a RecDataset (its items in index order), as training saves it with the model."""
        return cls(dataset.item_ids, dataset.item_texts, dataset.item_titles or None)

    def to_dict(self) -> dict[str, list[str]]:
        """The lists catalogue.json holds."""
        return {"item_ids": self.item_ids, "item_texts": self.item_texts, "item_titles": self.item_titles}

    def __len__(self) -> int:
        return len(self.item_ids)

    def add(
        self, texts: Sequence[str], item_ids: Sequence[str] | None = None, titles: Sequence[str] | None = None
    ) -> list[str]:
        """Append new items to the catalogue alone; ids default to 'new-1', 'new-2', ... (unused ones). Returns
        their ids. Everything is checked before anything changes. A model's items are added with
        ``model.add_items``, which calls this and gives the model their vectors."""
        texts, item_ids, titles = (new_item_list(v, name) for v, name in ((texts, "texts"), (item_ids, "item_ids"),
                                   (titles, "titles")))  # fmt: skip
        if any(not isinstance(text, str) for text in texts) or titles and any(not isinstance(t, str) for t in titles):
            raise DataError("new items' texts and titles must be strings, e.g. add_items(['Title (2025), Drama']).")
        if titles is not None and len(titles) != len(texts):
            raise DataError(f"one title per text, or none: got {len(titles)} titles for {len(texts)} texts.")
        if item_ids is None:
            item_ids, n = [], 0
            while len(item_ids) < len(texts):
                n += 1
                if f"new-{n}" not in self.index:
                    item_ids.append(f"new-{n}")
        item_ids = [str(i).strip() for i in item_ids]  # as the readers and ``resolve`` read ids
        if "" in item_ids:
            raise DataError("new item ids must not be empty (or spaces only); give each a name, or none at all.")
        taken = sorted({i for i in item_ids if i in self.index} | {i for i in item_ids if item_ids.count(i) > 1})
        if taken or len(item_ids) != len(texts):
            raise DataError(
                f"new item ids must be unique and not in the catalogue (already there or repeated: {taken[:5]}), "
                f"one per text ({len(item_ids)} ids for {len(texts)} texts)."
            )
        empty = [n for n, text in enumerate(texts) if not str(text).strip()]
        if empty:
            raise DataError(f"texts {empty[:5]} are empty: a new item is known by its text alone; give it one.")
        titles = list(titles) if titles is not None else [str(t) for t in texts]
        for item, text, title in zip(item_ids, texts, titles):
            self.item_ids.append(item)
            self.item_texts.append(str(text))
            self.item_titles.append(str(title))
            self.index[item] = len(self.item_ids)
        return item_ids

    def shadowed_names(self, item_ids: Sequence[str]) -> list[str]:
        """Titles or texts (matched as ``resolve`` matches them) that one of ``item_ids`` shares with another
        item, old or new: a history can no longer name either of them."""
        new = set(item_ids)
        return sorted(name for name, items in self.names().items() if len(items) > 1 and new.intersection(items))

    def ids_naming_others(self, item_ids: Sequence[str]) -> list[str]:
        """Those of ``item_ids`` that are also another item's title or text: ``resolve`` takes an id first, so
        a history giving that name exactly now means the new item."""
        names = self.names()
        return sorted(item for item in item_ids if set(names.get(item.casefold(), [])) - {item})

    def names(self) -> dict[str, list[str]]:
        """Each title and text, case-folded, -> the ids of the items that carry it."""
        holders: dict[str, list[str]] = {}
        for item_id, title, text in zip(self.item_ids, self.item_titles, self.item_texts):
            for name in {title.casefold(), text.casefold()} - {""}:
                holders.setdefault(name, []).append(item_id)
        return holders

    def truncate(self, size: int) -> None:
        """Forget the items after the first ``size`` (undo an ``add`` whose encoder step failed)."""
        for item in self.item_ids[size:]:
            del self.index[item]
        del self.item_ids[size:], self.item_texts[size:], self.item_titles[size:]

    def resolve(self, item: str) -> str:
        """An item given by id, or else by its exact title or text (case-insensitive), -> its id. Spaces around
        it are dropped, as the readers drop them from the ids they read."""
        item = str(item).strip()
        if item in self.index:
            return item
        if not hasattr(self, "_by_name"):
            self._by_name = self.names()
        matches = self._by_name.get(item.casefold(), [])
        if len(matches) > 1:
            raise DataError(f"{item!r} names {len(matches)} items ({matches[:5]}); give the item id instead.")
        return matches[0] if matches else item  # an unknown name stays as is and is reported as unknown

    def indexes(self, histories: Sequence[Sequence[str]]) -> list[list[int]]:
        """Raw ids (or titles) -> item indexes, with one error listing every unknown item and empty history."""
        empty = [n for n, history in enumerate(histories) if len(history) == 0]
        if empty:
            raise DataError(
                f"histories {empty[:5]} are empty; give each at least one item id it interacted with "
                "(a user with no history needs a popularity or cold-start fallback outside the model)."
            )
        self.__dict__.pop("_by_name", None)  # the catalogue may have grown since the last request
        histories = [[self.resolve(item) for item in history] for history in histories]
        unknown = sorted({item for history in histories for item in history if item not in self.index})
        if unknown:
            shown = ", ".join(repr(item) for item in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise UnknownItemError(
                f"{len(unknown)} item(s) unknown to this model: {shown}. Use ids of the training data "
                f"({len(self)} items, e.g. {self.item_ids[0]!r}) or their titles (any case), add new items by text "
                "(model.add_items), or drop the unknown ones from the history."
            )
        return [[self.index[item] for item in history] for history in histories]


def pad_histories(indexes: list[list[int]], max_history: int) -> torch.Tensor:
    """Item indexes -> left-padded [B, L] keeping each history's last ``max_history`` items."""
    width = min(max_history, max(len(h) for h in indexes))
    batch = torch.zeros(len(indexes), width, dtype=torch.long)  # [B, L]
    for row, history in enumerate(indexes):
        kept = history[-width:]
        batch[row, width - len(kept) :] = torch.tensor(kept, dtype=torch.long)
    return batch


def item_list(value: object, what: str) -> list[str]:
    """A history (item ids as strings or integers, or titles) -> its items as strings."""
    value = value.tolist() if hasattr(value, "tolist") else value  # a numpy array or pandas series: its items
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        if all(isinstance(i, (str, numbers.Integral)) and not isinstance(i, bool) for i in value):
            return [str(item) for item in value]
    shown = repr(value if not isinstance(value, Sequence) or isinstance(value, str) else list(value)[:5])
    raise DataError(f"{what} must be a list of item ids or titles (strings or integers), oldest first; got {shown}")


def check_histories(histories: object) -> list[list[str]]:
    """``recommend``'s histories argument -> lists of raw item ids; a flat history, an empty list or anything
    else is refused with the call that works (a flat list of strings would otherwise read as histories of
    characters)."""
    if hasattr(histories, "tolist") and not isinstance(histories, (str, bytes)):  # numpy, pandas: plain lists
        histories = histories.tolist()
    if isinstance(histories, (str, bytes)) or not isinstance(histories, Sequence):
        raise DataError(
            f"recommend takes a list of histories, each a list of item ids, e.g. recommend([['m1', 'm2']]); got a "
            f"{type(histories).__name__}."
        )
    if len(histories) == 0:
        raise DataError("no histories given: pass one list of item ids per user, e.g. recommend([['m1', 'm2']]).")
    if all(isinstance(item, (str, numbers.Integral)) for item in histories):
        flat = item_list(histories, "a history")
        raise DataError(
            f"recommend takes a list of histories, but got one flat history {flat[:5]!r}; wrap it in a list: "
            f"recommend([{flat[:5]!r}])."
        )
    return [item_list(history, f"history {n}") for n, history in enumerate(histories)]


def new_item_list(values: object, name: str) -> list | None:
    """``add_items``'s texts/ids/titles as a list (None stays None); one string is refused, not split up."""
    if values is None:
        return None
    if isinstance(values, str):
        raise DataError(f"{name} must be a list, one per new item; got one string {values[:40]!r}: wrap it in a list.")
    return values.tolist() if hasattr(values, "tolist") else list(values)  # numpy arrays, pandas series too


def check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k must be a whole number >= 1 (the items to return per history), got {k!r}")
    return int(k)


@torch.no_grad()
def recommend(
    model,
    catalogue: ItemCatalogue,
    histories: Sequence[Sequence[str]],
    k: int = 10,
    exclude_history: bool = False,
) -> list[Recommendation]:
    """Top-``k`` items (at most the whole catalogue) for each history of raw item ids, oldest first. With
    ``exclude_history`` a history's own items are never returned, so a list may hold fewer than ``k``."""
    if len(catalogue) != model.num_items:
        raise ValueError(f"the catalogue has {len(catalogue)} items but the model {model.num_items}{OUT_OF_STEP}")
    histories, k = check_histories(histories), min(check_k(k), len(catalogue))  # a small catalogue: all items
    if isinstance(exclude_history, (np.bool_, np.ndarray)) and np.ndim(exclude_history) == 0:  # numpy's True
        exclude_history = bool(exclude_history) if np.asarray(exclude_history).dtype == bool else exclude_history
    if not isinstance(exclude_history, bool):
        raise ValueError(f"exclude_history must be True or False, got {exclude_history!r}")
    indexes = catalogue.indexes(histories)
    device = next(model.parameters()).device
    history = pad_histories(indexes, model.backbone.max_history).to(device)  # [B, L], where the model is
    was_training = model.training
    model.eval()
    try:
        users = model.user_vectors(history)  # [B, D]
        table = model.served_table()  # [N + 1, D], encoded once for request after request
    finally:
        model.train(was_training)
    exclude = None
    if exclude_history:
        rows = [row for row, items in enumerate(indexes) for _ in items]
        past = [item for items in indexes for item in items]
        exclude = torch.tensor(rows, device=device), torch.tensor(past, device=device)
    # Chunked over the items with a running top-k: memory stays bounded for any catalogue size.
    top_scores, top_items = chunked_top_k(users, table, k, item_chunk_size(len(indexes)), exclude)  # [B, k]
    answers = []
    for row, (values, items) in enumerate(zip(top_scores.tolist(), top_items.tolist())):
        # When k reaches past the items left, the top-k holds masked ones (score -inf): drop them.
        excluded = set(indexes[row]) if exclude_history else set()
        kept = [(item, value) for item, value in zip(items, values) if item not in excluded]
        answers.append(
            Recommendation(
                item_ids=[catalogue.item_ids[i - 1] for i, _ in kept],
                scores=[value for _, value in kept],
                titles=[catalogue.item_titles[i - 1] for i, _ in kept],
            )
        )
    return answers


# ------------------------------------------------------------------ JSON-lines requests (scripts/recommend.py)
RECOMMEND_KEYS, ADD_KEYS = ("history", "user", "k", "exclude_history"), ("add_items",)
NEW_ITEM_KEYS = ("text", "id", "title")
EXAMPLE = '{"history": ["50", "172"], "k": 10} or {"add_items": [{"text": "Title (2025), Drama"}]}'


class RequestError(DataError):
    """A request line that does not fit the request schema."""


def shown(value: object) -> str:
    """A JSON value as the user wrote it, cut short."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_line(line: bytes | str) -> dict:
    """One input line -> the request object (strict JSON: no NaN or Infinity)."""

    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")

    try:
        text = line.decode("utf-8") if isinstance(line, bytes) else line
    except UnicodeDecodeError:
        raise RequestError("not UTF-8 text") from None
    text = text.removeprefix("\ufeff")  # the byte-order mark some editors write before a file's first line
    if not text.strip():
        raise RequestError(f"the line is empty; write one request per line, e.g. {EXAMPLE}")
    try:
        request = json.loads(text, parse_constant=refuse)
    except RecursionError:
        raise RequestError("nested too deeply to be a request") from None
    except ValueError as error:  # JSONDecodeError, and numbers too long to read
        raise RequestError(f"not JSON ({error}); write one request per line, e.g. {EXAMPLE}") from None
    if not isinstance(request, dict):
        raise RequestError(f"a request must be a JSON object, e.g. {EXAMPLE}; got {shown(request)}")
    return request


def check_keys(request: dict) -> None:
    kind = ADD_KEYS if "add_items" in request else RECOMMEND_KEYS
    unknown = [key for key in request if key not in kind]
    if unknown:
        allowed = ", ".join(f'"{key}"' for key in RECOMMEND_KEYS)
        raise RequestError(
            f"unknown key {unknown[0]!r}: a recommend request takes {allowed}; an add request takes "
            '"add_items" alone (one request per line)'
        )


def new_items(value: object) -> tuple[list[str], list[str] | None, list[str]]:
    """``add_items``'s value -> texts, ids (None: numbered by the catalogue) and titles."""
    fix = 'a list of {"text": ..., "id": ... (optional), "title": ... (optional)}'
    if not isinstance(value, list) or not value or not all(isinstance(item, dict) for item in value):
        raise RequestError(f'"add_items" must be {fix}; got {shown(value)}')
    for item in value:
        wrong = [key for key in item if key not in NEW_ITEM_KEYS]
        text, title = item.get("text"), item.get("title", "")
        if wrong or not isinstance(text, str) or not isinstance(title, str):
            raise RequestError(f'"add_items" must be {fix} (texts and titles strings); got {shown(item)}')
    given = [item["id"] for item in value if "id" in item]
    typed = all(isinstance(i, (str, int)) and not isinstance(i, bool) for i in given)
    if given and (len(given) < len(value) or not typed):
        raise RequestError('give every new item an "id" (a string) or none of them (numbered new-1, new-2, ...)')
    ids = [str(i) for i in given] or None
    return [item["text"] for item in value], ids, [item.get("title", item["text"]) for item in value]


def request_history(request: dict, users: Callable[[str], list[str]] | None) -> list[str]:
    """The history a recommend request gives, or that of the user it names (``users``: a run's data)."""
    if "user" in request:
        if "history" in request:
            raise RequestError('give "history" or "user", not both')
        if users is None:
            raise RequestError(
                '"user" needs the data of the run that trained the model: serve the run folder (runs/NAME) '
                'instead of a saved model or Hub repo, or give the user\'s "history"'
            )
        return users(str(request["user"]))
    if "history" not in request:
        raise RequestError(f'a recommend request needs "history" (or, serving a run folder, "user"), e.g. {EXAMPLE}')
    return item_list(request["history"], '"history"')


def serve_request(model, request: dict, default_k: int, users: Callable[[str], list[str]] | None = None) -> dict:
    """A checked request -> its answer: recommendations, or the ids of the added items. ``users``: a user id
    -> that user's history (serving a run folder), for requests that name a user."""
    check_keys(request)
    if "add_items" in request:
        return {"added": model.add_items(*new_items(request["add_items"]))}
    history = request_history(request, users)
    if not history:
        raise RequestError('"history" is empty: give at least one item id or title the user interacted with')
    k, exclude = request.get("k", default_k), request.get("exclude_history", False)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise RequestError(f'"k" must be a JSON integer >= 1 (or left out: {default_k}); got {shown(k)}')
    if not isinstance(exclude, bool):
        raise RequestError(f'"exclude_history" must be true or false (or left out: false); got {shown(exclude)}')
    top = model.recommend([history], k=k, exclude_history=exclude)[0]
    rows = zip(top.item_ids, top.titles, top.scores)
    return {"recommendations": [{"item_id": i, "title": t, "score": s} for i, t, s in rows]}


def answer_lines(
    model, lines: Iterable[bytes | str], default_k: int = 10, users: Callable[[str], list[str]] | None = None
) -> Iterator[str]:
    """One strict JSON answer per input line, in order: the result, or {"error": "line N ..."}. A line never
    stops the ones after it. ``users``: see :func:`serve_request`."""
    for number, line in enumerate(lines, 1):
        try:
            answer = serve_request(model, parse_line(line), default_k, users)
        except ValueError as error:  # ours name the problem and the fix (DataError, ConfigError, ...)
            answer = {"error": f"line {number}: {error}"}
        except Exception as error:  # a fault of ours must not end the service for every later line
            answer = {"error": f"line {number} could not be answered ({type(error).__name__}: {error})"}
        try:
            yield json.dumps(answer, ensure_ascii=False, allow_nan=False)
        except ValueError:  # NaN or infinite scores: a damaged model, not the request
            yield json.dumps({"error": f"line {number}: the model scored it NaN or infinite; check the model."})
