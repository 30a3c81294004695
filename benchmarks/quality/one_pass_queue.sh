#!/usr/bin/env bash
# The seed runs of benchmarks/quality/one_pass_ml100k.md, one after another (resumable: seeds.py skips finished
# seeds and resumes an interrupted one from its checkpoint). Each finished run's config.json and metrics.json
# are kept in benchmarks/quality/one_pass_seeds/LAYOUT-PRESET/seed-N (commit them: run folders do not outlive a
# machine; a kept seed is not trained again). From the repository root, in the background:
#   bash benchmarks/quality/one_pass_queue.sh
set -euo pipefail
{  # the whole script is read before it runs: editing this file cannot derail a running queue
seeds=(2020 2021 2022 2023 2024)
kept=benchmarks/quality/one_pass_seeds
for preset in sasrec rearec_erl rearec_prl; do
  name=${preset//_/-}
  python scripts/seeds.py --config "configs/${preset}_ml100k.json" --seeds "${seeds[@]}" \
    --output "runs/onepass-$name" --keep "$kept/onepass-$name" -- --num_threads 1 --loss_positions all
  python scripts/seeds.py --config "configs/${preset}_ml100k.json" --seeds "${seeds[@]}" \
    --output "runs/prefix-$name" --keep "$kept/prefix-$name" -- --num_threads 1
done
exit
}
