# Two commands do all the set-up on a fresh machine:
#   make example   creates .venv, trains SOAP-BPNN on the bundled ethanol data,
#                  evaluates it and exports it
#   make test      creates .venv, runs lint, the whole test suite and builds the docs
#   make docs      builds the documentation site into site/
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv example test lint format docs clean

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
	$(BIN)/ruff check src tests bench docs/generate.py
	$(BIN)/ruff format --check src tests bench docs/generate.py

format: $(STAMP)
	$(BIN)/ruff check --fix src tests bench docs/generate.py
	$(BIN)/ruff format src tests bench docs/generate.py

test: lint docs
	$(BIN)/python -m pytest tests -x -q

# generated pages (docs/architectures/, docs/options.md) come from the code;
# --strict turns every mkdocs warning (a broken link, say) into a failure
docs: $(STAMP)
	$(BIN)/python docs/generate.py
	$(BIN)/mkdocs build --strict -d site

clean:
	rm -rf $(VENV) site docs/architectures docs/options.md examples/ethanol/outputs examples/ethanol/*.pt examples/ethanol/*.ckpt
