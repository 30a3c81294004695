"""Publish a trained model: `python scripts/push_to_hub.py RUN_DIR REPO_ID [--private]`.

Uploads RUN_DIR/model (the folder `save_pretrained` wrote at the end of training: weights, catalogue, model
card, adapter), its card naming REPO_ID, config.json's training paths cut to their last part and a LoRA
adapter's base model named by the config's name (hub.public_files); RUN_DIR may also be such a folder
itself. Uses the token stored by `hf auth login`, or HF_TOKEN; without one, or without network, it stops with
a clear message before uploading anything.
"""

import argparse
import sys

from hybrid_rearec.hybrid.hub import card_for_repo, public_files
from hybrid_rearec.hybrid.pretrained import ModelFileError, check_files
from hybrid_rearec.hybrid.run_folder import model_folder


def push(run_dir: str, repo_id: str, private: bool = False, token: str | None = None) -> str:
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.utils import HFValidationError, get_token, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ModelFileError(f"{repo_id!r} is no Hub repo id ({error}); write it as user/name.") from None
    folder = model_folder(run_dir)
    check_files(folder)  # a damaged config, catalogue or weights file is named before anything goes up
    token = token or get_token()
    if not token:
        raise PermissionError("no Hugging Face token: run `hf auth login` or set HF_TOKEN, then try again.")
    api = HfApi(token=token)
    repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    # The folder as saved, but its card names the repo (the saved card holds a placeholder for it) and no
    # local path of the machine it was trained on is uploaded (hub.public_files).
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix() != "README.md")
    changed = public_files(folder)
    operations = [
        CommitOperationAdd(name, changed.get(name, str(path)))
        for path in files
        for name in [path.relative_to(folder).as_posix()]
    ]
    if (folder / "README.md").exists():
        card = card_for_repo((folder / "README.md").read_text(encoding="utf-8"), repo.repo_id)
        operations.append(CommitOperationAdd("README.md", card.encode("utf-8")))
    commit = api.create_commit(repo.repo_id, operations, commit_message="Upload hybrid-rearec model")
    return str(commit.commit_url)


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
