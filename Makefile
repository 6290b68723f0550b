# `make demo` and `make test` set everything up on a fresh machine: a Python 3.11 virtual
# environment in .venv (the local torch 2.13.0 CPU wheel is for CPython 3.11), installed with
# constraints.txt so that no CUDA torch is ever pulled.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench bench-peers clean chromium

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mtlbench demo

# The HTML report test runs in headless Chromium (Debian's package); as root with apt-get it is
# installed here (about a minute), elsewhere that one test is skipped with its reason.
chromium:
	@command -v chromium >/dev/null 2>&1 || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium (for the HTML report test)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "no chromium: the HTML report test will be skipped"; fi; }

test: $(STAMP) chromium
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: $(STAMP)
	$(BIN)/python bench/epoch_time.py
	$(BIN)/python bench/step_overhead.py

# mtlbench next to LibMTL and TorchJD (docs/performance.md), in a separate environment so that
# the peers never enter mtlbench's own dependencies; LibMTL 1.1.5 declares torchvision, which has no
# usable build here, so it is installed without dependencies (bench/peers/shims stubs the imports).
PEERS := .venv-peers
bench-peers:
	@test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install -q --upgrade pip
	$(PEERS)/bin/python -m pip install -q -c constraints.txt -e ".[qm9]" "torchjd[full]==0.18.0"
	$(PEERS)/bin/python -m pip install -q --no-deps LibMTL==1.1.5
	$(PEERS)/bin/python bench/vs_peers.py --python $(PEERS)/bin/python --paired --output bench-peers.md

clean:
	rm -rf $(VENV) mtlbench-results .pytest_cache .ruff_cache
