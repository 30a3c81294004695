"""N random recommend requests for a saved model, well-formed and malformed, one per line (seeded)."""

import json
import random
import sys
from pathlib import Path

folder, count = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1000
items = json.loads((folder / "catalogue.json").read_text())["item_ids"]
rng = random.Random(0)
kinds = [
    lambda: "{not json",
    lambda: json.dumps({"history": rng.sample(items, 2), "k": rng.choice([None, 2.9, "5", -1, 10**9])}),
    lambda: json.dumps({"history": [], "k": 5}),
    lambda: json.dumps({"history": ["no-such-item"]}),
    lambda: json.dumps({"history": rng.sample(items, 3), "exclude_history": rng.choice(["false", True, 1])}),
    lambda: json.dumps({"add_items": [{"text": "Industrial glue, 2 oz, clear", "id": f"new-{rng.random()}"}]}),
    lambda: json.dumps([[[[]]]]),
    lambda: json.dumps({"histroy": rng.sample(items, 2)}),
    lambda: json.dumps({"history": rng.sample(items, 4), "k": rng.randint(1, 5000), "exclude_history": True}),
]
print("\n".join(rng.choice(kinds)() for _ in range(count)))
