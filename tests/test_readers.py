import dataclasses
import json
import warnings

import pandas as pd
import pytest
from hybrid_rearec.hybrid.config import DataConfig
from hybrid_rearec.hybrid.errors import ConfigError, DataError
from hybrid_rearec.hybrid.readers import read_interactions


def test_recbole_atomic_files(tmp_path):
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "toy.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t5\t100\n1\t11\t3\t101\n2\t10\t4\t50\n"
    )
    (folder / "toy.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        '10\tToy "Story"\t1995\tAnimation Comedy\n11\tHeat\t1995\tAction\n'
    )
    raw = read_interactions(DataConfig(dataset=str(folder), data_format="recbole"))
    assert raw.users.tolist() == ["1", "1", "2"] and raw.items.tolist() == ["10", "11", "10"]
    assert raw.times.tolist() == [100.0, 101.0, 50.0]
    assert raw.item_texts["10"] == 'Toy "Story" (1995), Animation, Comedy'
    filtered = read_interactions(DataConfig(dataset=str(folder), data_format="recbole", min_rating=4))
    assert filtered.ratings.tolist() == [5.0, 3.0, 4.0]


def test_embedded_movielens_100k():
    raw = read_interactions(DataConfig())
    assert len(raw.users) == 100_000
    assert len(raw.item_texts) == 1682
    assert raw.item_texts["1"] == "Toy Story (1995), Animation, Children's, Comedy"


def test_amazon2023_jsonl(tmp_path):
    reviews = tmp_path / "reviews.jsonl"
    meta = tmp_path / "meta.jsonl"
    rows = [
        {
            "rating": 5.0,
            "title": "great",
            "text": "x",
            "asin": "A1",
            "parent_asin": "P1",
            "user_id": "U1",
            "timestamp": 1600000000000,
            "helpful_vote": 0,
            "verified_purchase": True,
        },
        {
            "rating": 2.0,
            "title": "meh",
            "text": "y",
            "asin": "A2",
            "parent_asin": "P2",
            "user_id": "U1",
            "timestamp": 1600000001000,
            "helpful_vote": 1,
            "verified_purchase": False,
        },
    ]
    reviews.write_text("\n".join(json.dumps(r) for r in rows))
    meta.write_text(
        json.dumps(
            {
                "parent_asin": "P1",
                "title": "Game",
                "categories": ["Video Games", "PC"],
                "features": ["Fun"],
                "description": ["A game."],
                "price": None,
            }
        )
    )
    with pytest.warns(UserWarning, match=r"1 of the 2 items .* no row in .*meta.jsonl' \(e.g. 'P2'\)"):
        raw = read_interactions(
            DataConfig(dataset=str(reviews), data_format="amazon2023", item_file=str(meta), min_rating=4)
        )
    assert raw.users.tolist() == ["U1", "U1"] and raw.items.tolist() == ["P1", "P2"]
    assert raw.ratings.tolist() == [5.0, 2.0]
    assert raw.item_texts["P1"] == "Game. Categories: Video Games > PC. Features: Fun. Description: A game."


def test_rechorus_folder(tmp_path):
    parts = {"train": ["1\t5\t10", "1\t6\t11"], "dev": ["1\t7\t12\t[1, 2]"], "test": ["1\t8\t13\t[3]"]}
    for name, lines in parts.items():
        header = "user_id\titem_id\ttime" + ("\tneg_items" if name != "train" else "")
        (tmp_path / f"{name}.csv").write_text("\n".join([header, *lines]) + "\n")
    raw = read_interactions(DataConfig(dataset=str(tmp_path), data_format="rechorus"))
    assert raw.items.tolist() == ["5", "6", "7", "8"] and raw.times.tolist() == [10, 11, 12, 13]
    items = tmp_path / "elsewhere.csv"  # --item_file is read in place of the folder's item_meta.csv
    items.write_text("item_id\ttitle\n5\tFive\n8\tEight\n")
    with pytest.warns(UserWarning, match=r"2 of the 4 items .* no row in .*elsewhere.csv"):
        raw = read_interactions(DataConfig(dataset=str(tmp_path), data_format="rechorus", item_file=str(items)))
    assert raw.item_titles["8"] == "Eight" and items in raw.files
    with pytest.raises(DataError, match="does not exist"):
        read_interactions(DataConfig(dataset=str(tmp_path), data_format="rechorus", item_file=str(tmp_path / "no")))
    with pytest.raises(DataError, match="--time_column none cannot order ReChorus files"):  # three files' rows
        read_interactions(DataConfig(dataset=str(tmp_path), data_format="rechorus", time_column="none"))


def test_plain_csv_and_parquet_with_column_mapping(tmp_path):
    frame = pd.DataFrame({"who": ["a", "a", "b"], "what": [3, 4, 3], "when": [1.0, 2.0, 3.0]})
    frame.to_csv(tmp_path / "x.csv", index=False)
    frame.to_parquet(tmp_path / "x.parquet")
    for name, fmt in (("x.csv", "csv"), ("x.parquet", "parquet")):
        config = DataConfig(
            dataset=str(tmp_path / name), data_format=fmt, user_column="who", item_column="what", time_column="when"
        )
        raw = read_interactions(config)
        assert raw.users.tolist() == ["a", "a", "b"] and raw.items.tolist() == ["3", "4", "3"]


def test_missing_column_names_the_column_and_the_fix(sequential_csv):
    config = DataConfig(dataset=str(sequential_csv), data_format="csv", time_column="ts")
    with pytest.raises(DataError, match=r"column 'ts' not found.*available columns.*--time_column"):
        read_interactions(config)


def test_wrong_delimiter_and_bad_timestamp_are_explained(tmp_path, sequential_csv):
    with pytest.raises(DataError, match=r"delimited by ','.*--delimiter"):
        read_interactions(DataConfig(dataset=str(sequential_csv), data_format="csv", delimiter="\t"))
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,item_id,timestamp\nu,i,yesterday\n")
    with pytest.raises(DataError, match=r"'timestamp'.*numeric.*'yesterday'"):
        read_interactions(DataConfig(dataset=str(bad), data_format="csv"))


def test_missing_file_is_explained(tmp_path):
    with pytest.raises(DataError, match="neither a built-in dataset"):
        read_interactions(DataConfig(dataset=str(tmp_path / "nope.csv"), data_format="csv"))


def test_item_text_template_fills_configured_fields():
    config = DataConfig(item_text_template="{movie_title} ({release_year}). Genres: {class}")
    raw = read_interactions(config)
    assert raw.item_texts["1"] == "Toy Story (1995). Genres: Animation Children's Comedy"
    with pytest.raises(DataError, match=r"\['plot'\].*available.*--item_text_template"):
        read_interactions(DataConfig(item_text_template="{movie_title}: {plot}"))
    with pytest.raises(DataError, match=r"not a valid template.*\{\{"):
        read_interactions(DataConfig(item_text_template="{movie_title"))


def write_rows(path, rows, quoting):
    """A CSV written the standard way (Python's csv module, RFC 4180 quoting)."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, quoting=quoting).writerows(rows)


@pytest.mark.parametrize("quoting", ["minimal", "all"])
def test_standard_quoted_csv_reads_fields_with_commas_and_quotes(tmp_path, quoting):
    import csv

    mode = {"minimal": csv.QUOTE_MINIMAL, "all": csv.QUOTE_ALL}[quoting]
    interactions = [["user_id", "item_id", "timestamp"], ["u1", "B01", "1"], ["u1", "B02", "2"], ["u2", "B01", "3"]]
    items = [
        ["item_id", "title"],
        ["B01", 'Glue, waterproof, 8 oz "Gorilla"'],
        ["B02", "Sandpaper, 80 grit"],
    ]
    write_rows(tmp_path / "inter.csv", interactions, mode)
    write_rows(tmp_path / "items.csv", items, mode)
    config = DataConfig(dataset=str(tmp_path / "inter.csv"), data_format="csv", item_file=str(tmp_path / "items.csv"))
    raw = read_interactions(config)
    assert raw.users.tolist() == ["u1", "u1", "u2"] and raw.items.tolist() == ["B01", "B02", "B01"]
    assert raw.item_texts == {"B01": 'Glue, waterproof, 8 oz "Gorilla"', "B02": "Sandpaper, 80 grit"}


def test_recbole_atomic_text_keeps_its_quote_characters(tmp_path):
    (tmp_path / "x.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\nu\t1\t1\nu\t2\t2\n")
    (tmp_path / "x.item").write_text('item_id:token\ttitle:token_seq\n1\t"Weird Al" Yankovic, Live\n2\tA\n')
    raw = read_interactions(DataConfig(dataset=str(tmp_path), data_format="recbole"))
    assert '"Weird Al" Yankovic, Live' in raw.item_texts["1"]


@pytest.mark.parametrize("content, problem", [("", "is empty"), ("user_id,item_id,timestamp\n", "no rows")])
def test_empty_and_header_only_files_are_explained(tmp_path, content, problem):
    path = tmp_path / "x.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=problem):
        read_interactions(DataConfig(dataset=str(path), data_format="csv"))


def test_the_format_is_told_from_the_name(tmp_path):
    from hybrid_rearec.hybrid.config import ConfigError

    frame = pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x, 1", "y", "x, 1"], "timestamp": [1, 2, 3]})
    frame.to_csv(tmp_path / "i.csv", index=False)
    frame.to_csv(tmp_path / "i.tsv", index=False, sep="\t")
    frame.to_parquet(tmp_path / "i.parquet")
    frame.to_json(tmp_path / "i.jsonl", orient="records", lines=True)
    (tmp_path / "reviews.jsonl").write_text('{"user_id": "a", "parent_asin": "B1", "timestamp": 1, "rating": 5}\n')
    (tmp_path / "atomic").mkdir()
    (tmp_path / "atomic" / "x.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\nu\t1\t1\n")
    expected = {"i.csv": "csv", "i.tsv": "csv", "i.parquet": "parquet", "i.jsonl": "json",
                "reviews.jsonl": "amazon2023", "atomic": "recbole"}  # fmt: skip
    for name, data_format in expected.items():
        assert DataConfig(dataset=str(tmp_path / name)).data_format == data_format, name
    assert DataConfig().data_format == "recbole"  # the built-in MovieLens-100k
    for name in ("i.csv", "i.tsv", "i.parquet", "i.jsonl"):  # each read without a format flag
        raw = read_interactions(DataConfig(dataset=str(tmp_path / name)))
        assert raw.items.tolist() == ["x, 1", "y", "x, 1"], name
    (tmp_path / "notes.doc").write_text("?")
    with pytest.raises(ConfigError, match=r"extension '.doc'.*--data_format"):
        DataConfig(dataset=str(tmp_path / "notes.doc"))
    with pytest.raises(ConfigError, match="neither a built-in dataset.*check the path") as missing:
        DataConfig(dataset=str(tmp_path / "missing.csv"))
    assert "--data_format" not in str(missing.value)  # no format reads a file that is not there
    with pytest.raises(ConfigError, match="Did you mean the built-in 'ml-100k'"):
        DataConfig(dataset="ml100k")
    with pytest.raises(ConfigError, match=r"existing file or folder: check the path \(relative[^?]*$"):
        DataConfig(dataset="ml-1m")  # another dataset, not a misspelling of the built-in one
    (tmp_path / "i.csv.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(ConfigError, match="gzip-compressed: decompress it first") as compressed:
        DataConfig(dataset=str(tmp_path / "i.csv.gz"))
    assert "--data_format" not in str(compressed.value)


def test_the_item_file_names_its_own_id_column(tmp_path):
    pd.DataFrame({"user_id": ["a", "a"], "item_id": ["1", "2"], "timestamp": [1, 2]}).to_csv(
        tmp_path / "i.csv", index=False
    )
    pd.DataFrame({"asin": ["1", "2"], "title": ["Glue, 8 oz", "Tape"]}).to_csv(tmp_path / "items.csv", index=False)
    config = DataConfig(dataset=str(tmp_path / "i.csv"), item_file=str(tmp_path / "items.csv"))
    with pytest.raises(DataError, match=r"column 'item_id' not found.*\['asin', 'title'\].*--item_id_column"):
        read_interactions(config)
    raw = read_interactions(dataclasses.replace(config, item_id_column="asin"))
    assert raw.item_texts == {"1": "Glue, 8 oz", "2": "Tape"}


def test_an_item_file_whose_ids_match_no_item_is_refused_with_both_sides_named(tmp_path):
    pd.DataFrame({"user_id": ["a", "a"], "item_id": ["i1", "i2"], "timestamp": [1, 2]}).to_csv(
        tmp_path / "i.csv", index=False
    )
    # An unquoted comma in a title: every row has one field more than the header (its columns would shift).
    (tmp_path / "items.csv").write_text("item_id,title\ni1,Glue, 8 oz\ni2,Tape, clear\n")
    config = DataConfig(dataset=str(tmp_path / "i.csv"), item_file=str(tmp_path / "items.csv"))
    with pytest.raises(DataError, match=r"items.csv.*more fields than the header.*quote a field that holds"):
        read_interactions(config)
    (tmp_path / "items.csv").write_text("code,title\nG1,Glue\nT1,Tape\n")  # ids of another column
    with pytest.raises(DataError, match=r"none of the 2 ids in .*items.csv.*'G1'.*e\.g\. 'i\d'\).*--item_id_column"):
        read_interactions(dataclasses.replace(config, item_id_column="code"))


def interactions_file(tmp_path, records: list[dict], kind: str):
    """`records` as a JSON-lines or Parquet file (where a missing value is a real null)."""
    path = tmp_path / f"x.{'jsonl' if kind == 'json' else 'parquet'}"
    frame = pd.DataFrame(records)
    frame.to_json(path, orient="records", lines=True) if kind == "json" else frame.to_parquet(path)
    return path


@pytest.mark.parametrize("kind", ["json", "parquet"])
@pytest.mark.parametrize("column,problem", [("item_id", "no id in data row 2"), ("timestamp", "nothing.*data row 2")])
def test_a_missing_id_or_time_is_refused_by_row(tmp_path, kind, column, problem):
    records = [{"user_id": "u", "item_id": 1, "timestamp": t} for t in (1, 2, 3)]
    records[1][column] = None  # a missing time would sort the item anywhere and decide the split silently
    path = interactions_file(tmp_path, records, kind)
    with pytest.raises(DataError, match=rf"'{column}'.*{problem}"):
        read_interactions(DataConfig(dataset=str(path)))


def test_ids_are_trimmed_whole_numbers_read_as_integers_and_an_empty_id_is_refused(tmp_path):
    path = interactions_file(tmp_path, [{"user_id": " u ", "item_id": 7.0, "timestamp": 1}], "parquet")
    raw = read_interactions(DataConfig(dataset=str(path)))
    assert raw.users.tolist() == ["u"] and raw.items.tolist() == ["7"]  # not ' u ' and '7.0'
    (tmp_path / "x.csv").write_text("user_id,item_id,timestamp\nu,a,1\nu, ,2\n")
    with pytest.raises(DataError, match=r"'item_id'.*no id in data row 2 \(1 such rows\)"):
        read_interactions(DataConfig(dataset=str(tmp_path / "x.csv")))
    listed = interactions_file(tmp_path, [{"user_id": "u", "item_id": ["i1"], "timestamp": 1}], "parquet")
    with pytest.raises(DataError, match=r"'item_id' .* holds ndarray values .* not single ids"):
        read_interactions(DataConfig(dataset=str(listed)))


def test_a_missing_text_cell_is_no_text_and_a_repeated_item_is_refused(tmp_path):
    path = interactions_file(tmp_path, [{"user_id": "u", "item_id": i, "timestamp": i} for i in (1, 2)], "json")
    items = tmp_path / "items.jsonl"
    items.write_text('{"item_id": 1, "title": "Glue", "brand": null}\n{"item_id": 2, "title": null, "brand": "3M"}\n')
    raw = read_interactions(DataConfig(dataset=str(path), item_file=str(items)))
    assert raw.item_texts == {"1": "title: Glue", "2": "brand: 3M"}  # never 'nan'
    assert raw.item_titles == {"1": "Glue", "2": ""}
    alone = read_interactions(DataConfig(dataset=str(path), item_file=str(items), item_text_columns="brand"))
    assert alone.item_texts == {"1": "", "2": "3M"}
    items.write_text('{"item_id": 1, "title": "Glue"}\n{"item_id": 1, "title": "Tape"}\n')
    with pytest.raises(DataError, match=r"lists the item\(s\) \['1'\] more than once"):
        read_interactions(DataConfig(dataset=str(path), item_file=str(items)))


def test_an_amazon_record_with_a_null_title_has_no_nan_in_its_text(tmp_path):
    reviews, meta = tmp_path / "reviews.jsonl", tmp_path / "meta.jsonl"
    reviews.write_text('{"user_id": "U", "parent_asin": "P", "timestamp": 1, "rating": 5}\n')
    meta.write_text(
        '{"parent_asin": "P", "title": null, "features": ["Sturdy"], "categories": null}\n'
        '{"parent_asin": "Q", "title": "Tape", "features": [], "categories": ["Office"]}\n'
    )
    raw = read_interactions(DataConfig(dataset=str(reviews), data_format="amazon2023", item_file=str(meta)))
    assert raw.item_texts == {"P": "Features: Sturdy", "Q": "Tape. Categories: Office"}


def test_a_byte_order_mark_is_read_and_a_bad_row_names_its_reason(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(b"\xef\xbb\xbfuser_id,item_id,timestamp\r\nu,a,1\r\nu,b,2\r\n")  # as spreadsheets save it
    assert read_interactions(DataConfig(dataset=str(path))).items.tolist() == ["a", "b"]
    path.write_text("user_id,item_id,timestamp\nu,a,1\nu,b,2,9\n")
    with pytest.raises(DataError, match=r"could not read .*x.csv.* as csv: .*Expected 3 fields in line 3, saw 4"):
        read_interactions(DataConfig(dataset=str(path)))


def test_a_recbole_folder_with_two_inter_files_is_refused_and_the_delimiter_is_honoured(tmp_path):
    folder = tmp_path / "atomic"
    folder.mkdir()
    (folder / "a.inter").write_text("user_id:token,item_id:token,timestamp:float\nu,1,1\nu,2,2\n")
    raw = read_interactions(DataConfig(dataset=str(folder), delimiter=","))
    assert raw.items.tolist() == ["1", "2"]
    assert DataConfig(dataset=str(folder / "a.inter")).data_format == "recbole"  # one atomic file, by its name
    (folder / "b.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\nu\t1\t1\n")
    with pytest.raises(DataError, match=r"exactly one \.inter file \(found: \['a.inter', 'b.inter'\]\)"):
        read_interactions(DataConfig(dataset=str(folder)))


def good_rows(extra: str = "") -> str:
    return "".join(f"u{u},i{(u + k) % 6},{100 + k}{extra}\n" for u in range(5) for k in range(4))


@pytest.mark.parametrize("header,extra", [("user_id,item_id,timestamp\n", ",4.0"), ("user_id,item_id\n", "")])
def test_a_first_row_longer_than_the_header_is_refused_not_shifted(tmp_path, header, extra):
    path = tmp_path / "x.csv"  # a trailing field on every row, or a header missing a name
    path.write_text(header + good_rows(extra))
    with pytest.raises(DataError, match="more fields than the header has names"):
        read_interactions(DataConfig(dataset=str(path), data_format="csv"))


def test_folders_gzip_and_long_delimiters_are_named_not_tracebacks(tmp_path):
    import gzip

    (tmp_path / "folder").mkdir()
    with pytest.raises(DataError, match="is a folder, not a file"):
        read_interactions(DataConfig(dataset=str(tmp_path / "folder"), data_format="csv"))
    packed = tmp_path / "x.csv"
    packed.write_bytes(gzip.compress(("user_id,item_id,timestamp\n" + good_rows()).encode()))
    with pytest.raises(DataError, match="gzip-compressed: decompress it first"):
        read_interactions(DataConfig(dataset=str(packed), data_format="csv"))
    plain = tmp_path / "ml1m.dat"
    plain.write_text("user_id::item_id::timestamp\n" + good_rows().replace(",", "::"))
    with pytest.raises(DataError, match="more than one character.*--delimiter tab"):
        read_interactions(DataConfig(dataset=str(plain), data_format="csv", delimiter="::"))
    assert DataConfig(dataset=str(plain), data_format="csv", delimiter="TAB").delimiter == "\t"  # as on the CLI


def test_a_load_from_the_cache_warns_as_the_first_read_did(tmp_path):
    from hybrid_rearec.hybrid.data import load_dataset
    from hybrid_rearec.hybrid.errors import DataWarning

    path, items = tmp_path / "x.csv", tmp_path / "items.csv"
    path.write_text("user_id,item_id,timestamp\n" + good_rows())
    items.write_text("item_id,title\n" + "".join(f"i{n},thing {n}\n" for n in range(4)))  # 2 of 6 items lack one
    config = DataConfig(dataset=str(path), data_format="csv", item_file=str(items), cache_dir=str(tmp_path / "c"))
    said = []
    for _ in range(2):  # read, then from the cache (the second would otherwise say nothing)
        with pytest.warns(DataWarning) as caught:
            load_dataset(config)
        said.append(sorted(str(w.message) for w in caught if issubclass(w.category, DataWarning)))
    assert list((tmp_path / "c" / "data").iterdir()) and said[0] == said[1]
    assert any("2 of the 6 items" in message for message in said[1])
    with warnings.catch_warnings():  # a filter naming the module that warns still applies
        warnings.simplefilter("error", DataWarning)  # any DataWarning not ignored would fail the load
        warnings.filterwarnings("ignore", module=r"hybrid_rearec\.hybrid\.readers")  # checked first
        load_dataset(dataclasses.replace(config, cache_dir=str(tmp_path / "c2")))
    single = tmp_path / "single.csv"  # one interaction per user: no row to train on, after the items warning
    single.write_text("user_id,item_id,timestamp\n" + "".join(f"u{n},i{n},{n}\n" for n in range(6)))
    with pytest.warns(DataWarning, match="2 of the 6 items"), pytest.raises(DataError):
        load_dataset(dataclasses.replace(config, dataset=str(single)), use_cache=False)


def test_files_without_timestamps_read_in_row_order_and_text_date_times_read_as_seconds(tmp_path):
    timed, untimed, dated = tmp_path / "timed.csv", tmp_path / "untimed.csv", tmp_path / "dated.csv"
    timed.write_text("user_id,item_id,timestamp\n" + good_rows())
    untimed.write_text("user_id,item_id\n" + "".join(row.rsplit(",", 1)[0] + "\n" for row in good_rows().splitlines()))
    with pytest.raises(DataError, match=r"column 'timestamp' not found.*set --time_column none"):
        read_interactions(DataConfig(dataset=str(untimed), data_format="csv"))
    in_order = read_interactions(DataConfig(dataset=str(untimed), data_format="csv", time_column="none"))
    assert in_order.times.tolist() == list(range(20))  # the rows' order is the time order
    rows = read_interactions(DataConfig(dataset=str(timed), data_format="csv"))
    stamps = pd.to_datetime(rows.times, unit="s", utc=True).strftime("%Y-%m-%dT%H:%M:%S%z")  # as pandas writes
    dated.write_text("user_id,item_id,timestamp\n" + "".join(
        f"{user},{item},{stamp}\n" for user, item, stamp in zip(rows.users, rows.items, stamps)))  # fmt: skip
    assert read_interactions(DataConfig(dataset=str(dated), data_format="csv")).times.tolist() == rows.times.tolist()
    lines = dated.read_text().splitlines()
    dated.write_text("\n".join([*lines[:3], lines[3].rsplit(",", 1)[0] + ",soon", *lines[4:]]) + "\n")
    with pytest.raises(DataError, match=r"'timestamp' .* holds 'soon' \(data row 3,"):  # the bad cell, not row 1
        read_interactions(DataConfig(dataset=str(dated), data_format="csv"))
    with pytest.raises(ConfigError, match="split=global_time cuts at timestamps, which time_column='none'"):
        DataConfig(dataset=str(untimed), time_column="none", split="global_time", valid_time=3, test_time=4)


def test_item_files_that_miss_items_are_counted_and_one_of_another_kind_keeps_its_delimiter(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("user_id;item_id;timestamp\n" + good_rows().replace(",", ";"))
    items = tmp_path / "items.tsv"  # tab-separated beside a ';' file: --delimiter is the interactions'
    items.write_text("item_id\ttitle\n" + "".join(f"i{n}\tthing; {n}\n" for n in range(4)))
    config = DataConfig(dataset=str(path), data_format="csv", delimiter=";", item_file=str(items))
    with pytest.warns(UserWarning, match=r"2 of the 6 items .* have no row in .*items.tsv.*e.g. 'i4'"):
        raw = read_interactions(config)
    assert raw.item_texts["i3"] == "thing; 3"
    items = tmp_path / "items.csv"  # the same kind of file: --delimiter reaches it
    items.write_text("item_id;title\n" + "".join(f"i{n};thing {n}\n" for n in range(6)))
    raw = read_interactions(dataclasses.replace(config, item_file=str(items)))
    assert raw.item_texts["i5"] == "thing 5"
    tabbed = tmp_path / "x.txt"  # tab-separated interactions beside a comma .csv item file: each keeps its own
    tabbed.write_text("user_id\titem_id\ttimestamp\n" + good_rows().replace(",", "\t"))
    commas = tmp_path / "commas.csv"
    commas.write_text("item_id,title\n" + "".join(f"i{n},thing {n}\n" for n in range(6)))
    raw = read_interactions(DataConfig(dataset=str(tabbed), data_format="csv", delimiter="tab", item_file=str(commas)))
    assert raw.item_texts["i2"] == "thing 2"
    folder = tmp_path / "recbole"
    folder.mkdir()
    (folder / "d.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n" + good_rows().replace(",", "\t"))
    (folder / "d.item").write_text("item_id:token\ttitle:token_seq\nX1\tfoo\n")
    with pytest.raises(DataError, match=r"none of the 1 ids in .*d.item.*--item_column for recbole"):
        read_interactions(DataConfig(dataset=str(folder), data_format="recbole"))


def test_date_times_become_unix_seconds_whatever_their_unit_and_infinite_times_are_refused(tmp_path):
    frame = pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["1", "2", "1"]})
    seconds = pd.Series([100, 200, 300])
    for unit in ("s", "ms", "us"):  # Parquet stores any of these
        stamped = frame.assign(timestamp=pd.to_datetime(seconds, unit="s").astype(f"datetime64[{unit}]"))
        stamped.to_parquet(tmp_path / f"{unit}.parquet")
        raw = read_interactions(DataConfig(dataset=str(tmp_path / f"{unit}.parquet"), data_format="parquet"))
        assert raw.times.tolist() == [100.0, 200.0, 300.0]
    (tmp_path / "inf.csv").write_text("user_id,item_id,timestamp\na,1,100\na,2,inf\n")
    with pytest.raises(DataError, match=r"column 'timestamp' .* must be numeric, but holds 'inf'"):
        read_interactions(DataConfig(dataset=str(tmp_path / "inf.csv"), data_format="csv"))


def test_a_stray_quote_that_swallows_lines_is_warned_about(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("user_id,item_id,timestamp\n" + good_rows())
    items = tmp_path / "items.tsv"
    items.write_text('item_id\ttitle\ni0\tT0\ni1\t"12 inch ruler\ni2\tT2\ni3\tBest 27" monitor\ni4\tT4\ni5\tT5\n')
    with pytest.warns(UserWarning) as said:
        read_interactions(DataConfig(dataset=str(path), data_format="csv", item_file=str(items)))
    messages = [str(w.message) for w in said]
    assert any("1 rows of" in m and "quoted field that spans lines (the first: data row 2)" in m for m in messages)
    assert any("2 of the 6 items" in m and "(e.g. 'i2')" in m for m in messages)  # the swallowed rows' items


@pytest.mark.parametrize(
    "data_format,setting", [("amazon2023", "time_column"), ("rechorus", "user_column"), ("recbole", "item_id_column")]
)
def test_a_column_setting_a_format_never_reads_is_refused_not_ignored(tmp_path, data_format, setting):
    from hybrid_rearec.hybrid.config import ModelConfig, TrainConfig, check_configs
    from hybrid_rearec.hybrid.errors import ConfigError

    data = DataConfig(dataset=str(tmp_path), data_format=data_format, **{setting: "nope"})  # a saved run loads
    with pytest.raises(ConfigError, match=rf"{setting}='nope' does not apply to data_format='{data_format}'"):
        check_configs(data, ModelConfig(), TrainConfig())  # a new run is refused before it starts
    check_configs(data, ModelConfig(), TrainConfig(resume="latest", output_dir=str(tmp_path)))  # a run goes on


def test_a_row_with_an_extra_field_is_said_once_with_its_line(tmp_path, capfd):
    path = tmp_path / "x.csv"
    path.write_text("user_id,item_id,timestamp\nu1,i1,100\nu1,i2,101,5\n")
    with pytest.raises(DataError, match="Expected 3 fields in line 3, saw 4"):
        read_interactions(DataConfig(dataset=str(path), data_format="csv"))
    assert "Failed to read file" not in capfd.readouterr().err  # the library's own line would say it twice


def test_header_names_are_trimmed_and_an_unnamed_column_is_explained(tmp_path):
    spaced = tmp_path / "spaced.csv"
    spaced.write_text("user_id, item_id, timestamp\nu,a,1\nu,b,2\n")  # a space after each comma
    assert read_interactions(DataConfig(dataset=str(spaced))).items.tolist() == ["a", "b"]
    for name, content in (("trailing.csv", "user_id,item_id,timestamp,\nu,a,1,\n"), ("index.csv", ",user_id\n0,u\n")):
        (tmp_path / name).write_text(content)
        with pytest.raises(DataError, match=r"column \d of .*header has no name.*to_csv without index=False"):
            read_interactions(DataConfig(dataset=str(tmp_path / name)))


def test_an_exports_word_for_no_value_as_an_id_is_warned_about(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("user_id,item_id,timestamp\nu,a,1\nNULL,b,2\nnan,a,3\n")
    with pytest.warns(UserWarning, match=r"2 rows of column 'user_id'.* hold \['NULL', 'nan'\].*data row 2"):
        raw = read_interactions(DataConfig(dataset=str(path)))
    assert raw.users.tolist() == ["u", "NULL", "nan"]  # read as given all the same


def test_blank_text_cells_are_no_text_and_template_fields_are_text(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("user_id,item_id,timestamp\nu,a,1\nu,b,2\n")
    items = tmp_path / "items.csv"
    items.write_text("item_id,title,brand\na,  Glue  , \nb, ,3M\n")
    raw = read_interactions(DataConfig(dataset=str(path), item_file=str(items)))
    assert raw.item_texts == {"a": "title: Glue", "b": "brand: 3M"}
    only = read_interactions(DataConfig(dataset=str(path), item_file=str(items), item_text_columns="brand"))
    assert only.item_texts == {"a": "", "b": "3M"}  # a blank cell is no text
    with pytest.raises(DataError, match=r"formats a field \(\{title:.2f\}\): every field is text"):
        read_interactions(DataConfig(dataset=str(path), item_file=str(items), item_text_template="{title:.2f}"))
    with pytest.raises(DataError, match=r"has a field without a column name: write \{title\}, not \{\}"):
        read_interactions(DataConfig(dataset=str(path), item_file=str(items), item_text_template="{} by {title}"))


def test_a_number_as_an_amazon_title_is_text(tmp_path):
    reviews, meta = tmp_path / "reviews.jsonl", tmp_path / "meta.jsonl"
    reviews.write_text('{"user_id": "U", "parent_asin": "P", "timestamp": 1, "rating": 5}\n')
    meta.write_text('{"parent_asin": "P", "title": 1984, "features": ["Novel"]}\n{"parent_asin": "Q", "title": 2.5}\n')
    raw = read_interactions(DataConfig(dataset=str(reviews), data_format="amazon2023", item_file=str(meta)))
    assert raw.item_texts == {"P": "1984. Features: Novel", "Q": "2.5"}  # a float column: 1984, not 1984.0
    reviews.write_text('{"user_id": "U", "asin": "P", "timestamp": 1, "rating": 5}\n')
    with pytest.raises(DataError, match=r"column 'parent_asin' not found.*The format names it 'parent_asin'"):
        read_interactions(DataConfig(dataset=str(reviews), data_format="amazon2023"))


def test_recbole_typed_names_twice_and_a_named_item_file_that_is_missing_are_refused(tmp_path):
    folder = tmp_path / "toy"
    folder.mkdir()
    inter = folder / "toy.inter"
    inter.write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t10\t100\n")
    with pytest.raises(DataError, match=r"does not exist"):
        read_interactions(DataConfig(dataset=str(folder), data_format="recbole", item_file=str(folder / "typo.item")))
    inter.write_text("user_id:token\titem_id:token\ttimestamp:float\ttimestamp:token\n1\t10\t100\t100\n")
    with pytest.raises(DataError, match=r"names the column\(s\) \['timestamp'\] twice with different types"):
        read_interactions(DataConfig(dataset=str(folder), data_format="recbole"))


def test_rechorus_reads_a_timestamp_column_and_names_its_fixed_columns(tmp_path):
    (tmp_path / "train.csv").write_text("user_id\titem_id\ttimestamp\n1\t5\t10\n1\t6\t11\n")
    raw = read_interactions(DataConfig(dataset=str(tmp_path), data_format="rechorus"))
    assert raw.times.tolist() == [10, 11]
    (tmp_path / "train.csv").write_text("uid\titem_id\ttime\n1\t5\t10\n")
    with pytest.raises(DataError, match=r"column 'user_id' not found.*The format names it 'user_id': rename it"):
        read_interactions(DataConfig(dataset=str(tmp_path), data_format="rechorus"))


def test_a_rating_that_is_no_number_is_explained_as_a_rating(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("user_id,item_id,timestamp,rating\nu,a,1,good\n")
    with pytest.raises(DataError, match=r"'rating'.*'good'.*Give every row a numeric rating"):
        read_interactions(DataConfig(dataset=str(path), min_rating=3, rating_column="rating"))


def test_a_json_id_column_of_numbers_and_strings_is_refused_not_merged(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"user_id": "u", "item_id": 7, "timestamp": 1}\n{"user_id": "u", "item_id": 8, "timestamp": 2}\n')
    assert read_interactions(DataConfig(dataset=str(path))).items.tolist() == ["7", "8"]
    path.write_text(
        '{"user_id": "u", "item_id": 7, "timestamp": 1}\n{"user_id": "u", "item_id": "007", "timestamp": 2}\n'
    )
    with pytest.raises(DataError, match=r"'item_id' .* holds numbers and strings \(a string on line 2\)"):
        read_interactions(DataConfig(dataset=str(path)))  # read as given, "007" would become item 7
    import gzip

    packed = tmp_path / "x.jsonl.gz"  # the JSON reader decompresses it: so does the check
    packed.write_bytes(gzip.compress(path.read_bytes()))
    with pytest.raises(DataError, match=r"holds numbers and strings \(a string on line 2\)"):
        read_interactions(DataConfig(dataset=str(packed), data_format="json"))
    named = tmp_path / "x.txt"  # JSON lines by --data_format, not by name: checked all the same
    named.write_text(
        '{"user_id": 1, "item_id": "a", "timestamp": 1}\n{"user_id": "01", "item_id": "b", "timestamp": 2}\n'
    )
    with pytest.raises(DataError, match=r"'user_id' .* holds numbers and strings \(a string on line 2\)"):
        read_interactions(DataConfig(dataset=str(named), data_format="json"))
