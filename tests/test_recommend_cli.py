"""scripts/recommend.py answers every line of its input with one strict JSON object (a result or an error),
whatever the line holds, and exits 0."""

import importlib.util
import io
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hybrid_rearec.hybrid.config import ModelConfig
from hybrid_rearec.hybrid.model import HybridRecommender
from hybrid_rearec.hybrid.recommend import ItemCatalogue

ROOT = Path(__file__).resolve().parents[1]
IDS = [str(i) for i in range(48, 54)]  # six items


def script():
    spec = importlib.util.spec_from_file_location("recommend_script", ROOT / "scripts" / "recommend.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def saved_model(tmp_path) -> Path:
    torch.manual_seed(0)
    config = ModelConfig(hidden_size=16, num_heads=2, inner_size=32, reasoning_steps=1)
    model = HybridRecommender(config, num_items=len(IDS), max_history=4)
    model.catalogue = ItemCatalogue(IDS, [f"Movie {i}" for i in IDS])
    model.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def strict_json(line: str) -> dict:
    def refuse(constant):
        raise AssertionError(f"not strict JSON: {constant} in {line!r}")

    answer = json.loads(line, parse_constant=refuse)
    assert isinstance(answer, dict) and len(answer) == 1, line
    return answer


def answer_lines(saved_model: Path, data: bytes, *args: str) -> tuple[int, list[dict]]:
    out = io.StringIO()
    code = script().main([str(saved_model), "--k", "3", *args], stdin=io.BytesIO(data), stdout=out)
    return code, [strict_json(line) for line in out.getvalue().splitlines()]


def test_the_issue_requests_each_get_a_clear_answer(saved_model):
    requests = [
        {"history": ["50"], "k": None},
        {"history": ["50"], "k": 100, "exclude_history": True},
        {"history": ["50"], "exclude_history": "false"},
        {"history": ["50"], "k": 2.9},
        {"history": ["50"], "top_k": 3},
        {"history": [50, "Movie 51"], "k": 2},
    ]
    code, answers = answer_lines(saved_model, "\n".join(json.dumps(r) for r in requests).encode() + b"\n")
    assert code == 0 and len(answers) == len(requests)
    assert "line 1" in answers[0]["error"] and '"k"' in answers[0]["error"] and "integer" in answers[0]["error"]
    recommended = [r["item_id"] for r in answers[1]["recommendations"]]
    assert len(recommended) == 5 and "50" not in recommended  # every other item, never the excluded one
    assert '"exclude_history"' in answers[2]["error"] and "true or false" in answers[2]["error"]
    assert '"k"' in answers[3]["error"] and "2.9" in answers[3]["error"]
    assert "unknown key 'top_k'" in answers[4]["error"]
    assert '"history", "user", "k", "exclude_history"' in answers[4]["error"]
    assert len(answers[5]["recommendations"]) == 2


def junk(rng: random.Random, depth: int = 0):
    """A random JSON value, often nested."""
    kinds = ["null", "bool", "int", "float", "str", "list", "dict"] if depth < 3 else ["null", "int", "str"]
    kind = rng.choice(kinds)
    if kind == "list":
        return [junk(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == "dict":
        return {rng.choice(["history", "k", "x", "add_items"]): junk(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    values = {
        "null": None,
        "bool": rng.random() < 0.5,
        "int": rng.choice([-1, 0, 1, 3, 10**30]),
        "float": rng.choice([2.9, -0.5, 1e308]),
        "str": rng.choice(["", "50", "x", "Movie 49", "\u00e9\u00e8"]),
    }
    return values[kind]


def random_request(rng: random.Random) -> tuple[bytes, bool]:
    """One input line and whether it is a valid recommend request."""
    roll = rng.random()
    if roll < 0.1:  # not JSON at all, or not UTF-8
        return rng.choice([b'{"history": [', b"nope", b"", b"   ", b"\xff\xfe{}", b"[" * 5000, b'{"k": 1e999}']), False
    if roll < 0.2:  # JSON, but no object
        return json.dumps(junk(rng, 2)).encode(), False
    if roll < 0.35:  # an object of junk
        return json.dumps({"history": junk(rng), "k": junk(rng), "nested": junk(rng)}).encode(), False
    history = rng.choice(
        [[rng.choice(IDS)], rng.sample(IDS, 3), [int(rng.choice(IDS))], ["Movie 50"], [], ["nope"], ["48", None]]
    )
    request, valid = {"history": history}, bool(history) and history not in (["nope"], ["48", None])
    if rng.random() < 0.6:
        k = rng.choice([1, 3, 6, 7, 10**30, 0, -2, None, 2.9, "3", True])
        request["k"] = k
        valid &= isinstance(k, int) and not isinstance(k, bool) and k >= 1
    if rng.random() < 0.4:
        exclude = rng.choice([True, False, "false", 0, None])
        request["exclude_history"] = exclude
        valid &= isinstance(exclude, bool)
    if rng.random() < 0.1:
        request[rng.choice(["user", "K", "add_items"])] = 1
        valid = False
    return json.dumps(request).encode(), valid


def test_a_thousand_random_lines_are_each_answered_with_strict_json(saved_model):
    rng = random.Random(1234)
    lines = [random_request(rng) for _ in range(1000)]
    code, answers = answer_lines(saved_model, b"\n".join(line for line, _ in lines) + b"\n")
    assert code == 0 and len(answers) == len(lines)
    for number, ((line, valid), answer) in enumerate(zip(lines, answers), 1):
        if not valid:
            assert answer["error"].startswith(f"line {number}"), (line, answer)
            continue
        assert "recommendations" in answer, (line, answer)
        request = json.loads(line)
        items = [r["item_id"] for r in answer["recommendations"]]
        history = {str(i).removeprefix("Movie ") for i in request["history"]}  # titles are "Movie <id>"
        excluded = history if request.get("exclude_history") else set()
        expected = min(request.get("k", 3), len(IDS) - len(excluded))
        assert len(items) == expected and not excluded & set(items), (line, answer)


def test_the_script_answers_through_stdin_and_exits_0(saved_model):
    lines = b'{"history": ["50"], "k": null}\nnot json\n{"history": ["49", "50"], "k": 2}\n'
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "recommend.py"), str(saved_model)],
        input=lines,
        capture_output=True,
        cwd=ROOT,
        timeout=300,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answers = [strict_json(line) for line in done.stdout.decode().splitlines()]
    assert [next(iter(a)) for a in answers] == ["error", "error", "recommendations"]


def test_a_byte_order_mark_before_the_first_line_is_not_an_error(saved_model):
    code, answers = answer_lines(saved_model, b'\xef\xbb\xbf{"history": ["49", "50"], "k": 2}\n')
    assert code == 0 and len(answers[0]["recommendations"]) == 2


def test_a_missing_input_file_is_a_usage_error(saved_model, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        script().main([str(saved_model), "--input", str(tmp_path / "requests.jsonl")])
    assert stop.value.code == 2 and "requests.jsonl' is not a file" in capsys.readouterr().err


@pytest.mark.parametrize(
    "damage,problem",
    [
        (lambda entries: {}, r"KeyError: 'item_ids'"),
        (lambda entries: entries | {"item_ids": [IDS[0]] * len(IDS)}, r"ids must be unique"),
        (lambda entries: entries | {"item_texts": entries["item_texts"][1:]}, r"5 texts, 6 titles, 6 items"),
    ],
    ids=["empty", "repeated-id", "short-texts"],
)
def test_a_damaged_catalogue_is_named_and_the_script_exits_2(saved_model, capsys, damage, problem):
    path = saved_model / "catalogue.json"
    path.write_text(json.dumps(damage(json.loads(path.read_text()))))
    code = script().main([str(saved_model)], stdin=io.BytesIO(b""), stdout=io.StringIO())
    error = capsys.readouterr().err
    assert code == 2 and "catalogue.json is damaged" in error and re.search(problem, error), error


def test_a_run_folder_answers_a_user_by_the_users_whole_history(tmp_path, csv_data_config, tiny_model_config, capsys):
    from hybrid_rearec.hybrid.train import train

    from tests.test_train import quick_train_config

    train(csv_data_config, tiny_model_config, quick_train_config(tmp_path, epochs=1))
    rows = [line.split(",") for line in Path(csv_data_config.dataset).read_text().splitlines()[1:]]
    history = [item for user, item, *_ in rows if user == "u3"]  # the file lists each user's rows oldest first
    asked = [{"user": "u3"}, {"history": history}, {"user": "nobody"}, {"user": "u3", "history": history}]
    data = "".join(json.dumps(request) + "\n" for request in asked).encode()
    code, answers = answer_lines(tmp_path / "run", data)
    assert code == 0 and answers[0] == answers[1] and len(answers[0]["recommendations"]) == 3
    assert "user 'nobody' is not in the run's data" in answers[2]["error"] and "not both" in answers[3]["error"]
    assert "reading the data of" in capsys.readouterr().err
    code, answers = answer_lines(tmp_path / "run" / "model", b'{"user": "u3"}\n')  # a saved model holds no data
    assert '"user" needs the data of the run that trained the model' in answers[0]["error"]
    from hybrid_rearec.hybrid.run_folder import load_model, run_user_histories

    model = load_model(tmp_path / "run")
    users = run_user_histories(tmp_path / "run", model)
    model.catalogue.add(["a film added while serving"], item_ids=["new"])  # as add_items grows it
    assert users("u3") == history  # the run's data is read as it was trained, whatever was added since
