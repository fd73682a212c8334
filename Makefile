# The two commands of the README, and the venv behind them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The study's data: an ImageFolder tree or .tgz of CIFAR-10 (see README): the shared copy beside this checkout when
# there is one, else the publisher's release, downloaded once (`vit-study download cifar10`).
SHARED_DATA := ../shared/data/cifar10-jpg
DOWNLOADED_DATA := $(HOME)/.cache/vit-study/cifar10
DATA ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),$(DOWNLOADED_DATA))
# What `make test` selects: everything that needs no GPU (fast, slow and cluster tests).
TEST_MARKS ?= not gpu

.PHONY: venv demo study test test-fast lint

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/.installed

demo: venv $(DATA)
	$(BIN)/vit-study smoke --data $(DATA)

# The scaling study on the embedded default (local Ray, ./mlflow.db): configs/study-cpu.yaml, about an hour.
$(DOWNLOADED_DATA): | venv
	$(BIN)/vit-study download cifar10 --out $@

study: venv $(DATA)
	$(BIN)/vit-study study --config configs/study-cpu.yaml train.data.source=$(abspath $(DATA))

test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "$(TEST_MARKS)"

test-fast: venv
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check .
