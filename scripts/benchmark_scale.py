"""One catalogue size of the `scale` suite of scripts/benchmark.py, measured in this process.

    python scripts/benchmark_scale.py --child ITEMS [--users U] [--mean_length L] [--threads T]

The scale suite (hybrid/studies/scale.py) starts this command once per size, so each size's peak RSS
(measured by the OS) belongs to that size alone: data, an ID model of hidden size 64, one whole training
epoch with the chunked full-softmax loss, and the evaluation of every test user against the whole catalogue.
The measurements are printed as one line of JSON.
"""

from __future__ import annotations

import argparse
import json

from hybrid_rearec.hybrid.studies.scale import measure_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", type=int, help="measure one catalogue size in this process, print JSON")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--mean_length", type=float, default=6.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.child is None:
        raise SystemExit("run the scale suite with: python scripts/benchmark.py --suite scale")
    print(json.dumps(measure_size(args.child, args.users, args.mean_length, args.threads)))


if __name__ == "__main__":
    main()
