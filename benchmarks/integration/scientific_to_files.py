"""Amazon Scientific's pre-split files as ordinary files: interactions and item texts, as CSV, TSV, Parquet."""

import sys
from pathlib import Path

import pandas as pd

source, out = Path(sys.argv[1]), Path(sys.argv[2])
read = lambda name, **kw: pd.read_csv(source / name, sep="\t", dtype=str, keep_default_na=False, **kw)  # noqa: E731
asin = read("Scientific.item2index", header=None, names=["asin", "index"]).set_index("index")["asin"]
test = read("Scientific.test.inter")
test.columns = ["user", "history", "last"]
sequences = (test["history"] + " " + test["last"]).str.split()  # a user's whole sequence, oldest first
rows = [(u, asin[i], t) for u, items in zip(test["user"], sequences) for t, i in enumerate(items)]
interactions = pd.DataFrame(rows, columns=["reviewer", "product", "step"])
items = read("Scientific.text").rename(columns={"item_id:token": "product", "text:token_seq": "description"})
out.mkdir(parents=True, exist_ok=True)
interactions.to_csv(out / "interactions.csv", index=False)  # the descriptions hold commas: quoted fields
items.to_csv(out / "products.csv", index=False)
interactions.to_csv(out / "interactions.tsv", index=False, sep="\t")
items.to_csv(out / "products.tsv", index=False, sep="\t")
interactions.to_parquet(out / "interactions.parquet")
items.to_parquet(out / "products.parquet")
print(f"{len(interactions)} interactions of {interactions['reviewer'].nunique()} users, {len(items)} products")
