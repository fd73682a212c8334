# The two commands of the README, and the venv behind them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The study's data: an ImageFolder tree or .tgz of CIFAR-10 (see README). Here: the shared copy.
DATA ?= ../shared/data/cifar10-jpg
# What `make test` selects: everything that needs no GPU (fast, slow and cluster tests).
TEST_MARKS ?= not gpu

.PHONY: venv demo study test test-fast lint

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/vit-study smoke --data $(DATA)

# The scaling study on the embedded default (local Ray, ./mlflow.db): configs/study-cpu.yaml, about an hour.
study: venv
	$(BIN)/vit-study study --config configs/study-cpu.yaml train.data.source=$(abspath $(DATA))

test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "$(TEST_MARKS)"

test-fast: venv
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check .
