"""Pre-split benchmark files (data_format 'recbole_split'), on tiny files written here in UniSRec's format."""

import json
from collections import Counter

import hybrid_rearec.hybrid.data as data_module
import pytest
import torch
from hybrid_rearec.hybrid.config import DataConfig, ModelConfig, TrainConfig
from hybrid_rearec.hybrid.data import build_dataset, load_dataset
from hybrid_rearec.hybrid.errors import ConfigError, DataError
from hybrid_rearec.hybrid.evaluate import evaluate
from hybrid_rearec.hybrid.model import HybridRecommender
from hybrid_rearec.hybrid.readers import read_interactions
from safetensors.torch import load_file

HEADER = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
# Whole sequences by user token, oldest first: item tokens are integers, as UniSRec's item indices.
SEQUENCES = {
    "0": ["0", "1", "2", "3", "4", "5"],
    "1": ["6", "7", "8", "9", "10", "11", "12", "13"],  # longer than CUT: its earliest items get cut
    "2": ["2", "6", "3", "9", "0"],
    "3": ["13", "12", "11", "10"],
}
CUT = 5  # UniSRec cuts histories at 50; 5 here so that a tiny file shows the cut
ASINS = {str(token): f"B{token:04d}X" for token in range(16)}  # items 14 and 15 are in item2index only


def rows_of(sequences: dict[str, list[str]], cut: int = CUT) -> dict[str, list[tuple[str, str, str]]]:
    """(user, history, target) rows of each split as UniSRec writes them (train rows newest first)."""
    rows = {"train": [], "valid": [], "test": []}
    for user, items in sequences.items():
        row = {end: (user, " ".join(items[max(0, end - cut) : end]), items[end]) for end in range(1, len(items))}
        rows["train"] += [row[end] for end in range(len(items) - 3, 0, -1)]
        rows["valid"].append(row[len(items) - 2])
        rows["test"].append(row[len(items) - 1])
    return rows


def write_benchmark(folder, rows=None, name="Toy"):
    """NAME.{train,valid,test}.inter, NAME.text (in ASIN order) and NAME.item2index (in another order)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, split_rows in (rows or rows_of(SEQUENCES)).items():
        lines = "".join(f"{user}\t{history}\t{target}\n" for user, history, target in split_rows)
        (folder / f"{name}.{split}.inter").write_text(HEADER + lines)
    texts = "".join(
        f"{asin}\tThing {token} by Maker. Tools & Home Category. Brand {token}. \n"
        for token, asin in sorted(ASINS.items(), key=lambda pair: pair[1])
        if token not in ("5", "15")  # items 5 and 15 have no text
    )
    (folder / f"{name}.text").write_text("item_id:token\ttext:token_seq\n" + texts)
    order = (3, 14, 0, 12, 1, 15, 2, 13, 4, 5, 6, 7, 8, 9, 10, 11)  # neither the text file's nor the tokens' order
    index = "".join(f"{ASINS[str(token)]}\t{token}\n" for token in order)
    (folder / f"{name}.item2index").write_text(index)
    return folder


def config(folder, **overrides) -> DataConfig:
    return DataConfig(dataset=str(folder), data_format="recbole_split", **overrides)


def published_rows(dataset, split: str) -> Counter:
    """The split's rows in the files' terms: (user token, full history tokens, target token)."""
    rows, data = Counter(), dataset.split(split)
    for r in range(len(data)):
        past = data.past_items[data.past_offsets[r] : data.past_offsets[r + 1]].tolist()
        history = " ".join(dataset.item_ids[i - 1] for i in past)
        rows[(dataset.user_ids[int(data.user[r])], history, dataset.item_ids[int(data.target[r]) - 1])] += 1
    return rows


def test_the_published_split_is_kept_exactly(tmp_path):
    dataset = build_dataset(config(write_benchmark(tmp_path / "toy")))
    for split, rows in rows_of(SEQUENCES).items():
        assert published_rows(dataset, split) == Counter(rows)
    # the catalogue: every token of the files and item2index, by integer value; raw ids kept as strings
    assert dataset.item_ids == [str(token) for token in range(16)] and dataset.user_ids == ["0", "1", "2", "3"]
    stats = dataset.stats
    assert (stats["users"], stats["items"], stats["valid_rows"], stats["test_rows"]) == (4, 16, 4, 4)
    assert stats["train_rows"] == sum(len(items) - 3 for items in SEQUENCES.values())
    assert stats["interactions"] == sum(len(items) for items in SEQUENCES.values())
    assert stats["users_disagreeing"] == 0 and stats["items_older_than_test_history"] == 8 - (CUT + 1)
    # train rows are in time order per user (each row's last input is the previous row's target)
    train = dataset.train
    same_user = train.user[1:] == train.user[:-1]
    assert bool((train.history[1:, -1] == train.target[:-1])[same_user].all())
    # a user's history for recommend.py {"user": ...}: the test row's (cut, as published) and its target
    histories = dataset.user_histories()
    assert histories["0"] == SEQUENCES["0"] and histories["1"] == SEQUENCES["1"][-(CUT + 1) :]


def test_histories_longer_than_max_history_are_cut_in_the_tensor_only(tmp_path):
    dataset = build_dataset(config(write_benchmark(tmp_path / "toy"), max_history=2))
    test = dataset.test
    assert test.history.shape == (4, 2)
    row = dataset.user_ids.index("1")
    full = test.past_items[test.past_offsets[row] : test.past_offsets[row + 1]]
    assert [dataset.item_ids[i - 1] for i in full.tolist()] == SEQUENCES["1"][-1 - CUT : -1]
    assert test.history[row].tolist() == full[-2:].tolist()


def test_texts_are_joined_through_item2index_and_titles_are_first_sentences(tmp_path):
    dataset = build_dataset(config(write_benchmark(tmp_path / "toy")))
    text = dict(zip(dataset.item_ids, dataset.item_texts))
    title = dict(zip(dataset.item_ids, dataset.item_titles))
    assert text["12"] == "Thing 12 by Maker. Tools & Home Category. Brand 12." and title["12"] == "Thing 12 by Maker"
    assert text["14"].startswith("Thing 14 ")  # in item2index only: still in the catalogue, with its text
    assert text["5"] == text["15"] == "" and title["5"] == ""
    assert (dataset.stats["items_with_text"], dataset.stats["items_without_text"]) == (14, 2)


def bad_test_history(rows):
    user, history, target = rows["test"][2]
    rows["test"][2] = (user, "9 " + history, target)  # user 2's test history holds an item its valid row lacks


def bad_train_target(rows):
    user, history, _ = rows["train"][0]
    rows["train"][0] = (user, history, "14")  # user 0's newest train target is not the next item


def no_train_rows(rows):
    rows["train"] = [row for row in rows["train"] if row[0] != "3"]  # user 3's valid history holds 2 items


@pytest.mark.parametrize(
    "change,message",
    [
        (bad_test_history, r"1 of 4 users.*\(user 2: the test history does not end with the valid"),
        (bad_train_target, r"1 of 4 users.*\(user 0: the valid history is not the last train row's"),
        (no_train_rows, r"1 of 4 users.*\(user 3: no train rows, though the valid history holds 2 items"),
    ],
    ids=["test-row", "train-row", "no-train-rows"],
)
def test_a_disagreeing_user_is_a_counted_warning_naming_the_user(tmp_path, change, message):
    rows = rows_of(SEQUENCES)
    change(rows)
    with pytest.warns(UserWarning, match=message):
        dataset = build_dataset(config(write_benchmark(tmp_path / "toy", rows)))
    assert dataset.stats["users_disagreeing"] == 1
    for split in ("train", "valid", "test"):  # kept as published all the same
        assert published_rows(dataset, split) == Counter(rows[split])


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda rows: rows["valid"].pop(1), r"1 users are in the test file but not in the valid file \(e.g. \['1'\]"),
        (lambda rows: rows["test"].pop(0), r"1 users are in the valid file but not in the test file \(e.g. \['0'\]"),
        (lambda rows: rows["test"].append(rows["test"][0]), r"more than one test row \(e.g. \['0'\]"),
        (
            lambda rows: rows["train"].__setitem__(0, (*rows["train"][0][:1], "1,2", rows["train"][0][2])),
            r"item_id_list cells with commas \(lines \[2\]\).*by spaces",
        ),
        (
            lambda rows: rows["valid"].__setitem__(0, ("", *rows["valid"][0][1:])),
            r"rows without a user_id \(lines \[2\]",
        ),
    ],
    ids=["test-not-valid", "valid-not-test", "two-test-rows", "comma-separated-history", "no-user"],
)
def test_missing_or_repeated_evaluation_rows_are_errors(tmp_path, change, message):
    rows = rows_of(SEQUENCES)
    change(rows)
    with pytest.raises(DataError, match=message):
        build_dataset(config(write_benchmark(tmp_path / "toy", rows)))


def test_the_folder_must_hold_one_benchmark(tmp_path):
    folder = write_benchmark(tmp_path / "toy")
    write_benchmark(folder, name="Other")
    with pytest.raises(DataError, match=r"exactly one NAME.train.inter file \(found: \['Other.train.inter', 'Toy"):
        build_dataset(config(folder))
    (folder / "Other.train.inter").unlink()
    (folder / "Toy.valid.inter").unlink()
    with pytest.raises(DataError, match=r"lacks \['Toy.valid.inter'\]"):
        build_dataset(config(folder))
    with pytest.raises(DataError, match="is not a folder"):
        build_dataset(config(folder / "Toy.train.inter"))
    with pytest.raises(DataError, match="pre-split benchmark files, not raw interactions"):
        read_interactions(config(folder))


@pytest.mark.parametrize(
    "option", [{"k_core": 5}, {"split": "global_time"}, {"min_rating": 4.0}, {"item_file": "x"}, {"delimiter": ","}]
)
def test_options_of_unsplit_data_are_refused(tmp_path, option):
    name = next(iter(option))
    with pytest.raises(ConfigError, match=rf"^{name}=.* does not apply to data_format='recbole_split': "):
        config(tmp_path, **option)


def test_cold_items_need_the_random_selection_on_files_without_timestamps(tmp_path):
    with pytest.raises(ConfigError, match=r"'newest'.*carry no timestamps\. Use --cold_selection random"):
        config(tmp_path, split="cold_items")
    with pytest.raises(ConfigError, match=r"^cold_fraction=0\.2 applies to split='cold_items' only.*--split cold_"):
        config(tmp_path, cold_fraction=0.2)
    config(tmp_path, split="cold_items", cold_selection="random", cold_seed=3)  # accepted


def test_load_dataset_round_trips_through_the_cache(tmp_path, monkeypatch):
    folder = write_benchmark(tmp_path / "toy")
    first = load_dataset(config(folder, max_history=4))
    built = []
    monkeypatch.setattr(data_module, "build_dataset", lambda data_config: built.append(data_config))
    second = load_dataset(config(folder, max_history=4))
    assert built == []
    for split in ("train", "valid", "test"):
        for column in ("history", "target", "user", "past_offsets", "past_items"):
            assert torch.equal(getattr(first.split(split), column), getattr(second.split(split), column))
    for name in ("item_ids", "item_texts", "item_titles", "user_ids", "stats"):
        assert getattr(first, name) == getattr(second, name)
    (folder / "Toy.text").write_text((folder / "Toy.text").read_text() + "B9999X\tAn extra text.\n")
    with pytest.raises(AttributeError):  # a changed file misses the cache and calls the (patched) builder
        load_dataset(config(folder, max_history=4))
    assert len(built) == 1


def test_a_tiny_model_trains_and_evaluates_on_benchmark_files(tmp_path):
    from hybrid_rearec.hybrid.train import train

    data = config(write_benchmark(tmp_path / "toy"), max_history=4)
    # the hybrid encoder reads the joined texts; loss_positions 'all' needs the train rows in time order per user
    model = ModelConfig(
        hidden_size=16,
        num_layers=1,
        num_heads=2,
        inner_size=32,
        reasoning_steps=1,
        item_encoder="hybrid",
        text_pca_dim=8,
        loss_positions="all",
    )
    run = tmp_path / "run"
    settings = dict(epochs=1, batch_size=8, report_to="none", progress=False, log_every=1, seed=3)
    results = train(data, model, TrainConfig(output_dir=str(run), **settings))
    assert results["data"]["train_rows"] == 11 and results["data"]["test_rows"] == 4
    assert 0.0 <= results["test"]["metrics"]["ndcg@10"] <= 1.0
    saved = HybridRecommender.from_pretrained(run / "model")
    ranks = evaluate(saved, load_dataset(data).test, "test").ranks
    assert torch.equal(ranks, load_file(run / "ranks.safetensors")["test"])
    assert json.loads((run / "config.json").read_text())["data"]["data_format"] == "recbole_split"
    dataset = load_dataset(data)
    recommendation = saved.recommend([["0", "1", "2"]], k=3)[0]  # raw ids are the files' item tokens
    titles = dict(zip(dataset.item_ids, dataset.item_titles))
    assert len(recommendation.item_ids) == 3 and recommendation.titles == [titles[i] for i in recommendation.item_ids]


def test_spaces_around_a_target_are_trimmed_and_a_two_token_target_is_refused(tmp_path):
    rows = rows_of(SEQUENCES)
    rows["test"] = [(user, history, f"{target} ") for user, history, target in rows["test"]]
    dataset = build_dataset(config(write_benchmark(tmp_path / "toy", rows)))
    assert dataset.stats["items"] == 16 and published_rows(dataset, "test") == Counter(rows_of(SEQUENCES)["test"])
    rows["test"][1] = ("1", rows["test"][1][1], "13 14")
    with pytest.raises(DataError, match=r"Toy.test.inter.*item_id is not one token \(lines \[3\]\)"):
        build_dataset(config(write_benchmark(tmp_path / "toy", rows)))


def test_texts_that_cannot_be_joined_or_repeat_an_item_are_refused(tmp_path):
    folder = write_benchmark(tmp_path / "toy")
    (folder / "Toy.item2index").unlink()  # the texts are keyed by ASIN, the rows by index
    with pytest.raises(DataError, match=r"Toy.text.*ids \(e\.g\. 'B0000X'\).*no NAME.item2index"):
        build_dataset(config(folder))
    folder = write_benchmark(tmp_path / "again")
    text = folder / "Toy.text"
    text.write_text(text.read_text() + "B0001X\tAnother text. \n")
    with pytest.raises(DataError, match=r"Toy.text.*lists the item\(s\) \['B0001X'\] more than once"):
        build_dataset(config(folder))


def test_texts_that_reach_no_item_are_counted_or_refused_and_a_bad_text_header_is_named(tmp_path):
    folder = write_benchmark(tmp_path / "toy")
    text = folder / "Toy.text"
    lines = text.read_text().splitlines()
    text.write_text("\n".join([lines[0], *(line.lower() for line in lines[1:3]), *lines[3:]]) + "\n")
    with pytest.warns(
        UserWarning, match=r"2 of the 14 texts of .*Toy.text.*does not list \(e.g. \['b0000x', 'b0001x'\]"
    ):
        dataset = build_dataset(config(folder))
    assert dataset.stats["texts_without_item"] == 2
    text.write_text("\n".join([lines[0], *(line.lower() for line in lines[1:])]) + "\n")  # another keying
    with pytest.raises(DataError, match=r"none of the 14 ids of .*Toy.text.*is an ASIN of .*Toy.item2index"):
        build_dataset(config(folder))
    text.write_text("\n".join(["item_id:token\tdescription:token_seq", *lines[1:]]) + "\n")
    with pytest.raises(DataError, match=r"column 'text' not found.*The format names it 'text': rename it"):
        build_dataset(config(folder))


def test_an_item2index_numbered_otherwise_or_with_a_header_is_reported(tmp_path):
    folder = write_benchmark(tmp_path / "toy")
    index = folder / "Toy.item2index"
    lines = index.read_text().splitlines()
    index.write_text("\n".join(line for line in lines if not line.endswith("\t13")) + "\n")  # one row item unlisted
    with (
        pytest.warns(UserWarning, match=r"1 items of the .inter files are not in .*Toy.item2index.*\['13'\]"),
        pytest.warns(UserWarning, match=r"1 of the 14 texts .* does not list \(e.g. \['B0013X'\]\)"),  # 13's text
    ):
        dataset = build_dataset(config(folder))
    assert dict(zip(dataset.item_ids, dataset.item_texts))["13"] == ""
    index.write_text("asin\tindex\n" + "\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"mixes integer item indices with \['index'\].*no header line"):
        build_dataset(config(folder))
    index.write_text("\n".join(line.replace("\t", " ") for line in lines) + "\n")
    with pytest.raises(DataError, match=r"line 1 of .*Toy.item2index.* has one field \('B0003X 3'\).*tab-separated"):
        build_dataset(config(folder))


def test_a_resume_after_the_item_texts_changed_is_refused_for_a_text_encoder_only(tmp_path):
    from dataclasses import replace

    from hybrid_rearec.hybrid.train import train

    folder = write_benchmark(tmp_path / "toy")
    data = config(folder, max_history=4)
    models = {
        "hybrid": ModelConfig(hidden_size=16, num_layers=1, num_heads=2, inner_size=32, item_encoder="hybrid"),
        "id": ModelConfig(hidden_size=16, num_layers=1, num_heads=2, inner_size=32),
    }
    runs = {}
    for name, model in models.items():
        settings = TrainConfig(output_dir=str(tmp_path / name), epochs=1, batch_size=8, report_to="none")
        train(data, model, replace(settings, progress=False))
        runs[name] = replace(settings, progress=False, epochs=2, resume="latest")
    text = folder / "Toy.text"
    text.write_text(text.read_text().replace("Thing 3 by Maker", "Another thing"))
    with pytest.raises(ConfigError, match=r"other data than the dataset holds now \(the item texts .*not changed"):
        train(data, models["hybrid"], runs["hybrid"])
    assert train(data, models["id"], runs["id"])["epochs_run"] == 2  # an ID model does not read them
