"""The model card carries what a Hub visitor needs (what the model is, install, load, metrics with protocol and
dataset, licence) as valid Hub metadata, and no local path."""

from huggingface_hub import ModelCard
from hybrid_rearec.hybrid.hub import card_for_repo, model_card
from hybrid_rearec.hybrid.model import HybridRecommender

from tests.test_hub import train_tiny


def test_a_run_card_has_install_load_metrics_licence_and_no_local_path(tmp_path, sequential_csv):
    run = train_tiny(tmp_path, sequential_csv, "id")
    text = (run / "model" / "README.md").read_text()
    for local in {str(tmp_path), str(tmp_path.resolve())}:
        assert local not in text
    assert "PATH_OR_REPO_ID" not in text
    assert "pip install hybrid-rearec" in text and "from hybrid_rearec import HybridRecommender" in text
    assert "from_pretrained('path/to/this-model')" in text and "stands for the folder holding this card" in text
    assert "Evaluation protocol: full ranking" in text and "## Test metrics (<local> interactions.csv)" in text
    assert "https://" in text and "apache-2.0" in text.lower()
    card = ModelCard.load(run / "model" / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "hybrid-rearec" and data["license"] == "apache-2.0"
    assert {"recommendation", "hybrid-rearec"} <= set(data["tags"])
    assert data["metrics"] == ["ndcg", "recall", "mrr"] and "datasets" not in data  # a local file

    pushed = card_for_repo(text, "me/tiny")
    assert "from_pretrained('me/tiny')" in pushed and "path/to/this-model" not in pushed
    model = HybridRecommender.from_pretrained(run / "model")
    assert "from_pretrained('me/tiny')" in str(model_card(model, repo_id="me/tiny"))
