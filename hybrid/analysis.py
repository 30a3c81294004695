"""The ReaRec paper's analyses of a trained run: per-step metrics, the oracle ceiling, and subgroups.

- Per step: the metrics of each reasoning state r_k's own scores (k = 0..K).
- ORACLE: per row, the step whose scores rank the target best. It uses the label, so it is not a
  recommender; it measures the headroom of adaptive depth (the paper's "performance ceiling").
- Subgroups: users by history length quintile, targets by training popularity quintile.

Shape legend: R rows, S = K + 1 states, N items.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import DataConfig, ModelConfig, TrainConfig
from .data import RecDataset, SplitData
from .evaluate import format_table, progress_bar
from .metrics import metric_means
from .model import HybridRecommender
from .ranking import chunked_target_ranks, item_chunk_size
from .run_folder import load_model, run_configs


def load_run(run_dir: str | Path) -> tuple[HybridRecommender, DataConfig, ModelConfig, TrainConfig]:
    """A run's trained model (its model/ folder, at the inference depth the run chose on validation when it did)
    and the configs it was trained with."""
    data_config, train_config = run_configs(run_dir)
    model = load_model(run_dir)
    return model, data_config, model.config, train_config


@torch.no_grad()
def step_ranks(
    model: HybridRecommender,
    split: SplitData,
    batch_size: int = 1024,
    progress: bool = False,
    name: str = "test",
    exclude_history: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ranks of every row's target under each state's own scores [R, S] and under the model's user vector at
    its inference depth [R], ranked as ``evaluate`` ranks (``exclude_history``: the user's past items masked,
    the target kept); ``progress`` shows a bar over the batches, labelled with the split's ``name``. Runs in
    eval mode (dropout off), as ``evaluate`` does, and leaves the model's mode as it found it."""
    was_training = model.training
    model.eval()
    try:
        return _step_ranks(model, split, batch_size, progress, name, exclude_history)
    finally:
        model.train(was_training)


def _step_ranks(
    model: HybridRecommender, split: SplitData, batch_size: int, progress: bool, name: str, exclude_history: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    item_table = model.scoring_table()  # [N + 1, D]
    depth = model.config.inference_steps  # the model's own answer uses the states up to here (None: all)
    per_step, aggregated = [], []
    for rows in progress_bar(torch.arange(len(split)).split(batch_size), f"Analysing {name} by step", progress):
        history, target = (tensor.to(item_table.device) for tensor in split.batch(rows))  # the model's device
        states = model.user_states(history)  # [B, S, D]
        past = tuple(t.to(item_table.device) for t in split.past_mask_indices(rows)) if exclude_history else None
        answers = [*states.unbind(dim=1), model.aggregate(states if depth is None else states[:, : depth + 1])]
        ranks = [chunked_target_ranks(a, item_table, target, item_chunk_size(len(rows)), past)[0] for a in answers]
        per_step.append(torch.stack(ranks[:-1], dim=1).cpu())  # [B, S]
        aggregated.append(ranks[-1].cpu())  # [B]
    return torch.cat(per_step), torch.cat(aggregated)


GROUPING = "quintile of each value's lowest rank: equal values share a group"  # in analysis.json


def quintiles(values: np.ndarray) -> np.ndarray:
    """Group 1..5 of each value: the quintile its lowest rank falls in, so equal values always share a group (a
    value held by more than a fifth of the rows fills its quintile and leaves the next ones empty)."""
    lowest_rank = np.searchsorted(np.sort(values, kind="stable"), values, side="left")  # ties: their first rank
    return lowest_rank * 5 // max(len(values), 1) + 1


@dataclass
class Analysis:
    overall: dict[str, dict[str, float]]  # name -> metrics (model, step k, ORACLE)
    by_history: dict[int, dict[str, dict[str, float]]]  # quintile -> name -> metrics
    by_popularity: dict[int, dict[str, dict[str, float]]]
    group_sizes: dict[str, list[int]]


def analyse(
    model: HybridRecommender,
    dataset: RecDataset,
    split_name: str = "test",
    progress: bool = False,
    exclude_history: bool = False,
) -> Analysis:
    """Metrics of the model, of each reasoning step and of the label-using oracle, overall and by quintile of
    history length and of target popularity; ranked as ``evaluate`` ranks with the same ``exclude_history``."""
    split = dataset.split(split_name)
    ranks, aggregated = step_ranks(model, split, progress=progress, name=split_name, exclude_history=exclude_history)
    oracle = ranks.min(dim=1).values  # per row the best step, chosen WITH the label

    def table(mask: torch.Tensor) -> dict[str, dict[str, float]]:
        out = {"model": metric_means(aggregated[mask])}
        out.update({f"step {k}": metric_means(ranks[mask, k]) for k in range(ranks.shape[1])})
        out["ORACLE (best step per row, uses the label)"] = metric_means(oracle[mask])
        return out

    history_length = (split.past_offsets[1:] - split.past_offsets[:-1]).numpy()
    popularity = np.bincount(dataset.train.target.numpy(), minlength=dataset.num_items + 1)[split.target.numpy()]
    history_groups, popularity_groups = quintiles(history_length), quintiles(popularity)

    def by_group(groups: np.ndarray) -> dict[int, dict[str, dict[str, float]]]:  # an empty quintile: no entry
        return {g: table(torch.from_numpy(groups == g)) for g in range(1, 6) if (groups == g).any()}

    return Analysis(
        overall=table(torch.ones(len(split), dtype=torch.bool)),
        by_history=by_group(history_groups),
        by_popularity=by_group(popularity_groups),
        group_sizes={
            "history": np.bincount(history_groups, minlength=6)[1:].tolist(),
            "popularity": np.bincount(popularity_groups, minlength=6)[1:].tolist(),
        },
    )


def write_report(analysis: Analysis, folder: Path, protocol: str, split: str | None = None) -> str:
    """Markdown tables + PNG plots (NDCG@10 by group and step) into ``folder``: analysis-SPLIT.md, .json and
    ndcg10_by_group-SPLIT.png (without a split: no suffix), so each split keeps its own report. Returns the
    Markdown."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = f"-{split}" if split else ""
    heading = f"# Reasoning analysis of the {split} split" if split else "# Reasoning analysis"
    lines = [heading, "", f"Protocol: {protocol}", "", "## Overall", "", format_table(analysis.overall)]
    for title, groups, sizes in (
        ("Users by history length (quintile 1 = shortest)", analysis.by_history, analysis.group_sizes["history"]),
        (
            "Targets by training popularity (times the item is a training target; quintile 1 = least popular)",
            analysis.by_popularity,
            analysis.group_sizes["popularity"],
        ),
    ):
        lines += ["", f"## {title}: NDCG@10", ""]
        names = list(groups[1])
        lines.append("| group | rows | " + " | ".join(names) + " |")
        lines.append("|---|---:|" + "---:|" * len(names))
        for g in range(1, 6):
            cells = [f"{groups[g][n]['ndcg@10']:.4f}" if g in groups else "-" for n in names]
            lines.append(f"| Q{g} | {sizes[g - 1]} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    (folder / f"analysis{suffix}.md").write_text(text)
    (folder / f"analysis{suffix}.json").write_text(
        json.dumps(
            {
                "overall": analysis.overall,
                "by_history": analysis.by_history,
                "by_popularity": analysis.by_popularity,
                "group_sizes": analysis.group_sizes,
                "grouping": GROUPING,
                "protocol": protocol,
                "split": split,
            },
            indent=2,
        )
    )
    plot_groups(analysis, folder / f"ndcg10_by_group{suffix}.png")
    return text


def plot_groups(analysis: Analysis, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for axis, (title, groups) in zip(
        axes, (("history length quintile", analysis.by_history), ("target popularity quintile", analysis.by_popularity))
    ):
        names = [n for n in groups[1] if n != "model"]
        width = 0.8 / len(names)
        for i, name in enumerate(names):
            axis.bar(
                np.arange(1, 6) + (i - len(names) / 2 + 0.5) * width,
                [groups[g][name]["ndcg@10"] if g in groups else np.nan for g in range(1, 6)],
                width,
                label=name.split(" (")[0],
                hatch="//" if name.startswith("ORACLE") else None,
            )
        axis.set_xlabel(title)
        axis.set_xticks(range(1, 6))
    axes[0].set_ylabel("NDCG@10")
    axes[1].legend(fontsize=8)
    fig.suptitle("Per-step and oracle NDCG@10 by group (oracle uses the label)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
