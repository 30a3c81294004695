"""Apply one stage-1 rule of benchmarks/quality/scientific.md: read each candidate's validation NDCG@10 (seed
2020), pick the winner (a tie within 0.0005 goes to the first-listed candidate) and write its settings into the
presets the rule governs. Only validation figures are read.

    python benchmarks/quality/scientific_choose.py RULE      # RULE: 2-erl 2-prl 3-scoring 3-adaptor ...
    python benchmarks/quality/scientific_choose.py RULE --dry_run
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RUNS = Path("runs/scientific")
TIE_MARGIN = 0.0005
TEXT_PRESETS = [f"configs/scientific_{p}.json" for p in ("text_sasrec", "text_rearec_erl", "text_rearec_prl")]
HYBRID_PRESETS = [f"configs/scientific_{p}.json" for p in ("hybrid_sasrec", "hybrid_rearec_erl", "hybrid_rearec_prl")]

# rule -> (presets it writes, [(candidate run, {model setting: value}), ...] in the declared order)
RULES: dict[str, tuple[list[str], list[tuple[str, dict]]]] = {
    "1-bert4rec": (
        ["configs/scientific_bert4rec.json"],
        [
            ("bert4rec-drop0.5", {"hidden_dropout": 0.5, "attention_dropout": 0.5}),
            ("bert4rec-drop0.2", {"hidden_dropout": 0.2, "attention_dropout": 0.2}),
        ],
    ),
    "2-erl": (
        ["configs/scientific_rearec_erl.json"],
        [("rearec-erl-kl0.05", {"erl_kl_weight": 0.05}), ("rearec-erl-kl0.1", {"erl_kl_weight": 0.1})],
    ),
    "2-prl": (
        ["configs/scientific_rearec_prl.json"],
        [("rearec-prl-cl0.1", {"prl_contrastive_weight": 0.1}), ("rearec-prl-cl0", {"prl_contrastive_weight": 0.0})],
    ),
    "3-scoring": (
        TEXT_PRESETS + HYBRID_PRESETS,
        [
            ("text-dot", {"score_similarity": "dot", "temperature": 1.0}),
            ("text-cosine0.07", {"score_similarity": "cosine", "temperature": 0.07}),
        ],
    ),
    "3-adaptor": (
        TEXT_PRESETS + HYBRID_PRESETS,
        [("text-moe", {"text_adaptor": "moe"}), ("text-linear", {"text_adaptor": "linear"})],
    ),
    "4-erl": (
        ["configs/scientific_text_rearec_erl.json"],
        [("text-rearec-erl-kl0.05", {"erl_kl_weight": 0.05}), ("text-rearec-erl-kl0.1", {"erl_kl_weight": 0.1})],
    ),
    "4-prl": (
        ["configs/scientific_text_rearec_prl.json"],
        [
            ("text-rearec-prl-cl0.1", {"prl_contrastive_weight": 0.1}),
            ("text-rearec-prl-cl0", {"prl_contrastive_weight": 0.0}),
        ],
    ),
    "5-fusion": (HYBRID_PRESETS, [("hybrid-sum", {"fusion": "sum"}), ("hybrid-gate", {"fusion": "gate"})]),
    "5-id_dropout": (
        HYBRID_PRESETS,
        [("hybrid-iddrop0", {"id_dropout": 0.0}), ("hybrid-iddrop0.2", {"id_dropout": 0.2})],
    ),
    "5-erl": (
        ["configs/scientific_hybrid_rearec_erl.json"],
        [("hybrid-rearec-erl-kl0.05", {"erl_kl_weight": 0.05}), ("hybrid-rearec-erl-kl0.1", {"erl_kl_weight": 0.1})],
    ),
    "5-prl": (
        ["configs/scientific_hybrid_rearec_prl.json"],
        [
            ("hybrid-rearec-prl-cl0.1", {"prl_contrastive_weight": 0.1}),
            ("hybrid-rearec-prl-cl0", {"prl_contrastive_weight": 0.0}),
        ],
    ),
}

# rule 6: the LoRA defaults of the record (as the MovieLens LoRA preset: MiniLM's top layer tuned on the cached
# output of the five below, 32 tokens per item, batches of 1024 rows at learning rate 0.002)
LORA_SETTINGS = {
    "item_encoder": "lm_lora",
    "lm_model": "all-MiniLM-L6-v2",
    "lm_pooling": "mean",
    "lm_max_length": 32,
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.05,
    "lora_layers": 1,
    "lm_cache_frozen_layers": True,
}
LORA_TRAINING = {"batch_size": 1024, "learning_rate": 0.002}
# Not a setting of the model: a checkpoint every 10 steps (about a minute; an epoch is 34 steps of ~8 s), so an
# interrupted seed resumes mid-epoch (to the same results) instead of redoing up to an epoch.
LORA_CHECKPOINTS = {"save_every_steps": 10}

COLD_SPLIT = {"split": "cold_items", "cold_selection": "random", "cold_fraction": 0.1}
COLD_SELECTION = {"select_on": "warm_targets"}  # no cold item's interaction chooses the epoch or the depth


def valid_ndcg(candidate: str) -> float:
    """Validation NDCG@10 of the candidate's seed-2020 run (its best epoch); a clear error if it has not run."""
    path = RUNS / candidate / "seed-2020" / "metrics.json"
    if not path.exists():
        raise SystemExit(f"{path} not found: run the candidate first (benchmarks/quality/scientific_grid.sh)")
    return float(json.loads(path.read_text())["valid"]["metrics"]["ndcg@10"])


def choose(candidates: list[tuple[str, dict]]) -> tuple[str, dict, list[tuple[str, float]]]:
    """The first-listed candidate unless a later one beats the best so far by more than the tie margin."""
    scores = [(name, valid_ndcg(name)) for name, _ in candidates]
    best = 0
    for index, (_, score) in enumerate(scores[1:], start=1):
        if score > scores[best][1] + TIE_MARGIN:
            best = index
    return candidates[best][0], candidates[best][1], scores


def record_choice(rule: str, winner: str) -> None:
    """runs/scientific/choices.json keeps every rule's winner (the grid links reused runs by it)."""
    path = RUNS / "choices.json"
    choices = json.loads(path.read_text()) if path.exists() else {}
    choices[rule] = winner
    path.write_text(json.dumps(choices, indent=2) + "\n")


def write_lora_preset(method_rule_winners: dict[str, str]) -> Path:
    """Rule 6: the LoRA-MiniLM preset takes the text preset of the reasoning method that won rule 4."""
    scores = {method: valid_ndcg(run) for method, run in method_rule_winners.items()}
    method = max(scores, key=scores.get)
    config = json.loads(Path(f"configs/scientific_text_rearec_{method}.json").read_text())
    for key in ("text_model", "text_adaptor", "text_experts", "text_adaptor_dropout"):
        config["model"].pop(key, None)
    config["model"].update(LORA_SETTINGS)
    config["train"].update(LORA_TRAINING, **LORA_CHECKPOINTS, run_name="scientific-lora-rearec")
    path = Path("configs/scientific_lora_rearec.json")
    path.write_text(json.dumps(config, indent=2) + "\n")
    print(f"rule 6: {scores} -> {method}; wrote {path}")
    return path


def better_method(choices: dict[str, str], rule: str) -> str:
    """'erl' or 'prl': the rule's ERL and PRL winners compared by seed-2020 validation NDCG@10 (ERL on a tie)."""
    erl, prl = valid_ndcg(choices[f"{rule}-erl"]), valid_ndcg(choices[f"{rule}-prl"])
    return "prl" if prl > erl + TIE_MARGIN else "erl"


def write_cold_presets() -> list[Path]:
    """Issue 29's cold-split presets: ID, frozen text and hybrid, each with the better reasoning method of its
    backbone in stage 1 (rules 2, 4, 5), on the random cold split (10 % of the items; the split seed is given
    per run); the hybrid with ID dropout 0.2 (a cold item's ID row never trains)."""
    choices = json.loads((RUNS / "choices.json").read_text())
    written = []
    for backbone, rule, prefix in (("id", "2", ""), ("text", "4", "text_"), ("hybrid", "5", "hybrid_")):
        method = better_method(choices, rule)
        config = json.loads(Path(f"configs/scientific_{prefix}rearec_{method}.json").read_text())
        config["data"].update(COLD_SPLIT)
        if backbone == "hybrid":
            config["model"]["id_dropout"] = 0.2
        config["train"]["run_name"] = f"scientific-cold-{backbone}-rearec-{method}"
        config["train"].update(COLD_SELECTION)
        path = Path(f"configs/scientific_cold_{backbone}.json")
        path.write_text(json.dumps(config, indent=2) + "\n")
        print(f"cold: {backbone} backbone takes {method} (rule {rule}); wrote {path}")
        written.append(path)
    return written + [write_cold_lora_preset()]


def write_cold_lora_preset() -> Path:
    """The LoRA-MiniLM preset (rule 6) on the same cold split: a preset only, which the cold grid does not run
    (three runs of hours; issue 29's figure 1 asks for the frozen-text and hybrid models)."""
    lora = Path("configs/scientific_lora_rearec.json")
    if not lora.exists():
        raise SystemExit(f"{lora} not found: apply rule 6 first (scientific_choose.py 6-lora)")
    config = json.loads(lora.read_text())
    config["data"].update(COLD_SPLIT)
    config["train"]["run_name"] = f"scientific-cold-lora-rearec-{config['model']['reasoning_method']}"
    config["train"].update(COLD_SELECTION)
    path = Path("configs/scientific_cold_lora.json")
    path.write_text(json.dumps(config, indent=2) + "\n")
    print(f"cold: LoRA-MiniLM takes rule 6's preset; wrote {path}")
    return path


def write_settings(presets: list[str], settings: dict) -> None:
    for preset in presets:
        path = Path(preset)
        config = json.loads(path.read_text())
        config["model"].update(settings)
        path.write_text(json.dumps(config, indent=2) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rule", choices=sorted(RULES) + ["6-lora", "cold"])
    parser.add_argument("--dry_run", action="store_true", help="print the choice without writing the presets")
    args = parser.parse_args()
    if args.rule == "cold":
        write_cold_presets()
        return 0
    if args.rule == "6-lora":
        choices = json.loads((RUNS / "choices.json").read_text())
        write_lora_preset({"erl": choices["4-erl"], "prl": choices["4-prl"]})
        return 0
    presets, candidates = RULES[args.rule]
    winner, settings, scores = choose(candidates)
    for name, score in scores:
        print(f"rule {args.rule}: {name} valid ndcg@10 {score:.5f}{'  <- chosen' if name == winner else ''}")
    if not args.dry_run:
        write_settings(presets, settings)
        record_choice(args.rule, winner)
        print(f"wrote {settings} into {', '.join(presets)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
