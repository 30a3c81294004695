#!/usr/bin/env bash
# Stage 1 of benchmarks/quality/scientific.md: one seed (2020) of every validation candidate, in the order of
# the rules there, each rule's winner written into the presets by scientific_choose.py before the next rule.
# Resumable: finished candidates are skipped, an interrupted one resumes from its checkpoint.
# Usage (from the repository root, in the background): bash benchmarks/quality/scientific_grid.sh STAGE
#   STAGE: id, rearec (rule 2), text (rules 3 and 4), hybrid (rule 5), lora (rule 6), bert4rec, and cold
#   (issue 29's cold split, after rules 2, 4 and 5)
set -euo pipefail
{  # read whole before it runs: editing this file cannot derail a running lane
stage=${1:-id}
run() {  # run NAME PRESET [overrides...]
  local name=$1 preset=$2
  shift 2
  python scripts/seeds.py --config "configs/scientific_$preset.json" --seeds 2020 --output "runs/scientific/$name" \
    -- --num_threads 1 "$@" > /dev/null  # the summary holds test figures: stage 1 reads validation only
}
choose() { python benchmarks/quality/scientific_choose.py "$@"; }
reuse() {  # reuse NAME RULE: NAME is the run that won RULE (same settings, not trained twice)
  local winner
  winner=$(python -c "import json; print(json.load(open('runs/scientific/choices.json'))['$2'])")
  ln -sfn "$winner" "runs/scientific/$1"
}
reasoning() {  # reasoning PREFIX RULE: the ERL and PRL candidates of rule 2 on one backbone, then their choice
  local prefix=$1 rule=$2 pre=${1:+$1-}
  run "${pre}rearec-erl-kl0.05" "${prefix:+${prefix}_}rearec_erl" --erl_kl_weight 0.05
  run "${pre}rearec-erl-kl0.1" "${prefix:+${prefix}_}rearec_erl" --erl_kl_weight 0.1
  choose "$rule-erl"
  run "${pre}rearec-prl-cl0.1" "${prefix:+${prefix}_}rearec_prl" --prl_contrastive_weight 0.1
  run "${pre}rearec-prl-cl0" "${prefix:+${prefix}_}rearec_prl" --prl_contrastive_weight 0
  choose "$rule-prl"
}
case $stage in
  id)  # rule 1: dropout of the ID backbone
    run sasrec-drop0.5 sasrec --hidden_dropout 0.5 --attention_dropout 0.5
    run sasrec-drop0.2 sasrec --hidden_dropout 0.2 --attention_dropout 0.2
    ;;
  bert4rec)  # rule 1 for BERT4Rec, on its own (slow to converge here: run after the stages the others wait on)
    run bert4rec-drop0.5 bert4rec --hidden_dropout 0.5 --attention_dropout 0.5
    run bert4rec-drop0.2 bert4rec --hidden_dropout 0.2 --attention_dropout 0.2
    choose 1-bert4rec
    ;;
  rearec)  # rule 2: ReaRec on the ID backbone (dropout 0.2 by rule 1)
    reasoning "" 2
    ;;
  text)  # rule 3: scoring of the frozen-text backbone, then its adaptor; rule 4: ReaRec on it
    run text-dot text_sasrec --score_similarity dot --temperature 1.0
    run text-cosine0.07 text_sasrec --score_similarity cosine --temperature 0.07
    choose 3-scoring
    reuse text-moe 3-scoring
    run text-linear text_sasrec --text_adaptor linear
    choose 3-adaptor
    reasoning text 4
    ;;
  hybrid)  # rule 5: fusion, then id_dropout, then ReaRec on the hybrid (after the text stage)
    run hybrid-sum hybrid_sasrec --fusion sum
    run hybrid-gate hybrid_sasrec --fusion gate
    choose 5-fusion
    reuse hybrid-iddrop0 5-fusion
    run hybrid-iddrop0.2 hybrid_sasrec --id_dropout 0.2
    choose 5-id_dropout
    reasoning hybrid 5
    ;;
  cold)  # issue 29: the cold split (10 % of items, split seeds 0-2), ID / text / hybrid with their better method;
    # each finished run kept in benchmarks/quality/cold_seeds (commit it), which cold_start_scientific.py reads
    [[ -f configs/scientific_cold_id.json ]] || choose cold  # written once; stage 1's runs may be gone since
    for split in 0 1 2; do
      for backbone in id text hybrid; do
        python scripts/seeds.py --config "configs/scientific_cold_$backbone.json" --seeds 2020 \
          --output "runs/scientific-cold/$backbone-split$split" --keep "benchmarks/quality/cold_seeds/$backbone-split$split" \
          -- --num_threads 1 --cold_seed "$split" > /dev/null
      done
    done
    ;;
  lora)  # rule 6: LoRA-MiniLM with the reasoning method that won rule 4 (after the text stage). One candidate,
    # nothing to choose between: the preset is written and stage 2 trains its seeds (no stage-1 run of hours).
    choose 6-lora
    ;;
  *) echo "unknown stage $stage (id, rearec, text, hybrid, lora, bert4rec, cold)"; exit 2 ;;
esac
exit
}
