"""Publish a trained model: `python scripts/push_to_hub.py RUN_DIR REPO_ID [--private]`.

Uploads RUN_DIR/model (the folder `save_pretrained` wrote at the end of training: weights, catalogue, model
card, adapter), its card naming REPO_ID, config.json's training paths cut to their last part and a LoRA
adapter's base model named by the config's name (hub.push_folder; `model.push_to_hub` in Python does the
same); RUN_DIR may also be such a folder itself. Uses the token stored by `hf auth login`, or HF_TOKEN;
without one, or without network, it stops with a clear message before uploading anything.
"""

import argparse
import sys

from hybrid_rearec.hybrid.hub import push_folder
from hybrid_rearec.hybrid.pretrained import ModelFileError
from hybrid_rearec.hybrid.run_folder import model_folder


def push(run_dir: str, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Upload RUN_DIR/model (or a model folder) to ``repo_id``; the commit's URL."""
    return push_folder(model_folder(run_dir), repo_id, private=private, token=token)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("repo_id", help="user/name on the Hugging Face Hub")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    args = parser.parse_args()
    try:
        print(push(args.run_dir, args.repo_id, args.private))
    except (ModelFileError, PermissionError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # network down, offline mode, no write access: say so, no traceback
        print(
            f"error: upload to {args.repo_id!r} failed ({type(error).__name__}: {error}). Check your network, "
            "HF_HUB_OFFLINE and that your token can write to this repo.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
