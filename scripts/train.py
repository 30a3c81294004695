"""Train and evaluate a recommender: `accelerate launch scripts/train.py [--config PRESET] [--KEY VALUE ...]`.

With no arguments it trains SASRec on the embedded MovieLens-100k with RecBole's SASRec model settings
(batch 256, at most 200 epochs, patience 10). Every key below (hybrid/config.py) can be set in a preset
(JSON/YAML, flat or sectioned as data/model/train) or on the command line, which wins; with --config, the
preset's values are shown as the defaults. Examples: --config configs/demo.json --seed 7;
--config configs/sasrec_ml100k.json --output_dir runs/mine (then --resume latest continues it).
"""

import sys

from hybrid_rearec.hybrid.config import parse_configs
from hybrid_rearec.hybrid.errors import ConfigError, DataError
from hybrid_rearec.hybrid.train import train


def main() -> int:
    try:
        data, model, train_config = parse_configs(description=__doc__)
        train(data, model, train_config)
    except (ConfigError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except FloatingPointError as error:  # the loss diverged: its message names the settings to change
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "\ninterrupted: the same command with --resume latest and --output_dir RUN (the run directory printed "
            "when training started) continues from the last checkpoint.",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
