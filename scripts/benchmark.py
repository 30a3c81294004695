"""Speed and memory, mostly on MovieLens-100k (scale: synthetic catalogues; one_pass: also Amazon Scientific);
writes each suite's report under benchmarks/ (the names are in hybrid/studies/suites.py).

    python scripts/benchmark.py                       # every suite
    python scripts/benchmark.py --suite foundation    # SASRec training/evaluation speed and peak memory
    python scripts/benchmark.py --suite reasoning     # evaluation cost of K = 0..5 reasoning steps
    python scripts/benchmark.py --suite prl           # PRL training step: warm-up, and each noisy view
    python scripts/benchmark.py --suite precision     # training step in fp32 and with bf16 autocast
    python scripts/benchmark.py --suite scale         # catalogues of 10^3..10^6 items (benchmark_scale.py)
    python scripts/benchmark.py --suite one_pass      # an epoch of the prefix and the one-pass layout, per preset
    python scripts/benchmark.py --suite lora_cache    # LoRA-MiniLM steps, frozen LM layers cached or rerun (slow)

Foundation:
Measured here, in this process: training instances per second over whole epochs (the same train_step the
training loop runs) and evaluation users per second over the 943 test users. Peak memory is the peak RSS
of a separate `scripts/train.py` process running whole epochs with evaluation, measured by the OS.

The suites live in hybrid/studies/ (hybrid/studies/suites.py lists them).
"""

from __future__ import annotations

import argparse

from hybrid_rearec.hybrid.studies.reports import BenchmarkConfig
from hybrid_rearec.hybrid.studies.suites import SUITES, run_suites


def main() -> None:
    defaults = BenchmarkConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="timed training epochs")
    parser.add_argument("--threads", type=int, default=defaults.threads, help="CPU threads (RecBole's figure used 2)")
    parser.add_argument(
        "--rss_epochs", type=int, default=defaults.rss_epochs, help="epochs of the separate peak-memory run"
    )
    parser.add_argument("--suite", default="all", choices=("all", *SUITES))
    parser.add_argument("--sizes", type=int, nargs="+", default=defaults.sizes, help="scale: catalogue sizes")
    parser.add_argument("--users", type=int, default=defaults.users, help="scale: synthetic users (all evaluated)")
    parser.add_argument("--mean_length", type=float, default=defaults.mean_length, help="scale: interactions per user")
    parser.add_argument("--repeats", type=int, default=defaults.repeats, help="timed repeats per reasoning depth")
    parser.add_argument("--output_dir", default=str(defaults.output_dir))
    args = vars(parser.parse_args())
    suite = args.pop("suite")
    try:
        config = BenchmarkConfig(**args)
    except ValueError as error:
        parser.error(str(error))
    run_suites(config, suite)


if __name__ == "__main__":
    main()
