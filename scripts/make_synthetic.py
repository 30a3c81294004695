"""Write a synthetic dataset: `python scripts/make_synthetic.py FOLDER [--users U] [--items N] [--seed S]`.

Zipf item popularity and a planted sequential signal (see hybrid/synthetic.py); train on it with
`scripts/train.py --dataset FOLDER/interactions.csv --data_format csv --item_file FOLDER/items.csv`.
"""

import argparse
import dataclasses

from hybrid_rearec.hybrid.synthetic import SyntheticConfig, write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder")
    for field in dataclasses.fields(SyntheticConfig):
        parser.add_argument(f"--{field.name}", type=type(field.default), default=field.default)
    args = vars(parser.parse_args())
    folder = args.pop("folder")
    interactions, items = write(SyntheticConfig(**args), folder)
    print(f"wrote {interactions} and {items}")


if __name__ == "__main__":
    main()
