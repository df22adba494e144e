# The two commands of the README: `make demo` and `make test`. Both create .venv/ when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO := demo

.PHONY: venv demo test bench bench-quick clean-demo

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# The whole pipeline on the embedded demo dataset, from raw folders to a report.
demo: venv
	rm -rf $(DEMO)
	$(BIN)/ingest demo-data $(DEMO)/raw
	$(BIN)/ingest clean $(DEMO)/raw --out $(DEMO)/clean
	$(BIN)/ingest demo-check $(DEMO)/raw $(DEMO)/clean
	$(BIN)/shards build $(DEMO)/clean --out $(DEMO)/shards --size 96 --max-samples 64
	$(BIN)/shards verify $(DEMO)/shards
	$(BIN)/train run --config train/demo.toml --data $(DEMO)/shards
	$(BIN)/train eval --checkpoint $(DEMO)/runs/demo/checkpoints/best.pt --data $(DEMO)/shards/val
	@echo "demo done: cleaning report $(DEMO)/clean/report.html, training run $(DEMO)/runs/demo (curves.svg)"

test: venv
	$(BIN)/pytest -q

bench-quick: venv
	for b in bench/*_bench.py; do $(BIN)/python $$b --quick || exit 1; done

bench: venv
	for b in bench/*_bench.py; do $(BIN)/python $$b || exit 1; done

clean-demo:
	rm -rf $(DEMO)
