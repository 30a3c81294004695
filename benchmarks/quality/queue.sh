#!/usr/bin/env bash
# Every run still owed by the quality records, as two resumable lanes (one thread each). From the repository
# root, one lane per core:
#   nohup setsid bash benchmarks/quality/queue.sh A > runs/queue-A.log 2>&1 &
#   nohup setsid bash benchmarks/quality/queue.sh B > runs/queue-B.log 2>&1 &
# Both lanes first share issue 28's stage 2 (scientific_stage2.py: each takes the next run neither kept nor
# claimed by the other, and keeps it in benchmarks/quality/scientific_seeds when it finishes; commit those).
# Stage 1 is done: its choices are in the presets and its figures in scientific.md. Then lane A runs the cold
# split (issue 29), lane B the one-pass comparison on MovieLens-100k (benchmarks/quality/one_pass_ml100k.md), each
# run kept as it finishes in benchmarks/quality/cold_seeds or one_pass_seeds (scripts/seeds.py --keep; commit them).
# Kept runs hold test figures: scientific.md reads them only once stage 2 is complete.
set -euo pipefail
{  # read whole before it runs: editing this file cannot derail a running lane
export OMP_NUM_THREADS=1
if [[ -z ${VIRTUAL_ENV:-} && -f .venv/bin/activate ]]; then source .venv/bin/activate; fi  # the project's venv
case ${1:-} in
  A)
    python benchmarks/quality/scientific_stage2.py  # set -e: a failed run stops the lane (not skipped)
    bash benchmarks/quality/scientific_grid.sh cold
    ;;
  B)
    python benchmarks/quality/scientific_stage2.py
    bash benchmarks/quality/one_pass_queue.sh
    ;;
  *) echo "usage: bash benchmarks/quality/queue.sh A|B"; exit 2 ;;
esac
exit
}
