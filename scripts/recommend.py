"""Recommend with a saved model: `python scripts/recommend.py RUN_OR_MODEL_DIR_OR_REPO [--input FILE] [--k 10]`.

Reads JSON lines (a file, or stdin) and writes one JSON line per input line to stdout, in order:

    {"history": ["50", "Star Wars (1977)"], "k": 5, "exclude_history": true}   a history of ids or titles
    {"user": "196", "k": 5}                                     a user of the run's data (serving a run folder)
    {"add_items": [{"text": "Title (2025), Drama", "id": "x1", "title": "Title"}]}   new items, by text

"history" (a non-empty list of item ids or titles (ignoring case), oldest first) or, serving a run folder, "user"
(a user id of the run's data: that user's whole history) is required, "k" (an integer >= 1, default --k) and
"exclude_history" (true or false) are optional; any other key is refused. Every line is
answered, blank and broken ones too: {"recommendations": [...]}, {"added": [ids]} or {"error": "line N: ..."}.
The output is strict JSON and the exit code 0 once the model is loaded (2 when it cannot be).
"""

import argparse
import sys
from pathlib import Path
from typing import BinaryIO, TextIO

from hybrid_rearec.hybrid.errors import ConfigError
from hybrid_rearec.hybrid.pretrained import ModelFileError
from hybrid_rearec.hybrid.recommend import answer_lines
from hybrid_rearec.hybrid.run_folder import load_model, run_user_histories


def main(argv: list[str] | None = None, stdin: BinaryIO | None = None, stdout: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "model", help="a run folder, a folder written by save_pretrained (a run's model/) or a Hub repo id"
    )
    parser.add_argument("--input", default="-", help="JSON-lines file of requests ('-' = stdin)")
    parser.add_argument(
        "--k", type=int, default=10, help="items per recommendation unless a request sets k (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.k < 1:
        parser.error(f"--k must be at least 1, got {args.k}")
    if args.input != "-" and not Path(args.input).is_file():
        parser.error(f"--input {args.input!r} is not a file; give a JSON-lines file of requests, or '-' for stdin")
    try:
        model = load_model(args.model)
    except (ModelFileError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    stdout = stdout or sys.stdout
    # Bytes, decoded line by line: a line that is not UTF-8 gets its own error instead of ending the input.
    lines = (stdin or sys.stdin.buffer) if args.input == "-" else open(args.input, "rb")
    with lines:
        for answer in answer_lines(model, lines, args.k, run_user_histories(args.model, model)):
            print(answer, file=stdout, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
