#!/usr/bin/env bash
# Stage 1 of benchmarks/quality/scientific.md: one seed (2020) of every validation candidate, in the order of
# the rules there. Resumable: finished candidates are skipped, an interrupted one resumes from its checkpoint.
# Usage (from the repository root, in the background): bash benchmarks/quality/scientific_grid.sh STAGE
set -euo pipefail
stage=${1:-id}
run() {  # run NAME PRESET [overrides...]
  local name=$1 preset=$2
  shift 2
  python scripts/seeds.py --config "configs/scientific_$preset.json" --seeds 2020 --output "runs/scientific/$name" \
    -- --num_threads 1 "$@"
}
case $stage in
  id)  # rule 1: dropout of the ID backbone
    run sasrec-drop0.5 sasrec --hidden_dropout 0.5 --attention_dropout 0.5
    run sasrec-drop0.2 sasrec --hidden_dropout 0.2 --attention_dropout 0.2
    ;;
  bert4rec)  # rule 1 for BERT4Rec, on its own (slow to converge here: run after the stages the others wait on)
    run bert4rec-drop0.5 bert4rec --hidden_dropout 0.5 --attention_dropout 0.5
    run bert4rec-drop0.2 bert4rec --hidden_dropout 0.2 --attention_dropout 0.2
    ;;
  rearec)  # rule 2: ReaRec on the ID backbone (dropout 0.2 by rule 1)
    run rearec-erl-kl0.05 rearec_erl --erl_kl_weight 0.05
    run rearec-erl-kl0.1 rearec_erl --erl_kl_weight 0.1
    run rearec-prl-cl0.1 rearec_prl --prl_contrastive_weight 0.1
    run rearec-prl-cl0 rearec_prl --prl_contrastive_weight 0
    ;;
  text)  # rule 3: scoring of the frozen-text backbone (dropout 0.2 by rule 1), then its adaptor
    run text-dot text_sasrec --score_similarity dot --temperature 1.0
    run text-cosine0.07 text_sasrec --score_similarity cosine --temperature 0.07
    ;;
  *) echo "unknown stage $stage (id, bert4rec, rearec, text)"; exit 2 ;;
esac
