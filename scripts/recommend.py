"""Recommend with a saved model: `python scripts/recommend.py RUN_OR_MODEL_DIR_OR_REPO [--input FILE] [--k 10]`.

Reads JSON lines (a file, or stdin) and writes one JSON line per request to stdout:

    {"history": ["50", "Star Wars (1977)"], "k": 5, "exclude_history": true}   a history of ids or titles
    {"add_items": [{"text": "Title (2025), Drama", "id": "x1"}]}              new items, by text (cold start)

A request that fails gets {"error": "..."} and the next line is still served.
"""

import argparse
import json
import sys

from hybrid_rearec.hybrid.errors import ConfigError, DataError
from hybrid_rearec.hybrid.model import HybridRecommender
from hybrid_rearec.hybrid.pretrained import ModelFileError
from hybrid_rearec.hybrid.run_folder import load_model


def serve(model: HybridRecommender, request: dict, default_k: int) -> dict:
    if "add_items" in request:
        items = request["add_items"]
        if not isinstance(items, list) or not all(isinstance(item, dict) and "text" in item for item in items):
            raise DataError('"add_items" must be a list of {"text": ..., "id": ... (optional), "title": ...}')
        ids = [item["id"] for item in items] if all("id" in item for item in items) else None
        titles = [item.get("title", item["text"]) for item in items]
        return {"added": model.add_items([item["text"] for item in items], ids, titles)}
    if not isinstance(request.get("history"), list):
        raise DataError('a request needs "history": a list of item ids or titles, oldest first')
    top = model.recommend(
        [request["history"]], k=int(request.get("k", default_k)), exclude_history=bool(request.get("exclude_history"))
    )[0]
    rows = zip(top.item_ids, top.titles, top.scores)
    return {"recommendations": [{"item_id": i, "title": t, "score": s} for i, t, s in rows]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "model", help="a run folder, a folder written by save_pretrained (a run's model/) or a Hub repo id"
    )
    parser.add_argument("--input", default="-", help="JSON-lines file of requests ('-' = stdin)")
    parser.add_argument("--k", type=int, default=10, help="items per recommendation unless a request sets k")
    args = parser.parse_args()
    try:
        model = load_model(args.model)
    except (ModelFileError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    lines = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")
    with lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise DataError("each line must be a JSON object")
                answer = serve(model, request, args.k)
            except json.JSONDecodeError as error:
                answer = {"error": f"line {number} is not JSON: {error}"}
            except (DataError, ConfigError, ValueError) as error:
                answer = {"error": f"line {number}: {error}"}
            print(json.dumps(answer, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
