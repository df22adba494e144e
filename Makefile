# The two commands of the README: `make demo` and `make test`. Both create .venv/ when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO := demo

.PHONY: venv browser demo test bench bench-quick clean-demo

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,ray]'
	touch $(STAMP)

venv: $(STAMP)

# The whole pipeline on the embedded demo dataset, from raw folders to a report.
demo: venv
	rm -rf $(DEMO)
	$(BIN)/ingest demo-data $(DEMO)/raw --label-noise 0.15
	$(BIN)/ingest clean $(DEMO)/raw --out $(DEMO)/clean
	$(BIN)/ingest demo-check $(DEMO)/raw $(DEMO)/clean
	$(BIN)/shards build $(DEMO)/clean --out $(DEMO)/shards --size 96 --max-samples 64
	$(BIN)/shards verify $(DEMO)/shards
	$(BIN)/train run --config train/demo.toml --data $(DEMO)/shards
	$(BIN)/train eval --checkpoint $(DEMO)/runs/demo/checkpoints/best.pt --data $(DEMO)/shards/val
	# The label audit: find the planted flips, score them, clean them out, retrain, compare (validation stays clean).
	$(BIN)/train audit $(DEMO)/runs/demo --manifest $(DEMO)/clean --out $(DEMO)/audit
	$(BIN)/train audit --score $(DEMO)/audit --planted $(DEMO)/raw/planted_flips.csv
	$(BIN)/ingest clean $(DEMO)/raw --out $(DEMO)/clean_audited --suspects $(DEMO)/audit
	$(BIN)/shards build $(DEMO)/clean_audited --out $(DEMO)/shards_audited --size 96 --max-samples 64
	$(BIN)/train run --config train/demo.toml --data $(DEMO)/shards_audited --name demo_audited
	$(BIN)/train eval --checkpoint $(DEMO)/runs/demo_audited/checkpoints/best.pt --data $(DEMO)/shards/val
	# A second round: the cleaned run judges every training image again (its view; its own AUM where it trained on the image).
	$(BIN)/train audit $(DEMO)/runs/demo --view $(DEMO)/runs/demo_audited --manifest $(DEMO)/clean --out $(DEMO)/audit2
	$(BIN)/train audit --score $(DEMO)/audit2 --planted $(DEMO)/raw/planted_flips.csv
	@echo "demo done: cleaning report $(DEMO)/clean/report.html, training run $(DEMO)/runs/demo (curves.png; tensorboard --logdir $(DEMO)/runs), label audit $(DEMO)/audit/audit.html (second round $(DEMO)/audit2/audit.html)"

# The report pages are checked in a real headless Chromium (Debian's package), the Korean class names
# in pages and charts with Noto Sans CJK (Debian's fonts-noto-cjk).
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	    else echo "make test needs chromium (Debian/Ubuntu: sudo apt-get install chromium)"; exit 1; fi; }
	@fc-list "Noto Sans CJK KR" 2>/dev/null | grep -q . || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fontconfig fonts-noto-cjk >/dev/null; \
	    else echo "make test needs fonts-noto-cjk (Debian/Ubuntu: sudo apt-get install fonts-noto-cjk)"; exit 1; fi; }

# Style first (ruff: the formatter and the linter, 120 columns; settings in pyproject.toml), then the tests.
test: venv browser
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/pytest -q

bench-quick: venv
	for b in bench/*_bench.py; do $(BIN)/python $$b --quick || exit 1; done

bench: venv
	for b in bench/*_bench.py; do $(BIN)/python $$b || exit 1; done

clean-demo:
	rm -rf $(DEMO)
