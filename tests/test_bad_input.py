"""Bad input the other test files do not already cover: each error names the problem and the fix.

Covered elsewhere: missing file, missing column, wrong delimiter, non-numeric timestamp (test_readers);
empty dataset after filtering, users with one interaction only (test_data); unknown config key (test_config);
more inference steps than trained (test_rearec); corrupt or truncated checkpoint (test_resume); an output
directory holding another run (test_train).
"""

import json
import warnings

import pytest
import torch
from hybrid_rearec.hybrid.config import DataConfig, ModelConfig
from hybrid_rearec.hybrid.data import build_dataset, load_dataset
from hybrid_rearec.hybrid.errors import DataError
from hybrid_rearec.hybrid.model import HybridRecommender
from hybrid_rearec.hybrid.readers import read_interactions
from hybrid_rearec.hybrid.recommend import ItemCatalogue, UnknownItemError, recommend


def test_duplicate_header_names_the_columns(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("user_id,item_id,item_id,timestamp\nu1,i1,i2,1\n")
    before = path.read_bytes()
    with pytest.raises(DataError, match=r"repeats the header column\(s\) \['item_id'\].*unique name"):
        read_interactions(DataConfig(dataset=str(path), data_format="csv"))
    assert path.read_bytes() == before


def test_users_left_with_one_interaction_are_reported_not_evaluated(tmp_path):
    path = tmp_path / "x.csv"
    rows = [f"u{u},i{k},{k}" for u in range(3) for k in range(5)] + ["u3,i1,1", "u4,i2,1"]
    path.write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    with pytest.warns(UserWarning, match=r"2 of 5 users have fewer than 3 interactions.*--k_core 3"):
        dataset = build_dataset(DataConfig(dataset=str(path), data_format="csv"))
    assert dataset.stats["users_not_evaluated"] == 2 and len(dataset.test) == 3
    config = DataConfig(dataset=str(path), data_format="csv", cache_dir=str(tmp_path / "cache"))
    for _ in ("built", "cached"):  # said again when the dataset comes from the cache
        with pytest.warns(UserWarning, match=r"2 of 5 users have fewer than 3 interactions"):
            load_dataset(config)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # k-core 3 drops them: no warning left
        dataset = build_dataset(DataConfig(dataset=str(path), data_format="csv", k_core=3))
    assert dataset.stats["users"] == 3


@pytest.fixture
def model_and_catalogue():
    torch.manual_seed(0)
    config = ModelConfig(hidden_size=16, num_heads=2, inner_size=32, reasoning_steps=1)
    model = HybridRecommender(config, num_items=6, max_history=4).eval()
    return model, ItemCatalogue([f"m{i}" for i in range(1, 7)], [f"Movie {i}" for i in range(1, 7)])


def test_unknown_item_in_a_recommend_request_names_the_ids_and_the_fix(model_and_catalogue):
    model, catalogue = model_and_catalogue
    with pytest.raises(UnknownItemError, match=r"2 item\(s\) unknown to this model: 'nope', 'zz'.*drop"):
        recommend(model, catalogue, [["m1", "nope"], ["zz"]])
    with pytest.raises(DataError, match=r"histories \[1\] are empty.*at least one item"):
        recommend(model, catalogue, [["m1"], []])


def test_recommend_ranks_by_the_model_scores(model_and_catalogue):
    model, catalogue = model_and_catalogue
    histories = [["m1", "m2", "m3", "m4", "m5", "m6"], ["m2"]]  # the first is longer than max_history
    top = recommend(model, catalogue, histories, k=3)
    expected = model.score(model.user_vectors(torch.tensor([[3, 4, 5, 6], [0, 0, 0, 2]])))
    for row, result in enumerate(top):
        values, items = expected[row].topk(3)
        assert result.item_ids == [f"m{i}" for i in items.tolist()]
        assert result.titles == [f"Movie {i}" for i in items.tolist()]
        assert torch.allclose(torch.tensor(result.scores), values)
    excluded = recommend(model, catalogue, [["m2", "m3"]], k=4, exclude_history=True)[0]
    assert not {"m2", "m3"} & set(excluded.item_ids)
    spaced = recommend(model, catalogue, [[" m2", "m3 "]], k=4, exclude_history=True)[0]  # ids read trimmed
    assert spaced.item_ids == excluded.item_ids
    with pytest.raises(DataError, match=r"already there or repeated: \['m2'\]"):
        catalogue.add(["a new film"], item_ids=[" m2 "])
    with pytest.raises(DataError, match="must not be empty"):
        catalogue.add(["a new film"], item_ids=["  "])
    assert catalogue.add(["a new film"], item_ids=[" m7 "]) == ["m7"] and catalogue.index["m7"] == 7


def test_malformed_histories_are_refused_with_the_call_that_works(model_and_catalogue):
    model, catalogue = model_and_catalogue
    model.catalogue = catalogue
    with pytest.raises(DataError, match=r"one flat history.*recommend\(\[\['m1', 'm2'\]\]\)"):
        model.recommend(["m1", "m2"])
    with pytest.raises(DataError, match=r"no histories.*recommend\(\[\['m1', 'm2'\]\]\)"):
        model.recommend([])
    with pytest.raises(DataError, match=r"a list of histories.*got a str"):
        model.recommend("m1")
    with pytest.raises(DataError, match=r"history 1 must be a list of item ids.*got None"):
        model.recommend([["m1"], None])
    with pytest.raises(DataError, match=r"history 0 must be a list of item ids.*got \['m1', 2.5\]"):
        model.recommend([["m1", 2.5]])
    for k in (0, 2.9, True, "3", None):
        with pytest.raises(ValueError, match=r"k must be a whole number >= 1"):
            model.recommend([["m1"]], k=k)
    with pytest.raises(ValueError, match=r"exclude_history must be True or False"):
        model.recommend([["m1"]], exclude_history="false")
    assert model.recommend([("m1", "m2")])[0].item_ids == model.recommend([["m1", "m2"]])[0].item_ids
    import numpy as np  # arrays from numpy or pandas read as the lists they hold

    plain = model.recommend([["m1", "m2"]], exclude_history=True)[0].item_ids
    assert model.recommend(np.array([["m1", "m2"]]), exclude_history=np.True_)[0].item_ids == plain
    assert model.recommend([np.array(["m1", "m2"])], exclude_history=True)[0].item_ids == plain
    assert model.recommend([["m1", "m2"]], exclude_history=np.array(True))[0].item_ids == plain
    with pytest.raises(DataError, match=r"one flat history"):
        model.recommend(np.array(["m1", "m2"]))


def test_excluded_items_never_come_back_even_when_k_covers_the_catalogue(model_and_catalogue):
    model, catalogue = model_and_catalogue
    for k in (4, 5, 6, 100):
        top = recommend(model, catalogue, [["m2", "m3"], ["m1"]], k=k, exclude_history=True)
        assert [len(t.item_ids) for t in top] == [min(k, 4), min(k, 5)]
        assert not {"m2", "m3"} & set(top[0].item_ids) and "m1" not in top[1].item_ids
        assert all(torch.isfinite(torch.tensor(t.scores)).all() for t in top)


def fake_run(tmp_path, model_and_catalogue):
    """A run folder as training leaves it: its config.json (data, model, train) and the saved model/."""

    from hybrid_rearec.hybrid.config import TrainConfig, to_dict

    model, catalogue = model_and_catalogue
    model.catalogue = catalogue
    run = tmp_path / "run"
    model.save_pretrained(run / "model")
    sections = to_dict(DataConfig(), model.config, TrainConfig(output_dir=str(run)))
    (run / "config.json").write_text(json.dumps(sections))
    return run


def test_a_run_folder_given_for_a_model_folder_names_the_model_folder(tmp_path, model_and_catalogue):
    from hybrid_rearec.hybrid.pretrained import ModelFileError

    run = fake_run(tmp_path, model_and_catalogue)
    with pytest.raises(ModelFileError, match=rf"{run} is a training run folder.*pass {run / 'model'}") as error:
        HybridRecommender.from_pretrained(run)
    assert "format_version" not in str(error.value)


def test_a_folder_with_another_programs_config_is_named_as_such_and_never_saved_over(tmp_path, model_and_catalogue):
    from hybrid_rearec.hybrid.pretrained import ModelFileError
    from hybrid_rearec.hybrid.run_folder import model_folder

    foreign = tmp_path / "minilm"  # a transformers model's folder
    foreign.mkdir()
    (foreign / "config.json").write_text('{"architectures": ["BertModel"], "hidden_size": 384}')
    with pytest.raises(ModelFileError, match=r"is neither a run folder nor a model folder .* another program's"):
        model_folder(foreign)
    with pytest.raises(ModelFileError, match=r"not a model folder written by save_pretrained: .*no format_version"):
        HybridRecommender.from_pretrained(foreign)
    model, catalogue = model_and_catalogue
    model.catalogue = catalogue
    with pytest.raises(ModelFileError, match=r"config.json is not a hybrid-rearec model's .* Save into another"):
        model.save_pretrained(foreign)
    assert json.loads((foreign / "config.json").read_text())["hidden_size"] == 384  # left as it was
    model.save_pretrained(tmp_path / "saved")
    model.save_pretrained(tmp_path / "saved")  # over its own earlier save: allowed
    (tmp_path / "saved" / "config.json").write_text('{"format_vers')  # a damaged one, beside its catalogue
    model.save_pretrained(tmp_path / "saved")  # replaced, not refused as another program's
    assert HybridRecommender.from_pretrained(tmp_path / "saved").num_items == model.num_items


def test_a_model_folder_given_for_a_run_folder_names_the_run_folder(tmp_path, model_and_catalogue):
    from hybrid_rearec.hybrid.analysis import load_run
    from hybrid_rearec.hybrid.pretrained import ModelFileError

    run = fake_run(tmp_path, model_and_catalogue)
    with pytest.raises(ModelFileError, match=rf"{run / 'model'} is a saved model folder.*pass the run folder {run}"):
        load_run(run / "model")
    alone = tmp_path / "alone"
    (run / "model").rename(alone)
    with pytest.raises(ModelFileError, match=rf"{alone} is a saved model folder.*no data config"):
        load_run(alone)


def test_the_python_api_names_a_wrong_argument_instead_of_a_traceback():
    config = ModelConfig(hidden_size=16, num_heads=2, num_layers=1, inner_size=32, reasoning_steps=1)
    with pytest.raises(TypeError, match=r"config must be a ModelConfig, got a dict: ModelConfig\(\*\*settings\)"):
        HybridRecommender({"hidden_size": 16}, 5)
    with pytest.raises(ValueError, match="num_items must be a whole number >= 1.*got '5'"):
        HybridRecommender(config, "5")
    model = HybridRecommender(config, 5, max_history=4).eval()
    with pytest.raises(TypeError, match=r"history must be an integer tensor \[B, L\].*got torch.int64 \(3,\)"):
        model.user_vectors(torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match=r"got torch.uint8 \(1, 2\)"):  # an embedding lookup takes int64/int32
        model.user_vectors(torch.tensor([[1, 2]], dtype=torch.uint8))
    assert model.user_vectors(torch.tensor([[1, 2]], dtype=torch.int32)).shape == (1, 16)
    with pytest.raises(TypeError, match=r"history must be an integer tensor.*got list; recommend\(\) takes raw"):
        model([[1, 2, 3]])
    with pytest.raises(DataError, match=r"indexes outside 0..5 \(min 0, max 6\)"):
        model.user_vectors(torch.tensor([[0, 6]]))
    assert model.user_vectors(torch.tensor([[0, 5]])).shape == (1, 16)
    with pytest.raises(TypeError, match="from_pretrained takes a folder written by save_pretrained .*got None"):
        HybridRecommender.from_pretrained(None)
    with pytest.raises(ValueError, match="map_location 'gpu' is no device: use 'cpu', 'cuda'"):
        HybridRecommender.from_pretrained("any/model", map_location="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="map_location 'cuda', but torch sees no CUDA device here"):
            HybridRecommender.from_pretrained("any/model", map_location="cuda")


def test_a_catalogue_of_one_string_is_refused_not_split_into_characters():
    with pytest.raises(TypeError, match="item_ids must be a list, one entry per item, got the string 'abc'"):
        ItemCatalogue("abc")
    with pytest.raises(TypeError, match="item_texts must be a list"):
        ItemCatalogue(["a"], "A film")
    assert ItemCatalogue(["abc"]).item_ids == ["abc"]
