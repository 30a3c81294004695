"""Write a synthetic dataset: `python scripts/make_synthetic.py FOLDER [--users U] [--items N] [--seed S]`.

Zipf item popularity and a planted sequential signal (see hybrid/synthetic.py); train on it with
`scripts/train.py --dataset FOLDER/interactions.csv --data_format csv --item_file FOLDER/items.csv`.
`--items N` is the pool the interactions are drawn from: training keeps the items that occur in them, so a
large pool with few users gives a smaller catalogue (the script says how many occur).
"""

import argparse
import dataclasses
import sys

import pandas as pd
from hybrid_rearec.hybrid.synthetic import SyntheticConfig, write

FIELD_HELP = {  # SyntheticConfig's settings, as --help says them
    "users": "users to draw",
    "items": "item pool the interactions are drawn from",
    "mean_length": "mean interactions per user (at least 3)",
    "zipf_exponent": "item popularity falls as rank^-exponent",
    "signal": "probability that the next item is the previous item's planted successor",
    "categories": "item categories (in the item texts)",
    "seed": "random seed",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="folder to write interactions.csv and items.csv into")
    for field in dataclasses.fields(SyntheticConfig):
        help_text = f"{FIELD_HELP[field.name]} (default: %(default)s)"
        parser.add_argument(f"--{field.name}", type=type(field.default), default=field.default, help=help_text)
    args = vars(parser.parse_args())
    folder = args.pop("folder")
    try:
        config = SyntheticConfig(**args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    interactions, items = write(config, folder)
    used = pd.read_csv(interactions, usecols=["item_id"])["item_id"].nunique()
    print(f"wrote {interactions} and {items}: {used} of the {config.items} items occur in the interactions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
