# Two commands do all the set-up on a fresh machine:
#   make example   creates .venv, trains SOAP-BPNN on the bundled ethanol data,
#                  evaluates it and exports it
#   make test      creates .venv, runs lint and the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv example test lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# CPU build of torch, pinned: an unpinned torch pulls a multi-GB CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

example: $(STAMP)
	cd examples/ethanol && ../../$(BIN)/atomtrain train options.yaml
	cd examples/ethanol && ../../$(BIN)/atomtrain eval model.pt eval.yaml -o predictions.xyz
	cd examples/ethanol && ../../$(BIN)/atomtrain export model.ckpt -o exported.pt

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: $(STAMP)
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

test: lint
	$(BIN)/python -m pytest tests -x -q

clean:
	rm -rf $(VENV) examples/ethanol/outputs examples/ethanol/*.pt examples/ethanol/*.ckpt
