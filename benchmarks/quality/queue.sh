#!/usr/bin/env bash
# Every seed run still owed by the quality records, as two resumable lanes (one thread each; finished runs are
# skipped, an interrupted one resumes from its checkpoint). From the repository root, one lane per core:
#   nohup setsid bash benchmarks/quality/queue.sh A > runs/queue-A.log 2>&1 &
#   nohup setsid bash benchmarks/quality/queue.sh B > runs/queue-B.log 2>&1 &
# Issue 28's owed runs come first. Lane A: the hybrid and LoRA choices, the hybrid seeds and three LoRA seeds,
# then the cold split. Lane B: the ID ReaRec and BERT4Rec candidates and seeds (done), the text seeds, the other
# two LoRA seeds, then the one-pass comparison on MovieLens-100k (benchmarks/quality/one_pass_ml100k.md). No run
# is in both lanes.
# Summaries hold test figures: scientific.md reads them only once stage 2 is complete.
set -euo pipefail
{  # read whole before it runs: editing this file cannot derail a running lane
export OMP_NUM_THREADS=1
if [[ -z ${VIRTUAL_ENV:-} && -f .venv/bin/activate ]]; then source .venv/bin/activate; fi  # the project's venv
grid() { bash benchmarks/quality/scientific_grid.sh "$1"; }
seeds() { python benchmarks/quality/scientific_stage2.py "$@"; }
case ${1:-} in
  A)
    grid text; grid hybrid; grid lora  # set -e: a failed stage stops the lane (not skipped)
    seeds hybrid_sasrec hybrid_rearec_erl hybrid_rearec_prl
    seeds lora_rearec --seeds 2020 2021 2022  # lane B takes 2023 and 2024 (hours each)
    grid cold
    ;;
  B)
    grid rearec; grid bert4rec
    seeds sasrec rearec_erl rearec_prl bert4rec
    seeds text_sasrec text_rearec_erl text_rearec_prl  # rules 3-4 are chosen (lane A ran them first)
    seeds lora_rearec --seeds 2024 2023  # lane A takes 2020-2022
    bash benchmarks/quality/one_pass_queue.sh
    ;;
  *) echo "usage: bash benchmarks/quality/queue.sh A|B"; exit 2 ;;
esac
exit
}
