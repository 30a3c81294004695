"""Adaptive reasoning depth on a trained ReaRec run: `python scripts/adaptive_depth.py RUN_DIR`.

Compares every fixed depth 0..K, KL-convergence halting, answer-direction (state) halting, the learned halting
head on the item distribution's features and on state features alone, the history-length depth plan (users
with at most L history items run depth a, the others depth b), the popularity depth plan (users whose 10 first
items at depth 0 are the most popular fifth by validation run no step, the others depth a), and the
label-using ORACLE that picks each user's best depth. Each rule's epsilon, threshold or plan (L, a, b; a) is
chosen on validation NDCG@10 (ties: fewer steps); the heads are fitted on training (or, `--head_split valid`,
validation) rows of the frozen model. Test metrics, mean steps, the share of the best-fixed-to-oracle gap
closed, and evaluation time (every fixed depth, fixed K through the halting code, and each rule, timed in
interleaved rounds so machine noise hits all alike) are written to RUN_DIR/analysis/adaptive_depth.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchmark import header, interleaved_samples, report_text, write  # noqa: E402

from hybrid.analysis import load_run  # noqa: E402
from hybrid.data import load_dataset  # noqa: E402
from hybrid.evaluate import evaluate  # noqa: E402
from hybrid.metrics import metric_means  # noqa: E402
from hybrid.ranking import chunked_target_ranks, item_chunk_size  # noqa: E402
from hybrid.halting import (  # noqa: E402
    AdaptiveDepth,
    HistoryDepth,
    KLHalting,
    LearnedHalting,
    PopularityDepth,
    StateHalting,
    answer_log_probs,
    answer_scale,
    log_popularity,
)

# 0 never halts (the fixed trained depth): validation may prefer it to any halting.
EPSILONS = (0.0, 1e-6, 1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
STATE_EPSILONS = (0.0, 1e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1)  # 1 - cosine between answers
THRESHOLDS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)  # 0 never halts
LENGTH_QUANTILES = torch.linspace(0.05, 0.95, 19)  # history-length cut-offs tried by the history rule
# The popularity plan's cut-off: the validation users above this quantile of the feature run no step. Fixed,
# not tuned (declared in benchmarks/quality/adaptive_depth_ml100k.md before any test figure).
POPULAR_QUANTILE = 0.8
TOP_K = 10  # the popularity plan reads this many first items of the depth-0 ranking


def halting_result(model, split, rule, name: str, compact_ratio: float = 1.0):
    wrapped = AdaptiveDepth(model, rule, compact_ratio).eval()
    result = evaluate(wrapped, split, name)
    return result, wrapped.mean_steps()


@torch.no_grad()
def learned_head_data(model, split, rows: int, heads: list, seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each head's features after each step k = 1..K-1 and whether step k + 1 ranks the target better, on
    ``rows`` rows of ``split``: ([M, F] per head, [M])."""
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(split), generator=generator)[:rows]
    table = model.scoring_table()
    features, labels = [[] for _ in heads], []
    for batch in chosen.split(1024):
        history, target = split.batch(batch)
        answers = [model.user_vectors(history, k) for k in range(model.config.reasoning_steps + 1)]
        ranks = [chunked_target_ranks(a, table, target, item_chunk_size(len(batch)))[0] for a in answers]
        log_qs = [answer_log_probs(a * answer_scale(model), table) for a in answers]  # as at inference
        for k in range(1, model.config.reasoning_steps):
            depth = k / model.config.reasoning_steps
            for collected, head in zip(features, heads):
                collected.append(head.step_features(log_qs[k - 1], log_qs[k], answers[k - 1], answers[k], depth))
            labels.append(ranks[k + 1] < ranks[k])
    return [torch.cat(collected) for collected in features], torch.cat(labels)


def history_settings(valid_ranks: torch.Tensor, lengths: torch.Tensor) -> list[tuple]:
    """Every (max_length, short_steps, long_steps) of the history rule with its validation result, read off
    the fixed depths' ranks [R, K + 1] (a user's answer at depth k is the fixed depth-k answer): (setting,
    NDCG@10, mean steps) for each cut-off at a quantile of the history lengths [R] and every pair of depths."""
    depths = range(valid_ranks.shape[1])
    cut_offs = sorted(set(torch.quantile(lengths.float(), LENGTH_QUANTILES).round().long().tolist()))
    results = []
    for setting in ((cut, short, long) for cut in cut_offs for short in depths for long in depths):
        planned = HistoryDepth(*setting).steps_for_lengths(lengths)  # [R]
        ranks = valid_ranks.gather(1, planned[:, None])[:, 0]
        results.append((setting, metric_means(ranks)["ndcg@10"], float(planned.float().mean())))
    return results


@torch.no_grad()
def popularity_settings(model, split, valid_ranks: torch.Tensor, rule: PopularityDepth) -> list[tuple]:
    """The popularity plan's candidates, read off the fixed depths' validation ranks [R, K + 1]: the cut-off
    is the POPULAR_QUANTILE of the validation users' feature, users above it run depth 0, the others each depth
    a in 0..K: ((cut-off, a, 0), NDCG@10, mean steps) per a."""
    table = model.scoring_table()
    features = torch.cat(
        [
            rule.feature(model.user_vectors(split.batch(rows)[0], 0), table)
            for rows in torch.arange(len(split)).split(1024)
        ]
    )  # [R]
    cut = float(torch.quantile(features, POPULAR_QUANTILE))
    results = []
    for steps in range(valid_ranks.shape[1]):
        planned = torch.where(features > cut, 0, steps)  # [R]
        ranks = valid_ranks.gather(1, planned[:, None])[:, 0]
        results.append(((cut, steps, 0), metric_means(ranks)["ndcg@10"], float(planned.float().mean())))
    return results


def history_plan_text(setting: tuple) -> str:
    """The history rule's plan (L, a, b) in words."""
    max_length, short_steps, long_steps = setting
    if short_steps == long_steps:
        return f"(every user: {short_steps} steps)"
    return f"<= {max_length} items: {short_steps} steps, longer: {long_steps}"


def popularity_plan_text(setting: tuple) -> str:
    """The popularity rule's plan (cut-off, a, b) in words."""
    cut, steps, popular_steps = setting
    return f"(top-{TOP_K} mean log popularity <= {cut:.3f}: {steps} steps, above: {popular_steps})"


def pick(candidates: list[tuple]) -> tuple:
    """(setting, valid NDCG@10, mean steps) with the best valid NDCG@10, fewer steps on ties."""
    return max(candidates, key=lambda c: (round(c[1], 6), -c[2]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--head_rows", type=int, default=20_000, help="rows the halting heads are fitted on (at most)")
    parser.add_argument(
        "--head_split",
        default="train",
        choices=("train", "valid"),
        help="rows the heads are fitted on: 'train' (the model has fitted their targets) or 'valid' (held out like "
        "test; the thresholds are then chosen on the same rows)",
    )
    parser.add_argument("--timing_rounds", type=int, default=11, help="interleaved rounds of the evaluation timing")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--compact_ratio",
        type=float,
        default=1.0,
        help="halted users leave the batch once (halted rows) x (steps left) >= this x (rows still reasoning); "
        "0 drops them at every halt (see hybrid.halting.adaptive_user_vectors)",
    )
    parser.add_argument(
        "--report",
        default=None,
        help="also write the timing as a benchmark report PATH.{md,json} (e.g. benchmarks/halting)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, data_config, model_config, _ = load_run(args.run_dir)
    if model_config.reasoning_steps < 2:
        print("error: adaptive depth needs a model trained with reasoning_steps >= 2", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    dataset = load_dataset(data_config)
    steps = model_config.reasoning_steps
    fixed = {split: [evaluate(model, dataset.split(split), split, steps=k) for k in range(steps + 1)]
             for split in ("valid", "test")}  # fmt: skip
    oracle = metric_means(torch.stack([r.ranks for r in fixed["test"]]).min(dim=0).values)
    best_fixed = max(range(steps + 1), key=lambda k: fixed["valid"][k].metrics["ndcg@10"])  # chosen on valid

    heads = {"learned head": LearnedHalting("answer"), "learned head, state features": LearnedHalting("state")}
    features, improves = learned_head_data(model, dataset.split(args.head_split), args.head_rows, list(heads.values()))
    for head, head_features in zip(heads.values(), features):
        head.fit(head_features, improves)

    def tuned(name: str, make_rule, settings, describe=lambda setting: f"{setting:g}") -> dict:
        """The rule's setting with the best validation NDCG@10, and its test result."""
        valid = {s: halting_result(model, dataset.valid, make_rule(s), "valid") for s in settings}
        setting = pick([(s, result.metrics["ndcg@10"], steps) for s, (result, steps) in valid.items()])[0]
        rule = make_rule(setting)
        test, mean_steps = halting_result(model, dataset.test, rule, "test")
        return {"name": name, "setting": setting, "shown": describe(setting), "valid": valid[setting][0],
                "test": test, "mean_steps": mean_steps, "rule": rule}  # fmt: skip

    answer_head, state_head = heads.values()
    valid_ranks = torch.stack([result.ranks for result in fixed["valid"]], dim=1)  # [R, K + 1]
    candidates = history_settings(valid_ranks, (dataset.valid.history > 0).sum(dim=1))
    plan, plan_read_off, _ = pick(candidates)
    item_log_popularity = log_popularity(torch.bincount(dataset.train.target, minlength=model.num_items + 1))
    popularity_plan, popularity_read_off, _ = pick(
        popularity_settings(model, dataset.valid, valid_ranks, PopularityDepth(item_log_popularity, 0.0, 0, TOP_K))
    )
    rules = {
        "kl": tuned("KL halting, epsilon", KLHalting, EPSILONS),
        "state": tuned("state halting, epsilon", StateHalting, STATE_EPSILONS),
        "learned": tuned("learned head, threshold", answer_head.at, THRESHOLDS),
        "learned_state": tuned("learned head on state features, threshold", state_head.at, THRESHOLDS),
        # chosen above on the fixed depths' validation ranks; evaluated here through the halting path
        "history": tuned(
            "history-length depth, plan", lambda setting: HistoryDepth(*setting), [plan], history_plan_text
        ),
        "popularity": tuned(
            "popularity depth, plan",
            lambda setting: PopularityDepth(item_log_popularity, *setting, top_k=TOP_K),
            [popularity_plan],
            popularity_plan_text,
        ),
    }
    # the plans' validation figures as read off the fixed depths (what chose them), to check the halting path
    rules["history"]["valid_read_off"], rules["popularity"]["valid_read_off"] = plan_read_off, popularity_read_off
    # steps given: a run saved with a validation-chosen inference depth would otherwise time that one
    timed = {f"fixed K = {k}": lambda k=k: evaluate(model, dataset.test, "test", steps=k) for k in range(steps + 1)}
    mean_steps = {f"fixed K = {k}": float(k) for k in range(steps + 1)}
    # The halting path with nobody halting: each rule's time against it is its net saving (for KL halting and
    # the distribution head, after their per-step scoring of the catalogue).
    reference = f"fixed K = {steps}, halting path"
    timed[reference] = lambda: evaluate(
        AdaptiveDepth(model, HistoryDepth(0, steps, steps), args.compact_ratio), dataset.test, "test"
    )
    mean_steps[reference] = float(steps)
    for rule in rules.values():
        label = rule["name"].rsplit(",", 1)[0]
        timed[label] = lambda rule=rule["rule"]: evaluate(
            AdaptiveDepth(model, rule, args.compact_ratio), dataset.test, "test"
        )
        mean_steps[label] = rule["mean_steps"]
    samples = interleaved_samples(timed, rounds=args.timing_rounds)
    times = {name: statistics.median(values) for name, values in samples.items()}

    def rounds_faster_than(name: str) -> dict[str, int]:
        """Paired by round: in how many rounds each entry beat ``name`` of the same round (shared load)."""
        return {entry: sum(a < b for a, b in zip(values, samples[name])) for entry, values in samples.items()}

    faster, faster_on_path = rounds_faster_than(f"fixed K = {steps}"), rounds_faster_than(reference)

    best = fixed["test"][best_fixed].metrics["ndcg@10"]

    def closed(value: float) -> str:
        gap = oracle["ndcg@10"] - best
        return f"{(value - best) / gap:+.1%}" if gap > 0 else "n/a"

    lines = ["| depth rule | valid NDCG@10 | test NDCG@10 | test Recall@10 | mean steps | gap to oracle closed |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for k in range(steps + 1):
        marker = " (best on valid)" if k == best_fixed else ""
        v, t = fixed["valid"][k].metrics, fixed["test"][k].metrics
        lines.append(
            f"| fixed K = {k}{marker} | {v['ndcg@10']:.4f} | {t['ndcg@10']:.4f} | {t['recall@10']:.4f} | {k} | |"
        )
    for rule in rules.values():
        t = rule["test"].metrics
        lines.append(
            f"| {rule['name']} {rule['shown']} | {rule['valid'].metrics['ndcg@10']:.4f} | "
            f"{t['ndcg@10']:.4f} | {t['recall@10']:.4f} | {rule['mean_steps']:.2f} | {closed(t['ndcg@10'])} |"
        )
    lines.append(f"| ORACLE (best depth per user, uses the label) | | {oracle['ndcg@10']:.4f} | "
                 f"{oracle['recall@10']:.4f} | | 100% |")  # fmt: skip
    timing = "\n".join(
        [
            f"| depth or rule | mean steps | seconds (median) | vs fixed K = {steps} | "
            f"rounds faster than fixed K = {steps} | vs the halting path at K = {steps} | rounds faster than it |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *(
                f"| {name} | {mean_steps[name]:.2f} | {value:.4f} | {value / times[f'fixed K = {steps}']:.3f}x | "
                f"{faster[name]} of {args.timing_rounds} | {value / times[reference]:.3f}x | "
                f"{faster_on_path[name]} of {args.timing_rounds} |"
                for name, value in times.items()
            ),
        ]
    )
    text = (
        f"# Adaptive reasoning depth: {Path(args.run_dir).name}\n\nProtocol: {rules['kl']['test'].protocol}\n\n"
        f"Halting heads fitted on {args.head_split} rows.\n\n"
        + "\n".join(lines)
        + f"\n\nTest-set evaluation time, median of {args.timing_rounds} interleaved rounds, "
        f"{torch.get_num_threads()} thread(s), compact ratio {args.compact_ratio:g}:\n\n{timing}"
    )
    results = {
        "fixed": {k: {"valid": fixed["valid"][k].metrics, "test": fixed["test"][k].metrics} for k in range(steps + 1)},
        "best_fixed_on_valid": best_fixed,
        **{
            key: {
                "setting": rule["setting"],
                "valid": rule["valid"].metrics,
                "test": rule["test"].metrics,
                "mean_steps": rule["mean_steps"],
                **({"valid_read_off": rule["valid_read_off"]} if "valid_read_off" in rule else {}),
            }
            for key, rule in rules.items()
        },
        "head_split": args.head_split,
        "oracle_test": oracle,
        "eval_seconds": times,
        "eval_seconds_by_round": samples,
        "compact_ratio": args.compact_ratio,
    }
    folder = Path(args.run_dir) / "analysis"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adaptive_depth.md").write_text(text)
    (folder / "adaptive_depth.json").write_text(json.dumps(results, indent=2))
    print(text)
    if args.report:
        # The timing alone, in the benchmark reports' format (machine, date, command).
        report = {
            **header(argparse.Namespace(threads=torch.get_num_threads())),
            "setting": f"evaluation of the {len(dataset.test)} test users of run {args.run_dir} "
            f"(trained K = {steps}) at every fixed depth and with each halting rule at its validation-chosen "
            f"setting, {args.timing_rounds} interleaved rounds, compact ratio {args.compact_ratio:g}",
            "mean_steps": mean_steps,
            "eval_seconds": times,
            "eval_seconds_by_round": samples,
            "rounds_faster_than_fixed_K": faster,
            "rounds_faster_than_the_halting_path_at_K": faster_on_path,
        }
        write(
            report,
            report_text(
                "Adaptive depth: evaluation time with halting",
                report,
                timing,
                "State halting and the state-feature head score no items while reasoning; KL halting and the "
                "distribution head score the catalogue after every step; the history-length plan decides before "
                "reasoning starts, the popularity plan after ranking the catalogue once at depth 0. 'Rounds "
                f"faster' pairs each rule with the fixed K = {steps} evaluation of the same round, so both saw the"
                f" same machine load. 'The halting path at K = {steps}' runs every user to depth {steps} through "
                "the halting code: the time against it is each rule's net saving (for KL halting and the "
                "distribution head, after their per-step scoring). Each round starts one entry later than the "
                "last.",
            ),
            Path(args.report),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
